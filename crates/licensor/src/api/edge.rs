//! What every request passes through before and after its surface: a request id, rate limits,
//! and one access-log line and one latency sample labelled with the surface and route template.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Instant;

use axum::extract::{ConnectInfo, MatchedPath, Request, State};
use axum::http::{HeaderMap, HeaderValue, Method};
use axum::middleware::Next;
use axum::response::Response;
use uuid::Uuid;

use crate::api::{Fault, Surface};
use crate::auth::{self, Credential};
use crate::ratelimit::{bucket, client_ip, Kind, Limiter, Verdict};
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
    let mut response = crate::telemetry::REQUEST_ID.scope(id.clone(), crate::events::scope(next.run(req))).await;
    if let Ok(v) = HeaderValue::from_str(&id) {
        response.headers_mut().insert("x-request-id", v);
    }
    response
}

/// Whether a request to this route template may change what a license validation reads. Only
/// validations (their writes, a first validation's clock included, are read again from the
/// database) and the operational routes do not; any other route may, whatever its method (an
/// OPSWAT activation is a GET).
fn may_change_licenses(route: &str) -> bool {
    !(route.ends_with("/actions/validate-key")
        || route.ends_with("/actions/validate")
        || matches!(route, "/v1/ping" | "/healthz" | "/readyz" | "/metrics"))
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
    let mut response = unwind_safe(next.run(req)).await.unwrap_or_else(|panic| {
        let what = panic
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| panic.downcast_ref::<String>().cloned())
            .unwrap_or_default();
        // In the surface's own format, like any other failure.
        surface.render(crate::error::Error::Internal(anyhow::anyhow!("handler panicked: {what}")))
    });
    // A request that may have written ends here, its transactions committed: this node's
    // license cache must hear the change before it answers again.
    if let Some(cache) = &state.license_cache {
        if may_change_licenses(&route) {
            cache.request_ended().await;
        }
    }
    let elapsed = start.elapsed();
    let status = response.status().as_u16();
    if let Some(Fault(cause)) = response.extensions_mut().remove::<Fault>() {
        tracing::error!(
            request_id = crate::telemetry::request_id().as_deref().unwrap_or(""),
            surface = surface.as_str(),
            route = route.as_str(),
            status,
            error = %cause,
            "server error"
        );
    }
    if state.metrics.record_requests {
        state.metrics.requests.with(&[surface.as_str(), &route, method, status_label(status)]).observe(elapsed);
    }
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

/// Runs `f`, turning a panic in it into an `Err` instead of unwinding through the server.
async fn unwind_safe<F: std::future::Future>(f: F) -> std::thread::Result<F::Output> {
    use std::panic::{catch_unwind, AssertUnwindSafe};
    use std::task::Poll;
    let mut f = std::pin::pin!(f);
    std::future::poll_fn(|cx| match catch_unwind(AssertUnwindSafe(|| f.as_mut().poll(cx))) {
        Ok(Poll::Ready(v)) => Poll::Ready(Ok(v)),
        Ok(Poll::Pending) => Poll::Pending,
        Err(panic) => Poll::Ready(Err(panic)),
    })
    .await
}

/// Counts the request against the rate limits (`ratelimit`) and refuses it with a 429 in its
/// surface's format when one is reached; every answer carries Keygen's `X-RateLimit-*` headers
/// for the fullest request window.
pub async fn rate_limit(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let limiter = &state.limiter;
    let config = &limiter.config;
    if config.requests.is_empty()
        && config.addresses.is_empty()
        && config.logins.is_none()
        && config.password_changes.is_none()
    {
        return next.run(req).await;
    }
    let peer =
        req.extensions().get::<ConnectInfo<SocketAddr>>().map_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED), |c| c.0.ip());
    let headers = req.headers();
    let forwarded = headers.get("x-forwarded-for").and_then(|v| v.to_str().ok());
    let client = client_ip(peer, forwarded, &config.trusted_proxies);
    let ip = client.to_string();
    let path = req.uri().path();
    let surface = Surface::of(path);
    let account = account_segment(path);
    let now = crate::time::now_ms();

    for (kind, name, rate) in strict_buckets(&state, req.method(), path, headers, account, &ip) {
        match Limiter::hit_exact(&state.db, &name, rate, now).await {
            Ok(v) if !v.allowed => {
                state.metrics.rate_limited.inc(&[surface.as_str(), kind]);
                return with_headers(surface.render(v.error()), &v);
            }
            Ok(_) => {}
            // Fail open: a database hiccup must not lock every user out.
            Err(e) => e.log("rate limit counter"),
        }
    }

    // The address first: a client rotating its `Authorization` header meets this limit
    // before it can fill memory with one credential bucket per request.
    let address = bucket("addr", &[surface.as_str().as_bytes(), account.as_bytes(), address_block(client).as_bytes()]);
    let by_address = limiter.hit(&state.db, Kind::Addresses, &address, now).await;
    if let Some(v) = by_address.as_ref().filter(|v| !v.allowed) {
        state.metrics.rate_limited.inc(&[surface.as_str(), "addresses"]);
        return with_headers(surface.render(v.error()), v);
    }
    let credential = headers.get(axum::http::header::AUTHORIZATION).map_or(&b""[..], |v| v.as_bytes());
    let name = bucket("req", &[surface.as_str().as_bytes(), account.as_bytes(), ip.as_bytes(), credential]);
    let verdict = limiter.hit(&state.db, Kind::Requests, &name, now).await;
    if let Some(v) = &verdict {
        if !v.allowed {
            state.metrics.rate_limited.inc(&[surface.as_str(), "requests"]);
            return with_headers(surface.render(v.error()), v);
        }
    }
    let response = next.run(req).await;
    match verdict.or(by_address) {
        Some(v) => with_headers(response, &v),
        None => response,
    }
}

