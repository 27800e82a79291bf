//! Licenses: search and filters, creation, the license page (machines, users, entitlements,
//! validation history) and its actions.

use std::collections::HashMap;

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use axum::response::Response;
use axum::routing::{get, post};
use axum::Router;
use uuid::Uuid;

use super::overview::status_filter;
use super::{html, render, AREA, PAGE_SIZE, Q};
use crate::console::html::{esc, link};
use crate::console::{done, error_page};
use crate::error::Error;
use crate::model::{License, Page};
use crate::service;
use crate::state::AppState;
use crate::store::entitlements::Scope;
use crate::store::licenses::LicenseFilter;
use crate::store::{self, licenses, machines, policies, products, users};
use crate::time;

/// Every row of a short list (a license's entitlements).
const ALL: Page = Page { size: 100, number: 1 };

pub(super) fn routes() -> Router<AppState> {
    Router::new()
        .route("/admin/licenses", get(licenses_page).post(create_license))
        .route("/admin/licenses/{id}", get(license_page))
        .route("/admin/licenses/{id}/check-out", post(check_out))
        .route("/admin/licenses/{id}/owner", post(change_owner))
        .route("/admin/licenses/{id}/{kind}/{item}/detach", post(detach))
        .route("/admin/licenses/{id}/{action}", get(confirm).post(license_action))
        .route("/admin/machines/{id}/deactivate", post(deactivate_machine))
}

pub(super) fn license_table(caption: &str, rows: &[License], now: i64) -> String {
    let rows: Vec<Vec<String>> = rows
        .iter()
        .map(|l| {
            vec![
                link(&format!("/admin/licenses/{}", l.id), l.name.as_deref().unwrap_or("(unnamed)")),
                format!("<code>{}</code>", esc(&shorten(&l.key))),
                esc(crate::wire::licenses::status(l, now)),
                esc(&time::iso_opt(l.expiry).unwrap_or_else(|| "never".into())),
                l.machines_count.to_string(),
            ]
        })
        .collect();
    html::table(caption, &["Name", "Key", "Status", "Expiry", "Machines"], &rows)
}

pub(super) fn shorten(key: &str) -> String {
    if key.chars().count() > 40 {
        format!("{}…", key.chars().take(40).collect::<String>())
    } else {
        key.to_string()
    }
}

/// Lists count their matches up to this many; past it they say "more than".
const COUNT_UP_TO: i64 = 10_000;

/// A keyset cursor, `{created_at}_{id}` of the last row of the page before.
fn cursor(text: &str) -> Option<(i64, Uuid)> {
    let (created, id) = text.split_once('_')?;
    Some((created.parse().ok()?, Uuid::parse_str(id).ok()?))
}

