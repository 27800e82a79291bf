//! An account's public keys as Licensor (and Keygen) publish them: Ed25519 as 64 hex
//! characters, RSA-2048 and ECDSA P-256 as PEM `PUBLIC KEY` blocks (RSA also as
//! `RSA PUBLIC KEY`).

use ed25519_dalek::{Signature, VerifyingKey};
use rsa::pkcs1::DecodeRsaPublicKey;
use rsa::pkcs8::DecodePublicKey;
use rsa::signature::Verifier;
use rsa::RsaPublicKey;
use sha2::Sha256;

use crate::{Error, Result};

/// The PSS salt length for a 2048-bit key and SHA-256 (256 − 32 − 2).
const MAX_PSS_SALT: usize = 222;

#[derive(Debug, Clone)]
pub enum PublicKey {
    Ed25519(VerifyingKey),
    Rsa(Box<RsaPublicKey>),
    EcdsaP256(Box<p256::ecdsa::VerifyingKey>),
}

/// The signature algorithms verified here, by their Keygen names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Algorithm {
    Ed25519,
    RsaPssSha256,
    RsaSha256,
    EcdsaP256,
}

impl Algorithm {
    pub fn parse(s: &str) -> Result<Algorithm> {
        match s {
            "ed25519" => Ok(Algorithm::Ed25519),
            "rsa-pss-sha256" => Ok(Algorithm::RsaPssSha256),
            "rsa-sha256" => Ok(Algorithm::RsaSha256),
            "ecdsa-p256" => Ok(Algorithm::EcdsaP256),
            other => Err(Error::Unsupported(other.to_string())),
        }
    }
}

impl PublicKey {
    /// Parses hex (Ed25519) or PEM (RSA).
    pub fn parse(text: &str) -> Result<PublicKey> {
        let t = text.trim();
        if t.starts_with("-----BEGIN") {
            if let Ok(k) = p256::ecdsa::VerifyingKey::from_public_key_pem(t) {
                return Ok(PublicKey::EcdsaP256(Box::new(k)));
            }
            let key = RsaPublicKey::from_public_key_pem(t)
                .or_else(|_| RsaPublicKey::from_pkcs1_pem(t))
                .map_err(|e| Error::BadPublicKey(e.to_string()))?;
            return Ok(PublicKey::Rsa(Box::new(key)));
        }
        let bytes =
            hex::decode(t).map_err(|_| Error::BadPublicKey("expected 64 hex characters or a PEM block".into()))?;
        let arr: [u8; 32] =
            bytes.as_slice().try_into().map_err(|_| Error::BadPublicKey("Ed25519 keys are 32 bytes".into()))?;
        VerifyingKey::from_bytes(&arr).map(PublicKey::Ed25519).map_err(|e| Error::BadPublicKey(e.to_string()))
    }

    /// RSA "public decrypt" of a PKCS#1 v1.5 type-1 block (Keygen's `RSA_2048_PKCS1_ENCRYPT`
    /// keys): returns the data the private key encrypted.
    pub fn rsa_public_decrypt(&self, block: &[u8]) -> Result<Vec<u8>> {
        use rsa::traits::PublicKeyParts;
        let PublicKey::Rsa(k) = self else {
            return Err(Error::Unsupported("RSA_2048_PKCS1_ENCRYPT needs an RSA public key".into()));
        };
        let size = k.size();
        if block.len() != size {
            return Err(Error::BadSignature);
        }
        let c = rsa::BigUint::from_bytes_be(block);
        if &c >= k.n() {
            return Err(Error::BadSignature);
        }
        let m = c.modpow(k.e(), k.n()).to_bytes_be();
        // Left-pad to the modulus size, then expect 00 01 FF… 00 data.
        let mut em = vec![0u8; size.saturating_sub(m.len())];
        em.extend_from_slice(&m);
        if em.len() < 11 || em[0] != 0 || em[1] != 1 {
            return Err(Error::BadSignature);
        }
        let sep = em[2..].iter().position(|b| *b != 0xff).map(|i| i + 2).ok_or(Error::BadSignature)?;
        if em[sep] != 0 || sep < 10 {
            return Err(Error::BadSignature);
        }
        Ok(em[sep + 1..].to_vec())
    }

    /// Verifies `sig` over `data`. An algorithm that does not fit the key fails.
    pub fn verify(&self, alg: Algorithm, data: &[u8], sig: &[u8]) -> Result<()> {
        match (self, alg) {
            (PublicKey::Ed25519(k), Algorithm::Ed25519) => {
                let sig = Signature::from_slice(sig).map_err(|_| Error::BadSignature)?;
                k.verify_strict(data, &sig).map_err(|_| Error::BadSignature)
            }
            (PublicKey::Rsa(k), Algorithm::RsaSha256) => {
                let sig = rsa::pkcs1v15::Signature::try_from(sig).map_err(|_| Error::BadSignature)?;
                rsa::pkcs1v15::VerifyingKey::<Sha256>::new((**k).clone())
                    .verify(data, &sig)
                    .map_err(|_| Error::BadSignature)
            }
            (PublicKey::Rsa(k), Algorithm::RsaPssSha256) => {
                let sig = rsa::pss::Signature::try_from(sig).map_err(|_| Error::BadSignature)?;
                // Keygen (and Licensor) sign with the maximum salt (222 bytes for RSA-2048 and
                // SHA-256); other signers use the digest length. Accept either.
                [MAX_PSS_SALT, 32]
                    .iter()
                    .any(|&salt| {
                        rsa::pss::VerifyingKey::<Sha256>::new_with_salt_len((**k).clone(), salt)
                            .verify(data, &sig)
                            .is_ok()
                    })
                    .then_some(())
                    .ok_or(Error::BadSignature)
            }
            (PublicKey::EcdsaP256(k), Algorithm::EcdsaP256) => {
                // One encoding per signature: DER, as Keygen writes them, with a low S (its
                // high-S twin, equally valid to the curve, is refused, so a signature cannot be
                // re-encoded into a second accepted form).
                let sig = p256::ecdsa::Signature::from_der(sig).map_err(|_| Error::BadSignature)?;
                if sig.normalize_s().is_some() {
                    return Err(Error::BadSignature);
                }
                k.verify(data, &sig).map_err(|_| Error::BadSignature)
            }
            _ => Err(Error::Unsupported("algorithm does not match the public key".into())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_ecdsa_signature_has_one_accepted_encoding() {
        use p256::ecdsa::signature::Signer as _;
        let sk = p256::ecdsa::SigningKey::random(&mut rand::rngs::OsRng);
        let pk = PublicKey::EcdsaP256(Box::new(*sk.verifying_key()));
        let sig: p256::ecdsa::Signature = sk.sign(b"data");
        let sig = sig.normalize_s().unwrap_or(sig);
        assert!(pk.verify(Algorithm::EcdsaP256, b"data", sig.to_der().as_bytes()).is_ok());
        // The raw 64-byte form, and the high-S twin, of the same signature are refused.
        assert!(pk.verify(Algorithm::EcdsaP256, b"data", &sig.to_bytes()).is_err());
        let (r, s) = sig.split_scalars();
        let high = p256::ecdsa::Signature::from_scalars(r.to_bytes(), (-*s).to_bytes()).unwrap();
        assert!(pk.verify(Algorithm::EcdsaP256, b"data", high.to_der().as_bytes()).is_err());
    }
}
