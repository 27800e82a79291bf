//! The domain error: what went wrong, in terms every API surface can render in its own format.
//!
//! Store and domain functions return [`Error`]; each surface maps it once (see
//! `api::keygen::error`). 5xx variants keep their cause for the log and never show it to clients.

use std::borrow::Cow;

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Where in the request the problem is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    None,
    /// A JSON pointer into the request body, e.g. `/data/attributes/maxMachines`.
    Pointer(Cow<'static, str>),
    /// A query parameter name.
    Parameter(Cow<'static, str>),
    /// A request header name.
    Header(Cow<'static, str>),
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The request itself is malformed: bad JSON, wrong types, unknown parameters.
    #[error("bad request: {detail}")]
    BadRequest { detail: Cow<'static, str>, code: Option<Cow<'static, str>>, location: Source },
    /// Credentials missing or wrong.
    #[error("unauthorized: {detail}")]
    Unauthorized { detail: Cow<'static, str>, code: Option<Cow<'static, str>>, location: Source },
    /// Authenticated, but not allowed.
    #[error("forbidden: {detail}")]
    Forbidden { detail: Cow<'static, str>, code: Option<Cow<'static, str>> },
    /// No such resource in this account (or not visible to the caller).
    #[error("{kind} {id} not found")]
    NotFound { kind: &'static str, id: String },
    /// Well-formed, but breaks a rule of the model (422).
    #[error("invalid: {detail}")]
    Invalid { detail: Cow<'static, str>, code: Cow<'static, str>, location: Source },
    /// A 422 about the request's intent rather than an attribute's value: "is already
    /// suspended", "cannot be renewed…" (Keygen titles these "Unprocessable entity", no code).
    #[error("unprocessable: {detail}")]
    Unprocessable { detail: Cow<'static, str>, location: Source },
    /// Lost a race or conflicts with current state (409).
    #[error("conflict: {detail}")]
    Conflict { detail: Cow<'static, str>, code: Option<Cow<'static, str>> },
    /// A rate limit was reached (429); `retry_after` seconds is when to try again.
    #[error("too many requests: {detail}")]
    TooManyRequests { detail: Cow<'static, str>, retry_after: i64 },
    #[error("database error")]
    Database(sqlx::Error),
    #[error("internal error")]
    Internal(#[from] anyhow::Error),
}

/// A database refusal of the request's text is the request's fault, not the server's:
/// PostgreSQL cannot store a NUL character (SQLite can), so a `\u0000` that slipped past the
/// surfaces' own checks is a 400 there too, never a 500.
impl From<sqlx::Error> for Error {
    fn from(e: sqlx::Error) -> Self {
        if crate::db::is_unstorable_text(&e) {
            return nul_character();
        }
        Error::Database(e)
    }
}

/// A unique-constraint violation as Keygen words it ("`attr` has already been taken", `code`);
/// any other database error as itself.
pub fn taken(e: sqlx::Error, attr: &str, code: &'static str) -> Error {
    if crate::db::is_unique_violation(&e) {
        Error::invalid_attr(attr, "has already been taken", code)
    } else {
        Error::from(e)
    }
}

/// The 400 for text holding a NUL character.
pub fn nul_character() -> Error {
    Error::bad_request("The request contains a NUL character, which is not allowed", Source::None)
}

impl Error {
    pub fn not_found(kind: &'static str, id: impl Into<String>) -> Self {
        Error::NotFound { kind, id: id.into() }
    }

    pub fn bad_request(detail: impl Into<Cow<'static, str>>, source: Source) -> Self {
        Error::BadRequest { detail: detail.into(), code: None, location: source }
    }

    pub fn bad_param(detail: impl Into<Cow<'static, str>>, parameter: &'static str) -> Self {
        Error::bad_request(detail, Source::Parameter(parameter.into()))
    }

    pub fn unauthorized(detail: impl Into<Cow<'static, str>>, code: &'static str) -> Self {
        Error::Unauthorized { detail: detail.into(), code: Some(code.into()), location: Source::None }
    }

    /// The plain authorization failure: no code, Keygen's "You do not have permission…" text.
    pub fn access_denied() -> Self {
        Error::Forbidden {
            detail: "You do not have permission to complete the request (ensure the token or license is allowed to access this resource)".into(),
            code: None,
        }
    }

    pub fn forbidden(detail: impl Into<Cow<'static, str>>, code: &'static str) -> Self {
        Error::Forbidden { detail: detail.into(), code: Some(code.into()) }
    }

    /// A 422 on an attribute: `attr` is the camelCase attribute name.
    pub fn invalid_attr(attr: &str, detail: impl Into<Cow<'static, str>>, code: impl Into<Cow<'static, str>>) -> Self {
        Error::Invalid {
            detail: detail.into(),
            code: code.into(),
            location: Source::Pointer(format!("/data/attributes/{attr}").into()),
        }
    }

    /// A 422 on a relationship.
    pub fn invalid_rel(rel: &str, detail: impl Into<Cow<'static, str>>, code: impl Into<Cow<'static, str>>) -> Self {
        Error::Invalid {
            detail: detail.into(),
            code: code.into(),
            location: Source::Pointer(format!("/data/relationships/{rel}").into()),
        }
    }

    /// A 422 about the resource as a whole (pointer `/data`).
    pub fn invalid(detail: impl Into<Cow<'static, str>>, code: impl Into<Cow<'static, str>>) -> Self {
        Error::Invalid { detail: detail.into(), code: code.into(), location: Source::Pointer("/data".into()) }
    }

    /// Logs a server-side failure once, without a backtrace (anyhow's `Debug` prints one when
    /// `RUST_BACKTRACE` is set: hundreds of lines per request), with the cause chain and the
    /// request id the client sees in its error document.
    pub fn log(&self, context: &'static str) {
        let request_id = crate::telemetry::request_id().unwrap_or_default();
        tracing::error!(error = %self.cause(), request_id = %request_id, "{context}");
    }

    /// The cause chain, one line, for a log.
    pub fn cause(&self) -> String {
        match self {
            Error::Internal(e) => format!("{e:#}"),
            Error::Database(e) => e.to_string(),
            other => other.to_string(),
        }
    }

    pub fn unprocessable(detail: impl Into<Cow<'static, str>>) -> Self {
        Error::Unprocessable { detail: detail.into(), location: Source::None }
    }

    pub fn conflict(detail: impl Into<Cow<'static, str>>, code: &'static str) -> Self {
        Error::Conflict { detail: detail.into(), code: Some(code.into()) }
    }
}
