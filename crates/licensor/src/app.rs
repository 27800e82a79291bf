//! Router assembly, and the serve loop with graceful shutdown.

use std::future::Future;

use axum::extract::Request;
use axum::http::HeaderValue;
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::Router;
use tokio::net::TcpListener;
use uuid::Uuid;

use crate::state::AppState;

async fn with_request_id(req: Request, next: Next) -> Response {
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

/// The request path as logged: route words and UUIDs kept, anything else (license keys in
/// `/licenses/{key}`, emails, fingerprints) replaced by `…`, and no query string (which may
/// hold `key=`). Logs at any level then carry no credential.
fn loggable_path(path: &str) -> String {
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

pub fn router(state: AppState) -> Router {
    use tower_http::catch_panic::CatchPanicLayer;
    use tower_http::limit::RequestBodyLimitLayer;
    use tower_http::trace::TraceLayer;

    // Only the Keygen surface signs its responses; the others have their own formats.
    let keygen = crate::api::keygen::router()
        .layer(middleware::from_fn_with_state(state.clone(), crate::api::keygen::signature::sign_response));
    Router::new()
        .merge(crate::api::opswat::router())
        .merge(crate::api::licensing::router())
        .merge(crate::api::astra::router())
        .merge(keygen)
        .with_state(state)
        .layer(RequestBodyLimitLayer::new(1024 * 1024))
        .layer(CatchPanicLayer::custom(|_| {
            axum::response::IntoResponse::into_response(crate::api::keygen::error::ApiError(
                crate::error::Error::Internal(anyhow::anyhow!("handler panicked")),
            ))
        }))
        .layer(middleware::from_fn(with_request_id))
        .layer(TraceLayer::new_for_http().make_span_with(|req: &Request| {
            tracing::debug_span!("request", method = %req.method(), path = %loggable_path(req.uri().path()))
        }))
}

/// Serves on `listener` until `shutdown` resolves, then drains in-flight requests and flushes
/// buffered writes. Background jobs run alongside.
pub async fn serve(
    listener: TcpListener,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let jobs = crate::jobs::spawn(state.clone(), stop_rx);
    let app = router(state.clone());
    axum::serve(listener, app).with_graceful_shutdown(shutdown).await?;
    let _ = stop_tx.send(true);
    let _ = jobs.await;
    state.flush_touches().await?;
    Ok(())
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
}
