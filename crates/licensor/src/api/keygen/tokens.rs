//! Tokens: generate (password login or for a bearer), list, show, regenerate, revoke.

use axum::http::StatusCode;
use axum::response::Response;
use serde::Deserialize;
use uuid::Uuid;

use super::document;
use super::error::ApiResult;
use super::extract::{nullable, parse_data, Body, Ctx, NoRels};
use crate::auth::{self, NewToken};
use crate::error::{Error, Source};
use crate::model::Token;
use crate::service::access;
use crate::store::tokens;
use crate::store::users;
use crate::{crypto, time};

pub use crate::wire::tokens::{render, TokenAttributes};

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TokenInput {
    name: Option<String>,
    #[serde(default, deserialize_with = "nullable")]
    expiry: Option<Option<String>>,
    max_activations: Option<i64>,
    max_deactivations: Option<i64>,
}

fn parse_expiry(expiry: &Option<Option<String>>) -> Result<Option<Option<i64>>, Error> {
    match expiry {
        None => Ok(None),
        Some(None) => Ok(Some(None)),
        Some(Some(s)) => time::parse_iso(s)
            .map(|t| Some(Some(t)))
            .ok_or_else(|| Error::invalid_attr("expiry", "must be a valid ISO 8601 timestamp", "EXPIRY_INVALID")),
    }
}

/// Reads optional token attributes from a body (which may be empty); also whether it chose an
/// expiry (`null` included).
pub fn token_options(body: serde_json::Value, allow_activation_limits: bool) -> Result<(NewToken, bool), Error> {
    if body.is_null() {
        return Ok((NewToken::default(), false));
    }
    let data = parse_data::<TokenInput, NoRels>(body, "tokens")?;
    let a = data.attributes;
    if !allow_activation_limits && (a.max_activations.is_some() || a.max_deactivations.is_some()) {
        return Err(Error::bad_request(
            "unpermitted parameter",
            Source::Pointer("/data/attributes/maxActivations".into()),
        ));
    }
    for (name, v) in [("maxActivations", a.max_activations), ("maxDeactivations", a.max_deactivations)] {
        if v.is_some_and(|v| v < 0) {
            return Err(Error::invalid_attr(
                name,
                "must be greater than or equal to 0",
                format!("{}_INVALID", crate::domain::policy::code_prefix(name)),
            ));
        }
    }
    let expiry = parse_expiry(&a.expiry)?;
    let token = NewToken {
        name: a.name,
        expiry: expiry.flatten(),
        max_activations: a.max_activations,
        max_deactivations: a.max_deactivations,
    };
    Ok((token, expiry.is_some()))
}

/// `POST /tokens`: with HTTP Basic email:password, a new token for that user; with a token, a
/// new token for the same bearer.
pub async fn generate(ctx: Ctx, Body(mut body): Body) -> ApiResult<Response> {
    let account = ctx.account_id();
    // Credentials first: an anonymous or mistaken caller learns nothing from body checks.
    let (bearer_type, bearer_id, role) = if let Some((email, password)) = &ctx.password_login {
        // The second factor's code, if the user has one: `meta.otp`.
        let otp = match body.pointer("/meta/otp") {
            None | Some(serde_json::Value::Null) => None,
            Some(serde_json::Value::String(s)) => Some(s.as_str()),
            Some(_) => Some(""),
        };
        let login = auth::Login { db: ctx.db(), master: &ctx.state.master, otp: auth::Otp::Given(otp) };
        let user = auth::password_login(&login, &ctx.account, email, password).await?;
        (String::from("user"), user.id, user.role)
    } else {
        let p = ctx.maybe_principal()?.ok_or_else(|| {
            Error::unauthorized(
                "You must be authenticated to complete the request (use HTTP Basic with email and password)",
                "TOKEN_MISSING",
            )
        })?;
        // As in Keygen, users and admins generate tokens for themselves; products and
        // licenses get theirs from an admin (`/products/{id}/tokens`, `/licenses/{id}/tokens`).
        let role = match &p.bearer {
            crate::auth::Bearer::Admin(u) | crate::auth::Bearer::User(u) => u.role.clone(),
            _ => return Err(Error::access_denied().into()),
        };
        let (kind, id) = p.bearer_ref();
        (kind.to_string(), id, role)
    };
    // `meta` carries the second factor's code only; the token's own options are in `data`.
    if let Some(o) = body.as_object_mut() {
        o.remove("meta");
        if o.is_empty() {
            body = serde_json::Value::Null;
        }
    }
    let (mut opts, chosen) = token_options(body, false)?;
    if !chosen {
        opts.expiry = auth::default_token_expiry(&bearer_type, &role, time::now_ms());
    }
    let (row, raw) = auth::issue_token(ctx.db(), account, &bearer_type, bearer_id, &role, opts).await?;
    Ok(document::created(render(account, &row, Some(raw))))
}