async fn licenses_page(State(state): State<AppState>, headers: HeaderMap, Query(q): Q) -> Response {
    let s = signed_in!(state, headers, AREA);
    let account = s.account.id;
    let now = time::now_ms();
    let get = |k: &str| q.get(k).map(|v| v.trim().to_string()).unwrap_or_default();
    let (search, status, product, policy) = (get("q"), get("status"), get("product"), get("policy"));
    let before = cursor(&get("before"));
    let f = LicenseFilter {
        product: Uuid::parse_str(&product).ok(),
        policy: Uuid::parse_str(&policy).ok(),
        group: Uuid::parse_str(&get("group")).ok(),
        status: status_filter(&status, now),
        search: (!search.is_empty()).then(|| search.clone()),
        before,
        count_up_to: Some(COUNT_UP_TO),
        ..Default::default()
    };
    let listing = tri!(AREA, licenses::list(&state.db, account, &f, Page { size: PAGE_SIZE, number: 1 }).await);
    let next = (listing.rows.len() as i64 == PAGE_SIZE)
        .then(|| listing.rows.last().map(|l| format!("{}_{}", l.created_at, l.id)))
        .flatten();
    let all_products = tri!(AREA, products::list(&state.db, account, None, Page { size: 100, number: 1 }).await).rows;
    let all_policies = tri!(AREA, policies::list(&state.db, account, None, Page { size: 100, number: 1 }).await).rows;
    let mut product_options = vec![(String::new(), "Any product".to_string())];
    product_options.extend(all_products.iter().map(|p| (p.id.to_string(), p.name.clone())));
    let mut policy_options = vec![(String::new(), "Any policy".to_string())];
    policy_options.extend(all_policies.iter().map(|p| (p.id.to_string(), p.name.clone())));
    let statuses: Vec<(String, String)> = ["", "ACTIVE", "EXPIRING", "EXPIRED", "SUSPENDED", "INACTIVE", "BANNED"]
        .iter()
        .map(|s| (s.to_string(), if s.is_empty() { "Any status".to_string() } else { s.to_string() }))
        .collect();
    let filters = format!(
        "<form class=\"filters\" method=\"get\" action=\"/admin/licenses\" role=\"search\">{}{}{}{}<p><button type=\"submit\">Search</button></p></form>",
        html::input("q", "Key, name, owner email or metadata", "search", &search, false),
        html::select("status", "Status", &statuses, &status),
        html::select("product", "Product", &product_options, &product),
        html::select("policy", "Policy", &policy_options, &policy),
    );
    let group = get("group");
    let query = serde_urlencoded::to_string([
        ("q", &search),
        ("status", &status),
        ("product", &product),
        ("policy", &policy),
        ("group", &group),
    ])
    .unwrap_or_default();
    let policy_choices: Vec<(String, String)> = all_policies
        .iter()
        .map(|p| {
            let product = all_products.iter().find(|x| x.id == p.product_id).map_or("?", |x| x.name.as_str());
            (p.id.to_string(), format!("{} ({product})", p.name))
        })
        .collect();
    let create = if policy_choices.is_empty() {
        "<p>Create a product and a policy first: a license is issued under a policy.</p>".to_string()
    } else {
        format!(
            "<h2>New license</h2>{}",
            html::form(
                "/admin/licenses",
                s.csrf(),
                &format!(
                    "{}{}{}",
                    html::select("policy", "Policy", &policy_choices, ""),
                    html::input("name", "Name", "text", "", false),
                    html::input("owner", "Owner's email (an existing user; optional)", "email", "", false),
                ),
                "Create license"
            )
        )
    };
    let body = format!(
        "{filters}{}{}{create}",
        license_table("Licenses", &listing.rows, now),
        html::keyset_pager(
            "/admin/licenses",
            &query,
            before.is_none(),
            next.as_deref(),
            listing.total,
            listing.total > COUNT_UP_TO
        )
    );
    render(&s, "Licenses", &q, &body)
}

