//! License files in the shape of a NetApp License File (NLF), the `licenseText` of the
//! `/accounts/{id}/core/v1` surface (docs/core-v1.md).
//!
//! `{"statusResp": {…}, "Signature": "<base64>"}` where the signature is Ed25519, by the
//! account's key, over the exact bytes of the `statusResp` value as they appear in the text;
//! verification reads those bytes with `RawValue` and never re-serialises. `licenseText` is the
//! base64 of the whole document.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::{json, Value};

/// What a license file says, in core terms.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Nlf {
    pub serial: String,
    pub product: String,
    pub product_version: String,
    /// The core license id, when the file was rendered by Licensor.
    pub license_id: Option<uuid::Uuid>,
    /// The license key, when the file was rendered by Licensor.
    pub key: Option<String>,
    pub capacity: String,
    pub capacity2: String,
    /// Metric name (`machines`, `cores`, …) of `capacity`.
    pub kind: String,
    pub host_id: Option<String>,
    pub features: Vec<String>,
    pub protocol: String,
    pub evaluation: bool,
    pub start: Option<String>,
    pub end: Option<String>,
    pub addons: Vec<Value>,
}

impl Nlf {
    /// The `statusResp` object.
    fn status_resp(&self) -> Value {
        let mut licenses = json!({
            "capacity": self.capacity,
            "capacity2": self.capacity2,
            "type": self.kind,
            "package": self.features,
            "licenseProtocol": self.protocol,
            "licenseScope": "node",
            "evaluation": if self.evaluation { "true" } else { "false" },
            "startDate": self.start,
            "endDate": self.end,
        });
        if let Some(h) = &self.host_id {
            licenses["HostID"] = json!(h);
        }
        if !self.addons.is_empty() {
            licenses["addons"] = json!(self.addons);
        }
        json!({
            "version": "2",
            "serialNumber": self.serial,
            "message": "Success",
            "product": self.product,
            "productVersion": self.product_version,
            "licenseId": self.license_id,
            "key": self.key,
            "licenses": licenses,
            "snStatus": "Active",
            "statusCode": "S007",
        })
    }
}

/// Renders and signs `nlf`; returns the base64 `licenseText`. Deterministic for a given input
/// (Ed25519 signatures are), so ETags stay stable while the license does not change.
pub fn render(nlf: &Nlf, key: &SigningKey) -> String {
    let resp = nlf.status_resp().to_string();
    let sig = STANDARD.encode(key.sign(resp.as_bytes()).to_bytes());
    let doc = format!("{{\"statusResp\":{resp},\"Signature\":{}}}", json!(sig));
    STANDARD.encode(doc)
}

/// Why a `licenseText` was refused; each maps to one problem of the surface.
#[derive(Debug, PartialEq, Eq)]
pub enum TextError {
    /// Not base64 or not JSON (problem 8).
    Malformed(&'static str),
    /// More than one license in the text (problem 169).
    Several,
    /// Unsigned, badly signed, or missing fields (problem 9).
    Invalid(String),
}

#[derive(Deserialize)]
struct Document<'a> {
    #[serde(rename = "statusResp", borrow)]
    status_resp: &'a RawValue,
    #[serde(rename = "Signature")]
    signature: Option<String>,
}

