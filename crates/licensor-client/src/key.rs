//! Signed license keys, in Keygen's encodings.
//!
//! `ED25519_SIGN` and the `_V2` RSA schemes: `key/<b64url(data)>.<b64url(sig)>`, signed over
//! `key/<b64url(data)>`. The v1 RSA schemes: `<b64url(data)>.<b64url(sig)>`, signed over the
//! raw data. `ECDSA_P256_SIGN` is like Ed25519 with a DER signature. `RSA_2048_PKCS1_ENCRYPT`
//! keys are the data encrypted with the private key; `RSA_2048_JWT_RS256` keys are JWTs.
//! Verification returns the embedded data (by default a JSON document naming the account,
//! product, policy, license and its expiry; for JWTs, the claims).

use base64::engine::general_purpose::{URL_SAFE, URL_SAFE_NO_PAD};
use base64::Engine;

use crate::public_key::{Algorithm, PublicKey};
use crate::{malformed, Error, Result};

/// The policy schemes whose keys are signed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheme {
    Ed25519Sign,
    RsaPkcs1Sign,
    RsaPkcs1PssSign,
    RsaPkcs1SignV2,
    RsaPkcs1PssSignV2,
    EcdsaP256Sign,
    RsaPkcs1Encrypt,
    RsaJwtRs256,
}

impl Scheme {
    pub fn parse(s: &str) -> Result<Scheme> {
        Ok(match s {
            "ED25519_SIGN" => Scheme::Ed25519Sign,
            "RSA_2048_PKCS1_SIGN" => Scheme::RsaPkcs1Sign,
            "RSA_2048_PKCS1_PSS_SIGN" => Scheme::RsaPkcs1PssSign,
            "RSA_2048_PKCS1_SIGN_V2" => Scheme::RsaPkcs1SignV2,
            "RSA_2048_PKCS1_PSS_SIGN_V2" => Scheme::RsaPkcs1PssSignV2,
            "ECDSA_P256_SIGN" => Scheme::EcdsaP256Sign,
            "RSA_2048_PKCS1_ENCRYPT" => Scheme::RsaPkcs1Encrypt,
            "RSA_2048_JWT_RS256" => Scheme::RsaJwtRs256,
            other => return Err(Error::Unsupported(other.to_string())),
        })
    }

    fn algorithm(self) -> Algorithm {
        match self {
            Scheme::Ed25519Sign => Algorithm::Ed25519,
            Scheme::EcdsaP256Sign => Algorithm::EcdsaP256,
            Scheme::RsaPkcs1Sign | Scheme::RsaPkcs1SignV2 | Scheme::RsaPkcs1Encrypt | Scheme::RsaJwtRs256 => {
                Algorithm::RsaSha256
            }
            Scheme::RsaPkcs1PssSign | Scheme::RsaPkcs1PssSignV2 => Algorithm::RsaPssSha256,
        }
    }

    fn prefixed(self) -> bool {
        !matches!(self, Scheme::RsaPkcs1Sign | Scheme::RsaPkcs1PssSign)
    }
}

/// Base64url as Keygen writes keys: padded. One accepted spelling per key, so a signed key
/// cannot be re-encoded into a second key that verifies.
fn b64url(s: &str) -> Result<Vec<u8>> {
    URL_SAFE.decode(s).map_err(|_| malformed("key is not padded base64url"))
}

/// Verifies `key` under `scheme` and returns the data it carries.
pub fn verify(key: &str, scheme: Scheme, public_key: &PublicKey) -> Result<Vec<u8>> {
    let key = key.trim();
    match scheme {
        Scheme::RsaPkcs1Encrypt => return public_key.rsa_public_decrypt(&b64url(key)?),
        Scheme::RsaJwtRs256 => return verify_jwt(key, public_key),
        _ => {}
    }
    let (signed, sig) = key.rsplit_once('.').ok_or_else(|| malformed("key has no signature part"))?;
    let data = if scheme.prefixed() {
        signed.strip_prefix("key/").ok_or_else(|| malformed("key must start with \"key/\""))?
    } else {
        signed
    };
    let decoded = b64url(data)?;
    let sig = b64url(sig)?;
    let message: &[u8] = if scheme.prefixed() { signed.as_bytes() } else { &decoded };
    public_key.verify(scheme.algorithm(), message, &sig)?;
    Ok(decoded)
}

