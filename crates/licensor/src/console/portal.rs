//! The customer portal: a vendor's customer (a user who owns or is attached to licenses) sees
//! their licenses, expiry, entitlements and machines, deactivates a machine to move a seat, and
//! changes their password. Every read is scoped by the same access rules as the API: another
//! customer's license or machine is not found.

use std::collections::HashMap;

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;

use super::html::{self, esc};
use super::{csrf_ok, done, forbidden, form_fields, Area, Signed};
use crate::model::Page;
use crate::service;
use crate::state::AppState;
use crate::store::licenses::LicenseFilter;
use crate::store::{self, licenses, machines};
use crate::time;

const NAV: html::Nav<'static> = &[("/portal", "My licenses"), ("/portal/password", "Password")];
const AREA: Area = Area::Portal;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/portal", get(home))
        .route("/portal/licenses/{id}", get(license_page))
        .route("/portal/licenses/{id}/check-out", post(check_out))
        .route("/portal/machines/{id}/deactivate", post(deactivate))
        .route("/portal/password", get(password_page).post(change_password))
}

type Q = Query<HashMap<String, String>>;

fn render(s: &Signed, title: &str, q: &HashMap<String, String>, body: &str) -> Response {
    Html(html::page(AREA.base(), title, NAV, Some((&s.user.email, s.csrf())), q.get("done").map(String::as_str), body))
        .into_response()
}

async fn home(State(state): State<AppState>, headers: HeaderMap, Query(q): Q) -> Response {
    let s = signed_in!(state, headers, AREA);
    let now = time::now_ms();
    let f = LicenseFilter { user: Some(s.user.id), ..Default::default() };
    let mine = tri!(AREA, licenses::list(&state.db, s.account.id, &f, Page { size: 100, number: 1 }).await);
    let rows: Vec<Vec<String>> = mine
        .rows
        .iter()
        .map(|l| {
            vec![
                html::link(&format!("/portal/licenses/{}", l.id), l.name.as_deref().unwrap_or("License")),
                esc(crate::wire::licenses::status(l, now)),
                esc(&time::iso_opt(l.expiry).unwrap_or_else(|| "never".into())),
                format!("{} of {}", l.machines_count, l.max_machines().map_or("unlimited".into(), |m| m.to_string())),
            ]
        })
        .collect();
    let body = html::table("Your licenses", &["License", "Status", "Expires", "Machines"], &rows);
    render(&s, "My licenses", &q, &body)
}

async fn license_page(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Query(q): Q,
) -> Response {
    let s = signed_in!(state, headers, AREA);
    let l = tri!(AREA, service::licenses::find(&state.db, &s.principal, s.account.id, &id).await);
    let now = time::now_ms();
    let entitlements = tri!(AREA, store::entitlements::for_license(&state.db, s.account.id, l.id, l.policy_id).await);
    let machine_rows: Vec<Vec<String>> = tri!(AREA, machines::for_license(&state.db, s.account.id, l.id).await)
        .iter()
        .map(|m| {
            vec![
                esc(m.name.as_deref().or(m.hostname.as_deref()).unwrap_or(&m.fingerprint)),
                esc(&time::iso(m.created_at)),
                html::button(&format!("/portal/machines/{}/deactivate", m.id), s.csrf(), "Deactivate", "danger"),
            ]
        })
        .collect();
    let body = format!(
        "{}{}{}<p>Deactivating a machine frees its seat for another one.</p>",
        html::facts(&[
            ("Key", format!("<code class=\"key\">{}</code>", esc(&l.key))),
            ("Status", esc(crate::wire::licenses::status(&l, now))),
            ("Expires", esc(&time::iso_opt(l.expiry).unwrap_or_else(|| "never".into()))),
            ("Entitlements", esc(&entitlements.iter().map(|e| e.code.as_str()).collect::<Vec<_>>().join(", "))),
        ]),
        html::button(&format!("/portal/licenses/{}/check-out", l.id), s.csrf(), "Download license file", ""),
        html::table("Machines", &["Machine", "Activated", ""], &machine_rows)
    );
    render(&s, l.name.as_deref().unwrap_or("License"), &q, &body)
}

/// `POST /portal/licenses/{id}/check-out`: the customer's own license file, for an offline
/// install.
async fn check_out(State(state): State<AppState>, headers: HeaderMap, Path(id): Path<String>, body: Bytes) -> Response {
    let s = signed_in!(state, headers, AREA);
    if !csrf_ok(&s, &form_fields(std::str::from_utf8(&body).unwrap_or(""))) {
        return forbidden(AREA);
    }
    super::license_file_download(&state, &s, &id, AREA).await
}

async fn deactivate(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Bytes,
) -> Response {
    let s = signed_in!(state, headers, AREA);
    if !csrf_ok(&s, &form_fields(std::str::from_utf8(&body).unwrap_or(""))) {
        return forbidden(AREA);
    }
    // The API's rules: a customer may deactivate machines of the licenses they hold, where the
    // policy lets users do so.
    let (m, l) = tri!(
        AREA,
        service::machines::find_for(
            &state.db,
            &s.principal,
            s.account.id,
            &id,
            service::access::MachineAction::Deactivate
        )
        .await
    );
    tri!(AREA, service::machines::deactivate(&state, &s.principal, &m).await);
    done(&format!("/portal/licenses/{}", l.id), "Machine deactivated.")
}

async fn password_page(State(state): State<AppState>, headers: HeaderMap, Query(q): Q) -> Response {
    let s = signed_in!(state, headers, AREA);
    let body = html::form(
        "/portal/password",
        s.csrf(),
        &format!(
            "{}{}",
            html::input("current", "Current password", "password", "", true),
            html::input("new", "New password (at least 8 characters)", "password", "", true)
        ),
        "Change password",
    );
    render(&s, "Change your password", &q, &body)
}

async fn change_password(State(state): State<AppState>, headers: HeaderMap, body: Bytes) -> Response {
    let s = signed_in!(state, headers, AREA);
    let form = form_fields(std::str::from_utf8(&body).unwrap_or(""));
    if !csrf_ok(&s, &form) {
        return forbidden(AREA);
    }
    let current = form.get("current").cloned().unwrap_or_default();
    let new = form.get("new").cloned().unwrap_or_default();
    tri!(AREA, service::users::update_password(&state.db, &s.principal, &s.user, &current, new).await);
    done("/portal", "Password changed.")
}
