//! An account's public keys as Licensor (and Keygen) publish them: Ed25519 as 64 hex
//! characters, RSA-2048 as a PEM `PUBLIC KEY` (or `RSA PUBLIC KEY`) block.

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
}

/// The signature algorithms verified here, by their Keygen names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Algorithm {
    Ed25519,
    RsaPssSha256,
    RsaSha256,
}

impl Algorithm {
    pub fn parse(s: &str) -> Result<Algorithm> {
        match s {
            "ed25519" => Ok(Algorithm::Ed25519),
            "rsa-pss-sha256" => Ok(Algorithm::RsaPssSha256),
            "rsa-sha256" => Ok(Algorithm::RsaSha256),
            other => Err(Error::Unsupported(other.to_string())),
        }
    }
}

impl PublicKey {
    /// Parses hex (Ed25519) or PEM (RSA).
    pub fn parse(text: &str) -> Result<PublicKey> {
        let t = text.trim();
        if t.starts_with("-----BEGIN") {
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
            _ => Err(Error::Unsupported("algorithm does not match the public key".into())),
        }
    }
}
