//! The admin console's pages. Reads go through the store's paged, filtered queries; every
//! change goes through the service (or the same store write the API uses, events included).

use std::collections::HashMap;

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use serde_json::Value;
use uuid::Uuid;

use super::html::{self, esc, link};
use super::{csrf_ok, done, error_page, forbidden, form_fields, signed, Area, Signed};
use crate::error::Error;
use crate::events::Raised;
use crate::model::{empty_metadata, Json, License, Page, Policy, PolicyRules, Product, User};
use crate::service;
use crate::state::AppState;
use crate::store::licenses::LicenseFilter;
use crate::store::{self, licenses, machines, policies, products, users};
use crate::time;

const NAV: html::Nav<'static> = &[
    ("/admin", "Overview"),
    ("/admin/licenses", "Licenses"),
    ("/admin/products", "Products"),
    ("/admin/policies", "Policies"),
    ("/admin/users", "Users"),
    ("/admin/entitlements", "Entitlements"),
    ("/admin/tokens", "Tokens"),
    ("/admin/webhooks", "Webhooks"),
    ("/admin/events", "Event log"),
    ("/admin/keys", "Keys"),
];
const PAGE_SIZE: i64 = 25;
const AREA: Area = Area::Admin;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/admin", get(overview))
        .route("/admin/licenses", get(licenses_page).post(create_license))
        .route("/admin/licenses/{id}", get(license_page))
        .route("/admin/licenses/{id}/check-out", post(check_out))
        .route("/admin/licenses/{id}/owner", post(change_owner))
        .route("/admin/licenses/{id}/{action}", get(confirm).post(license_action))
        .route("/admin/machines/{id}/deactivate", post(deactivate_machine))
        .route("/admin/products", get(products_page).post(create_product))
        .route("/admin/policies", get(policies_page).post(create_policy))
        .route("/admin/users", get(users_page).post(create_user))
        .route("/admin/users/{id}/{action}", post(user_action))
        .route("/admin/entitlements", get(entitlements_page).post(create_entitlement))
        .route("/admin/tokens", get(tokens_page).post(create_token))
        .route("/admin/tokens/{id}/revoke", post(revoke_token))
        .route("/admin/webhooks", get(webhooks_page))
        .route("/admin/webhooks/{id}/retry", post(retry_delivery))
        .route("/admin/events", get(events_page))
        .route("/admin/keys", get(keys_page))
}

type Q = Query<HashMap<String, String>>;

fn render(s: &Signed, title: &str, q: &HashMap<String, String>, body: &str) -> Response {
    Html(html::page(AREA.base(), title, NAV, Some((&s.user.email, s.csrf())), q.get("done").map(String::as_str), body))
        .into_response()
}

fn page_number(q: &HashMap<String, String>) -> i64 {
    q.get("page").and_then(|p| p.parse().ok()).filter(|n: &i64| *n >= 1).unwrap_or(1)
}

/// Runs a signed-in POST: the session, and the form after its CSRF check.
macro_rules! posted {
    ($state:expr, $headers:expr, $body:expr) => {{
        let s = match signed(&$state, &$headers, AREA).await {
            Ok(s) => s,
            Err(r) => return r,
        };
        let form = form_fields(std::str::from_utf8(&$body).unwrap_or(""));
        if !csrf_ok(&s, &form) {
            return forbidden(AREA);
        }
        (s, form)
    }};
}

fn status_filter(status: &str, now: i64) -> Option<(String, [i64; 3])> {
    let (soon, stale) = crate::domain::license::status_thresholds(now);
    (!status.is_empty()).then(|| (status.to_ascii_uppercase(), [now, soon, stale]))
}

async fn count_licenses(state: &AppState, account: Uuid, status: &str) -> Result<i64, Error> {
    let f = LicenseFilter { status: status_filter(status, time::now_ms()), ..Default::default() };
    Ok(licenses::list(&state.db, account, &f, Page { size: 1, number: 1 }).await?.total)
}

