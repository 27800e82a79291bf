//! Router assembly, and serving it: the listeners, background jobs, and an orderly shutdown.

use std::future::Future;

use axum::extract::Request;
use axum::middleware;
use axum::Router;
use tokio::net::TcpListener;

use crate::api::edge;
use crate::server::{self, Handshake, Limits, Plain};
use crate::state::AppState;

pub fn router(state: AppState) -> Router {
    use tower_http::catch_panic::CatchPanicLayer;
    use tower_http::limit::RequestBodyLimitLayer;
    use tower_http::timeout::RequestBodyTimeoutLayer;
    use tower_http::trace::TraceLayer;

    // Only the Keygen surface signs its responses; the others have their own formats.
    let keygen = crate::api::keygen::router()
        .layer(middleware::from_fn_with_state(state.clone(), crate::api::keygen::signature::sign_response));
    let console = if state.console { crate::console::router(state.clone()) } else { Router::new() };
    Router::new()
        .merge(console)
        .merge(crate::api::ops::router())
        .merge(crate::api::opswat::router())
        .merge(crate::api::licensing::router())
        .merge(crate::api::astra::router())
        .merge(keygen)
        // Per route, so the route template is known; a refused request is observed too.
        .layer(middleware::from_fn_with_state(state.clone(), edge::rate_limit))
        .layer(middleware::from_fn_with_state(state.clone(), edge::observe))
        .with_state(state)
        .layer(RequestBodyLimitLayer::new(1024 * 1024))
        // A body trickled in a byte at a time holds a connection as surely as an idle one.
        .layer(RequestBodyTimeoutLayer::new(std::time::Duration::from_secs(30)))
        // Routes' panics are caught by `edge::observe`, in their surface's format; this is
        // the last resort for a panic in the layers outside it.
        .layer(CatchPanicLayer::custom(|_| {
            tracing::error!("a request's middleware panicked");
            axum::response::IntoResponse::into_response(crate::api::keygen::error::ApiError(
                crate::error::Error::Internal(anyhow::anyhow!("handler panicked")),
            ))
        }))
        .layer(middleware::from_fn(edge::with_request_id))
        .layer(TraceLayer::new_for_http().make_span_with(|req: &Request| {
            tracing::debug_span!("request", method = %req.method(), path = %edge::loggable_path(req.uri().path()))
        }))
}

/// How to serve, beyond the main listener.
#[derive(Default)]
pub struct Options {
    pub limits: Limits,
    /// A second listener answering `/metrics`, `/healthz` and `/readyz` without credentials.
    pub metrics: Option<TcpListener>,
}

/// Serves on `listener` until `shutdown` resolves, with default options.
pub async fn serve(
    listener: TcpListener,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    serve_with(listener, Plain, state, Options::default(), shutdown).await
}

/// Serves until `shutdown` resolves; then stops accepting, lets in-flight requests finish (up
/// to the shutdown deadline), stops the background jobs (giving their leases back) and flushes
/// buffered writes.
pub async fn serve_with<H: Handshake>(
    listener: TcpListener,
    handshake: H,
    state: AppState,
    options: Options,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    // Webhook workers stop claiming as soon as shutdown starts, so the deliveries they still
    // send finish (or are handed back) while the listener drains, within the same deadline.
    let (stop_webhooks, webhooks_stop) = tokio::sync::watch::channel(false);
    let shutdown = async move {
        shutdown.await;
        let _ = stop_webhooks.send(true);
    };
    let jobs = crate::jobs::spawn(state.clone(), stop_rx.clone());
    let deliveries = crate::webhooks::spawn(state.clone(), webhooks_stop, options.limits.shutdown_timeout);
    let license_notices = match (&state.db, &state.license_cache) {
        (crate::db::Db::Postgres(pool), Some(cache)) => {
            Some(crate::license_cache::spawn(cache.clone(), pool.clone(), stop_rx.clone()))
        }
        (crate::db::Db::Sqlite(sqlite), Some(cache)) => {
            Some(crate::license_cache::spawn_sqlite(cache.clone(), sqlite.clone(), stop_rx.clone()))
        }
        (_, None) => None,
    };
    let metrics_server = options.metrics.map(|l| {
        let app = crate::api::ops::private_router()
            .layer(middleware::from_fn_with_state(state.clone(), edge::observe))
            .with_state(state.clone());
        let mut stop = stop_rx.clone();
        let (limits, metrics) = (options.limits.clone(), state.metrics.clone());
        tokio::spawn(async move {
            server::serve(l, app, limits, Plain, metrics, async move {
                let _ = stop.changed().await;
            })
            .await;
        })
    });
    let app = router(state.clone());
    server::serve(listener, app, options.limits, handshake, state.metrics.clone(), shutdown).await;
    let _ = stop_tx.send(true);
    let _ = jobs.await;
    let _ = deliveries.await;
    if let Some(listener) = license_notices {
        let _ = listener.await;
    }
    if let Some(m) = metrics_server {
        let _ = m.await;
    }
    state.flush_touches().await?;
    state.flush_events().await?;
    Ok(())
}