/// Issues a token for another bearer (`POST /users/{id}/tokens`, `/products/{id}/tokens`,
/// `/licenses/{id}/tokens`). The caller has been authorized already.
pub async fn issue_for(
    ctx: &Ctx,
    bearer_type: &str,
    bearer_id: Uuid,
    role: &str,
    body: serde_json::Value,
) -> ApiResult<Response> {
    let (mut opts, chosen) = token_options(body, bearer_type == "license")?;
    if !chosen {
        opts.expiry = auth::default_token_expiry(bearer_type, role, time::now_ms());
    }
    let (row, raw) = auth::issue_token(ctx.db(), ctx.account_id(), bearer_type, bearer_id, role, opts).await?;
    // Keygen answers a token generated through a relationship with 200, not 201.
    Ok(document::ok(render(ctx.account_id(), &row, Some(raw))))
}

/// Lists tokens of one bearer (relationship endpoints).
pub async fn list_for(ctx: &Ctx, bearer: Uuid) -> ApiResult<Response> {
    let params = ctx.list_params()?;
    let listing = tokens::list(ctx.db(), ctx.account_id(), Some(bearer), None, params.page).await?;
    let account = ctx.account_id();
    Ok(params.document(listing, |t| render(account, &t, None)))
}

pub async fn list(ctx: Ctx) -> ApiResult<Response> {
    let p = ctx.principal()?;
    let params = ctx.list_params()?;
    let asked_type = params.filter("bearer[type]").map(|t| t.trim_end_matches('s').to_string());
    let (bearer, bearer_type) = if p.is_admin() {
        (params.uuid_filter("bearer[id]"), asked_type)
    } else {
        // Others list their own tokens; a filter naming another bearer narrows that to none.
        let (own_type, own_id) = p.bearer_ref();
        let asked_id = params.uuid_filter("bearer[id]");
        let mismatch = asked_id.is_some_and(|id| id != own_id) || asked_type.as_deref().is_some_and(|t| t != own_type);
        (Some(if mismatch { Uuid::nil() } else { own_id }), None)
    };
    let listing = tokens::list(ctx.db(), ctx.account_id(), bearer, bearer_type.as_deref(), params.page).await?;
    let account = ctx.account_id();
    Ok(params.document(listing, |t| render(account, &t, None)))
}

async fn load(ctx: &Ctx) -> Result<Token, Error> {
    let id = ctx.param("id");
    let uuid = Uuid::parse_str(id).map_err(|_| Error::not_found("token", id))?;
    let t = tokens::find(ctx.db(), ctx.account_id(), uuid).await?.ok_or_else(|| Error::not_found("token", id))?;
    // Lookups are scoped to the tokens the caller may see, as in Keygen: others are not found.
    if !access::may_see_token(ctx.db(), ctx.principal()?, &t).await? {
        return Err(Error::not_found("token", id));
    }
    Ok(t)
}

pub async fn show(ctx: Ctx) -> ApiResult<Response> {
    let t = load(&ctx).await?;
    Ok(document::ok(render(ctx.account_id(), &t, None)))
}

/// `PUT /tokens/{id}`: a new secret for the same token; the old one stops working at once.
pub async fn regenerate(ctx: Ctx) -> ApiResult<Response> {
    let mut t = load(&ctx).await?;
    let role = match t.bearer_type.as_str() {
        "user" => {
            users::find(ctx.db(), ctx.account_id(), t.bearer_id).await?.map(|u| u.role).unwrap_or_else(|| "user".into())
        }
        other => other.to_string(),
    };
    if !access::may_regenerate_token(ctx.principal()?, &t, Some(role.as_str())) {
        return Err(Error::access_denied().into());
    }
    let raw = crypto::secrets::generate_token(crypto::secrets::token_prefix(&t.bearer_type, &role));
    let now = time::now_ms();
    t.digest = crypto::secrets::token_digest(&raw);
    // A regenerated user token gets a fresh lifetime, as Keygen's do.
    if t.bearer_type == "user" && role == "user" {
        t.expiry = auth::default_token_expiry("user", "user", now);
    }
    t.updated_at = now;
    let events = [crate::events::Raised::token("token.regenerated", &t)];
    tokens::regenerate(ctx.db(), ctx.account_id(), t.id, &t.digest, t.expiry, now, &events).await?;
    Ok(document::respond(StatusCode::OK, &serde_json::json!({ "data": render(ctx.account_id(), &t, Some(raw)) })))
}

pub async fn revoke(ctx: Ctx) -> ApiResult<Response> {
    let t = load(&ctx).await?;
    tokens::delete(ctx.db(), ctx.account_id(), t.id, &[crate::events::Raised::token("token.revoked", &t)]).await?;
    Ok(document::no_content())
}
