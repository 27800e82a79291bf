//! What operators and their tooling call: `/healthz` (the process answers), `/readyz` (the
//! database is reachable and its schema current) and `/metrics` (Prometheus).

use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::json;

use crate::api::keygen::error::ApiError;
use crate::auth::{self, Bearer, Credential};
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
    };
    let mut r = state.metrics.render(gauges).into_response();
    r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"));
    r
}

/// Metrics carry no tenant's data (no account labels), but they describe the whole server: an
/// admin of any account may read them.
async fn metrics_for_admins(State(state): State<AppState>, headers: HeaderMap) -> Response {
    match admin(&state, &headers).await {
        Ok(()) => metrics(State(state)).await,
        Err(e) => ApiError(e).into_response(),
    }
}

async fn admin(state: &AppState, headers: &HeaderMap) -> Result<(), Error> {
    let missing = || Error::unauthorized("An admin token is required", "TOKEN_MISSING");
    let Some(Credential::Token(raw)) = auth::parse_authorization(headers)? else { return Err(missing()) };
    let token = auth::find_token(&state.db, &raw).await?;
    let account = state.account(&token.account_id.to_string()).await?.ok_or_else(missing)?;
    match auth::token_principal(&state.db, &account, token).await?.bearer {
        Bearer::Admin(_) => Ok(()),
        _ => Err(Error::access_denied()),
    }
}
