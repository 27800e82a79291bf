//! The HTTP surfaces. Each speaks its own wire format over the same core model; what they
//! share of request checking lives here.

pub mod astra;
pub mod caller;
pub mod edge;
pub mod keygen;
pub mod licensing;
pub mod ops;
pub mod opswat;

use serde_json::Value;

/// Whether any string (or key) in `v` holds a NUL character.
pub fn holds_nul(v: &Value) -> bool {
    match v {
        Value::String(s) => s.contains('\0'),
        Value::Array(items) => items.iter().any(holds_nul),
        Value::Object(o) => o.iter().any(|(k, v)| k.contains('\0') || holds_nul(v)),
        _ => false,
    }
}

/// Why a request body is no JSON value a surface can take; each words it in its format.
#[derive(Debug)]
pub enum BadJson {
    Syntax(serde_json::Error),
    /// A string holding a NUL character, which PostgreSQL cannot store.
    Nul,
}

/// Parses a JSON request body, refusing NUL characters in any string or key.
pub fn json_body(bytes: &[u8]) -> Result<Value, BadJson> {
    let value = serde_json::from_slice(bytes).map_err(BadJson::Syntax)?;
    if holds_nul(&value) {
        return Err(BadJson::Nul);
    }
    Ok(value)
}

/// A query string's pairs, decoded; `Err` when it is not form-encoded.
pub fn query_pairs(query: Option<&str>) -> Result<Vec<(String, String)>, serde_urlencoded::de::Error> {
    serde_urlencoded::from_str(query.unwrap_or(""))
}

/// Sets `Retry-After` on a 429.
pub fn retry_after(response: &mut axum::response::Response, seconds: i64) {
    response.headers_mut().insert(axum::http::header::RETRY_AFTER, axum::http::HeaderValue::from(seconds.max(1)));
}

/// Which surface a request path belongs to: each answers in its own format, and metrics and
/// logs are labelled with it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Surface {
    /// `/v1/…`, Keygen's API.
    Keygen,
    /// `/activation`, `/deactivation` and their account aliases.
    Opswat,
    /// `/api/licensing/v1/…`.
    Licensing,
    /// `/accounts/{id}/core/v1/…`.
    Core,
    /// Health, readiness and metrics.
    Operations,
    /// The admin console (`/admin`) and the customer portal (`/portal`): HTML.
    Console,
}

/// A server-side failure behind a response, for the one log line `edge::observe` writes per
/// failed request: renderers attach it instead of logging, so every surface's 5xx is logged
/// once, with its surface and route.
#[derive(Clone, Debug)]
pub struct Fault(pub String);

/// Attaches `e`'s cause to a response rendered for it.
pub fn with_fault(mut response: axum::response::Response, e: &crate::error::Error) -> axum::response::Response {
    response.extensions_mut().insert(Fault(e.cause()));
    response
}

impl Surface {
    pub fn of(path: &str) -> Surface {
        if path == "/activation" || path == "/deactivation" || path.contains("/opswat/") {
            Surface::Opswat
        } else if path.starts_with("/v1/") || path == "/v1" {
            Surface::Keygen
        } else if path.starts_with("/api/licensing/") {
            Surface::Licensing
        } else if path.starts_with("/accounts/") {
            Surface::Core
        } else if path == "/admin" || path.starts_with("/admin/") || path == "/portal" || path.starts_with("/portal/") {
            Surface::Console
        } else {
            Surface::Operations
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Surface::Keygen => "keygen",
            Surface::Opswat => "opswat",
            Surface::Licensing => "licensing",
            Surface::Core => "core",
            Surface::Operations => "operations",
            Surface::Console => "console",
        }
    }

    /// `error` in this surface's own format: the one place a request refused before it reaches
    /// a surface (rate limits, for instance) gets the answer its client understands.
    pub fn render(self, error: crate::error::Error) -> axum::response::Response {
        use axum::response::IntoResponse;
        match self {
            Surface::Keygen | Surface::Operations => keygen::error::ApiError(error).into_response(),
            Surface::Opswat => opswat::render(error),
            Surface::Licensing => licensing::Failure::from(error).into_response(),
            Surface::Core => astra::Problem::from(error).into_response(),
            Surface::Console => crate::console::error_page(crate::console::Area::Admin, error),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Surface;

    #[test]
    fn paths_name_their_surface() {
        assert_eq!(Surface::of("/v1/accounts/a/licenses"), Surface::Keygen);
        assert_eq!(Surface::of("/v1/ping"), Surface::Keygen);
        assert_eq!(Surface::of("/activation"), Surface::Opswat);
        assert_eq!(Surface::of("/v1/accounts/a/opswat/deactivation"), Surface::Opswat);
        assert_eq!(Surface::of("/api/licensing/v1/licenses"), Surface::Licensing);
        assert_eq!(Surface::of("/accounts/x/core/v1/licenses"), Surface::Core);
        assert_eq!(Surface::of("/metrics"), Surface::Operations);
        assert_eq!(Surface::of("/admin/licenses"), Surface::Console);
        assert_eq!(Surface::of("/portal"), Surface::Console);
        assert_eq!(Surface::of("/administrator"), Surface::Operations);
    }
}
