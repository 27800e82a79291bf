//! The product side of air-gapped activation: what runs inside the vendor's product on the
//! customer's machine. It owns a deployment ID, installs a license file brought over from a
//! connected machine, and reports the license the way OPSWAT's `GET /admin/license` does.

use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use serde_json::{json, Value};

use crate::clock::ClockGuard;
use crate::opswat::{self, Payload};
use crate::{Error, PublicKey, Result};

pub struct LicenseDir {
    dir: PathBuf,
    public_key: PublicKey,
    prefix: String,
}

const DEPLOYMENT: &str = "deployment-id";
const LICENSE: &str = "license.yml";
const CLOCK: &str = "clock";

impl LicenseDir {
    /// State lives in `dir`; `public_key` is the vendor's Ed25519 key; `prefix` (four capital
    /// letters) starts new deployment IDs.
    pub fn new(dir: impl AsRef<Path>, public_key: PublicKey, prefix: &str) -> Self {
        LicenseDir { dir: dir.as_ref().to_path_buf(), public_key, prefix: prefix.to_string() }
    }

    fn io(e: std::io::Error) -> Error {
        Error::Io(e.to_string())
    }

    /// This installation's deployment ID, created on first use and kept.
    pub fn deployment_id(&self) -> Result<String> {
        deployment_id(&self.dir, &self.prefix)
    }

    /// Verifies `text` for this deployment and, if valid now, stores it.
    pub fn install(&self, text: &str, now: DateTime<Utc>) -> Result<Payload> {
        let payload = opswat::verify(text, &self.public_key, Some(&self.deployment_id()?))?;
        payload.check_time(now)?;
        ClockGuard::new(self.dir.join(CLOCK)).observe(now, payload.issued().unwrap_or(now))?;
        std::fs::write(self.dir.join(LICENSE), text).map_err(Self::io)?;
        Ok(payload)
    }

    /// The installed license if it is valid at `now` (signature, deployment, expiry, clock).
    pub fn current(&self, now: DateTime<Utc>) -> Result<Payload> {
        let text = std::fs::read_to_string(self.dir.join(LICENSE)).map_err(Self::io)?;
        let payload = opswat::verify(&text, &self.public_key, Some(&self.deployment_id()?))?;
        payload.check_time(now)?;
        ClockGuard::new(self.dir.join(CLOCK)).observe(now, payload.issued().unwrap_or(now))?;
        Ok(payload)
    }

    /// The activation key of a stored file, valid or not (to deactivate or reactivate).
    pub fn stored_key(&self) -> Option<String> {
        let text = std::fs::read_to_string(self.dir.join(LICENSE)).ok()?;
        opswat::verify(&text, &self.public_key, None).ok().map(|p| p.key)
    }

    /// "Get current license information": the three shapes OPSWAT's product API answers with.
    pub fn info(&self, now: DateTime<Utc>) -> Result<Value> {
        let deployment = self.deployment_id()?;
        Ok(match self.current(now) {
            Ok(p) => json!({
                "days_left": p.days_left(now),
                "deployment": deployment,
                "expiration": p.expiration(),
                "licensed_engines": p.engines(),
                "licensed_to": p.licensed_to,
                "max_node_count": p.max_node_count.to_string(),
                "online_activated": false,
                "product_id": p.product_id,
                "product_name": p.product_name,
            }),
            Err(_) if self.stored_key().is_some() => json!({ "deployment_id": deployment, "reactivate": true }),
            Err(_) => json!({ "deployment_id": deployment }),
        })
    }

    /// Forgets the installed license (after deactivating it on the server).
    pub fn remove(&self) -> Result<()> {
        remove(&self.dir)
    }
}

/// The deployment ID kept in `dir`, created (starting with `prefix`) on first use.
pub fn deployment_id(dir: &Path, prefix: &str) -> Result<String> {
    let path = dir.join(DEPLOYMENT);
    if let Ok(id) = std::fs::read_to_string(&path) {
        let id = id.trim().to_string();
        if opswat::is_valid_deployment(&id) {
            return Ok(id);
        }
    }
    std::fs::create_dir_all(dir).map_err(LicenseDir::io)?;
    let id = opswat::new_deployment_id(prefix);
    std::fs::write(&path, &id).map_err(LicenseDir::io)?;
    Ok(id)
}

/// Removes the license installed in `dir`, if any.
pub fn remove(dir: &Path) -> Result<()> {
    match std::fs::remove_file(dir.join(LICENSE)) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(LicenseDir::io(e)),
        _ => Ok(()),
    }
}

/// `GET /admin/license` and `POST /admin/license` (raw file body), authorised by the `apikey`
/// header, answering `{"err": …}` on failure as the product API does.
#[cfg(feature = "router")]
pub fn router(dir: std::sync::Arc<LicenseDir>, apikey: String) -> axum::Router {
    use axum::extract::State;
    use axum::http::{HeaderMap, StatusCode};
    use axum::response::{IntoResponse, Response};
    use axum::routing::get;
    use axum::Json;

    type S = (std::sync::Arc<LicenseDir>, std::sync::Arc<str>);

    fn allowed(headers: &HeaderMap, key: &str) -> bool {
        use subtle::ConstantTimeEq;
        headers.get("apikey").is_some_and(|v| bool::from(v.as_bytes().ct_eq(key.as_bytes())))
    }
    fn err(status: StatusCode, msg: &str) -> Response {
        (status, Json(json!({ "err": msg }))).into_response()
    }
    async fn show(State((dir, key)): State<S>, headers: HeaderMap) -> Response {
        if !allowed(&headers, &key) {
            return err(StatusCode::FORBIDDEN, "Access denied");
        }
        match dir.info(Utc::now()) {
            Ok(v) => Json(v).into_response(),
            Err(e) => err(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()),
        }
    }
    async fn upload(State((dir, key)): State<S>, headers: HeaderMap, body: String) -> Response {
        if !allowed(&headers, &key) {
            return err(StatusCode::FORBIDDEN, "Access denied");
        }
        match dir.install(&body, Utc::now()) {
            Ok(_) => Json(json!({ "success": true })).into_response(),
            Err(Error::Io(e)) => err(StatusCode::INTERNAL_SERVER_ERROR, &e),
            Err(_) => err(StatusCode::BAD_REQUEST, "Invalid license"),
        }
    }
    axum::Router::new().route("/admin/license", get(show).post(upload)).with_state((dir, apikey.into()))
}
