//! Air-gapped activation files in the style of OPSWAT's scripted activation.
//!
//! The activation server answers `GET /activation?key=&deployment=&quantity=` with a small YAML
//! document. Its readable fields (`deployment`, `product_name`, `expiration`, …) are for people;
//! what counts is `payload` (base64 of a JSON [`Payload`]) and `signature` (Ed25519 by the
//! vendor's account key over the payload's exact bytes). [`verify`] checks the signature, that
//! the file was issued for this deployment, and that nobody edited the readable fields.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::public_key::{Algorithm, PublicKey};
use crate::{malformed, Error, Result};

/// What the license grants, as signed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Payload {
    /// Format version (1).
    pub version: u32,
    pub account: String,
    pub license: String,
    pub machine: String,
    /// The activation key, so the product can show it and deactivate later.
    pub key: String,
    pub deployment: String,
    pub product_id: String,
    pub product_name: String,
    pub licensed_to: String,
    /// RFC 3339; `None` never expires.
    pub expiry: Option<String>,
    /// Scan nodes that may attach (the activation's `quantity`).
    pub max_node_count: i64,
    /// Entitlement codes; empty means every engine.
    pub licensed_engines: Vec<String>,
    /// RFC 3339.
    pub issued: String,
}

impl Payload {
    pub fn expiry(&self) -> Option<DateTime<Utc>> {
        self.expiry.as_deref().and_then(|e| DateTime::parse_from_rfc3339(e).ok()).map(|t| t.with_timezone(&Utc))
    }

    pub fn issued(&self) -> Option<DateTime<Utc>> {
        DateTime::parse_from_rfc3339(&self.issued).ok().map(|t| t.with_timezone(&Utc))
    }

    /// `MM/DD/YYYY`, as the product reports it, or `never`.
    pub fn expiration(&self) -> String {
        self.expiry().map_or_else(|| "never".to_string(), |e| e.format("%m/%d/%Y").to_string())
    }

    /// `*` or the comma-separated engine codes.
    pub fn engines(&self) -> String {
        if self.licensed_engines.is_empty() {
            "*".to_string()
        } else {
            self.licensed_engines.join(",")
        }
    }

    /// Whole days left at `now` (negative once expired); `None` without expiry.
    pub fn days_left(&self, now: DateTime<Utc>) -> Option<i64> {
        self.expiry().map(|e| (e - now).num_days())
    }

    /// Fails when expired at `now` or issued in the future of `now` (clock set back).
    pub fn check_time(&self, now: DateTime<Utc>) -> Result<()> {
        let issued = self.issued().ok_or_else(|| malformed("issued is not a timestamp"))?;
        if issued > now + crate::file::CLOCK_SKEW {
            return Err(Error::ClockRollback);
        }
        match self.expiry() {
            Some(e) if e < now => Err(Error::Expired(e.to_rfc3339())),
            _ => Ok(()),
        }
    }

