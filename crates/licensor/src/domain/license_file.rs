//! License and machine files in Keygen's format: an armored certificate holding
//! `{"enc", "sig", "alg"}`, where `enc` is the base64 (or AES-256-GCM-encrypted) JSON:API
//! document and `sig` signs `license/<enc>` (or `machine/<enc>`).

use aes_gcm::aead::{Aead, KeyInit};
use aes_gcm::{Aes256Gcm, Nonce};
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use rand::RngCore;

use crate::crypto::sign::{self, SigAlg};
use crate::crypto::AccountKeys;
use crate::model::Scheme;

/// Which kind of file: it names the armor and the signing prefix.
#[derive(Debug, Clone, Copy)]
pub enum FileKind {
    License,
    Machine,
}

impl FileKind {
    fn prefix(self) -> &'static str {
        match self {
            FileKind::License => "license",
            FileKind::Machine => "machine",
        }
    }
    fn armor(self) -> &'static str {
        match self {
            FileKind::License => "LICENSE FILE",
            FileKind::Machine => "MACHINE FILE",
        }
    }
}

/// The default file TTL, a month as Keygen counts it (2,629,746 s).
pub const DEFAULT_TTL: i64 = 2_629_746;
/// The shortest TTL allowed.
pub const MIN_TTL: i64 = 3600;

/// `<enc>+<sig>` as Keygen writes it.
pub fn algorithm_name(encrypt: bool, alg: SigAlg) -> String {
    format!("{}+{}", if encrypt { "aes-256-gcm" } else { "base64" }, alg.as_str())
}

/// Parses `<enc>+<sig>` into (encrypt, signature algorithm).
pub fn parse_algorithm(s: &str) -> Option<(bool, SigAlg)> {
    let (enc, sig) = s.split_once('+')?;
    let encrypt = match enc {
        "aes-256-gcm" => true,
        "base64" => false,
        _ => return None,
    };
    Some((encrypt, SigAlg::parse(sig)?))
}

/// The default signature algorithm for a license's scheme.
pub fn default_alg(scheme: Option<Scheme>) -> SigAlg {
    match scheme {
        Some(Scheme::Rsa2048Pkcs1PssSign | Scheme::Rsa2048Pkcs1PssSignV2) => SigAlg::RsaPssSha256,
        Some(
            Scheme::Rsa2048Pkcs1Sign
            | Scheme::Rsa2048Pkcs1SignV2
            | Scheme::Rsa2048Pkcs1Encrypt
            | Scheme::Rsa2048JwtRs256,
        ) => SigAlg::RsaSha256,
        Some(Scheme::EcdsaP256Sign) => SigAlg::EcdsaP256,
        Some(Scheme::Ed25519Sign | Scheme::LegacyEncrypt) | None => SigAlg::Ed25519,
    }
}

/// The AES key for an encrypted file: SHA-256 of the license key (plus the machine's
/// fingerprint, for machine files). One definition, shared with the client that decrypts.
pub use licensor_client::file::decryption_key as file_key;

/// Builds the armored certificate for `payload` (the JSON text of the document).
pub fn certificate(
    kind: FileKind,
    payload: &str,
    keys: &AccountKeys,
    alg: SigAlg,
    encrypt_key: Option<[u8; 32]>,
) -> anyhow::Result<String> {
    let enc = match encrypt_key {
        None => STANDARD.encode(payload.as_bytes()),
        Some(key) => {
            let cipher = Aes256Gcm::new_from_slice(&key).map_err(|_| anyhow::anyhow!("bad file key"))?;
            let mut iv = [0u8; 12];
            rand::rngs::OsRng.fill_bytes(&mut iv);
            let sealed = cipher
                .encrypt(Nonce::from_slice(&iv), payload.as_bytes())
                .map_err(|_| anyhow::anyhow!("encryption failed"))?;
            let (ct, tag) = sealed.split_at(sealed.len() - 16);
            format!("{}.{}.{}", STANDARD.encode(ct), STANDARD.encode(iv), STANDARD.encode(tag))
        }
    };
    let signing_data = format!("{}/{enc}", kind.prefix());
    let sig = STANDARD.encode(sign::sign(keys, alg, signing_data.as_bytes())?);
    let alg_name = algorithm_name(encrypt_key.is_some(), alg);
    let doc = serde_json::json!({ "enc": enc, "sig": sig, "alg": alg_name }).to_string();
    let b64 = STANDARD.encode(doc.as_bytes());
    // MIME-style lines of 60 characters, as Ruby's Base64.encode64 writes them.
    let mut body = String::with_capacity(b64.len() + b64.len() / 60 + 1);
    for chunk in b64.as_bytes().chunks(60) {
        body.push_str(std::str::from_utf8(chunk).unwrap_or_default());
        body.push('\n');
    }
    Ok(format!("-----BEGIN {armor}-----\n{body}-----END {armor}-----\n", armor = kind.armor()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn algorithms_round_trip() {
        for name in ["base64+ed25519", "aes-256-gcm+rsa-pss-sha256", "base64+rsa-sha256"] {
            let (enc, alg) = parse_algorithm(name).unwrap();
            assert_eq!(algorithm_name(enc, alg), name);
        }
        assert!(parse_algorithm("rot13+ed25519").is_none());
        assert!(parse_algorithm("base64+dsa").is_none());
        assert_eq!(default_alg(Scheme::parse("RSA_2048_PKCS1_PSS_SIGN_V2")), SigAlg::RsaPssSha256);
        assert_eq!(default_alg(None), SigAlg::Ed25519);
    }
}
