//! License and machine files: an armored certificate holding base64 JSON `{enc, sig, alg}`.
//! `sig` signs `license/<enc>` (or `machine/<enc>`); `enc` is the base64 JSON:API document,
//! or for `aes-256-gcm+…` files `<b64 ciphertext>.<b64 iv>.<b64 tag>` under the key
//! SHA-256(license key) (license files) or SHA-256(license key ‖ fingerprint) (machine files).

use aes_gcm::aead::{Aead, KeyInit};
use aes_gcm::{Aes256Gcm, Nonce};
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::public_key::{Algorithm, PublicKey};
use crate::{malformed, Error, Result};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    License,
    Machine,
}

impl Kind {
    fn prefix(self) -> &'static str {
        match self {
            Kind::License => "license",
            Kind::Machine => "machine",
        }
    }
}

/// A verified (and, if it was encrypted, decrypted) file.
#[derive(Debug, Clone)]
pub struct VerifiedFile {
    pub kind: Kind,
    /// The JSON:API document: `data`, `included`, `meta`.
    pub document: Value,
    pub issued: DateTime<Utc>,
    /// `None` for files checked out without a TTL.
    pub expiry: Option<DateTime<Utc>>,
}

#[derive(Deserialize)]
struct Envelope {
    enc: String,
    sig: String,
    alg: String,
}

/// Strips the armor and returns the kind and the decoded envelope JSON.
fn unarmor(certificate: &str) -> Result<(Kind, Envelope)> {
    let text = certificate.trim();
    let (kind, begin, end) = if text.starts_with("-----BEGIN LICENSE FILE-----") {
        (Kind::License, "-----BEGIN LICENSE FILE-----", "-----END LICENSE FILE-----")
    } else if text.starts_with("-----BEGIN MACHINE FILE-----") {
        (Kind::Machine, "-----BEGIN MACHINE FILE-----", "-----END MACHINE FILE-----")
    } else {
        return Err(malformed("not a license or machine file"));
    };
    let body =
        text.strip_prefix(begin).and_then(|t| t.strip_suffix(end)).ok_or_else(|| malformed("armor is incomplete"))?;
    let b64: String = body.chars().filter(|c| !c.is_whitespace()).collect();
    let json = STANDARD.decode(b64).map_err(|_| malformed("file body is not base64"))?;
    let env: Envelope = serde_json::from_slice(&json).map_err(|_| malformed("file body is not {enc, sig, alg}"))?;
    Ok((kind, env))
}

/// The AES key of an encrypted file.
pub fn decryption_key(license_key: &str, fingerprint: Option<&str>) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(license_key.as_bytes());
    if let Some(fp) = fingerprint {
        h.update(fp.as_bytes());
    }
    h.finalize().into()
}

/// Verifies a file's signature and decodes it. `decryption_key` is needed for encrypted files
/// (see [`decryption_key`]). Expiry is not checked here: see [`VerifiedFile::check_time`].
pub fn verify(certificate: &str, public_key: &PublicKey, decryption_key: Option<[u8; 32]>) -> Result<VerifiedFile> {
    let (kind, env) = unarmor(certificate)?;
    let (enc_alg, sig_alg) = env.alg.split_once('+').ok_or_else(|| Error::Unsupported(env.alg.clone()))?;
    let sig_alg = Algorithm::parse(sig_alg)?;
    let sig = STANDARD.decode(&env.sig).map_err(|_| malformed("signature is not base64"))?;
    public_key.verify(sig_alg, format!("{}/{}", kind.prefix(), env.enc).as_bytes(), &sig)?;
    let plaintext = match enc_alg {
        "base64" => STANDARD.decode(&env.enc).map_err(|_| malformed("payload is not base64"))?,
        "aes-256-gcm" => {
            let key = decryption_key.ok_or(Error::Decrypt)?;
            let mut parts = env.enc.split('.');
            let (Some(ct), Some(iv), Some(tag), None) = (parts.next(), parts.next(), parts.next(), parts.next()) else {
                return Err(malformed("encrypted payload must be ciphertext.iv.tag"));
            };
            let decode = |s: &str| STANDARD.decode(s).map_err(|_| malformed("encrypted payload is not base64"));
            let (mut ct, iv, tag) = (decode(ct)?, decode(iv)?, decode(tag)?);
            if iv.len() != 12 || tag.len() != 16 {
                return Err(malformed("bad iv or tag length"));
            }
            ct.extend_from_slice(&tag);
            let cipher = Aes256Gcm::new_from_slice(&key).map_err(|_| Error::Decrypt)?;
            cipher.decrypt(Nonce::from_slice(&iv), ct.as_slice()).map_err(|_| Error::Decrypt)?
        }
        other => return Err(Error::Unsupported(other.to_string())),
    };
    let document: Value = serde_json::from_slice(&plaintext).map_err(|_| malformed("payload is not JSON"))?;
    let meta = &document["meta"];
    let issued = parse_time(meta["issued"].as_str()).ok_or_else(|| malformed("meta.issued is missing"))?;
    let expiry = match meta["expiry"].as_str() {
        None => None,
        s => Some(parse_time(s).ok_or_else(|| malformed("meta.expiry is not a timestamp"))?),
    };
    Ok(VerifiedFile { kind, document, issued, expiry })
}

fn parse_time(s: Option<&str>) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(s?).ok().map(|t| t.with_timezone(&Utc))
}

/// How far a file's `issued` may lie in the future of the local clock before the clock is
/// judged to be set back (clocks drift; minutes, not days).
pub const CLOCK_SKEW: chrono::Duration = chrono::Duration::minutes(5);

impl VerifiedFile {
    /// Fails when the file has expired at `now`, or was issued after `now` (the clock was set
    /// back). Combine with [`crate::clock::ClockGuard`] to also catch a clock set back below
    /// the newest time seen.
    pub fn check_time(&self, now: DateTime<Utc>) -> Result<()> {
        if self.issued > now + CLOCK_SKEW {
            return Err(Error::ClockRollback);
        }
        if let Some(e) = self.expiry {
            if e < now {
                return Err(Error::Expired(e.to_rfc3339()));
            }
        }
        Ok(())
    }

    /// The license (or machine) resource's attributes.
    pub fn attributes(&self) -> &Value {
        &self.document["data"]["attributes"]
    }

    /// Fails unless this is a machine file issued for `fingerprint`. A signature proves who
    /// issued a file, not where it is used: a machine file is bound to its machine only when the
    /// product compares the fingerprint it computes with the one the file was issued for,
    /// encrypted or not.
    pub fn check_machine(&self, fingerprint: &str) -> Result<()> {
        if self.kind != Kind::Machine {
            return Err(malformed("not a machine file"));
        }
        match self.attributes()["fingerprint"].as_str() {
            Some(fp) if fp == fingerprint => Ok(()),
            Some(_) => Err(Error::WrongMachine),
            None => Err(malformed("data.attributes.fingerprint is missing")),
        }
    }
}

/// Verifies a machine file for the machine with `fingerprint`: the signature, the decryption
/// (when encrypted, with the license key and that fingerprint) and that the file names this
/// machine (`WrongMachine` otherwise). Expiry is not checked: see [`VerifiedFile::check_time`].
pub fn verify_machine(
    certificate: &str,
    public_key: &PublicKey,
    license_key: &str,
    fingerprint: &str,
) -> Result<VerifiedFile> {
    let file = verify(certificate, public_key, Some(decryption_key(license_key, Some(fingerprint))))?;
    file.check_machine(fingerprint)?;
    Ok(file)
}
