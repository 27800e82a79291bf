//! Keygen's error document: `{"meta":{"id"},"errors":[{title, detail, code, source}]}`.
//!
//! Every failure on the native surface, whatever its origin, is rendered here, once.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use crate::error::{Error, Source};

#[derive(Serialize)]
struct ErrorObject<'a> {
    title: &'a str,
    detail: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    code: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    source: Option<serde_json::Value>,
}

/// The surface's error type: a domain error plus how Keygen renders it.
#[derive(Debug)]
pub struct ApiError(pub Error);

impl From<Error> for ApiError {
    fn from(e: Error) -> Self {
        ApiError(e)
    }
}

impl From<sqlx::Error> for ApiError {
    fn from(e: sqlx::Error) -> Self {
        ApiError(Error::from(e))
    }
}

impl From<anyhow::Error> for ApiError {
    fn from(e: anyhow::Error) -> Self {
        ApiError(Error::Internal(e))
    }
}

pub type ApiResult<T> = Result<T, ApiError>;

fn source_json(source: &Source) -> Option<serde_json::Value> {
    match source {
        Source::None => None,
        Source::Pointer(p) => Some(serde_json::json!({ "pointer": p })),
        Source::Parameter(p) => Some(serde_json::json!({ "parameter": p })),
        Source::Header(h) => Some(serde_json::json!({ "header": h })),
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let not_found_detail;
        let (status, title, detail, code, source): (StatusCode, &str, &str, Option<&str>, Option<serde_json::Value>) =
            match &self.0 {
                Error::BadRequest { detail, code, location } => {
                    (StatusCode::BAD_REQUEST, "Bad request", detail, code.as_deref(), source_json(location))
                }
                Error::Unauthorized { detail, code, location } => {
                    (StatusCode::UNAUTHORIZED, "Unauthorized", detail, code.as_deref(), source_json(location))
                }
                Error::Forbidden { detail, code } => {
                    (StatusCode::FORBIDDEN, "Access denied", detail, code.as_deref(), None)
                }
                Error::NotFound { kind: "endpoint", .. } => {
                    not_found_detail =
                        "The requested endpoint was not found (check your HTTP method, Accept header, and URL path)"
                            .to_string();
                    (StatusCode::NOT_FOUND, "Not found", not_found_detail.as_str(), Some("NOT_FOUND"), None)
                }
                Error::NotFound { kind, id } => {
                    not_found_detail = format!("The requested {kind} '{id}' was not found");
                    (StatusCode::NOT_FOUND, "Not found", not_found_detail.as_str(), Some("NOT_FOUND"), None)
                }
                Error::Invalid { detail, code, location } => (
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "Unprocessable resource",
                    detail,
                    Some(code.as_ref()),
                    source_json(location),
                ),
                Error::Unprocessable { detail, location } => {
                    (StatusCode::UNPROCESSABLE_ENTITY, "Unprocessable entity", detail, None, source_json(location))
                }
                Error::Conflict { detail, code } => (StatusCode::CONFLICT, "Conflict", detail, code.as_deref(), None),
                Error::TooManyRequests { detail, .. } => {
                    (StatusCode::TOO_MANY_REQUESTS, "Too many requests", detail, Some("TOO_MANY_REQUESTS"), None)
                }
                Error::Database(_) | Error::Internal(_) => (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "Internal server error",
                    "Looks like something went wrong!",
                    None,
                    None,
                ),
            };
        let request_id = crate::telemetry::request_id();
        let body = serde_json::json!({
            "meta": { "id": request_id },
            "errors": [ErrorObject { title, detail, code, source }],
        });
        let mut response = (status, body.to_string()).into_response();
        let headers = response.headers_mut();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(super::document::MEDIA_TYPE));
        if status == StatusCode::UNAUTHORIZED {
            headers.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer realm=\"keygen\""));
        }
        match &self.0 {
            Error::TooManyRequests { retry_after, .. } => crate::api::retry_after(&mut response, *retry_after),
            e @ (Error::Database(_) | Error::Internal(_)) => return crate::api::with_fault(response, e),
            _ => {}
        }
        response
    }
}
