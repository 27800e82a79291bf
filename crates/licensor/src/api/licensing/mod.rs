//! The `/api/licensing/v1` surface (docs/licensing-v1.md): products, extensions and licenses addressed by
//! signed 32-bit keys, licenses created as encrypted codes and installed from them.
//!
//! Mapping onto the core: a product is a product, an
//! extension is an entitlement attached to one of the product's policies, a license row is a
//! license, and a licensee with its `licenserKey` is the group the licenses of one grant share.
//! Keys are derived from the core UUIDs (`domain::projection::legacy_key`). The account is the
//! credential's. Errors are `{"error": {"code", "message"}}`.

mod catalog;
mod grants;

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::json;

use crate::api::caller::{Actor, Refusal, Wire};
use crate::api::keygen::UNMATCHED;
use crate::auth::Principal;
use crate::error::Error;
use crate::model::Product;
use crate::state::AppState;
use crate::store::products;

pub fn router() -> Router<AppState> {
    let api = Router::new()
        .route("/licenses", get(catalog::licenses).post(grants::install))
        .route("/licenses/create", post(grants::create))
        .route("/licenses/{key}", get(catalog::license).delete(catalog::delete_license))
        .route("/products", get(catalog::products))
        .route("/products/{key}", get(catalog::product))
        .route("/products/{key}/extensions", get(catalog::product_extensions))
        .route("/extensions", get(catalog::extensions))
        .route("/extensions/{key}", get(catalog::extension))
        .fallback(|| async { ([UNMATCHED], Failure::from(Error::not_found("endpoint", "requested"))) })
        .method_not_allowed_fallback(|| async { ([UNMATCHED], Failure::MethodNotAllowed) });
    Router::new().nest("/api/licensing/v1", api)
}

/// Everything this surface answers with when it cannot do what was asked.
#[derive(Debug)]
pub enum Failure {
    Domain(Error),
    UnsupportedMediaType(&'static str),
    MethodNotAllowed,
}

impl From<Error> for Failure {
    fn from(e: Error) -> Self {
        Failure::Domain(e)
    }
}

impl From<anyhow::Error> for Failure {
    fn from(e: anyhow::Error) -> Self {
        Failure::Domain(Error::Internal(e))
    }
}

pub type Reply<T = Response> = Result<T, Failure>;

/// `SOME_CODE` → `some_code`.
fn snake(code: &str) -> String {
    code.to_ascii_lowercase()
}

impl IntoResponse for Failure {
    fn into_response(self) -> Response {
        let mut wait = None;
        let mut fault = None;
        let (status, code, message) = match self {
            Failure::UnsupportedMediaType(expected) => (
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type".to_string(),
                format!("Content-Type must be {expected}"),
            ),
            Failure::MethodNotAllowed => (
                StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed".into(),
                "the method is not supported by this endpoint".into(),
            ),
            Failure::Domain(e) => match e {
                Error::BadRequest { detail, code, .. } => {
                    (StatusCode::BAD_REQUEST, code.map_or("bad_request".into(), |c| snake(&c)), detail.into_owned())
                }
                Error::Invalid { detail, code, .. } => (StatusCode::BAD_REQUEST, snake(&code), detail.into_owned()),
                Error::Unprocessable { detail, .. } => {
                    (StatusCode::BAD_REQUEST, "unprocessable".into(), detail.into_owned())
                }
                Error::Unauthorized { detail, .. } => {
                    (StatusCode::UNAUTHORIZED, "unauthorized".into(), detail.into_owned())
                }
                Error::Forbidden { detail, .. } => (StatusCode::FORBIDDEN, "forbidden".into(), detail.into_owned()),
                Error::NotFound { kind: "endpoint", .. } => {
                    (StatusCode::NOT_FOUND, "not_found".into(), "no such endpoint (check the method and path)".into())
                }
                Error::NotFound { kind, id } => {
                    (StatusCode::NOT_FOUND, "not_found".into(), format!("{kind} {id} not found"))
                }
                Error::Conflict { detail, code } => {
                    (StatusCode::CONFLICT, code.map_or("conflict".into(), |c| snake(&c)), detail.into_owned())
                }
                Error::TooManyRequests { detail, retry_after } => {
                    wait = Some(retry_after);
                    (StatusCode::TOO_MANY_REQUESTS, "too_many_requests".into(), detail.into_owned())
                }
                e @ (Error::Database(_) | Error::Internal(_)) => {
                    fault = Some(e.cause());
                    let id = crate::telemetry::request_id().unwrap_or_default();
                    (
                        StatusCode::INTERNAL_SERVER_ERROR,
                        "internal_error".into(),
                        format!("internal server error (request {id})"),
                    )
                }
            },
        };
        let mut r = (status, Json(json!({ "error": { "code": code, "message": message } }))).into_response();
        if status == StatusCode::UNAUTHORIZED {
            r.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Basic realm=\"licensor\""));
        }
        if let Some(secs) = wait {
            crate::api::retry_after(&mut r, secs);
        }
        if let Some(cause) = fault {
            r.extensions_mut().insert(crate::api::Fault(cause));
        }
        r
    }
}

