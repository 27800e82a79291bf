//! `GET|PATCH /v1/accounts/{account}`, `GET /me`, and `GET /v1/ping`.

use axum::response::Response;
use base64::Engine;
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::document::{self, Resource};
use super::error::ApiResult;
use super::extract::{parse_data, Body, Ctx, NoRels};
use super::{products, users};
use crate::auth::Bearer;
use crate::error::Error;
use crate::model::Account;
use crate::store::accounts;
use crate::time;

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct AccountAttributes {
    name: String,
    slug: String,
    api_version: &'static str,
    protected: bool,
    created: String,
    updated: String,
}

/// The account with its public keys in `meta`, in Keygen's encodings: RSA as base64 of the PEM,
/// Ed25519 as base64 of the *hex* string (SDKs are configured with the hex form).
pub fn render(a: &Account) -> serde_json::Value {
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s.as_bytes());
    let resource = Resource::new(
        a.id,
        "accounts",
        a.id,
        AccountAttributes {
            name: a.name.clone(),
            slug: a.slug.clone(),
            api_version: "1.8",
            protected: a.protected,
            created: time::iso(a.created_at),
            updated: time::iso(a.updated_at),
        },
    );
    let mut resource = resource;
    resource.links.path = format!("/v1/accounts/{}", a.id);
    json!({
        "data": resource,
        "meta": {
            "publicKey": b64(&a.rsa_public),
            "keys": {
                "ed25519": b64(&a.ed25519_public),
                "rsa2048": b64(&a.rsa_public),
                "ecdsa": a.ecdsa_public.as_deref().map(b64),
            },
        },
    })
}

pub async fn ping() -> Response {
    document::respond(axum::http::StatusCode::OK, &json!({ "data": null, "meta": { "message": "pong" } }))
}

/// Any authenticated bearer of the account may read it but a license (no `account.read` by
/// default, as in Keygen): offline clients ship the public keys rather than fetch them.
pub async fn show(ctx: Ctx) -> ApiResult<Response> {
    ctx.principal()?.reads_catalog()?;
    Ok(document::respond(axum::http::StatusCode::OK, &render(&ctx.account)))
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct UpdateAttributes {
    name: Option<String>,
    slug: Option<String>,
    protected: Option<bool>,
}

pub async fn update(ctx: Ctx, Body(body): Body) -> ApiResult<Response> {
    ctx.admin()?;
    let data = parse_data::<UpdateAttributes, NoRels>(body, "accounts")?;
    let mut a = (*ctx.account).clone();
    if let Some(name) = data.attributes.name {
        if name.trim().is_empty() {
            return Err(Error::invalid_attr("name", "cannot be blank", "NAME_BLANK").into());
        }
        a.name = name;
    }
    if let Some(slug) = data.attributes.slug {
        if !crate::domain::account::valid_slug(&slug) {
            return Err(
                Error::invalid_attr("slug", "must be lowercase letters, digits and dashes", "SLUG_INVALID").into()
            );
        }
        if slug != a.slug && accounts::find(ctx.db(), &slug).await?.is_some() {
            return Err(Error::invalid_attr("slug", "has already been taken", "SLUG_TAKEN").into());
        }
        a.slug = slug;
    }
    if let Some(p) = data.attributes.protected {
        a.protected = p;
    }
    a.updated_at = time::now_ms();
    accounts::update(ctx.db(), &a).await.map_err(|e| match e {
        Error::Database(ref d) if crate::db::is_unique_violation(d) => {
            Error::invalid_attr("slug", "has already been taken", "SLUG_TAKEN")
        }
        other => other,
    })?;
    ctx.state.forget_accounts();
    Ok(document::respond(axum::http::StatusCode::OK, &render(&a)))
}

/// The authenticated bearer itself.
pub async fn me(ctx: Ctx) -> ApiResult<Response> {
    let p = ctx.principal()?;
    let account = ctx.account_id();
    Ok(match &p.bearer {
        Bearer::Admin(u) | Bearer::User(u) => document::ok(users::render(account, u)),
        Bearer::Product(prod) => document::ok(products::render(account, prod)),
        Bearer::License(l) if p.token.is_some() => document::ok(super::licenses::render(account, l)),
        // Read again: a license key's copy may come from the license cache, which does not
        // keep the last validation.
        Bearer::License(l) => {
            let l = crate::store::licenses::find(ctx.db(), account, l.id).await?.ok_or_else(Error::access_denied)?;
            document::ok(super::licenses::render(account, &l))
        }
    })
}
