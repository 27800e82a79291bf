//! What every request passes through before and after its surface: a request id, and one
//! access-log line and one latency sample labelled with the surface and route template.

use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::http::HeaderValue;
use axum::middleware::Next;
use axum::response::Response;
use uuid::Uuid;

use crate::api::Surface;
use crate::state::AppState;

pub async fn with_request_id(req: Request, next: Next) -> Response {
    let id = req
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .filter(|v| v.len() <= 64)
        .map(str::to_string)
        // A v4 UUID from the thread's CSPRNG: `Uuid::new_v4` asks the kernel on every call.
        .unwrap_or_else(|| uuid::Builder::from_random_bytes(rand::random()).into_uuid().to_string());
    let mut response = crate::telemetry::REQUEST_ID.scope(id.clone(), next.run(req)).await;
    if let Ok(v) = HeaderValue::from_str(&id) {
        response.headers_mut().insert("x-request-id", v);
    }
    response
}

/// Records the request in metrics and the access log (target `licensor::access`). Routes are
/// logged as templates (`/v1/accounts/{account}/licenses/{id}`), never with the key or email a
/// path may carry.
pub async fn observe(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let start = Instant::now();
    let surface = Surface::of(req.uri().path());
    let route = req.extensions().get::<MatchedPath>().map_or("unmatched", |m| m.as_str()).to_owned();
    let method: &'static str = match req.method().as_str() {
        "GET" => "GET",
        "POST" => "POST",
        "PUT" => "PUT",
        "PATCH" => "PATCH",
        "DELETE" => "DELETE",
        "HEAD" => "HEAD",
        "OPTIONS" => "OPTIONS",
        _ => "other",
    };
    let response = next.run(req).await;
    let elapsed = start.elapsed();
    let status = response.status().as_u16();
    state.metrics.requests.with(&[surface.as_str(), &route, method, status_label(status)]).observe(elapsed);
    tracing::info!(
        target: "licensor::access",
        request_id = crate::telemetry::request_id().as_deref().unwrap_or(""),
        surface = surface.as_str(),
        method,
        route = route.as_str(),
        status,
        latency_us = u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX),
        "request"
    );
    response
}

fn status_label(status: u16) -> &'static str {
    const LABELS: [&str; 5] = ["1xx", "2xx", "3xx", "4xx", "5xx"];
    match status {
        200 => "200",
        201 => "201",
        204 => "204",
        400 => "400",
        401 => "401",
        403 => "403",
        404 => "404",
        409 => "409",
        422 => "422",
        429 => "429",
        500 => "500",
        503 => "503",
        s => LABELS.get(usize::from(s / 100).saturating_sub(1)).copied().unwrap_or("other"),
    }
}

/// The request path as logged: route words and UUIDs kept, anything else (license keys in
/// `/licenses/{key}`, emails, fingerprints) replaced by `…`, and no query string (which may
/// hold `key=`). Logs at any level then carry no credential.
pub fn loggable_path(path: &str) -> String {
    path.split('/')
        .map(|seg| {
            let word = seg.bytes().all(|b| b.is_ascii_lowercase() || b == b'-' || b.is_ascii_digit() && seg.len() <= 2);
            if word || Uuid::parse_str(seg).is_ok() {
                seg
            } else {
                "…"
            }
        })
        .collect::<Vec<_>>()
        .join("/")
}

#[cfg(test)]
mod tests {
    use super::loggable_path;

    #[test]
    fn logged_paths_carry_no_keys() {
        assert_eq!(
            loggable_path("/v1/accounts/default/licenses/ABCD12-EF3456-V3/actions/validate"),
            "/v1/accounts/default/licenses/…/actions/validate"
        );
        let id = "0b3a1c52-2f55-4d1d-9a63-4e8c1f1d2a77";
        assert_eq!(
            loggable_path(&format!("/v1/accounts/{id}/users/ann@example.com")),
            format!("/v1/accounts/{id}/users/…")
        );
        assert_eq!(loggable_path("/api/licensing/v1/licenses/create"), "/api/licensing/v1/licenses/create");
        assert_eq!(loggable_path("/activation"), "/activation");
    }

    #[test]
    fn statuses_are_few_labels() {
        assert_eq!(super::status_label(200), "200");
        assert_eq!(super::status_label(418), "4xx");
        assert_eq!(super::status_label(502), "5xx");
    }
}
