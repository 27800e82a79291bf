//! The `/accounts/{account_id}/core/v1` surface (docs/core-v1.md): license resources with a
//! signed `licenseText`, and the entitlements computed from them. Errors are RFC 7807 problem
//! documents from the catalogue of docs/core-v1.md (`status` is a string).

mod entitlements;
mod licenses;

use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use serde_json::{json, Map, Value};

use crate::api::caller::{Actor, Refusal, Wire};
use crate::api::keygen::UNMATCHED;
use crate::error::Error;
use crate::model::License;
use crate::service::access::LicenseAction;
use crate::state::AppState;
use axum::http::request::Parts;

pub fn router() -> Router<AppState> {
    let api = Router::new()
        .route("/licenses", get(licenses::list).post(licenses::create))
        .route("/licenses/{license_id}", get(licenses::show).put(licenses::replace).delete(licenses::delete))
        .route("/entitlements", get(entitlements::list))
        .route("/entitlements/{entitlement_id}", get(entitlements::show))
        .fallback(|| async { ([UNMATCHED], Problem::new(Kind::ResourceNotFound)) })
        .method_not_allowed_fallback(|| async { ([UNMATCHED], Problem::new(Kind::OperationNotPermitted)) });
    Router::new().nest("/accounts/{account_id}/core/v1", api)
}

/// The vendor's problem catalogue: each kind has its number (the `type` URI), status, title
/// and detail.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    ResourceNotFound,
    CollectionNotFound,
    MissingBearerToken,
    InvalidBearerToken,
    InvalidQueryParameters,
    QueryParametersNotSupported,
    InvalidJsonPayload,
    InvalidJsonResource,
    FailedExtendedValidation,
    ResourceConflict,
    OperationNotPermitted,
    UnsupportedLicenseType,
    EvaluationLicenseBlocked,
    EvaluationReplacementBlocked,
    LicenseExpired,
    EvaluationDeletionNotAllowed,
    UnsupportedLicenseDefinition,
}

impl Kind {
    fn catalogue(self) -> (u16, u16, &'static str, &'static str) {
        match self {
            Kind::ResourceNotFound => (1, 404, "Resource not found", "The resource specified in the request URI wasn't found."),
            Kind::CollectionNotFound => (2, 404, "Collection not found", "The collection specified in the request URI wasn't found."),
            Kind::MissingBearerToken => (3, 401, "Missing bearer token", "The request is missing the required bearer token."),
            Kind::InvalidBearerToken => (4, 401, "Invalid bearer token", "The bearer token provided is invalid, revoked, or doesn't exist."),
            Kind::InvalidQueryParameters => (5, 400, "Invalid query parameters", "The supplied query parameters are invalid."),
            Kind::QueryParametersNotSupported => (6, 400, "Query parameters not supported", "The supplied query parameters aren't supported for this endpoint."),
            Kind::InvalidJsonPayload => (7, 400, "Invalid JSON payload", "The request body is not valid JSON."),
            Kind::InvalidJsonResource => (8, 400, "Invalid JSON resource", "The request body JSON doesn't conform to the schema."),
            Kind::FailedExtendedValidation => (9, 400, "Invalid JSON resource", "The request body JSON didn't pass extended validation."),
            Kind::ResourceConflict => (10, 409, "JSON resource conflict", "The request body JSON contains a field that conflicts with an idempotent value."),
            Kind::OperationNotPermitted => (11, 403, "Operation not permitted", "The requested operation isn't permitted."),
            Kind::UnsupportedLicenseType => (20, 400, "Unsupported license type", "The license provided is for an unsupported product type."),
            Kind::EvaluationLicenseBlocked => (21, 409, "Evaluation license blocked", "The evaluation license wasn't applied because a paid license is already allocated."),
            Kind::EvaluationReplacementBlocked => (22, 409, "Evaluation license replacement blocked", "The evaluation license wasn't replaced because the specified replacement license has a different serial number."),
            Kind::LicenseExpired => (23, 409, "License expired", "The license wasn't applied because the expiration date of the license is before the current date."),
            Kind::EvaluationDeletionNotAllowed => (163, 403, "Automatically installed evaluation license deletion not allowed", "The automatically installed evaluation license can't be deleted."),
            Kind::UnsupportedLicenseDefinition => (169, 400, "Unsupported license definition", "The NetApp License File provided contains more than one license."),
        }
    }
}

/// An RFC 7807 problem document.
#[derive(Debug)]
pub struct Problem {
    status: StatusCode,
    body: Map<String, Value>,
    /// Seconds, for a 429.
    retry_after: Option<i64>,
    /// The cause of a 500, for the request's log line (`api::Fault`).
    fault: Option<String>,
}

impl Problem {
    /// A problem of the catalogue.
    pub fn new(kind: Kind) -> Problem {
        let (n, status, title, detail) = kind.catalogue();
        let mut body = Map::new();
        body.insert("type".into(), json!(format!("https://astra.netapp.io/problems/{n}")));
        body.insert("title".into(), json!(title));
        body.insert("detail".into(), json!(detail));
        body.insert("status".into(), json!(status.to_string()));
        Problem {
            status: StatusCode::from_u16(status).unwrap_or(StatusCode::NOT_FOUND),
            body,
            retry_after: None,
            fault: None,
        }
    }

