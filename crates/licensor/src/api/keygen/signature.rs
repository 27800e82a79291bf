//! Signed responses: every account-scoped response (errors too) carries `Date`, `Digest` and
//! `Keygen-Signature` over `(request-target) host date digest`, signed with the account's key in
//! the algorithm the client asks for with `Keygen-Accept-Signature` (Ed25519 by default; a 401
//! always Ed25519, so RSA's cost is not spent on unauthenticated callers).

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use sha2::{Digest, Sha256};

use super::error::ApiError;
use super::versions::{self, Version};
use crate::crypto::sign::{self, SigAlg};
use crate::error::{Error, Source};
use crate::state::AppState;

/// The account a path addresses: `/v1/accounts/{a}/…`, else the default for `/v1/…`.
fn account_segment(path: &str) -> Option<Option<&str>> {
    let rest = path.strip_prefix("/v1/")?;
    if rest == "ping" || rest.is_empty() {
        return None;
    }
    match rest.strip_prefix("accounts/") {
        Some(r) => Some(Some(r.split('/').next().unwrap_or(r))),
        None => Some(None),
    }
}

/// Parses `Keygen-Accept-Signature: [keyid="…", ]algorithm="…"`.
fn accepted_algorithm(headers: &HeaderMap, account_id: &str) -> Result<SigAlg, Error> {
    let Some(value) = headers.get("keygen-accept-signature") else { return Ok(SigAlg::Ed25519) };
    let bad = |detail: &'static str| Error::BadRequest {
        detail: detail.into(),
        code: Some("SIGNATURE_INVALID".into()),
        location: Source::Header("Keygen-Accept-Signature".into()),
    };
    let value = value.to_str().map_err(|_| bad("signature header is malformed"))?;
    let mut algorithm = None;
    for part in value.split(',') {
        let (k, v) = part.trim().split_once('=').ok_or_else(|| bad("signature header is malformed"))?;
        let v = v.trim().trim_matches('"');
        match k.trim() {
            "algorithm" => algorithm = Some(v.to_string()),
            "keyid" if v != account_id => return Err(bad("signature keyid does not match the account")),
            "keyid" => {}
            _ => return Err(bad("signature header is malformed")),
        }
    }
    let algorithm = algorithm.ok_or_else(|| bad("signature algorithm is missing"))?;
    SigAlg::parse(&algorithm).ok_or_else(|| bad("signature algorithm is not supported"))
}

/// Keygen's released API versions; a request may pin one with `Keygen-Version` (`1.5` or
/// `v1.5`), and is answered in that version's shapes (`versions`).
pub const API_VERSIONS: &[&str] = &["1.0", "1.1", "1.2", "1.3", "1.4", "1.5", "1.6", "1.7", "1.8"];

/// The version a request asks for (the current one when it names none); an unknown one is a
/// 400 `INVALID_API_VERSION`, as Keygen answers it.
fn requested_version(headers: &HeaderMap) -> Result<Version, Error> {
    match headers.get("keygen-version") {
        None => Ok(Version::CURRENT),
        Some(v) => Version::parse(v.to_str().unwrap_or("")),
    }
}

/// A request pinned to an older version, its JSON body read in the current version's shapes
/// (`versions::migrate_request`). Only a body that may need it is read here, and it is handed
/// on as sent unless a name was changed; one that cannot be read is refused as the `Body`
/// extractor refuses it.
async fn older_request(version: Version, req: Request) -> Result<Request, Error> {
    let route = versions::Route { method: req.method(), path: route_path(req.uri().path()) };
    if !versions::migrates_request(version, &route) {
        return Ok(req);
    }
    let (mut parts, body) = req.into_parts();
    let bytes = axum::body::to_bytes(body, 1024 * 1024)
        .await
        .map_err(|_| Error::bad_request("The request body could not be read (it may be too large)", Source::None))?;
    let route = versions::Route { method: &parts.method, path: route_path(parts.uri.path()) };
    let migrated = serde_json::from_slice::<serde_json::Value>(&bytes)
        .ok()
        .and_then(|mut doc| versions::migrate_request(version, &route, &mut doc).then_some(doc));
    let bytes = match migrated {
        Some(doc) => {
            parts.headers.remove(axum::http::header::CONTENT_LENGTH);
            doc.to_string().into_bytes().into()
        }
        None => bytes,
    };
    Ok(Request::from_parts(parts, Body::from(bytes)))
}

/// The path after `/v1/accounts/{account}` (or `/v1` on the default account).
fn route_path(path: &str) -> &str {
    let rest = path.strip_prefix("/v1").unwrap_or(path);
    match rest.strip_prefix("/accounts/") {
        Some(r) => r.find('/').map_or("", |i| &r[i..]),
        None => rest,
    }
}