/// This surface's credentials: a token, or an admin's email and password for the default
/// account; license keys carry no `api.licensing` permission.
pub struct Licensing;

/// An authenticated caller holding the `api.licensing` permission: an admin (user, by
/// password or token) or a product token, which sees only its own product.
pub type Caller = Actor<Licensing>;

fn unauthorized(detail: &'static str) -> Error {
    Error::unauthorized(detail, "UNAUTHORIZED")
}

impl Wire for Licensing {
    const PASSWORDS: bool = true;
    const ACCOUNT_PARAM: Option<&'static str> = None;
    type Rejection = Failure;

    fn refuse(refusal: Refusal, _: &Parts) -> Failure {
        match refusal {
            Refusal::Missing => unauthorized("authentication is required (HTTP Basic or a Bearer token)"),
            Refusal::Malformed(e) | Refusal::Failed(e) | Refusal::Invalid(e) => e,
            Refusal::LicenseKey => {
                Error::forbidden("license keys do not carry the api.licensing permission", "FORBIDDEN")
            }
            Refusal::NoDefaultAccount => unauthorized(
                "email and password need a default account: this server holds several, so start it with \
                 --account (LICENSOR_ACCOUNT) or authenticate with a token",
            ),
            Refusal::Password | Refusal::Unknown(_) | Refusal::OtherAccount => {
                unauthorized("the credentials are invalid")
            }
        }
        .into()
    }

    fn admit(principal: &Principal) -> Result<(), Failure> {
        if crate::service::access::is_operator(principal) {
            Ok(())
        } else {
            Err(Error::forbidden("the credentials lack the api.licensing permission", "FORBIDDEN").into())
        }
    }
}

impl Caller {
    /// The products this caller may license.
    async fn products(&self) -> Result<Vec<Product>, Error> {
        products::all(self.db(), self.account.id, self.principal.product_id()).await
    }

    /// The product with legacy key `key`, if this caller may see it.
    async fn product(&self, key: &str) -> Result<Option<Product>, Error> {
        let Ok(key) = key.parse::<i32>() else { return Ok(None) };
        self.product_by_key(key).await
    }

    pub(super) async fn product_by_key(&self, key: i32) -> Result<Option<Product>, Error> {
        let range = crate::domain::projection::legacy_key_range(key);
        products::find_in_range(self.db(), self.account.id, range, self.principal.product_id()).await
    }
}

/// The `{key}` path segment. One that is not even valid UTF-8 names nothing: 404 in this
/// surface's format rather than axum's plain-text 400.
pub struct KeyParam(pub String);

impl<S: Send + Sync> FromRequestParts<S> for KeyParam {
    type Rejection = Failure;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        match axum::extract::Path::<String>::from_request_parts(parts, state).await {
            Ok(axum::extract::Path(key)) => Ok(KeyParam(key)),
            Err(_) => Err(Error::not_found("resource", "requested").into()),
        }
    }
}

/// Rejects a body whose `Content-Type` is not `expected`.
fn require_content_type(headers: &HeaderMap, expected: &'static str) -> Result<(), Failure> {
    let ok = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case(expected));
    if ok {
        Ok(())
    } else {
        Err(Failure::UnsupportedMediaType(expected))
    }
}