/// The block an address is limited as: an IPv4 address alone, an IPv6 address by its /64, the
/// block one subscriber is usually given (so a client cannot hop through its own addresses).
fn address_block(ip: IpAddr) -> String {
    match ip {
        IpAddr::V6(v6) => {
            let s = v6.segments();
            format!("{:x}:{:x}:{:x}:{:x}::/64", s[0], s[1], s[2], s[3])
        }
        IpAddr::V4(v4) => v4.to_string(),
    }
}

/// The exact buckets this request counts against: password logins (`POST …/tokens` with an
/// email and password, and any password-authenticated licensing request), password changes,
/// and changes to a second factor.
fn strict_buckets(
    state: &AppState,
    method: &Method,
    path: &str,
    headers: &HeaderMap,
    account: &str,
    ip: &str,
) -> Vec<(&'static str, String, crate::ratelimit::Rate)> {
    let config = &state.limiter.config;
    let mut out = Vec::new();
    if let Some(rate) = config.logins {
        let login = Surface::of(path) == Surface::Licensing || (method == Method::POST && path.ends_with("/tokens"));
        if login {
            if let Ok(Some(Credential::Password(email, _))) = auth::parse_authorization(headers) {
                // Per address and email, whichever account the path names: the licensing
                // surface names none, and a login there is the same guess.
                let email = email.to_lowercase();
                out.push(("logins", bucket("login", &[ip.as_bytes(), email.as_bytes()]), rate));
            }
        }
    }
    if let Some(rate) = config.password_changes {
        let change = path.ends_with("/actions/update-password") || path.ends_with("/actions/reset-password");
        if method == Method::POST && change {
            let user = path.rsplit('/').nth(2).unwrap_or("").to_lowercase();
            out.push((
                "password_changes",
                bucket("password", &[account.as_bytes(), ip.as_bytes(), user.as_bytes()]),
                rate,
            ));
        }
        // Reset requests: the email is in the body, so per account and address.
        if method == Method::POST && path.ends_with("/passwords") {
            out.push(("password_changes", bucket("forgot", &[account.as_bytes(), ip.as_bytes()]), rate));
        }
        // Setting up, enabling, disabling or deleting a second factor takes the user's password
        // or one of its codes: each try is a guess, counted per user as a password change.
        if method != Method::GET && path.contains("/second-factors") {
            let user = path.split("/users/").nth(1).and_then(|r| r.split('/').next()).unwrap_or("").to_lowercase();
            out.push((
                "password_changes",
                bucket("second-factor", &[account.as_bytes(), ip.as_bytes(), user.as_bytes()]),
                rate,
            ));
        }
    }
    out
}

/// The account a path names (`/v1/accounts/{a}/…`, `/accounts/{a}/core/…`), else "".
fn account_segment(path: &str) -> &str {
    let rest = path.strip_prefix("/v1/accounts/").or_else(|| path.strip_prefix("/accounts/"));
    rest.and_then(|r| r.split('/').next()).unwrap_or("")
}

fn with_headers(mut response: Response, v: &Verdict) -> Response {
    let h = response.headers_mut();
    if let Ok(w) = HeaderValue::from_str(&v.window) {
        h.insert("x-ratelimit-window", w);
    }
    h.insert("x-ratelimit-count", HeaderValue::from(v.count));
    h.insert("x-ratelimit-limit", HeaderValue::from(v.limit));
    h.insert("x-ratelimit-remaining", HeaderValue::from(v.remaining()));
    h.insert("x-ratelimit-reset", HeaderValue::from(v.reset));
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
    use super::{loggable_path, unwind_safe};

    #[tokio::test]
    async fn a_panicking_route_is_caught_where_its_surface_is_known() {
        assert_eq!(unwind_safe(async { 7 }).await.ok(), Some(7));
        let boom = std::hint::black_box(true);
        let caught = unwind_safe(async move {
            tokio::task::yield_now().await;
            if boom {
                panic!("boom");
            }
            1
        })
        .await;
        let panic = caught.expect_err("caught");
        assert_eq!(panic.downcast_ref::<&str>(), Some(&"boom"));
    }

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
    fn account_segments() {
        assert_eq!(super::account_segment("/v1/accounts/acme/licenses"), "acme");
        assert_eq!(super::account_segment("/accounts/123/core/v1/licenses"), "123");
        assert_eq!(super::account_segment("/v1/licenses"), "");
        assert_eq!(super::account_segment("/api/licensing/v1/products"), "");
    }

    #[test]
    fn statuses_are_few_labels() {
        assert_eq!(super::status_label(200), "200");
        assert_eq!(super::status_label(418), "4xx");
        assert_eq!(super::status_label(502), "5xx");
    }
}
