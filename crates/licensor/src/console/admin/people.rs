//! People and credentials: users (create, ban, reset a password) and tokens (created and shown
//! once, revoked).

use std::collections::HashMap;

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use axum::response::Response;
use axum::routing::get;
use axum::routing::post;
use axum::Router;
use uuid::Uuid;

use super::{field, html, page_number, render, uuid_of, AREA, PAGE_SIZE, Q};
use crate::console::html::{esc, link};
use crate::console::{done, error_page};
use crate::error::Error;
use crate::events::Raised;
use crate::model::{Page, User};
use crate::service;
use crate::state::AppState;
use crate::store::{self, products, users};
use crate::time;

pub(super) fn routes() -> Router<AppState> {
    Router::new()
        .route("/admin/users", get(users_page).post(create_user))
        .route("/admin/users/{id}/password", post(reset_password))
        .route("/admin/users/{id}/{action}", post(user_action))
        .route("/admin/tokens", get(tokens_page).post(create_token))
        .route("/admin/tokens/{id}/revoke", post(revoke_token))
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
            let password = html::form(
                &format!("/admin/users/{}/password", u.id),
                s.csrf(),
                &html::input("password", &format!("New password for {}", u.email), "password", "", true),
                "Set password",
            );
            vec![
                esc(&u.email),
                esc(&u.role),
                if u.banned_at.is_some() { "banned".into() } else { "active".into() },
                link(&format!("/admin/licenses?q={}", u.email), "Licenses"),
                action,
                password,
            ]
        })
        .collect();
    let body = format!(
        "{}{}<h2>New user</h2>{}",
        html::table("Users", &["Email", "Role", "State", "", "", "Reset password"], &rows),
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
    let mut u = User::new(s.account.id, field(&form, "email").to_lowercase(), time::now_ms());
    let password = form.get("password").cloned().unwrap_or_default();
    u.password_hash = Some(tri!(AREA, service::users::password_hash(password).await));
    tri!(AREA, service::users::create(&state.db, &u).await);
    done("/admin/users", "User created.")
}

/// `POST /admin/users/{id}/password`: an administrator sets a new password (a customer who lost
/// theirs); the user's tokens are revoked.
async fn reset_password(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Bytes,
) -> Response {
    let (s, form) = posted!(state, headers, body);
    let u = tri!(AREA, find_user(&state, s.account.id, &id).await);
    let password = form.get("password").cloned().unwrap_or_default();
    tri!(AREA, service::users::reset_password(&state.db, &s.principal, &u, password).await);
    done("/admin/users", &format!("Password of {} changed; their tokens are revoked.", u.email))
}

async fn find_user(state: &AppState, account: Uuid, id: &str) -> Result<User, Error> {
    users::find(&state.db, account, uuid_of("user", id)?).await?.ok_or_else(|| Error::not_found("user", id))
}

async fn user_action(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path((id, action)): Path<(String, String)>,
    body: Bytes,
) -> Response {
    let (s, _) = posted!(state, headers, body);
    let before = tri!(AREA, find_user(&state, s.account.id, &id).await);
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