async fn overview(State(state): State<AppState>, headers: HeaderMap, Query(q): Q) -> Response {
    let s = signed_in!(state, headers, AREA);
    let account = s.account.id;
    let mut counts = Vec::new();
    for (label, status) in [
        ("All licenses", ""),
        ("Active", "ACTIVE"),
        ("Expiring soon", "EXPIRING"),
        ("Expired", "EXPIRED"),
        ("Suspended", "SUSPENDED"),
        ("Inactive", "INACTIVE"),
    ] {
        let n = tri!(AREA, count_licenses(&state, account, status).await);
        let href =
            if status.is_empty() { "/admin/licenses".to_string() } else { format!("/admin/licenses?status={status}") };
        counts.push(format!("<li><a href=\"{}\"><strong>{n}</strong> {}</a></li>", esc(&href), esc(label)));
    }
    let machines =
        tri!(AREA, machines::list(&state.db, account, &Default::default(), Page { size: 1, number: 1 }).await).total;
    counts.push(format!("<li><strong>{machines}</strong> machines</li>"));
    let now = time::now_ms();
    let activity = tri!(AREA, store::console::activity(&state.db, account, now, 7).await);
    let rows: Vec<Vec<String>> = activity
        .iter()
        .map(|(day, activations, validated)| vec![esc(day), activations.to_string(), validated.to_string()])
        .collect();
    let f = LicenseFilter { status: status_filter("EXPIRING", now), ..Default::default() };
    let expiring = tri!(AREA, licenses::list(&state.db, account, &f, Page { size: 10, number: 1 }).await);
    let body = format!(
        "<ul class=\"counts\">{}</ul>{}{}",
        counts.join(""),
        html::table("The last 7 days", &["Day", "Machines activated", "Licenses last validated that day"], &rows),
        license_table("Expiring soon", &expiring.rows, now)
    );
    render(&s, &format!("{} — overview", s.account.name), &q, &body)
}

