//! What operators and their tooling call: `/healthz` (the process answers), `/readyz` (the
//! database is reachable and its schema current) and `/metrics` (Prometheus).

use axum::extract::State;
use axum::http::request::Parts;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::json;

use crate::api::caller::{Actor, Refusal, Wire};
use crate::api::keygen::error::ApiError;
use crate::auth::Principal;
use crate::error::Error;
use crate::state::AppState;

/// The routes on the main listener: `/metrics` wants an admin token there.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics_for_admins))
}

/// The routes of `--metrics-listen`: no credentials, for a scraper on a private network.
pub fn private_router() -> Router<AppState> {
    Router::new().route("/healthz", get(healthz)).route("/readyz", get(readyz)).route("/metrics", get(metrics))
}

async fn healthz() -> Json<serde_json::Value> {
    Json(json!({ "status": "ok" }))
}

async fn readyz(State(state): State<AppState>) -> Response {
    match state.db.readiness().await {
        Ok(()) => Json(json!({ "status": "ok", "database": state.db.engine() })).into_response(),
        Err(reason) => {
            tracing::warn!(%reason, "not ready");
            (StatusCode::SERVICE_UNAVAILABLE, Json(json!({ "status": "unavailable", "reason": reason })))
                .into_response()
        }
    }
}

async fn metrics(State(state): State<AppState>) -> Response {
    let gauges = crate::metrics::Gauges {
        pool: state.db.pool_usage(),
        password_checks_waiting: crate::crypto::secrets::password_checks_waiting(),
        webhook_queue: crate::store::webhooks::queue_depth(&state.db).await.unwrap_or(0).max(0) as u64,
        sqlite_commits: match &state.db {
            crate::db::Db::Sqlite(sqlite) => Some(sqlite.inline_commits()),
            crate::db::Db::Postgres(_) => None,
        },
        license_cache: state.license_cache.as_ref().map(|c| {
            use std::sync::atomic::Ordering::Relaxed;
            (c.hits.load(Relaxed), c.misses.load(Relaxed), c.len() as u64)
        }),
    };
    let mut r = state.metrics.render(gauges).into_response();
    r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"));
    r
}

/// Metrics carry no tenant's data (no account labels), but they describe the whole server: an
/// admin of any account may read them.
async fn metrics_for_admins(admin: Actor<Operations>) -> Response {
    metrics(State(admin.state)).await
}

/// `/metrics` on the main listener: an admin token of any account.
pub struct Operations;

impl Wire for Operations {
    const PASSWORDS: bool = false;
    const ACCOUNT_PARAM: Option<&'static str> = None;
    type Rejection = ApiError;

    fn refuse(refusal: Refusal, _: &Parts) -> ApiError {
        ApiError(match refusal {
            Refusal::Malformed(e) | Refusal::Unknown(e) | Refusal::Invalid(e) | Refusal::Failed(e) => e,
            Refusal::Missing
            | Refusal::LicenseKey
            | Refusal::Password
            | Refusal::NoDefaultAccount
            | Refusal::OtherAccount => Error::unauthorized("An admin token is required", "TOKEN_MISSING"),
        })
    }

    fn admit(principal: &Principal) -> Result<(), ApiError> {
        if principal.is_admin() {
            Ok(())
        } else {
            Err(ApiError(Error::access_denied()))
        }
    }
}