/// An RS256 JWT: checks the header, the signature and `exp`/`nbf` against the local clock;
/// returns the claims.
fn verify_jwt(token: &str, public_key: &PublicKey) -> Result<Vec<u8>> {
    let mut parts = token.split('.');
    let (Some(header), Some(payload), Some(sig), None) = (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(malformed("a JWT has three parts"));
    };
    // JWT parts are base64url without padding (RFC 7515): nothing else is accepted.
    let decode = |s: &str| URL_SAFE_NO_PAD.decode(s).map_err(|_| malformed("JWT part is not unpadded base64url"));
    let h: serde_json::Value =
        serde_json::from_slice(&decode(header)?).map_err(|_| malformed("JWT header is not JSON"))?;
    if h["alg"] != "RS256" {
        return Err(Error::Unsupported(format!("JWT alg {}", h["alg"])));
    }
    public_key.verify(Algorithm::RsaSha256, format!("{header}.{payload}").as_bytes(), &decode(sig)?)?;
    let claims = decode(payload)?;
    let c: serde_json::Value = serde_json::from_slice(&claims).map_err(|_| malformed("JWT claims are not JSON"))?;
    let now = chrono::Utc::now().timestamp();
    // Times are integers (NumericDate); a float or a string would otherwise go unchecked.
    let time = |name: &str| match &c[name] {
        serde_json::Value::Null => Ok(None),
        v => v.as_i64().map(Some).ok_or_else(|| malformed(format!("JWT {name} is not an integer"))),
    };
    if let Some(exp) = time("exp")?.filter(|exp| *exp < now) {
        return Err(Error::Expired(exp.to_string()));
    }
    if time("nbf")?.is_some_and(|nbf| nbf > now + crate::file::CLOCK_SKEW.num_seconds()) {
        return Err(Error::ClockRollback);
    }
    Ok(claims)
}

#[cfg(test)]
mod tests {
    use super::*;
    use ed25519_dalek::{Signer, SigningKey};

    #[test]
    fn ed25519_keys_verify_and_reject_tampering() {
        let sk = SigningKey::generate(&mut rand::rngs::OsRng);
        let pk = PublicKey::Ed25519(sk.verifying_key());
        let data = URL_SAFE.encode(br#"{"license":{"id":"x"}}"#);
        let signing = format!("key/{data}");
        let key = format!("{signing}.{}", URL_SAFE.encode(sk.sign(signing.as_bytes()).to_bytes()));
        assert_eq!(verify(&key, Scheme::Ed25519Sign, &pk).unwrap(), br#"{"license":{"id":"x"}}"#);
        let mut bytes = key.clone().into_bytes();
        for i in [5, 20, bytes.len() - 3] {
            bytes[i] ^= 1;
            assert!(verify(std::str::from_utf8(&bytes).unwrap_or(""), Scheme::Ed25519Sign, &pk).is_err());
            bytes[i] ^= 1;
        }
        let other = PublicKey::Ed25519(SigningKey::generate(&mut rand::rngs::OsRng).verifying_key());
        assert_eq!(verify(&key, Scheme::Ed25519Sign, &other), Err(Error::BadSignature));
    }

    #[test]
    fn one_encoding_per_key_and_integer_times() {
        let sk = SigningKey::generate(&mut rand::rngs::OsRng);
        let pk = PublicKey::Ed25519(sk.verifying_key());
        // A dataset whose base64url has padding: the unpadded spelling of the same key fails.
        let data = URL_SAFE.encode(br#"{"a":1}"#);
        assert!(data.ends_with('='));
        let signing = format!("key/{data}");
        let sig = URL_SAFE.encode(sk.sign(signing.as_bytes()).to_bytes());
        assert!(verify(&format!("{signing}.{sig}"), Scheme::Ed25519Sign, &pk).is_ok());
        assert!(verify(&format!("{signing}.{}", sig.trim_end_matches('=')), Scheme::Ed25519Sign, &pk).is_err());

        // JWT times must be integers: a float `exp` in the past is not a way around expiry.
        let rsa = rsa::RsaPrivateKey::new(&mut rand::rngs::OsRng, 2048).unwrap();
        let rsa_pk = PublicKey::Rsa(Box::new(rsa.to_public_key()));
        let jwt = |claims: &str| {
            use rsa::signature::{SignatureEncoding, Signer as _};
            let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"RS256","typ":"JWT"}"#);
            let input = format!("{header}.{}", URL_SAFE_NO_PAD.encode(claims));
            let sig = rsa::pkcs1v15::SigningKey::<sha2::Sha256>::new(rsa.clone()).sign(input.as_bytes()).to_vec();
            format!("{input}.{}", URL_SAFE_NO_PAD.encode(sig))
        };
        assert!(verify(&jwt(r#"{"exp":4102444800}"#), Scheme::RsaJwtRs256, &rsa_pk).is_ok());
        assert!(matches!(verify(&jwt(r#"{"exp":1000}"#), Scheme::RsaJwtRs256, &rsa_pk), Err(Error::Expired(_))));
        for claims in [r#"{"exp":1000.5}"#, r#"{"exp":"1000"}"#, r#"{"nbf":"soon"}"#] {
            assert!(matches!(verify(&jwt(claims), Scheme::RsaJwtRs256, &rsa_pk), Err(Error::Malformed(_))), "{claims}");
        }
    }
}
