//! The catalogue: products, policies, entitlements and groups, created through the same
//! services as the API's.

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use axum::response::Response;
use axum::routing::get;
use axum::Router;
use uuid::Uuid;

use super::{field, html, number, page_number, render, AREA, PAGE_SIZE, Q};
use crate::console::html::{esc, link};
use crate::console::{done, error_page};
use crate::error::Error;
use crate::model::{Entitlement, Group, Page, Policy, Product};
use crate::service::catalog;
use crate::state::AppState;
use crate::store::{self, policies, products};
use crate::time;

pub(super) fn routes() -> Router<AppState> {
    Router::new()
        .route("/admin/products", get(products_page).post(create_product))
        .route("/admin/policies", get(policies_page).post(create_policy))
        .route("/admin/policies/{id}", get(policy_page))
        .route("/admin/entitlements", get(entitlements_page).post(create_entitlement))
        .route("/admin/groups", get(groups_page).post(create_group))
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
    let mut p = Product::new(s.account.id, field(&form, "name"), time::now_ms());
    p.code = Some(field(&form, "code")).filter(|c| !c.is_empty());
    tri!(AREA, catalog::create_product(&state.db, &p).await);
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
                link(&format!("/admin/policies/{}", p.id), &p.name),
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

/// `GET /admin/policies/{id}`: every rule of the policy, with what it means.
async fn policy_page(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Query(q): Q,
) -> Response {
    let s = signed_in!(state, headers, AREA);
    let uuid = tri!(AREA, super::uuid_of("policy", &id));
    let Some(p) = tri!(AREA, policies::find(&state.db, s.account.id, uuid).await) else {
        return error_page(AREA, Error::not_found("policy", id));
    };
    let rules = serde_json::to_value(&p.rules.0).unwrap_or_default();
    let rows: Vec<Vec<String>> = super::policy_rules::EXPLAINED
        .iter()
        .map(|(name, meaning)| {
            let value = match rules.get(*name) {
                None | Some(serde_json::Value::Null) => "—".to_string(),
                Some(serde_json::Value::String(v)) => v.clone(),
                Some(v) => v.to_string(),
            };
            vec![format!("<code>{}</code>", esc(name)), format!("<code>{}</code>", esc(&value)), esc(meaning)]
        })
        .collect();
    let body = format!(
        "<p>{} · <code>{}</code></p>{}<p>Rules change through the API (<code>PATCH /v1/accounts/…/policies/{}</code>); <code>scheme</code>, <code>encrypted</code> and <code>usePool</code> are set at creation only.</p>",
        link(&format!("/admin/licenses?policy={}", p.id), "Its licenses"),
        p.id,
        html::table("Rules", &["Rule", "Value", "What it does"], &rows),
        p.id
    );
    render(&s, &p.name, &q, &body)
}

async fn create_policy(State(state): State<AppState>, headers: HeaderMap, body: Bytes) -> Response {
    let (s, form) = posted!(state, headers, body);
    let Some(product) = form.get("product").and_then(|p| Uuid::parse_str(p).ok()) else {
        return error_page(AREA, Error::invalid_rel("product", "must be chosen", "PRODUCT_BLANK"));
    };
    let mut p =
        Policy::new(s.account.id, product, field(&form, "name"), !form.contains_key("unprotected"), time::now_ms());
    let rules = &mut p.rules.0;
    rules.floating = form.contains_key("floating");
    rules.max_machines = tri!(AREA, number(&form, "max_machines"));
    rules.duration = tri!(AREA, number(&form, "duration_days")).map(|d| d.saturating_mul(86_400));
    if form.contains_key("license_auth") {
        rules.authentication_strategy = crate::model::AuthenticationStrategy::License;
    }
    tri!(AREA, catalog::create_policy(&state.db, p).await);
    done("/admin/policies", "Policy created.")
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
        "<p>Entitlements are features a license grants (a product checks them with validate-key's <code>scope.entitlements</code>). Attach them to a license on its page, or to policies through the API.</p>{}{}<h2>New entitlement</h2>{}",
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
    let (code, name) = (field(&form, "code"), field(&form, "name"));
    let name = if name.is_empty() { code.clone() } else { name };
    let e = Entitlement::new(s.account.id, code, name, time::now_ms());
    tri!(AREA, catalog::create_entitlement(&state.db, &e).await);
    done("/admin/entitlements", "Entitlement created.")
}

async fn groups_page(State(state): State<AppState>, headers: HeaderMap, Query(q): Q) -> Response {
    let s = signed_in!(state, headers, AREA);
    let number = page_number(&q);
    let listing =
        tri!(AREA, store::groups::list(&state.db, s.account.id, None, Page { size: PAGE_SIZE, number }).await);
    let cap = |c: Option<i64>| c.map_or("no limit".to_string(), |n| n.to_string());
    let rows: Vec<Vec<String>> = listing
        .rows
        .iter()
        .map(|g| {
            vec![
                link(&format!("/admin/licenses?group={}", g.id), &g.name),
                format!("<code>{}</code>", g.id),
                cap(g.max_users),
                cap(g.max_licenses),
                cap(g.max_machines),
            ]
        })
        .collect();
    let body = format!(
        "<p>A group gathers users, licenses and machines (a customer organisation, say), with optional caps on each.</p>{}{}<h2>New group</h2>{}",
        html::table("Groups", &["Name", "Id", "Users at most", "Licenses at most", "Machines at most"], &rows),
        html::pager("/admin/groups", "", number, PAGE_SIZE, listing.total),
        html::form(
            "/admin/groups",
            s.csrf(),
            &format!(
                "{}{}{}{}",
                html::input("name", "Name", "text", "", true),
                html::input("max_users", "Users at most (empty: no limit)", "number", "", false),
                html::input("max_licenses", "Licenses at most (empty: no limit)", "number", "", false),
                html::input("max_machines", "Machines at most (empty: no limit)", "number", "", false),
            ),
            "Create group"
        )
    );
    render(&s, "Groups", &q, &body)
}

async fn create_group(State(state): State<AppState>, headers: HeaderMap, body: Bytes) -> Response {
    let (s, form) = posted!(state, headers, body);
    let mut g = Group::new(s.account.id, field(&form, "name"), time::now_ms());
    g.max_users = tri!(AREA, number(&form, "max_users"));
    g.max_licenses = tri!(AREA, number(&form, "max_licenses"));
    g.max_machines = tri!(AREA, number(&form, "max_machines"));
    tri!(AREA, catalog::create_group(&state.db, &g).await);
    done("/admin/groups", "Group created.")
}