async fn create_license(State(state): State<AppState>, headers: HeaderMap, body: Bytes) -> Response {
    let (s, form) = posted!(state, headers, body);
    let account = s.account.id;
    let Some(policy) = form.get("policy").and_then(|p| Uuid::parse_str(p).ok()) else {
        return error_page(AREA, Error::invalid_attr("policy", "must be chosen", "POLICY_BLANK"));
    };
    let Some(policy) = tri!(AREA, policies::find(&state.db, account, policy).await) else {
        return error_page(AREA, Error::not_found("policy", policy.to_string()));
    };
    let mut new = service::licenses::NewLicense {
        name: form.get("name").map(|n| n.trim().to_string()).filter(|n| !n.is_empty()),
        ..Default::default()
    };
    if let Some(email) = form.get("owner").map(|e| e.trim()).filter(|e| !e.is_empty()) {
        match tri!(AREA, users::find_by_email(&state.db, account, email).await) {
            Some(u) => {
                new.owner = Some(u.id);
                new.owner_email = Some(u.email);
            }
            None => {
                return error_page(
                    AREA,
                    Error::invalid_attr("owner", "is not a user of this account", "OWNER_NOT_FOUND"),
                )
            }
        }
    }
    let l =
        tri!(AREA, service::licenses::issue(&state.db, &s.account, &state.master, &policy, new, &s.principal).await);
    done(&format!("/admin/licenses/{}", l.id), "License created.")
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
    let owner = match l.owner_id {
        Some(o) => tri!(AREA, users::find(&state.db, s.account.id, o).await).map(|u| u.email).unwrap_or_default(),
        None => String::new(),
    };
    let policy =
        tri!(AREA, policies::find(&state.db, s.account.id, l.policy_id).await).map(|p| p.name).unwrap_or_default();
    let entitlements = tri!(AREA, store::entitlements::for_license(&state.db, s.account.id, l.id, l.policy_id).await);
    let from_policy =
        tri!(AREA, store::entitlements::list(&state.db, s.account.id, Scope::Policy(l.policy_id), ALL).await);
    let facts = html::facts(&[
        ("Key", format!("<code class=\"key\">{}</code>", esc(&l.key))),
        ("Status", esc(crate::wire::licenses::status(&l, now))),
        ("Policy", esc(&policy)),
        ("Owner", esc(&owner)),
        ("Expiry", esc(&time::iso_opt(l.expiry).unwrap_or_else(|| "never".into()))),
        (
            "Machines",
            format!("{} of {}", l.machines_count, l.max_machines().map_or("unlimited".into(), |m| m.to_string())),
        ),
        ("Uses", format!("{} of {}", l.uses, l.max_uses().map_or("unlimited".into(), |m| m.to_string()))),
        ("Last validated", esc(&time::iso_opt(l.last_validated_at).unwrap_or_else(|| "never".into()))),
        ("Metadata", format!("<code>{}</code>", esc(&l.metadata.0.to_string()))),
    ]);
    let base = format!("/admin/licenses/{}", l.id);
    let mut actions = String::new();
    if l.suspended {
        actions.push_str(&html::button(&format!("{base}/reinstate"), s.csrf(), "Reinstate", ""));
    } else {
        actions.push_str(&html::button(&format!("{base}/suspend"), s.csrf(), "Suspend", ""));
    }
    if l.rules().duration.is_some() && l.expiry.is_some() {
        actions.push_str(&html::button(&format!("{base}/renew"), s.csrf(), "Renew", ""));
    }
    actions.push_str(&html::button(&format!("{base}/check-out"), s.csrf(), "Download license file", ""));
    actions.push_str(&link(&format!("{base}/revoke"), "Revoke…"));
    let machine_rows: Vec<Vec<String>> = tri!(AREA, machines::for_license(&state.db, s.account.id, l.id).await)
        .iter()
        .map(|m| {
            vec![
                format!("<code>{}</code>", esc(&m.fingerprint)),
                esc(m.name.as_deref().unwrap_or("")),
                esc(&time::iso(m.created_at)),
                esc(&time::iso_opt(m.last_heartbeat_at).unwrap_or_else(|| "none".into())),
                html::button(&format!("/admin/machines/{}/deactivate", m.id), s.csrf(), "Deactivate", "danger"),
            ]
        })
        .collect();
    let owner_form = html::form(
        &format!("{base}/owner"),
        s.csrf(),
        &html::input("email", "Owner's email (an existing user; empty for none)", "email", &owner, false),
        "Set owner",
    );
    let entitlement_rows: Vec<Vec<String>> = entitlements
        .iter()
        .map(|e| {
            let inherited = from_policy.rows.iter().any(|p| p.id == e.id);
            vec![
                format!("<code>{}</code>", esc(&e.code)),
                esc(&e.name),
                if inherited {
                    "from the policy".into()
                } else {
                    html::button(&format!("{base}/entitlements/{}/detach", e.id), s.csrf(), "Detach", "danger")
                },
            ]
        })
        .collect();
    let attach_entitlement = html::form(
        &format!("{base}/entitlements"),
        s.csrf(),
        &html::input("code", "Entitlement code to attach", "text", "", true),
        "Attach entitlement",
    );
    let mut user_rows = Vec::new();
    for id in tri!(AREA, licenses::user_ids(&state.db, s.account.id, l.id).await) {
        if let Some(u) = tri!(AREA, users::find(&state.db, s.account.id, id).await) {
            user_rows.push(vec![
                esc(&u.email),
                html::button(&format!("{base}/users/{}/detach", u.id), s.csrf(), "Detach", "danger"),
            ]);
        }
    }
    let attach_user = html::form(
        &format!("{base}/users"),
        s.csrf(),
        &html::input("email", "Email of a user to attach", "email", "", true),
        "Attach user",
    );
    let history = tri!(AREA, validation_history(&state, &l).await);
    let body = format!(
        "{facts}<div class=\"actions\">{actions}</div>{}<h2>Owner</h2>{owner_form}{}{attach_user}{}{attach_entitlement}{history}",
        html::table("Machines", &["Fingerprint", "Name", "Activated", "Last heartbeat", ""], &machine_rows),
        html::table("Users (besides the owner)", &["Email", ""], &user_rows),
        html::table("Entitlements", &["Code", "Name", ""], &entitlement_rows),
    );
    render(&s, l.name.as_deref().unwrap_or("License"), &q, &body)
}

