//! License actions: validation (by key, by id, quick), suspend/reinstate, renew, revoke,
//! check-in, and usage counters.

use axum::http::StatusCode;
use axum::response::Response;
use serde::Deserialize;
use serde_json::Value;

use super::document;
use super::error::ApiResult;
use super::extract::{parse_meta, Body, Ctx};
use crate::domain::validation::{self, Scope};
use crate::error::{Error, Source};
use crate::model::License;
use crate::service;
use crate::service::licenses::Usage;
use crate::time;

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct ValidateMeta {
    key: Option<String>,
    nonce: Option<i64>,
    scope: Option<Scope>,
    encrypted: Option<bool>,
    #[serde(rename = "legacyEncrypted")]
    legacy_encrypted: Option<bool>,
}

/// The `meta` of a validation response.
#[derive(serde::Serialize)]
struct ValidationMeta<'a> {
    ts: String,
    valid: bool,
    detail: &'static str,
    code: validation::ValidationCode,
    #[serde(skip_serializing_if = "Option::is_none")]
    nonce: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    scope: Option<&'a Scope>,
}

/// Validates what was found and renders Keygen's response (always 200 once it ran).
async fn run(
    ctx: &Ctx,
    found: service::validation::Found,
    meta: &ValidateMeta,
    quick: bool,
) -> Result<Response, Error> {
    // Credentials are checked before the outcome, found or not: a bad token is a 401 even for
    // an unknown key.
    let principal = ctx.principal_unless_bad_license_key()?;
    let (outcome, license) =
        service::validation::validate(&ctx.state, principal, found, meta.scope.as_ref(), quick).await?;
    let meta = ValidationMeta {
        ts: time::iso(time::now_ms()),
        valid: outcome.valid,
        detail: outcome.detail,
        code: outcome.code,
        nonce: meta.nonce,
        scope: meta.scope.as_ref(),
    };
    #[derive(serde::Serialize)]
    struct Doc<'a, D: serde::Serialize> {
        data: Option<D>,
        meta: ValidationMeta<'a>,
    }
    let data = license.map(|l| super::licenses::render(ctx.account_id(), &l));
    Ok(document::respond(StatusCode::OK, &Doc { data, meta }))
}

/// What Keygen's typed parameters refuse before a validation runs: null or blank strings (only
/// a `user` scope may be null) and, on `…/actions/validate`, the parameters of a key lookup.
fn check_values(body: &Value, by_key: bool) -> Result<(), Error> {
    let Some(meta) = body.get("meta").and_then(Value::as_object) else { return Ok(()) };
    let bad = |detail: &'static str, pointer: String| Error::bad_request(detail, Source::Pointer(pointer.into()));
    if !by_key {
        if let Some(k) = ["key", "encrypted", "legacyEncrypted"].into_iter().find(|k| meta.contains_key(*k)) {
            return Err(bad("unpermitted parameter", format!("/meta/{k}")));
        }
    }
    let string = |v: &Value, pointer: String, nullable: bool| match v {
        Value::Null if !nullable => Err(bad("cannot be null", pointer)),
        Value::String(s) if s.trim().is_empty() => Err(bad("cannot be blank", pointer)),
        _ => Ok(()),
    };
    if let Some(key) = meta.get("key") {
        string(key, "/meta/key".into(), false)?;
    }
    for (k, v) in meta.get("scope").and_then(Value::as_object).into_iter().flatten() {
        match (k.as_str(), v) {
            ("fingerprints" | "components" | "entitlements", Value::Array(items)) => {
                for (i, item) in items.iter().enumerate() {
                    string(item, format!("/meta/scope/{k}/{i}"), false)?;
                }
            }
            ("user", v) => string(v, "/meta/scope/user".into(), true)?,
            ("product" | "policy" | "machine" | "fingerprint" | "checksum" | "version", v) => {
                string(v, format!("/meta/scope/{k}"), false)?
            }
            // Anything else is refused as unpermitted when the scope is decoded.
            _ => {}
        }
    }
    Ok(())
}