    /// A problem of our own (not in the vendor's catalogue).
    fn custom(status: StatusCode, kind: &str, title: &str, detail: &str) -> Problem {
        let mut body = Map::new();
        body.insert("type".into(), json!(kind));
        body.insert("title".into(), json!(title));
        body.insert("detail".into(), json!(detail));
        body.insert("status".into(), json!(status.as_u16().to_string()));
        Problem { status, body, retry_after: None, fault: None }
    }

    pub fn precondition_failed() -> Problem {
        Problem::custom(
            StatusCode::PRECONDITION_FAILED,
            "urn:licensor:problems:precondition-failed",
            "Precondition failed",
            "The resource changed since the version the request's preconditions name.",
        )
    }

    /// Adds `invalidFields: [{name, reason}]`.
    pub fn fields(mut self, fields: Vec<(String, String)>) -> Problem {
        let list: Vec<Value> =
            fields.into_iter().map(|(name, reason)| json!({ "name": name, "reason": reason })).collect();
        self.body.insert("invalidFields".into(), json!(list));
        self
    }

    /// When to retry a 429 (`Retry-After`).
    pub fn retry_after(mut self, seconds: i64) -> Problem {
        self.retry_after = Some(seconds);
        self
    }

    pub fn field(self, name: &str, reason: impl Into<String>) -> Problem {
        self.fields(vec![(name.to_string(), reason.into())])
    }

    /// Adds `invalidParams: [{name, reason}]`.
    pub fn params(mut self, params: Vec<(String, String)>) -> Problem {
        let list: Vec<Value> =
            params.into_iter().map(|(name, reason)| json!({ "name": name, "reason": reason })).collect();
        self.body.insert("invalidParams".into(), json!(list));
        self
    }

    pub fn schema(mut self, failure: impl Into<String>) -> Problem {
        self.body.insert("schemaValidationFailure".into(), json!(failure.into()));
        self
    }
}

impl From<Error> for Problem {
    fn from(e: Error) -> Self {
        match e {
            Error::Unauthorized { .. } => Problem::new(Kind::InvalidBearerToken),
            Error::Forbidden { .. } => Problem::new(Kind::OperationNotPermitted),
            Error::NotFound { .. } => Problem::new(Kind::ResourceNotFound),
            Error::BadRequest { detail, .. } => {
                Problem::new(Kind::FailedExtendedValidation).field("body", detail.into_owned())
            }
            Error::Invalid { detail, location, .. } => {
                let name = match location {
                    crate::error::Source::Pointer(p) => p.rsplit('/').next().unwrap_or("body").to_string(),
                    _ => "body".into(),
                };
                Problem::new(Kind::FailedExtendedValidation).field(&name, detail.into_owned())
            }
            Error::Unprocessable { detail, .. } => {
                Problem::new(Kind::FailedExtendedValidation).field("body", detail.into_owned())
            }
            Error::Conflict { detail, .. } => Problem::new(Kind::ResourceConflict).field("body", detail.into_owned()),
            // Not in the catalogue: Licensor's own problem type, like the 500 below.
            Error::TooManyRequests { detail, retry_after } => Problem::custom(
                StatusCode::TOO_MANY_REQUESTS,
                "urn:licensor:problems:too-many-requests",
                "Too many requests",
                &detail,
            )
            .retry_after(retry_after),
            e @ (Error::Database(_) | Error::Internal(_)) => {
                let mut p = Problem::custom(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "urn:licensor:problems:internal",
                    "Internal server error",
                    "The server failed to complete the request; quote the correlationID when reporting it.",
                );
                p.fault = Some(e.cause());
                p
            }
        }
    }
}

impl From<anyhow::Error> for Problem {
    fn from(e: anyhow::Error) -> Self {
        Problem::from(Error::Internal(e))
    }
}

impl IntoResponse for Problem {
    fn into_response(mut self) -> Response {
        if let Some(id) = crate::telemetry::request_id() {
            self.body.insert("correlationID".into(), json!(id));
        }
        let mut r = (self.status, Value::Object(self.body).to_string()).into_response();
        r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/problem+json"));
        if let Some(secs) = self.retry_after {
            crate::api::retry_after(&mut r, secs);
        }
        if let Some(cause) = self.fault {
            r.extensions_mut().insert(crate::api::Fault(cause));
        }
        r
    }
}

pub type Reply<T = Response> = Result<T, Problem>;

/// This surface's credentials: bearer tokens of the account the path names.
pub struct Core;

/// An authenticated caller in the account of the URL.
pub type Caller = Actor<Core>;

impl Wire for Core {
    const PASSWORDS: bool = false;
    const ACCOUNT_PARAM: Option<&'static str> = Some("account_id");
    type Rejection = Problem;