pub async fn sign_response(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let Some(segment) = account_segment(req.uri().path()) else { return next.run(req).await };
    let account = match segment {
        Some(a) => state.account(a).await,
        None => state.default_account().await,
    };
    let Ok(Some(account)) = account else { return next.run(req).await };
    let account_id = account.id.to_string();
    let alg = match accepted_algorithm(req.headers(), &account_id) {
        Ok(a) => a,
        Err(e) => return ApiError(e).into_response(),
    };
    let target = format!(
        "{} {}",
        req.method().as_str().to_lowercase(),
        req.uri().path_and_query().map(|p| p.as_str()).unwrap_or("/")
    );
    let host = req.headers().get("host").and_then(|h| h.to_str().ok()).unwrap_or("localhost").to_string();
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let (version, response) = match requested_version(req.headers()) {
        Ok(v) if v < Version::CURRENT => match older_request(v, req).await {
            Ok(req) => (v, next.run(req).await),
            Err(e) => (v, ApiError(e).into_response()),
        },
        Ok(v) => (v, next.run(req).await),
        // Answered (and signed) before any handler runs, as Keygen's version resolver does.
        Err(e) => (Version::CURRENT, ApiError(e).into_response()),
    };
    // An RSA signature costs milliseconds of the private key; an unauthenticated request must
    // not be able to buy them in bulk. Its 401 is signed with Ed25519 (named in the header).
    let alg = match alg {
        SigAlg::RsaSha256 | SigAlg::RsaPssSha256 if response.status() == axum::http::StatusCode::UNAUTHORIZED => {
            SigAlg::Ed25519
        }
        other => other,
    };
    let (mut parts, body) = response.into_parts();
    let Ok(mut bytes) = axum::body::to_bytes(body, 16 * 1024 * 1024).await else {
        return ApiError(Error::Internal(anyhow::anyhow!("response body unreadable"))).into_response();
    };
    if version < Version::CURRENT {
        if let Ok(mut doc) = serde_json::from_slice::<serde_json::Value>(&bytes) {
            let route = versions::Route { method: &method, path: route_path(&path) };
            let owners = if version.upto(5) {
                let licenses = versions::machine_licenses(&doc);
                match crate::store::licenses::owners(&state.db, account.id, &licenses).await {
                    Ok(owners) => owners.into_iter().collect(),
                    Err(e) => return ApiError(e).into_response(),
                }
            } else {
                std::collections::HashMap::new()
            };
            versions::migrate(version, &route, parts.status, &mut doc, &owners);
            bytes = doc.to_string().into();
            parts.headers.remove(axum::http::header::CONTENT_LENGTH);
        }
    }
    let keys = match state.signing_keys(&account) {
        Ok(k) => k,
        Err(e) => return ApiError(Error::Internal(e)).into_response(),
    };
    let date = httpdate::fmt_http_date(std::time::SystemTime::now());
    let digest = format!("sha-256={}", STANDARD.encode(Sha256::digest(&bytes)));
    let signing_data = format!("(request-target): {target}\nhost: {host}\ndate: {date}\ndigest: {digest}");
    let signature = match sign::sign(&keys, alg, signing_data.as_bytes()) {
        Ok(s) => STANDARD.encode(s),
        Err(e) => return ApiError(Error::Internal(e)).into_response(),
    };
    let header = format!(
        "keyid=\"{account_id}\", algorithm=\"{}\", signature=\"{signature}\", headers=\"(request-target) host date digest\"",
        alg.as_str()
    );
    let h = &mut parts.headers;
    for (name, value) in [
        ("date", &date),
        ("digest", &digest),
        ("keygen-date", &date),
        ("keygen-digest", &digest),
        ("keygen-signature", &header),
    ] {
        if let Ok(v) = HeaderValue::from_str(value) {
            h.insert(name, v);
        }
    }
    h.insert("keygen-version", HeaderValue::from_static(version.as_str()));
    Response::from_parts(parts, Body::from(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn account_segments() {
        assert_eq!(account_segment("/v1/accounts/acme/licenses"), Some(Some("acme")));
        assert_eq!(account_segment("/v1/accounts/acme"), Some(Some("acme")));
        assert_eq!(account_segment("/v1/licenses"), Some(None));
        assert_eq!(account_segment("/v1/ping"), None);
        assert_eq!(account_segment("/other"), None);
    }

    #[test]
    fn accept_signature_header() {
        let mut h = HeaderMap::new();
        assert_eq!(accepted_algorithm(&h, "a").unwrap(), SigAlg::Ed25519);
        h.insert("keygen-accept-signature", HeaderValue::from_static("keyid=\"a\", algorithm=\"rsa-pss-sha256\""));
        assert_eq!(accepted_algorithm(&h, "a").unwrap(), SigAlg::RsaPssSha256);
        assert!(accepted_algorithm(&h, "b").is_err());
        h.insert("keygen-accept-signature", HeaderValue::from_static("algorithm=\"md5\""));
        assert!(accepted_algorithm(&h, "a").is_err());
    }
}