/// `GET …/{action}`: a confirmation page for what cannot be undone.
async fn confirm(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path((id, action)): Path<(String, String)>,
    Query(q): Q,
) -> Response {
    let s = signed_in!(state, headers, AREA);
    if action != "revoke" {
        return error_page(AREA, Error::not_found("page", action));
    }
    let l = tri!(AREA, service::licenses::find(&state.db, &s.principal, s.account.id, &id).await);
    let body = format!(
        "<p>Revoking deletes license <code>{}</code> and its machines. Products using it stop validating at once. This cannot be undone.</p>{}{}",
        esc(&shorten(&l.key)),
        html::button(&format!("/admin/licenses/{}/revoke", l.id), s.csrf(), "Revoke this license", "danger"),
        link(&format!("/admin/licenses/{}", l.id), "Cancel")
    );
    render(&s, "Revoke license?", &q, &body)
}

async fn license_action(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path((id, action)): Path<(String, String)>,
    body: Bytes,
) -> Response {
    let (s, form) = posted!(state, headers, body);
    let (db, p, account) = (&state.db, &s.principal, s.account.id);
    let l = match action.as_str() {
        "users" | "entitlements" => {
            let l = tri!(AREA, service::licenses::find(db, p, account, &id).await);
            let message = tri!(AREA, attach(&state, &s, &l, &action, &form).await);
            return done(&format!("/admin/licenses/{}", l.id), message);
        }
        "suspend" => tri!(AREA, service::licenses::suspend(db, p, account, &id).await),
        "reinstate" => tri!(AREA, service::licenses::reinstate(db, p, account, &id).await),
        "renew" => tri!(AREA, service::licenses::renew(db, p, account, &id).await),
        "revoke" => {
            tri!(AREA, service::licenses::revoke(db, p, account, &id).await);
            return done("/admin/licenses", "License revoked.");
        }
        other => return error_page(AREA, Error::not_found("action", other.to_string())),
    };
    // Back to the license by its id, never by the text the path carried.
    done(&format!("/admin/licenses/{}", l.id), &format!("License {action}ed."))
}

/// `POST /admin/licenses/{id}/check-out`: the license file, as the API's check-out writes it.
async fn check_out(State(state): State<AppState>, headers: HeaderMap, Path(id): Path<String>, body: Bytes) -> Response {
    let (s, _) = posted!(state, headers, body);
    crate::console::license_file_download(&state, &s, &id, AREA).await
}

/// `POST /admin/licenses/{id}/owner`: the user with that email becomes the owner (none when
/// empty); their portal then shows the license.
async fn change_owner(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Bytes,
) -> Response {
    let (s, form) = posted!(state, headers, body);
    let l = tri!(AREA, service::licenses::find(&state.db, &s.principal, s.account.id, &id).await);
    let email = form.get("email").map(|e| e.trim()).unwrap_or("");
    let owner = if email.is_empty() {
        None
    } else {
        match tri!(AREA, users::find_by_email(&state.db, s.account.id, email).await) {
            Some(u) => Some(u.id),
            None => {
                return error_page(
                    AREA,
                    Error::invalid_attr("owner", "is not a user of this account", "OWNER_NOT_FOUND"),
                )
            }
        }
    };
    let l = tri!(AREA, service::licenses::set_owner(&state.db, &l, owner).await);
    done(&format!("/admin/licenses/{}", l.id), if owner.is_some() { "Owner set." } else { "Owner removed." })
}