fn license_table(caption: &str, rows: &[License], now: i64) -> String {
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

fn shorten(key: &str) -> String {
    if key.chars().count() > 40 {
        format!("{}…", key.chars().take(40).collect::<String>())
    } else {
        key.to_string()
    }
}

async fn licenses_page(State(state): State<AppState>, headers: HeaderMap, Query(q): Q) -> Response {
    let s = signed_in!(state, headers, AREA);
    let account = s.account.id;
    let now = time::now_ms();
    let get = |k: &str| q.get(k).map(|v| v.trim().to_string()).unwrap_or_default();
    let (search, status, product, policy) = (get("q"), get("status"), get("product"), get("policy"));
    let number = page_number(&q);
    let f = LicenseFilter {
        product: Uuid::parse_str(&product).ok(),
        policy: Uuid::parse_str(&policy).ok(),
        status: status_filter(&status, now),
        search: (!search.is_empty()).then(|| search.clone()),
        ..Default::default()
    };
    let listing = tri!(AREA, licenses::list(&state.db, account, &f, Page { size: PAGE_SIZE, number }).await);
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
    let query =
        serde_urlencoded::to_string([("q", &search), ("status", &status), ("product", &product), ("policy", &policy)])
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
        html::pager("/admin/licenses", &query, number, PAGE_SIZE, listing.total)
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
        ("Entitlements", esc(&entitlements.iter().map(|e| e.code.as_str()).collect::<Vec<_>>().join(", "))),
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
    let body = format!(
        "{facts}<div class=\"actions\">{actions}</div>{}<h2>Owner</h2>{owner_form}",
        html::table("Machines", &["Fingerprint", "Name", "Activated", "Last heartbeat", ""], &machine_rows)
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
    let (s, _) = posted!(state, headers, body);
    let (db, p, account) = (&state.db, &s.principal, s.account.id);
    let l = match action.as_str() {
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
    super::license_file_download(&state, &s, &id, AREA).await
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

async fn products_page(State(state): State<AppState>, headers: HeaderMap, Query(q): Q) -> Response {
    let s = signed_in!(state, headers, AREA);
    let number = page_number(&q);
    let listing = tri!(AREA, products::list(&state.db, s.account.id, None, Page { size: PAGE_SIZE, number }).await);
    let rows: Vec<Vec<String>> = listing
        .rows
        .iter()
        .map(|p| {
            vec![
                link(&format!("/admin/licenses?product={}", p.id), &p.name),
                format!("<code>{}</code>", p.id),
                esc(p.code.as_deref().unwrap_or("")),
            ]
        })
        .collect();
    let body = format!(
        "{}{}<h2>New product</h2>{}",
        html::table("Products", &["Name", "Id", "Code"], &rows),
        html::pager("/admin/products", "", number, PAGE_SIZE, listing.total),
        html::form(
            "/admin/products",
            s.csrf(),
            &format!(
                "{}{}",
                html::input("name", "Name", "text", "", true),
                html::input("code", "Code (optional)", "text", "", false)
            ),
            "Create product"
        )
    );
    render(&s, "Products", &q, &body)
}

async fn create_product(State(state): State<AppState>, headers: HeaderMap, body: Bytes) -> Response {
    let (s, form) = posted!(state, headers, body);
    let name = form.get("name").map(|n| n.trim().to_string()).unwrap_or_default();
    if name.is_empty() {
        return error_page(AREA, Error::invalid_attr("name", "cannot be blank", "NAME_BLANK"));
    }
    let now = time::now_ms();
    let p = Product {
        id: Uuid::new_v4(),
        account_id: s.account.id,
        name,
        code: form.get("code").map(|c| c.trim().to_string()).filter(|c| !c.is_empty()),
        distribution_strategy: Some("LICENSED".into()),
        url: None,
        platforms: None,
        metadata: empty_metadata(),
        created_at: now,
        updated_at: now,
    };
    if let Err(e) = products::insert(&state.db, &p, &[Raised::product("product.created", &p)]).await {
        return error_page(AREA, crate::error::taken(e, "code", "CODE_TAKEN"));
    }
    done("/admin/products", "Product created.")
}

async fn policies_page(State(state): State<AppState>, headers: HeaderMap, Query(q): Q) -> Response {
    let s = signed_in!(state, headers, AREA);
    let number = page_number(&q);
    let listing = tri!(AREA, policies::list(&state.db, s.account.id, None, Page { size: PAGE_SIZE, number }).await);
    let all_products =
        tri!(AREA, products::list(&state.db, s.account.id, None, Page { size: 100, number: 1 }).await).rows;
    let rows: Vec<Vec<String>> = listing
        .rows
        .iter()
        .map(|p| {
            let r = &p.rules.0;
            let product = all_products.iter().find(|x| x.id == p.product_id).map_or("?", |x| x.name.as_str());
            vec![
                link(&format!("/admin/licenses?policy={}", p.id), &p.name),
                esc(product),
                r.max_machines.map_or("unlimited".into(), |m| m.to_string()),
                r.duration.map_or("perpetual".into(), |d| format!("{} days", d / 86_400)),
                if r.floating { "floating".into() } else { "node-locked".into() },
                esc(r.authentication_strategy.as_str()),
            ]
        })
        .collect();
    let create = if all_products.is_empty() {
        "<p>Create a product first: a policy belongs to one.</p>".to_string()
    } else {
        let options: Vec<(String, String)> = all_products.iter().map(|p| (p.id.to_string(), p.name.clone())).collect();
        format!(
            "<h2>New policy</h2>{}",
            html::form(
                "/admin/policies",
                s.csrf(),
                &format!(
                    "{}{}{}{}{}{}{}",
                    html::select("product", "Product", &options, ""),
                    html::input("name", "Name", "text", "", true),
                    html::input("max_machines", "Machines per license (empty: unlimited)", "number", "", false),
                    html::input("duration_days", "Duration in days (empty: perpetual)", "number", "", false),
                    html::checkbox("floating", "Floating: a license may move between machines up to its limit", true),
                    html::checkbox(
                        "license_auth",
                        "Products may authenticate with the license key (LICENSE authentication)",
                        true
                    ),
                    html::checkbox(
                        "unprotected",
                        "Customers may activate and deactivate their own machines (an unprotected policy)",
                        !s.account.protected
                    ),
                ),
                "Create policy"
            )
        )
    };
    let body = format!(
        "{}{}{create}",
        html::table("Policies", &["Name", "Product", "Machines", "Duration", "Kind", "Authentication"], &rows),
        html::pager("/admin/policies", "", number, PAGE_SIZE, listing.total)
    );
    render(&s, "Policies", &q, &body)
}

async fn create_policy(State(state): State<AppState>, headers: HeaderMap, body: Bytes) -> Response {
    let (s, form) = posted!(state, headers, body);
    let account = s.account.id;
    let Some(product) = form.get("product").and_then(|p| Uuid::parse_str(p).ok()) else {
        return error_page(AREA, Error::invalid_attr("product", "must be chosen", "PRODUCT_BLANK"));
    };
    if tri!(AREA, products::find(&state.db, account, &product.to_string()).await).is_none() {
        return error_page(AREA, Error::not_found("product", product.to_string()));
    }
    let name = form.get("name").map(|n| n.trim().to_string()).unwrap_or_default();
    if name.is_empty() {
        return error_page(AREA, Error::invalid_attr("name", "cannot be blank", "NAME_BLANK"));
    }
    let number = |k: &str| -> Result<Option<i64>, Error> {
        match form.get(k).map(|v| v.trim()).filter(|v| !v.is_empty()) {
            None => Ok(None),
            Some(v) => v
                .parse::<i64>()
                .map(Some)
                .map_err(|_| Error::invalid_attr(k, "must be a whole number", "NUMBER_INVALID")),
        }
    };
    let mut rules = PolicyRules {
        protected: !form.contains_key("unprotected"),
        floating: form.contains_key("floating"),
        max_machines: tri!(AREA, number("max_machines")),
        duration: tri!(AREA, number("duration_days")).map(|d| d * 86_400),
        ..Default::default()
    };
    if form.contains_key("license_auth") {
        rules.authentication_strategy = crate::model::AuthenticationStrategy::License;
    }
    tri!(AREA, rules.normalize_and_validate());
    let now = time::now_ms();
    let p = Policy {
        id: Uuid::new_v4(),
        account_id: account,
        product_id: product,
        name,
        rules: Json(rules),
        metadata: empty_metadata(),
        created_at: now,
        updated_at: now,
    };
    tri!(AREA, policies::insert(&state.db, &p, &[Raised::policy("policy.created", &p)]).await);
    done("/admin/policies", "Policy created.")
}

async fn users_page(State(state): State<AppState>, headers: HeaderMap, Query(q): Q) -> Response {
    let s = signed_in!(state, headers, AREA);
    let number = page_number(&q);
    let listing =
        tri!(AREA, users::list(&state.db, s.account.id, &Default::default(), Page { size: PAGE_SIZE, number }).await);
    let rows: Vec<Vec<String>> = listing
        .rows
        .iter()
        .map(|u| {
            let action = if u.banned_at.is_some() {
                html::button(&format!("/admin/users/{}/unban", u.id), s.csrf(), "Unban", "")
            } else if u.id == s.user.id {
                String::new()
            } else {
                html::button(&format!("/admin/users/{}/ban", u.id), s.csrf(), "Ban", "danger")
            };
            vec![
                esc(&u.email),
                esc(&u.role),
                if u.banned_at.is_some() { "banned".into() } else { "active".into() },
                link(&format!("/admin/licenses?q={}", u.email), "Licenses"),
                action,
            ]
        })
        .collect();
    let body = format!(
        "{}{}<h2>New user</h2>{}",
        html::table("Users", &["Email", "Role", "State", "", ""], &rows),
        html::pager("/admin/users", "", number, PAGE_SIZE, listing.total),
        html::form(
            "/admin/users",
            s.csrf(),
            &format!(
                "{}{}",
                html::input("email", "Email", "email", "", true),
                html::input(
                    "password",
                    "Password (at least 8 characters; they can change it in the portal)",
                    "password",
                    "",
                    true
                )
            ),
            "Create user"
        )
    );
    render(&s, "Users", &q, &body)
}

async fn create_user(State(state): State<AppState>, headers: HeaderMap, body: Bytes) -> Response {
    let (s, form) = posted!(state, headers, body);
    let email = form.get("email").map(|e| e.trim().to_lowercase()).unwrap_or_default();
    if !crate::domain::account::valid_email(&email) {
        return error_page(AREA, Error::invalid_attr("email", "must be a valid email", "EMAIL_INVALID"));
    }
    let password = form.get("password").cloned().unwrap_or_default();
    tri!(AREA, service::users::check_password(&password, "/data/attributes/password"));
    let hash = tri!(AREA, crate::crypto::secrets::hash_password(password).await.map_err(Error::Internal));
    let now = time::now_ms();
    let u = User {
        id: Uuid::new_v4(),
        account_id: s.account.id,
        email,
        password_hash: Some(hash),
        first_name: None,
        last_name: None,
        role: "user".into(),
        group_id: None,
        banned_at: None,
        metadata: empty_metadata(),
        created_at: now,
        updated_at: now,
    };
    if let Err(e) = users::insert(&state.db, &u, &[Raised::user("user.created", &u)]).await {
        return error_page(AREA, crate::error::taken(e, "email", "EMAIL_TAKEN"));
    }
    done("/admin/users", "User created.")
}

async fn user_action(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path((id, action)): Path<(String, String)>,
    body: Bytes,
) -> Response {
    let (s, _) = posted!(state, headers, body);
    let Ok(uuid) = Uuid::parse_str(&id) else { return error_page(AREA, Error::not_found("user", id)) };
    let Some(before) = tri!(AREA, users::find(&state.db, s.account.id, uuid).await) else {
        return error_page(AREA, Error::not_found("user", id));
    };
    let mut after = before.clone();
    after.banned_at = match action.as_str() {
        "ban" => Some(time::now_ms()),
        "unban" => None,
        other => return error_page(AREA, Error::not_found("action", other.to_string())),
    };
    after.updated_at = time::now_ms();
    tri!(AREA, service::users::save(&state.db, &s.principal, &before, &after).await);
    done("/admin/users", if action == "ban" { "User banned." } else { "User unbanned." })
}

async fn entitlements_page(State(state): State<AppState>, headers: HeaderMap, Query(q): Q) -> Response {
    let s = signed_in!(state, headers, AREA);
    let number = page_number(&q);
    let listing = tri!(
        AREA,
        store::entitlements::list(
            &state.db,
            s.account.id,
            store::entitlements::Scope::Account,
            Page { size: PAGE_SIZE, number }
        )
        .await
    );
    let rows: Vec<Vec<String>> =
        listing.rows.iter().map(|e| vec![format!("<code>{}</code>", esc(&e.code)), esc(&e.name)]).collect();
    let body = format!(
        "<p>Entitlements are features a license grants (a product checks them with validate-key's <code>scope.entitlements</code>). Attach them to policies or licenses through the API.</p>{}{}<h2>New entitlement</h2>{}",
        html::table("Entitlements", &["Code", "Name"], &rows),
        html::pager("/admin/entitlements", "", number, PAGE_SIZE, listing.total),
        html::form(
            "/admin/entitlements",
            s.csrf(),
            &format!("{}{}", html::input("code", "Code (e.g. EXPORT_PDF)", "text", "", true), html::input("name", "Name", "text", "", true)),
            "Create entitlement"
        )
    );
    render(&s, "Entitlements", &q, &body)
}

async fn create_entitlement(State(state): State<AppState>, headers: HeaderMap, body: Bytes) -> Response {
    let (s, form) = posted!(state, headers, body);
    let field = |k: &str| form.get(k).map(|v| v.trim().to_string()).unwrap_or_default();
    let (code, name) = (field("code"), field("name"));
    if code.is_empty() {
        return error_page(AREA, Error::invalid_attr("code", "cannot be blank", "CODE_BLANK"));
    }
    let now = time::now_ms();
    let e = crate::model::Entitlement {
        id: Uuid::new_v4(),
        account_id: s.account.id,
        name: if name.is_empty() { code.clone() } else { name },
        code,
        metadata: empty_metadata(),
        created_at: now,
        updated_at: now,
    };
    if let Err(err) =
        store::entitlements::insert(&state.db, &e, &[Raised::entitlement("entitlement.created", &e)]).await
    {
        return error_page(AREA, crate::error::taken(err, "code", "CODE_TAKEN"));
    }
    done("/admin/entitlements", "Entitlement created.")
}

async fn tokens_page(State(state): State<AppState>, headers: HeaderMap, Query(q): Q) -> Response {
    let s = signed_in!(state, headers, AREA);
    let number = page_number(&q);
    let listing =
        tri!(AREA, store::tokens::list(&state.db, s.account.id, None, None, Page { size: PAGE_SIZE, number }).await);
    let all_products =
        tri!(AREA, products::list(&state.db, s.account.id, None, Page { size: 100, number: 1 }).await).rows;
    let rows: Vec<Vec<String>> = listing
        .rows
        .iter()
        .map(|t| {
            let bearer = match t.bearer_type.as_str() {
                "product" => all_products
                    .iter()
                    .find(|p| p.id == t.bearer_id)
                    .map_or("product".into(), |p| format!("product {}", p.name)),
                other => format!("{other} {}", t.bearer_id),
            };
            vec![
                esc(t.name.as_deref().unwrap_or("")),
                esc(&t.kind),
                esc(&bearer),
                esc(&time::iso_opt(t.expiry).unwrap_or_else(|| "never".into())),
                html::button(&format!("/admin/tokens/{}/revoke", t.id), s.csrf(), "Revoke", "danger"),
            ]
        })
        .collect();
    let mut bearers = vec![("me".to_string(), format!("Me ({}), an admin token for 90 days", s.user.email))];
    bearers.extend(all_products.iter().map(|p| (p.id.to_string(), format!("Product {} (for your backend)", p.name))));
    let body = format!(
        "{}{}<h2>New token</h2>{}",
        html::table("Tokens", &["Name", "Kind", "Bearer", "Expires", ""], &rows),
        html::pager("/admin/tokens", "", number, PAGE_SIZE, listing.total),
        html::form(
            "/admin/tokens",
            s.csrf(),
            &format!(
                "{}{}",
                html::select("bearer", "For", &bearers, "me"),
                html::input("name", "Name", "text", "", false)
            ),
            "Create token"
        )
    );
    render(&s, "Tokens", &q, &body)
}

/// `POST /admin/tokens`: the secret is shown on this one page and never again (only its digest
/// is stored).
async fn create_token(State(state): State<AppState>, headers: HeaderMap, body: Bytes) -> Response {
    let (s, form) = posted!(state, headers, body);
    let name = form.get("name").map(|n| n.trim().to_string()).filter(|n| !n.is_empty());
    let bearer = form.get("bearer").map(String::as_str).unwrap_or("me");
    let now = time::now_ms();
    let (bearer_type, bearer_id, role, expiry) = if bearer == "me" {
        ("user", s.user.id, s.user.role.clone(), crate::auth::default_token_expiry("user", &s.user.role, now))
    } else {
        let Some(product) = tri!(AREA, products::find(&state.db, s.account.id, bearer).await) else {
            return error_page(AREA, Error::not_found("product", bearer.to_string()));
        };
        ("product", product.id, "product".to_string(), None)
    };
    let opts = crate::auth::NewToken { name, expiry, ..Default::default() };
    let (token, raw) =
        tri!(AREA, crate::auth::issue_token(&state.db, s.account.id, bearer_type, bearer_id, &role, opts).await);
    let body = format!(
        "<p>Copy the token now: it is shown only this once.</p>{}<p>{}</p>",
        html::facts(&[
            ("Token", format!("<code class=\"key\">{}</code>", esc(&raw))),
            ("Kind", esc(&token.kind)),
            ("Expires", esc(&time::iso_opt(token.expiry).unwrap_or_else(|| "never".into()))),
        ]),
        link("/admin/tokens", "Back to tokens")
    );
    render(&s, "Token created", &HashMap::new(), &body)
}

async fn revoke_token(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Bytes,
) -> Response {
    let (s, _) = posted!(state, headers, body);
    let Ok(uuid) = Uuid::parse_str(&id) else { return error_page(AREA, Error::not_found("token", id)) };
    let Some(t) = tri!(AREA, store::tokens::find(&state.db, s.account.id, uuid).await) else {
        return error_page(AREA, Error::not_found("token", id));
    };
    tri!(AREA, store::tokens::delete(&state.db, s.account.id, t.id, &[Raised::token("token.revoked", &t)]).await);
    done("/admin/tokens", "Token revoked.")
}

async fn webhooks_page(State(state): State<AppState>, headers: HeaderMap, Query(q): Q) -> Response {
    let s = signed_in!(state, headers, AREA);
    let account = s.account.id;
    let endpoints =
        tri!(AREA, store::webhooks::list_endpoints(&state.db, account, None, Page { size: 100, number: 1 }).await);
    let rows: Vec<Vec<String>> = endpoints
        .rows
        .iter()
        .map(|e| vec![esc(&e.url), esc(&e.subscriptions.0.join(", ")), esc(&e.signature_algorithm)])
        .collect();
    let number = page_number(&q);
    let deliveries = tri!(
        AREA,
        store::webhooks::list_deliveries(&state.db, account, &[], None, Page { size: PAGE_SIZE, number }).await
    );
    let drows: Vec<Vec<String>> = deliveries
        .rows
        .iter()
        .map(|d| {
            vec![
                esc(&d.event),
                esc(&d.endpoint_url),
                esc(&d.status),
                d.last_response_code.map_or(esc(d.last_response_body.as_deref().unwrap_or("")), |c| c.to_string()),
                esc(&time::iso(d.created_at)),
                html::button(&format!("/admin/webhooks/{}/retry", d.id), s.csrf(), "Retry", ""),
            ]
        })
        .collect();
    let body = format!(
        "<p>Endpoints are managed through the API (<code>/v1/accounts/…/webhook-endpoints</code>); see docs/webhooks.md.</p>{}{}{}",
        html::table("Endpoints", &["URL", "Subscriptions", "Signature"], &rows),
        html::table("Deliveries", &["Event", "Endpoint", "Status", "Last answer", "Created", ""], &drows),
        html::pager("/admin/webhooks", "", number, PAGE_SIZE, deliveries.total)
    );
    render(&s, "Webhooks", &q, &body)
}

async fn retry_delivery(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Bytes,
) -> Response {
    let (s, _) = posted!(state, headers, body);
    let Ok(uuid) = Uuid::parse_str(&id) else { return error_page(AREA, Error::not_found("webhook event", id)) };
    let Some(d) = tri!(AREA, store::webhooks::find_delivery(&state.db, s.account.id, uuid).await) else {
        return error_page(AREA, Error::not_found("webhook event", id));
    };
    tri!(AREA, store::webhooks::insert_retry(&state.db, &d, Uuid::new_v4(), time::now_ms()).await);
    done("/admin/webhooks", "Delivery queued again.")
}

async fn events_page(State(state): State<AppState>, headers: HeaderMap, Query(q): Q) -> Response {
    let s = signed_in!(state, headers, AREA);
    let number = page_number(&q);
    let event = q.get("event").map(|e| e.trim().to_string()).unwrap_or_default();
    let f = store::events::LogFilter {
        events: if event.is_empty() { vec![] } else { vec![event.clone()] },
        ..Default::default()
    };
    let logs =
        tri!(AREA, store::events::list_logs(&state.db, s.account.id, &f, Page { size: PAGE_SIZE, number }).await);
    let rows: Vec<Vec<String>> = logs
        .rows
        .iter()
        .map(|l| {
            let resource = if l.resource_type == "licenses" {
                link(&format!("/admin/licenses/{}", l.resource_id), &format!("{} {}", l.resource_type, l.resource_id))
            } else {
                esc(&format!("{} {}", l.resource_type, l.resource_id))
            };
            vec![
                esc(&time::iso(l.created_at)),
                esc(&l.event),
                resource,
                esc(&l.whodunnit_type.clone().unwrap_or_default()),
                esc(&metadata_text(&l.metadata.0)),
            ]
        })
        .collect();
    let query = serde_urlencoded::to_string([("event", &event)]).unwrap_or_default();
    let body = format!(
        "<form class=\"filters\" method=\"get\" action=\"/admin/events\" role=\"search\">{}<p><button type=\"submit\">Filter</button></p></form>{}{}",
        html::input("event", "Event (e.g. license.created)", "search", &event, false),
        html::table("Events", &["When", "Event", "Resource", "By", "Details"], &rows),
        html::pager("/admin/events", &query, number, PAGE_SIZE, logs.total)
    );
    render(&s, "Event log", &q, &body)
}

fn metadata_text(v: &Value) -> String {
    match v.as_object() {
        Some(m) if !m.is_empty() => v.to_string(),
        _ => String::new(),
    }
}

async fn keys_page(State(state): State<AppState>, headers: HeaderMap, Query(q): Q) -> Response {
    let s = signed_in!(state, headers, AREA);
    let a = &s.account;
    let body = format!(
        "<p>Products verify signed keys, license files and responses with these public keys (see docs/offline.md). Account id: <code>{}</code></p>{}",
        a.id,
        html::facts(&[
            ("Ed25519 (hex)", format!("<code class=\"key\">{}</code>", esc(&a.ed25519_public))),
            ("RSA (PEM)", format!("<pre>{}</pre>", esc(&a.rsa_public))),
            ("ECDSA P-256 (PEM)", format!("<pre>{}</pre>", esc(a.ecdsa_public.as_deref().unwrap_or("not generated yet")))),
        ])
    );
    render(&s, "Account keys", &q, &body)
}
