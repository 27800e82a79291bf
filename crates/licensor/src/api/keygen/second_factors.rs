//! `/users/{id}/second-factors`: a user's TOTP second factor, as Keygen has it. Admins manage
//! anyone's, a user their own; products and licenses may not (403), and a user another's (404).

use axum::response::Response;
use serde::Deserialize;
use serde_json::Value;

use super::document;
use super::error::ApiResult;
use super::extract::{Body, Ctx};
use crate::error::{Error, Source};
use crate::model::{SecondFactor, User};
use crate::service::second_factors as service;
use crate::wire::second_factors::render;

/// The user named in the path, for a caller who may manage their second factor.
async fn owner(ctx: &Ctx) -> Result<User, Error> {
    let u = super::users::load(ctx).await?;
    if crate::service::access::may_manage_second_factors(ctx.principal()?) {
        Ok(u)
    } else {
        Err(Error::access_denied())
    }
}

/// The user's factor named `{factor}`.
async fn factor(ctx: &Ctx, user: &User) -> Result<SecondFactor, Error> {
    let id = ctx.param("factor");
    service::of_user(ctx.db(), user)
        .await?
        .filter(|f| f.id.to_string() == id)
        .ok_or_else(|| Error::not_found("second factor", id))
}

fn resource(
    ctx: &Ctx,
    f: &SecondFactor,
    user: &User,
) -> Result<crate::wire::document::Resource<impl serde::Serialize>, Error> {
    let shown = if f.enabled { None } else { Some(service::shown(&ctx.state.master, f, user)?) };
    Ok(render(f, shown))
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct Meta {
    password: Option<String>,
    otp: Option<String>,
}

/// `meta` of the body: `None` when the body has none.
fn meta(body: &Value) -> Result<Option<Meta>, Error> {
    match body.get("meta") {
        None | Some(Value::Null) => Ok(None),
        Some(m) => serde_json::from_value(m.clone())
            .map(Some)
            .map_err(|e| Error::bad_request(format!("{e}"), Source::Pointer("/meta".into()))),
    }
}

fn meta_missing() -> Error {
    Error::bad_request("is missing", Source::Pointer("/meta".into()))
}

const TYPES: &[&str] =
    &["second-factor", "second-factors", "secondFactor", "secondFactors", "second_factor", "second_factors"];

fn check_type(body: &Value) -> Result<(), Error> {
    match body.pointer("/data/type") {
        None => Ok(()),
        Some(Value::String(t)) if TYPES.contains(&t.as_str()) => Ok(()),
        Some(_) => {
            Err(Error::bad_request("type mismatch (expected second-factors)", Source::Pointer("/data/type".into())))
        }
    }
}

pub async fn list(ctx: Ctx) -> ApiResult<Response> {
    let user = owner(&ctx).await?;
    let mut data = Vec::new();
    if let Some(f) = service::of_user(ctx.db(), &user).await? {
        data.push(resource(&ctx, &f, &user)?);
    }
    Ok(document::respond(axum::http::StatusCode::OK, &serde_json::json!({ "data": data, "links": {} })))
}

pub async fn show(ctx: Ctx) -> ApiResult<Response> {
    let user = owner(&ctx).await?;
    let f = factor(&ctx, &user).await?;
    Ok(document::ok(resource(&ctx, &f, &user)?))
}

pub async fn create(ctx: Ctx, Body(body): Body) -> ApiResult<Response> {
    let user = owner(&ctx).await?;
    check_type(&body)?;
    let m = meta(&body)?.ok_or_else(meta_missing)?;
    let f = service::create(ctx.db(), &ctx.state.master, &user, m.password.as_deref(), m.otp.as_deref()).await?;
    Ok(document::created(resource(&ctx, &f, &user)?))
}

pub async fn update(ctx: Ctx, Body(body): Body) -> ApiResult<Response> {
    let user = owner(&ctx).await?;
    let f = factor(&ctx, &user).await?;
    check_type(&body)?;
    let enabled = match body.pointer("/data/attributes/enabled") {
        Some(Value::Bool(b)) => *b,
        Some(_) => {
            return Err(Error::bad_request(
                "type mismatch (expected boolean)",
                Source::Pointer("/data/attributes/enabled".into()),
            )
            .into())
        }
        None => return Err(Error::bad_request("is missing", Source::Pointer("/data/attributes/enabled".into())).into()),
    };
    let m = meta(&body)?.ok_or_else(meta_missing)?;
    let otp = m.otp.ok_or_else(|| Error::bad_request("is missing", Source::Pointer("/meta/otp".into())))?;
    let f = service::set_enabled(ctx.db(), &ctx.state.master, f, enabled, Some(&otp)).await?;
    Ok(document::ok(resource(&ctx, &f, &user)?))
}

pub async fn delete(ctx: Ctx, Body(body): Body) -> ApiResult<Response> {
    let user = owner(&ctx).await?;
    let f = factor(&ctx, &user).await?;
    let otp = if f.enabled { meta(&body)?.and_then(|m| m.otp) } else { None };
    service::delete(ctx.db(), &ctx.state.master, &f, otp.as_deref()).await?;
    Ok(document::no_content())
}
