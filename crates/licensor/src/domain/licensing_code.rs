//! The encrypted license code of the `/api/licensing/v1` surface (docs/licensing-v1.md): what
//! `licenses/create` returns and `POST /licenses` installs.
//!
//! Format (ours; the vendor's is undocumented): `base64(version ‖ nonce ‖ AES-256-GCM(sig ‖
//! payload))`, where `payload` is the JSON [`Grant`], `sig` its Ed25519 signature by the account
//! key, and the AES key is derived from that same private key, so only the issuing account can
//! read or install the code, and any change to it fails authentication.

use aes_gcm::aead::{Aead, KeyInit, Payload as AeadPayload};
use aes_gcm::{Aes256Gcm, Nonce};
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use ed25519_dalek::{Signature, Signer, SigningKey};
use rand::RngCore;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use uuid::Uuid;

/// The code format version written now; `licenseVersion` 1–3 are accepted and all map to it.
pub const VERSION: u8 = 3;

/// One grant: a licensee and the licenses issued to them in one call.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Grant {
    pub account: Uuid,
    pub group: Uuid,
    pub licenser_key: i32,
    pub licensee_id: String,
    pub licensee_name: String,
    /// `YYYY-MM-DD`, or `9999-12-31` for no expiry.
    pub expiration: String,
    pub licenses: Vec<GrantedLicense>,
    pub issued: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GrantedLicense {
    pub id: Uuid,
    pub key: String,
    pub product: Uuid,
    pub product_key: i32,
    pub policy: Uuid,
    #[serde(rename = "type")]
    pub kind: String,
    pub quantity: i64,
    pub entitlements: Vec<Uuid>,
    pub extensions: Vec<i32>,
}

fn aes_key(signing: &SigningKey) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(b"licensor/licensing-v1/code\0");
    h.update(signing.as_bytes());
    h.finalize().into()
}

/// Signs, encrypts and encodes `grant`.
pub fn seal(grant: &Grant, signing: &SigningKey) -> String {
    let payload = serde_json::to_vec(grant).unwrap_or_default();
    let mut plaintext = signing.sign(&payload).to_bytes().to_vec();
    plaintext.extend_from_slice(&payload);
    let mut nonce = [0u8; 12];
    rand::rngs::OsRng.fill_bytes(&mut nonce);
    let cipher = Aes256Gcm::new(&aes_key(signing).into());
    let ct =
        cipher.encrypt(Nonce::from_slice(&nonce), AeadPayload { msg: &plaintext, aad: &[VERSION] }).unwrap_or_default();
    let mut out = vec![VERSION];
    out.extend_from_slice(&nonce);
    out.extend_from_slice(&ct);
    STANDARD.encode(out)
}

/// Why a code cannot be installed.
#[derive(Debug, PartialEq, Eq)]
pub enum OpenError {
    /// Not base64, too short, unknown version.
    Malformed,
    /// Tampered, or issued by another account.
    NotOurs,
}

/// Decodes, decrypts and verifies a code sealed by this account.
pub fn open(code: &str, signing: &SigningKey) -> Result<Grant, OpenError> {
    let compact: String = code.chars().filter(|c| !c.is_whitespace()).collect();
    let raw = STANDARD.decode(compact).map_err(|_| OpenError::Malformed)?;
    if raw.len() < 1 + 12 + 16 + 64 || raw[0] != VERSION {
        return Err(OpenError::Malformed);
    }
    let (nonce, ct) = raw[1..].split_at(12);
    let cipher = Aes256Gcm::new(&aes_key(signing).into());
    let plaintext = cipher
        .decrypt(Nonce::from_slice(nonce), AeadPayload { msg: ct, aad: &raw[..1] })
        .map_err(|_| OpenError::NotOurs)?;
    let (sig, payload) = plaintext.split_at(64);
    let sig = Signature::from_slice(sig).map_err(|_| OpenError::NotOurs)?;
    signing.verifying_key().verify_strict(payload, &sig).map_err(|_| OpenError::NotOurs)?;
    serde_json::from_slice(payload).map_err(|_| OpenError::Malformed)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grant() -> Grant {
        Grant {
            account: Uuid::new_v4(),
            group: Uuid::new_v4(),
            licenser_key: -5,
            licensee_id: "00.000.000/0000-00".into(),
            licensee_name: "Empresa".into(),
            expiration: "2099-12-31".into(),
            licenses: vec![],
            issued: "2026-11-22T00:00:00.000Z".into(),
        }
    }

    #[test]
    fn codes_round_trip_and_reject_tampering_and_other_accounts() {
        let key = SigningKey::generate(&mut rand::rngs::OsRng);
        let g = grant();
        let code = seal(&g, &key);
        assert_eq!(open(&code, &key).unwrap(), g);
        let mut raw = STANDARD.decode(&code).unwrap();
        raw[20] ^= 1;
        assert_eq!(open(&STANDARD.encode(&raw), &key), Err(OpenError::NotOurs));
        let other = SigningKey::generate(&mut rand::rngs::OsRng);
        assert_eq!(open(&code, &other), Err(OpenError::NotOurs));
        assert_eq!(open("not base64!", &key), Err(OpenError::Malformed));
        assert_eq!(open("AAAA", &key), Err(OpenError::Malformed));
    }
}
