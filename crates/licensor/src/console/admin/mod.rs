//! The admin console's pages, one module per part of the menu. Reads go through the store's
//! paged, filtered queries; every change goes through a service, as the API's do.

use std::collections::HashMap;

use axum::extract::Query;
use axum::response::{Html, IntoResponse, Response};
use axum::Router;

use super::{html, Area, Signed};
use crate::error::Error;
use crate::state::AppState;

/// Runs a signed-in POST: the session, and the form after its CSRF check.
macro_rules! posted {
    ($state:expr, $headers:expr, $body:expr) => {{
        let s = match $crate::console::signed(&$state, &$headers, AREA).await {
            Ok(s) => s,
            Err(r) => return r,
        };
        let form = $crate::console::form_fields(std::str::from_utf8(&$body).unwrap_or(""));
        if !$crate::console::csrf_ok(&s, &form) {
            return $crate::console::forbidden(AREA);
        }
        (s, form)
    }};
}

mod catalog;
mod integrations;
mod licenses;
mod overview;
mod people;
mod policy_rules;

const NAV: html::Nav<'static> = &[
    ("/admin", "Overview"),
    ("/admin/licenses", "Licenses"),
    ("/admin/products", "Products"),
    ("/admin/policies", "Policies"),
    ("/admin/entitlements", "Entitlements"),
    ("/admin/groups", "Groups"),
    ("/admin/users", "Users"),
    ("/admin/tokens", "Tokens"),
    ("/admin/webhooks", "Webhooks"),
    ("/admin/events", "Event log"),
    ("/admin/keys", "Keys"),
];
const PAGE_SIZE: i64 = 25;
const AREA: Area = Area::Admin;

pub fn router() -> Router<AppState> {
    Router::new()
        .merge(overview::routes())
        .merge(licenses::routes())
        .merge(catalog::routes())
        .merge(people::routes())
        .merge(integrations::routes())
}

type Q = Query<HashMap<String, String>>;

fn render(s: &Signed, title: &str, q: &HashMap<String, String>, body: &str) -> Response {
    Html(html::page(AREA.base(), title, NAV, Some((&s.user.email, s.csrf())), q.get("done").map(String::as_str), body))
        .into_response()
}

fn page_number(q: &HashMap<String, String>) -> i64 {
    q.get("page").and_then(|p| p.parse().ok()).filter(|n: &i64| *n >= 1).unwrap_or(1)
}

/// A form field, trimmed; empty when absent.
fn field(form: &HashMap<String, String>, name: &str) -> String {
    form.get(name).map(|v| v.trim().to_string()).unwrap_or_default()
}

/// A form field read as an optional whole number (empty: none).
fn number(form: &HashMap<String, String>, name: &str) -> Result<Option<i64>, Error> {
    match form.get(name).map(|v| v.trim()).filter(|v| !v.is_empty()) {
        None => Ok(None),
        Some(v) => v
            .parse::<i64>()
            .map(Some)
            .map_err(|_| Error::invalid_attr(name, "must be a whole number", "NUMBER_INVALID")),
    }
}

/// A uuid from a path segment, or the console's 404 for `kind`.
fn uuid_of(kind: &'static str, id: &str) -> Result<uuid::Uuid, Error> {
    uuid::Uuid::parse_str(id).map_err(|_| Error::not_found(kind, id))
}