/// `POST /licenses/actions/validate-key`: no credentials needed; any sent must be valid.
pub async fn validate_key(ctx: Ctx, Body(body): Body) -> ApiResult<Response> {
    check_values(&body, true)?;
    let meta: ValidateMeta = parse_meta(body)?;
    let key = meta.key.clone().ok_or_else(|| Error::bad_request("is missing", Source::Pointer("/meta/key".into())))?;
    if meta.encrypted.or(meta.legacy_encrypted).unwrap_or(false) {
        return Err(Error::bad_request(
            "legacy encrypted license keys are not supported",
            Source::Pointer("/meta/encrypted".into()),
        )
        .into());
    }
    let found = service::validation::by_key(&ctx.state, ctx.account_id(), &key, meta.scope.as_ref()).await?;
    Ok(run(&ctx, found, &meta, false).await?)
}

/// `POST /licenses/{id}/actions/validate` (full) and `GET` (quick: no scopes, no events).
pub async fn validate(ctx: Ctx, method: axum::http::Method, Body(body): Body) -> ApiResult<Response> {
    let l = super::licenses::load(&ctx).await?;
    let quick = method == axum::http::Method::GET;
    let meta: ValidateMeta = if quick {
        ValidateMeta::default()
    } else {
        check_values(&body, false)?;
        parse_meta(body)?
    };
    Ok(run(&ctx, service::validation::Found::read(l), &meta, quick).await?)
}

/// The license as Keygen renders it.
fn ok(ctx: &Ctx, l: &License) -> ApiResult<Response> {
    Ok(document::ok(super::licenses::render(ctx.account_id(), l)))
}

pub async fn suspend(ctx: Ctx) -> ApiResult<Response> {
    let l = service::licenses::suspend(ctx.db(), ctx.principal()?, ctx.account_id(), ctx.param("id")).await?;
    ok(&ctx, &l)
}

pub async fn reinstate(ctx: Ctx) -> ApiResult<Response> {
    let l = service::licenses::reinstate(ctx.db(), ctx.principal()?, ctx.account_id(), ctx.param("id")).await?;
    ok(&ctx, &l)
}

pub async fn renew(ctx: Ctx) -> ApiResult<Response> {
    let l = service::licenses::renew(ctx.db(), ctx.principal()?, ctx.account_id(), ctx.param("id")).await?;
    ok(&ctx, &l)
}

pub async fn revoke(ctx: Ctx) -> ApiResult<Response> {
    service::licenses::revoke(ctx.db(), ctx.principal()?, ctx.account_id(), ctx.param("id")).await?;
    Ok(document::no_content())
}

pub async fn check_in(ctx: Ctx) -> ApiResult<Response> {
    let l = service::licenses::check_in(ctx.db(), ctx.principal()?, ctx.account_id(), ctx.param("id")).await?;
    ok(&ctx, &l)
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct UsageMeta {
    increment: Option<i64>,
    decrement: Option<i64>,
}

async fn change_uses(ctx: Ctx, body: Value, direction: Usage) -> ApiResult<Response> {
    let l = super::licenses::load_for(&ctx, service::licenses::usage_action(direction)).await?;
    let meta: UsageMeta = parse_meta(body)?;
    let (given, name) = match direction {
        Usage::Increment => (meta.increment, "increment"),
        Usage::Decrement => (meta.decrement, "decrement"),
    };
    let n = given.unwrap_or(1);
    if n < 0 {
        return Err(
            Error::bad_request("must be a positive integer", Source::Pointer(format!("/meta/{name}").into())).into()
        );
    }
    let l = service::licenses::change_uses(ctx.db(), &l, direction, n).await?;
    ok(&ctx, &l)
}

pub async fn increment_usage(ctx: Ctx, Body(body): Body) -> ApiResult<Response> {
    change_uses(ctx, body, Usage::Increment).await
}

pub async fn decrement_usage(ctx: Ctx, Body(body): Body) -> ApiResult<Response> {
    change_uses(ctx, body, Usage::Decrement).await
}

pub async fn reset_usage(ctx: Ctx) -> ApiResult<Response> {
    let l = service::licenses::reset_uses(ctx.db(), ctx.principal()?, ctx.account_id(), ctx.param("id")).await?;
    ok(&ctx, &l)
}