    /// The readable fields, in file order.
    fn header(&self) -> [(&'static str, String); 7] {
        [
            ("deployment", self.deployment.clone()),
            ("product_id", self.product_id.clone()),
            ("product_name", self.product_name.clone()),
            ("licensed_to", self.licensed_to.clone()),
            ("expiration", self.expiration()),
            ("max_node_count", self.max_node_count.to_string()),
            ("licensed_engines", self.engines()),
        ]
    }
}

/// A single-quoted YAML scalar (`'` doubled), as the activation server writes every value.
pub fn yaml_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

fn yaml_unquote(s: &str) -> String {
    let s = s.trim();
    match s.strip_prefix('\'').and_then(|s| s.strip_suffix('\'')) {
        Some(inner) => inner.replace("''", "'"),
        None => s.to_string(),
    }
}

/// Writes the file for `payload_json` (the exact signed bytes) and its signature.
pub fn render(payload: &Payload, payload_json: &[u8], signature: &[u8]) -> String {
    let mut out = format!(
        "# Licensor offline license for deployment {}. Do not edit: the signature covers `payload`.\n",
        payload.deployment
    );
    for (k, v) in payload.header() {
        out.push_str(&format!("{k}: {}\n", yaml_quote(&v)));
    }
    out.push_str(&format!("payload: {}\n", yaml_quote(&STANDARD.encode(payload_json))));
    out.push_str(&format!("signature: {}\n", yaml_quote(&STANDARD.encode(signature))));
    out.push_str("alg: 'ed25519'\n");
    out
}

/// Verifies `text` with the vendor's public key and returns the payload. `deployment`, when
/// given, must be the one the file was issued for. Time is not checked: see
/// [`Payload::check_time`].
pub fn verify(text: &str, public_key: &PublicKey, deployment: Option<&str>) -> Result<Payload> {
    let mut fields = std::collections::BTreeMap::new();
    for line in text.lines() {
        let line = line.trim_end();
        if line.trim().is_empty() || line.trim_start().starts_with('#') {
            continue;
        }
        let (k, v) = line.split_once(':').ok_or_else(|| malformed("not a license file"))?;
        if fields.insert(k.trim().to_string(), yaml_unquote(v)).is_some() {
            return Err(malformed(format!("duplicate field {k}")));
        }
    }
    let get = |k: &str| fields.get(k).ok_or_else(|| malformed(format!("{k} is missing")));
    if get("alg")? != "ed25519" {
        return Err(Error::Unsupported(get("alg")?.clone()));
    }
    let payload_json = STANDARD.decode(get("payload")?).map_err(|_| malformed("payload is not base64"))?;
    let sig = STANDARD.decode(get("signature")?).map_err(|_| malformed("signature is not base64"))?;
    public_key.verify(Algorithm::Ed25519, &payload_json, &sig)?;
    let payload: Payload = serde_json::from_slice(&payload_json).map_err(|_| malformed("payload is not JSON"))?;
    for (k, v) in payload.header() {
        if get(k)? != &v {
            return Err(malformed(format!("{k} does not match the signed payload")));
        }
    }
    if deployment.is_some_and(|d| d != payload.deployment) {
        return Err(Error::WrongMachine);
    }
    Ok(payload)
}

/// Deployment IDs the activation server accepts: an RFC 4122 UUID, or four capital letters and
/// 32 hex digits (`MSCL0123…`).
pub fn is_valid_deployment(s: &str) -> bool {
    let b = s.as_bytes();
    let prefixed =
        b.len() == 36 && b[..4].iter().all(u8::is_ascii_uppercase) && b[4..].iter().all(u8::is_ascii_hexdigit);
    prefixed || (s.len() == 36 && uuid::Uuid::parse_str(s).is_ok())
}

/// A new deployment ID: `prefix` (four capital letters) and 32 random hex digits.
pub fn new_deployment_id(prefix: &str) -> String {
    let prefix: String = prefix.chars().filter(char::is_ascii_uppercase).chain("LCSR".chars()).take(4).collect();
    format!("{prefix}{}", uuid::Uuid::new_v4().simple().to_string().to_uppercase())
}

#[cfg(test)]
mod tests {
    use super::*;
    use ed25519_dalek::{Signer, SigningKey};

    fn sample() -> Payload {
        Payload {
            version: 1,
            account: "a".into(),
            license: "l".into(),
            machine: "m".into(),
            key: "KEY-1".into(),
            deployment: new_deployment_id("MSCL"),
            product_id: "core".into(),
            product_name: "Scanner's Core".into(),
            licensed_to: "ACME".into(),
            expiry: Some("2099-12-31T23:59:59Z".into()),
            max_node_count: 3,
            licensed_engines: vec![],
            issued: Utc::now().to_rfc3339(),
        }
    }

    #[test]
    fn files_verify_and_reject_edits() {
        let sk = SigningKey::generate(&mut rand::rngs::OsRng);
        let pk = PublicKey::Ed25519(sk.verifying_key());
        let p = sample();
        let json = serde_json::to_vec(&p).unwrap();
        let text = render(&p, &json, &sk.sign(&json).to_bytes());
        assert!(text.contains("product_name: 'Scanner''s Core'\n"));
        assert_eq!(verify(&text, &pk, Some(&p.deployment)).unwrap(), p);
        assert_eq!(verify(&text, &pk, Some("MSCL00000000000000000000000000000000")), Err(Error::WrongMachine));
        let edited = text.replace("max_node_count: '3'", "max_node_count: '30'");
        assert!(matches!(verify(&edited, &pk, None), Err(Error::Malformed(_))));
        let other = PublicKey::Ed25519(SigningKey::generate(&mut rand::rngs::OsRng).verifying_key());
        assert_eq!(verify(&text, &other, None), Err(Error::BadSignature));
        p.check_time(Utc::now()).unwrap();
        assert!(matches!(p.check_time(Utc::now() + chrono::Duration::days(40000)), Err(Error::Expired(_))));
        assert_eq!(p.check_time(Utc::now() - chrono::Duration::days(1)), Err(Error::ClockRollback));
    }

    #[test]
    fn deployment_formats() {
        assert!(is_valid_deployment("MSCL0123456789abcdef0123456789ABCDEF"));
        assert!(is_valid_deployment(&uuid::Uuid::new_v4().to_string()));
        assert!(is_valid_deployment(&new_deployment_id("MSCL")));
        for bad in ["", "MSCL", "mscl0123456789abcdef0123456789abcdef", "MSCL0123456789abcdef0123456789abcdeg", "x"] {
            assert!(!is_valid_deployment(bad), "{bad}");
        }
    }
}
