//! Key pools: `keys` (create, list, show, update, delete, and their policy and product) and a
//! policy's `pool` (list, show one, pop). Admins manage every key, a product the keys of its own
//! policies; users and licenses see none (403 on list and create, 404 on a key).

use axum::response::Response;
use serde::Deserialize;

use super::document;
use super::error::ApiResult;
use super::extract::{parse_data, rel_uuid, Body, Ctx, RelInput};
use crate::auth::Principal;
use crate::error::{Error, Source};
use crate::model::Key;
use crate::service;
use crate::store::{keys, policies};

pub use crate::wire::keys::render;

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct KeyInput {
    key: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct KeyRels {
    policy: Option<RelInput>,
}

/// Only the key's text may change; its policy is for good.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct NoKeyRels {}

pub async fn create(ctx: Ctx, Body(body): Body) -> ApiResult<Response> {
    let p = ctx.operator()?.clone();
    let data = parse_data::<KeyInput, KeyRels>(body, "keys")?;
    let key = data
        .attributes
        .key
        .ok_or_else(|| Error::bad_request("is missing", Source::Pointer("/data/attributes/key".into())))?;
    let policy = rel_uuid(&data.relationships.policy, "policy")?
        .flatten()
        .ok_or_else(|| Error::bad_request("is missing", Source::Pointer("/data/relationships/policy".into())))?;
    let policy = policies::find(ctx.db(), ctx.account_id(), policy)
        .await?
        .ok_or_else(|| Error::invalid_rel("policy", "must exist", "POLICY_NOT_FOUND"))?;
    if p.product_id().is_some_and(|own| own != policy.product_id) {
        return Err(Error::access_denied().into());
    }
    let k = service::keys::create(ctx.db(), &policy, key).await?;
    Ok(document::created(render(ctx.account_id(), &k)))
}

/// The key the path names, if the caller may see it; anyone else gets the same 404.
async fn load(ctx: &Ctx) -> Result<(Principal, Key), Error> {
    let p = ctx.principal()?.clone();
    let id = ctx.param("id");
    let missing = || Error::not_found("key", id);
    if !(p.is_admin() || p.product_id().is_some()) {
        return Err(missing());
    }
    let uuid = uuid::Uuid::parse_str(id).map_err(|_| missing())?;
    let k = keys::find(ctx.db(), ctx.account_id(), uuid).await?.ok_or_else(missing)?;
    if p.product_id().is_some_and(|own| own != k.product_id) {
        return Err(missing());
    }
    Ok((p, k))
}

pub async fn list(ctx: Ctx) -> ApiResult<Response> {
    let p = ctx.operator()?;
    let params = ctx.list_params()?;
    let product = p.product_id().or_else(|| params.uuid_filter("product"));
    let listing = keys::list(ctx.db(), ctx.account_id(), params.uuid_filter("policy"), product, params.page).await?;
    let account = ctx.account_id();
    Ok(params.document(listing, |k| render(account, &k)))
}

pub async fn show(ctx: Ctx) -> ApiResult<Response> {
    let (_, k) = load(&ctx).await?;
    Ok(document::ok(render(ctx.account_id(), &k)))
}

pub async fn update(ctx: Ctx, Body(body): Body) -> ApiResult<Response> {
    let (_, k) = load(&ctx).await?;
    let data = parse_data::<KeyInput, NoKeyRels>(body, "keys")?;
    let Some(text) = data.attributes.key else { return Ok(document::ok(render(ctx.account_id(), &k))) };
    let policy = policies::find(ctx.db(), ctx.account_id(), k.policy_id)
        .await?
        .ok_or_else(|| Error::not_found("key", k.id.to_string()))?;
    let k = service::keys::update(ctx.db(), &policy, &k, text).await?;
    Ok(document::ok(render(ctx.account_id(), &k)))
}

pub async fn delete(ctx: Ctx) -> ApiResult<Response> {
    let (_, k) = load(&ctx).await?;
    service::keys::delete(ctx.db(), &k).await?;
    Ok(document::no_content())
}

pub async fn policy(ctx: Ctx) -> ApiResult<Response> {
    let (_, k) = load(&ctx).await?;
    let p = super::policies::load(&ctx, &k.policy_id.to_string()).await?;
    Ok(document::ok(super::policies::render(ctx.account_id(), &p)))
}

pub async fn product(ctx: Ctx) -> ApiResult<Response> {
    let (_, k) = load(&ctx).await?;
    let p = super::products::load(&ctx, &k.product_id.to_string()).await?;
    Ok(document::ok(super::products::render(ctx.account_id(), &p)))
}

/// `GET /policies/{id}/pool`: the policy's keys (none for a policy without a pool).
pub async fn pool(ctx: Ctx) -> ApiResult<Response> {
    let policy = pool_policy(&ctx).await?;
    let params = ctx.list_params()?;
    let listing = keys::list(ctx.db(), ctx.account_id(), Some(policy.id), None, params.page).await?;
    let account = ctx.account_id();
    Ok(params.document(listing, |k| render(account, &k)))
}

/// `GET /policies/{id}/pool/{key}`: one of the policy's keys.
pub async fn pool_key(ctx: Ctx) -> ApiResult<Response> {
    let policy = pool_policy(&ctx).await?;
    let id = ctx.param("key");
    let missing = || Error::not_found("key", id);
    let uuid = uuid::Uuid::parse_str(id).map_err(|_| missing())?;
    let k =
        keys::find(ctx.db(), ctx.account_id(), uuid).await?.filter(|k| k.policy_id == policy.id).ok_or_else(missing)?;
    Ok(document::ok(render(ctx.account_id(), &k)))
}

/// `DELETE /policies/{id}/pool`: takes the newest key out of the pool and answers it.
pub async fn pop(ctx: Ctx) -> ApiResult<Response> {
    ctx.operator()?;
    let policy = pool_policy(&ctx).await?;
    let k = service::keys::pop(ctx.db(), &policy).await?;
    Ok(document::ok(render(ctx.account_id(), &k)))
}

/// The policy of a pool route, for admins and its product; anyone else gets a 404.
async fn pool_policy(ctx: &Ctx) -> Result<crate::model::Policy, Error> {
    let p = ctx.principal()?;
    let id = ctx.param("id");
    if !(p.is_admin() || p.product_id().is_some()) {
        return Err(Error::not_found("policy", id));
    }
    super::policies::load(ctx, id).await.map_err(|e| match e {
        Error::Forbidden { .. } => Error::not_found("policy", id),
        other => other,
    })
}
