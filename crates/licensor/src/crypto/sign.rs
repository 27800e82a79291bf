//! Signatures with an account's keys, in the algorithms Keygen names.

use rand::rngs::OsRng;
use rsa::signature::{RandomizedSigner, SignatureEncoding, Signer};
use sha2::Sha256;

use super::AccountKeys;

/// PSS salt length Keygen uses: the maximum for a 2048-bit key and SHA-256 (256 − 32 − 2).
pub const PSS_SALT_LEN: usize = 222;

/// The signature algorithms Licensor can produce.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SigAlg {
    Ed25519,
    RsaPssSha256,
    RsaSha256,
    EcdsaP256,
}

impl SigAlg {
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "ed25519" => Some(SigAlg::Ed25519),
            "rsa-pss-sha256" => Some(SigAlg::RsaPssSha256),
            "rsa-sha256" => Some(SigAlg::RsaSha256),
            "ecdsa-p256" => Some(SigAlg::EcdsaP256),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            SigAlg::Ed25519 => "ed25519",
            SigAlg::RsaPssSha256 => "rsa-pss-sha256",
            SigAlg::RsaSha256 => "rsa-sha256",
            SigAlg::EcdsaP256 => "ecdsa-p256",
        }
    }
}

/// Signs `data`. ECDSA signatures are DER (SHA-256), as Keygen writes them.
pub fn sign(keys: &AccountKeys, alg: SigAlg, data: &[u8]) -> anyhow::Result<Vec<u8>> {
    Ok(match alg {
        SigAlg::Ed25519 => keys.ed25519.sign(data).to_bytes().to_vec(),
        SigAlg::EcdsaP256 => {
            let key = keys.ecdsa.as_ref().ok_or_else(|| anyhow::anyhow!("account has no ECDSA key yet"))?;
            let sig: p256::ecdsa::Signature = key.sign(data);
            // Low S: the one form verifiers that insist on a canonical encoding accept.
            sig.normalize_s().unwrap_or(sig).to_der().as_bytes().to_vec()
        }
        // Randomized: the private-key operation is blinded, so its timing says nothing of the key.
        SigAlg::RsaSha256 => {
            rsa::pkcs1v15::SigningKey::<Sha256>::new(keys.rsa.clone()).sign_with_rng(&mut OsRng, data).to_vec()
        }
        SigAlg::RsaPssSha256 => rsa::pss::SigningKey::<Sha256>::new_with_salt_len(keys.rsa.clone(), PSS_SALT_LEN)
            .sign_with_rng(&mut OsRng, data)
            .to_vec(),
    })
}