async fn deactivate_machine(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Bytes,
) -> Response {
    let (s, _) = posted!(state, headers, body);
    let (m, l) = tri!(AREA, service::machines::find(&state.db, &s.principal, s.account.id, &id).await);
    tri!(AREA, service::machines::deactivate(&state, &s.principal, &m).await);
    done(&format!("/admin/licenses/{}", l.id), "Machine deactivated.")
}

/// The license's last validations, from the event log: recorded when a webhook endpoint
/// subscribes to validation events or the server runs with `--log-validations`.
async fn validation_history(state: &AppState, l: &License) -> Result<String, Error> {
    let f = store::events::LogFilter {
        events: vec!["license.validation.succeeded".into(), "license.validation.failed".into()],
        resource_type: Some("licenses".into()),
        resource_id: Some(l.id),
        ..Default::default()
    };
    let logs = store::events::list_logs(&state.db, l.account_id, &f, Page { size: 20, number: 1 }).await?;
    let rows: Vec<Vec<String>> = logs
        .rows
        .iter()
        .map(|e| {
            let meta = &e.metadata.0;
            let code = meta.get("code").and_then(|c| c.as_str());
            vec![
                esc(&time::iso(e.created_at)),
                esc(if e.event.ends_with("succeeded") { "valid" } else { "invalid" }),
                esc(code.unwrap_or("")),
            ]
        })
        .collect();
    let note = if rows.is_empty() {
        "<p>No validation recorded. Validations are logged when a webhook endpoint subscribes to them, or when the server runs with <code>--log-validations</code>.</p>"
    } else {
        ""
    };
    Ok(format!("{}{note}", html::table("Validation history (latest 20)", &["When", "Result", "Code"], &rows)))
}

/// `POST …/users` (an email) or `…/entitlements` (a code): attaches one to the license.
async fn attach(
    state: &AppState,
    s: &crate::console::Signed,
    l: &License,
    kind: &str,
    form: &HashMap<String, String>,
) -> Result<&'static str, Error> {
    let value = form.get(if kind == "users" { "email" } else { "code" }).map(|v| v.trim()).unwrap_or("");
    if kind == "users" {
        let u = users::find_by_email(&state.db, s.account.id, value)
            .await?
            .ok_or_else(|| Error::invalid_rel("users", "is not a user of this account", "USER_NOT_FOUND"))?;
        service::licenses::attach_users(&state.db, l, &[u.id]).await?;
        Ok("User attached.")
    } else {
        let e = store::entitlements::find(&state.db, s.account.id, value)
            .await?
            .ok_or_else(|| Error::invalid_rel("entitlements", "must exist", "ENTITLEMENT_NOT_FOUND"))?;
        service::licenses::attach_entitlements(&state.db, l, &[e.id]).await?;
        Ok("Entitlement attached.")
    }
}

/// `POST /admin/licenses/{id}/{users|entitlements}/{item}/detach`.
async fn detach(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path((id, kind, item)): Path<(String, String, String)>,
    body: Bytes,
) -> Response {
    let (s, _) = posted!(state, headers, body);
    let l = tri!(AREA, service::licenses::find(&state.db, &s.principal, s.account.id, &id).await);
    let message = match kind.as_str() {
        "users" => {
            let user = tri!(AREA, super::uuid_of("user", &item));
            tri!(AREA, service::licenses::detach_users(&state.db, &l, &[user]).await);
            "User detached."
        }
        "entitlements" => {
            let entitlement = tri!(AREA, super::uuid_of("entitlement", &item));
            tri!(AREA, service::licenses::detach_entitlements(&state.db, &l, &[entitlement]).await);
            "Entitlement detached."
        }
        other => return error_page(AREA, Error::not_found("page", other.to_string())),
    };
    done(&format!("/admin/licenses/{}", l.id), message)
}
