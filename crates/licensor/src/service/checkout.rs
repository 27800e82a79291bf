//! Checking a license out: a signed (optionally encrypted) license file a product verifies
//! offline. The Keygen surface, the console and the portal all check out through here, so the
//! license's `lastCheckOut` and the `license.checked-out` event follow every file.

use serde_json::{json, Value};

use crate::crypto::sign::SigAlg;
use crate::domain::license_file::{self, FileKind};
use crate::error::Result;
use crate::events::Raised;
use crate::model::{Account, License};
use crate::state::AppState;
use crate::store::licenses;
use crate::time;

/// How to write the file.
#[derive(Debug, Clone)]
pub struct FileOptions {
    pub encrypt: bool,
    pub alg: SigAlg,
    /// Seconds the file is valid; `None` for no expiry.
    pub ttl: Option<i64>,
    /// Resource objects to embed (`included`), rendered by the caller.
    pub included: Vec<Value>,
}

impl FileOptions {
    /// Keygen's defaults for a license under `l`'s policy: signed with the scheme's algorithm,
    /// not encrypted, valid for a month, nothing included.
    pub fn defaults(l: &License) -> FileOptions {
        FileOptions {
            encrypt: false,
            alg: license_file::default_alg(l.rules().scheme),
            ttl: Some(license_file::DEFAULT_TTL),
            included: Vec::new(),
        }
    }
}

/// A file as issued.
#[derive(Debug, Clone)]
pub struct Issued {
    pub license: License,
    pub certificate: String,
    pub issued: i64,
    pub expiry: Option<i64>,
}

/// The document a file carries: the resource, what it includes, and when it was issued.
pub fn payload(data: Value, included: Vec<Value>, issued: i64, expiry: Option<i64>, ttl: Option<i64>) -> String {
    let mut doc =
        json!({ "data": data, "meta": { "issued": time::iso(issued), "expiry": time::iso_opt(expiry), "ttl": ttl } });
    if !included.is_empty() {
        doc["included"] = Value::Array(included);
    }
    doc.to_string()
}

/// Checks `l` out for a caller who may read it: records the check-out (with its event) and
/// returns the signed file.
pub async fn license_file(state: &AppState, account: &Account, mut l: License, opts: FileOptions) -> Result<Issued> {
    let before = l.clone();
    let now = time::now_ms();
    l.last_check_out_at = Some(now);
    l.updated_at = now;
    licenses::update(&state.db, &before, &l, &[Raised::license("license.checked-out", &l)]).await?;
    let expiry = opts.ttl.and_then(|t| time::add_duration(now, t));
    let data = serde_json::to_value(crate::wire::licenses::render(account.id, &l)).map_err(anyhow::Error::from)?;
    let keys = state.signing_keys(account)?;
    let key = opts.encrypt.then(|| license_file::file_key(&l.key, None));
    let certificate = license_file::certificate(
        FileKind::License,
        &payload(data, opts.included, now, expiry, opts.ttl),
        &keys,
        opts.alg,
        key,
    )?;
    Ok(Issued { license: l, certificate, issued: now, expiry })
}
