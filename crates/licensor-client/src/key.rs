//! Signed license keys (Keygen's encodings; shared/reference/keygen.md §4).
//!
//! `ED25519_SIGN` and the `_V2` RSA schemes: `key/<b64url(data)>.<b64url(sig)>`, signed over
//! `key/<b64url(data)>`. The v1 RSA schemes: `<b64url(data)>.<b64url(sig)>`, signed over the
//! raw data. Verification returns the embedded data (by default a JSON document naming the
//! account, product, policy, license and its expiry).

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
}

impl Scheme {
    pub fn parse(s: &str) -> Result<Scheme> {
        Ok(match s {
            "ED25519_SIGN" => Scheme::Ed25519Sign,
            "RSA_2048_PKCS1_SIGN" => Scheme::RsaPkcs1Sign,
            "RSA_2048_PKCS1_PSS_SIGN" => Scheme::RsaPkcs1PssSign,
            "RSA_2048_PKCS1_SIGN_V2" => Scheme::RsaPkcs1SignV2,
            "RSA_2048_PKCS1_PSS_SIGN_V2" => Scheme::RsaPkcs1PssSignV2,
            other => return Err(Error::Unsupported(other.to_string())),
        })
    }

    fn algorithm(self) -> Algorithm {
        match self {
            Scheme::Ed25519Sign => Algorithm::Ed25519,
            Scheme::RsaPkcs1Sign | Scheme::RsaPkcs1SignV2 => Algorithm::RsaSha256,
            Scheme::RsaPkcs1PssSign | Scheme::RsaPkcs1PssSignV2 => Algorithm::RsaPssSha256,
        }
    }

    fn prefixed(self) -> bool {
        !matches!(self, Scheme::RsaPkcs1Sign | Scheme::RsaPkcs1PssSign)
    }
}

fn b64url(s: &str) -> Result<Vec<u8>> {
    URL_SAFE.decode(s).or_else(|_| URL_SAFE_NO_PAD.decode(s)).map_err(|_| malformed("key is not base64url"))
}

/// Verifies `key` under `scheme` and returns the data it carries.
pub fn verify(key: &str, scheme: Scheme, public_key: &PublicKey) -> Result<Vec<u8>> {
    let key = key.trim();
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
}