fn str_field(v: &Value, name: &str) -> Option<String> {
    match v.get(name)? {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// Decodes, verifies and reads a `licenseText`.
pub fn parse(text: &str, key: &VerifyingKey) -> Result<Nlf, TextError> {
    let bytes = STANDARD.decode(text.trim()).map_err(|_| TextError::Malformed("licenseText is not base64"))?;
    // Several concatenated documents, or an array of them, is "more than one license".
    let mut docs = serde_json::Deserializer::from_slice(&bytes).into_iter::<&RawValue>();
    let Some(Ok(first)) = docs.next() else {
        return Err(TextError::Malformed("licenseText is not a JSON document"));
    };
    if docs.next().is_some() || first.get().trim_start().starts_with('[') {
        return Err(TextError::Several);
    }
    let doc: Document<'_> = serde_json::from_str(first.get())
        .map_err(|_| TextError::Invalid("licenseText is not a license file (statusResp missing)".into()))?;
    let sig = doc.signature.ok_or_else(|| TextError::Invalid("licenseText is not signed".into()))?;
    let sig = STANDARD
        .decode(sig)
        .ok()
        .and_then(|s| Signature::from_slice(&s).ok())
        .ok_or_else(|| TextError::Invalid("licenseText signature is malformed".into()))?;
    key.verify_strict(doc.status_resp.get().as_bytes(), &sig)
        .map_err(|_| TextError::Invalid("licenseText signature does not verify with this account's key".into()))?;
    let resp: Value = serde_json::from_str(doc.status_resp.get())
        .map_err(|_| TextError::Invalid("statusResp is not an object".into()))?;
    let lic = resp.get("licenses").filter(|l| l.is_object()).cloned().unwrap_or_else(|| json!({}));
    let missing = |f: &str| TextError::Invalid(format!("statusResp has no {f}"));
    let features = match lic.get("package") {
        Some(Value::Array(a)) => a.iter().filter_map(|v| v.as_str().map(str::to_string)).collect(),
        Some(Value::String(s)) => s.split(',').map(str::trim).filter(|s| !s.is_empty()).map(str::to_string).collect(),
        _ => Vec::new(),
    };
    Ok(Nlf {
        serial: str_field(&resp, "serialNumber").ok_or_else(|| missing("serialNumber"))?,
        product: str_field(&resp, "product").ok_or_else(|| missing("product"))?,
        product_version: str_field(&resp, "productVersion").unwrap_or_else(|| "1.0".into()),
        license_id: str_field(&resp, "licenseId").and_then(|s| s.parse().ok()),
        key: str_field(&resp, "key"),
        capacity: str_field(&lic, "capacity").unwrap_or_else(|| "0".into()),
        capacity2: str_field(&lic, "capacity2").unwrap_or_else(|| "0".into()),
        kind: str_field(&lic, "type").unwrap_or_else(|| "machines".into()),
        host_id: str_field(&lic, "HostID").filter(|h| !h.is_empty()),
        features,
        protocol: str_field(&lic, "licenseProtocol").unwrap_or_default(),
        evaluation: str_field(&lic, "evaluation").as_deref() == Some("true"),
        start: str_field(&lic, "startDate"),
        end: str_field(&lic, "endDate"),
        addons: lic.get("addons").and_then(Value::as_array).cloned().unwrap_or_default(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Nlf {
        Nlf {
            serial: "123456789".into(),
            product: "Astra Control Center".into(),
            product_version: "1.0".into(),
            license_id: Some(uuid::Uuid::from_u128(42)),
            key: Some("KEY".into()),
            capacity: "4000".into(),
            capacity2: "0".into(),
            kind: "cores".into(),
            host_id: Some("host-1".into()),
            features: vec!["a".into(), "b".into()],
            protocol: "ENT".into(),
            evaluation: false,
            start: Some("2020-08-06T00:00:00.000000Z".into()),
            end: None,
            addons: vec![],
        }
    }

    #[test]
    fn texts_round_trip_and_reject_tampering() {
        let key = SigningKey::generate(&mut rand::rngs::OsRng);
        let text = render(&sample(), &key);
        assert_eq!(render(&sample(), &key), text, "deterministic");
        assert_eq!(parse(&text, &key.verifying_key()).unwrap(), sample());
        let doc = String::from_utf8(STANDARD.decode(&text).unwrap()).unwrap();
        let edited = STANDARD.encode(doc.replace("4000", "9000"));
        assert!(matches!(parse(&edited, &key.verifying_key()), Err(TextError::Invalid(_))));
        let other = SigningKey::generate(&mut rand::rngs::OsRng);
        assert!(matches!(parse(&text, &other.verifying_key()), Err(TextError::Invalid(_))));
        let twice = STANDARD.encode(format!("{doc}{doc}"));
        assert_eq!(parse(&twice, &key.verifying_key()), Err(TextError::Several));
        let array = STANDARD.encode(format!("[{doc}]"));
        assert_eq!(parse(&array, &key.verifying_key()), Err(TextError::Several));
        assert!(matches!(parse("%%%", &key.verifying_key()), Err(TextError::Malformed(_))));
        assert!(matches!(parse(&STANDARD.encode("nope"), &key.verifying_key()), Err(TextError::Malformed(_))));
        // Whitespace inside statusResp is part of what is signed: re-signing after a reformat
        // is needed, and the original bytes verify as sent.
        let spaced = doc.replacen("{\"statusResp\":{", "{\"statusResp\": {", 1);
        assert!(parse(&STANDARD.encode(spaced), &key.verifying_key()).is_ok(), "outer whitespace is not signed");
    }
}