    /// Another tenant's account answers as absent (problem 1 for PUT and DELETE, else 2),
    /// never 403.
    fn refuse(refusal: Refusal, parts: &Parts) -> Problem {
        match refusal {
            Refusal::Missing => Problem::new(Kind::MissingBearerToken),
            Refusal::OtherAccount => Problem::new(not_found_kind(&parts.method)),
            Refusal::Invalid(Error::Forbidden { .. }) => Problem::new(Kind::OperationNotPermitted),
            Refusal::Failed(e) => Problem::from(e),
            Refusal::Malformed(_)
            | Refusal::LicenseKey
            | Refusal::Password
            | Refusal::NoDefaultAccount
            | Refusal::Unknown(_)
            | Refusal::Invalid(_) => Problem::new(Kind::InvalidBearerToken),
        }
    }
}

/// The not-found problem of an operation: 1 for PUT and DELETE (a resource), else 2.
fn not_found_kind(method: &axum::http::Method) -> Kind {
    if matches!(*method, axum::http::Method::PUT | axum::http::Method::DELETE) {
        Kind::ResourceNotFound
    } else {
        Kind::CollectionNotFound
    }
}

impl Caller {
    /// Admins and product tokens (for their product) may write.
    fn can_write(&self, l: Option<&License>) -> bool {
        match l {
            Some(l) => crate::service::access::may_change_license(&self.principal, l, LicenseAction::Manage),
            None => crate::service::access::is_operator(&self.principal),
        }
    }

    /// Every license the caller can see, newest first, read a page at a time. The entitlement
    /// collection is computed over all of them (its `count` and `orderBy` need every row).
    async fn visible_licenses(&self) -> Result<Vec<License>, Error> {
        let mut f = crate::store::licenses::LicenseFilter::default();
        crate::service::access::scope_license_list(&self.principal, &mut f);
        crate::store::collect_pages(|page| crate::store::licenses::list(self.db(), self.account.id, &f, page)).await
    }

    /// Whether the caller may see `l`.
    async fn can_read(&self, l: &License) -> Result<bool, Error> {
        crate::service::access::may_read_license(self.db(), &self.principal, l).await
    }
}

/// Path segments (`account_id`, `license_id`, …). One that is not valid UTF-8 names nothing:
/// the not-found problem of the operation (1 for PUT and DELETE, else 2) instead of axum's
/// plain-text 400.
pub struct Params<T>(pub T);

impl<T, S> axum::extract::FromRequestParts<S> for Params<T>
where
    T: serde::de::DeserializeOwned + Send,
    S: Send + Sync,
{
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut axum::http::request::Parts, state: &S) -> Result<Self, Problem> {
        match axum::extract::Path::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Path(v)) => Ok(Params(v)),
            Err(_) => Err(Problem::new(not_found_kind(&parts.method))),
        }
    }
}

/// Any query parameter on an endpoint that takes none is problem 6.
fn no_query(query: Option<&str>) -> Reply<()> {
    // Anything at all, form-encoded or not, is a parameter this endpoint does not take.
    let params = crate::api::query_pairs(query).unwrap_or_default();
    if params.is_empty() && query.is_none_or(str::is_empty) {
        return Ok(());
    }
    Err(Problem::new(Kind::QueryParametersNotSupported)
        .params(params.into_iter().map(|(k, _)| (k, "is not supported by this endpoint".to_string())).collect()))
}

/// Collection query parameters, or problem 5/6.
fn collection_query(query: Option<&str>, supported: &[&str]) -> Reply<crate::domain::collection_query::Query> {
    let params = crate::api::query_pairs(query).map_err(|_| {
        Problem::new(Kind::InvalidQueryParameters).params(vec![("query".into(), "is not form-encoded".into())])
    })?;
    crate::domain::collection_query::parse(&params, supported).map_err(|errors| {
        let kind = if errors.iter().all(|e| e.unsupported) {
            Kind::QueryParametersNotSupported
        } else {
            Kind::InvalidQueryParameters
        };
        Problem::new(kind).params(errors.into_iter().map(|e| (e.name, e.reason)).collect())
    })
}

/// The response media type: the resource's own when the client asks for it, else JSON.
fn media_type(headers: &HeaderMap, own: &'static str) -> &'static str {
    let accept = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()).unwrap_or("");
    if accept.split(',').any(|a| a.split(';').next().is_some_and(|t| t.trim().eq_ignore_ascii_case(own))) {
        own
    } else {
        "application/json"
    }
}

fn json_response(status: StatusCode, content_type: &'static str, body: &Value) -> Response {
    let mut r = (status, body.to_string()).into_response();
    r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    r
}

/// Timestamps as the surface writes them: microseconds, `Z`.
fn timestamp(ms: i64) -> String {
    chrono::DateTime::<chrono::Utc>::from_timestamp_millis(ms)
        .unwrap_or_default()
        .format("%Y-%m-%dT%H:%M:%S%.6fZ")
        .to_string()
}
