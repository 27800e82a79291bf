//! Policies: CRUD and attached entitlements.

use axum::response::Response;
use serde::Deserialize;
use serde_json::{Map, Value};
use sqlx::types::Json;
use uuid::Uuid;

use super::document;
use super::error::ApiResult;
use super::extract::{decode_at, parse_data, parse_linkages, rel_uuid, Body, Ctx, RelInput};
use crate::domain::metadata;
use crate::error::{Error, Source};
use crate::model::{Policy, PolicyRules};
use crate::store::entitlements::{self, Scope};
use crate::store::policies;
use crate::time;

/// Attributes that can only be chosen when the policy is created.
const CREATE_ONLY: &[&str] = &["scheme", "encrypted", "usePool"];

pub use crate::wire::policies::{render, PolicyAttributes};

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct PolicyRels {
    product: Option<RelInput>,
}

/// Applies attribute input onto a policy: `name` and `metadata` directly, everything else
/// merged into the rules document and re-validated as a whole.
fn apply(p: &mut Policy, mut attrs: Map<String, Value>, creating: bool) -> Result<(), Error> {
    if let Some(name) = attrs.remove("name") {
        match name {
            Value::String(n) if !n.trim().is_empty() => p.name = n,
            Value::String(_) => return Err(Error::invalid_attr("name", "cannot be blank", "NAME_BLANK")),
            _ => {
                return Err(Error::bad_request(
                    "type mismatch (received non-string expected string)",
                    Source::Pointer("/data/attributes/name".into()),
                ))
            }
        }
    }
    if let Some(m) = attrs.remove("metadata") {
        p.metadata = Json(metadata::accept(m)?);
    }
    if !creating {
        if let Some(attr) = CREATE_ONLY.iter().find(|a| attrs.contains_key(**a)) {
            return Err(Error::bad_request(
                "unpermitted parameter",
                Source::Pointer(format!("/data/attributes/{attr}").into()),
            ));
        }
    }
    crate::domain::policy::check_enumerated(&attrs)?;
    let heartbeat_basis_given = attrs.contains_key("heartbeatBasis");
    let mut merged = serde_json::to_value(&p.rules.0).map_err(anyhow::Error::from)?;
    if let Value::Object(m) = &mut merged {
        m.extend(attrs);
    }
    let mut rules: PolicyRules = decode_at(merged, "/data/attributes")?;
    if creating && rules.require_heartbeat && !heartbeat_basis_given {
        rules.heartbeat_basis = crate::model::HeartbeatBasis::FromCreation;
    }
    rules.normalize_and_validate()?;
    p.rules = Json(rules);
    Ok(())
}

pub async fn create(ctx: Ctx, Body(body): Body) -> ApiResult<Response> {
    let principal = ctx.operator()?.clone();
    let data = parse_data::<Map<String, Value>, PolicyRels>(body, "policies")?;
    if !data.attributes.contains_key("name") {
        return Err(Error::bad_request("is missing", Source::Pointer("/data/attributes/name".into())).into());
    }
    let product_id = rel_uuid(&data.relationships.product, "product")?
        .flatten()
        .ok_or_else(|| Error::bad_request("is missing", Source::Pointer("/data/relationships/product".into())))?;
    if principal.product_id().is_some_and(|p| p != product_id) {
        return Err(Error::access_denied().into());
    }
    let mut p = Policy::new(ctx.account_id(), product_id, String::new(), ctx.account.protected, time::now_ms());
    apply(&mut p, data.attributes, true)?;
    let p = crate::service::catalog::create_policy(ctx.db(), p).await?;
    Ok(document::created(render(ctx.account_id(), &p)))
}

/// Loads a policy the caller may see: admins any, a product its own. A license sees only its
/// own, and may not read it (no `policy.read` by default).
pub async fn load(ctx: &Ctx, id: &str) -> Result<Policy, Error> {
    let principal = ctx.principal()?;
    let uuid = Uuid::parse_str(id).map_err(|_| Error::not_found("policy", id))?;
    let p = policies::find(ctx.db(), ctx.account_id(), uuid).await?.ok_or_else(|| Error::not_found("policy", id))?;
    if principal.license().is_some_and(|l| l.policy_id != p.id) {
        return Err(Error::not_found("policy", id));
    }
    principal.reads_catalog()?;
    if principal.is_admin() || principal.product_id() == Some(p.product_id) {
        Ok(p)
    } else {
        Err(Error::access_denied())
    }
}

pub async fn show(ctx: Ctx) -> ApiResult<Response> {
    let p = load(&ctx, ctx.param("id")).await?;
    Ok(document::ok(render(ctx.account_id(), &p)))
}

pub async fn list(ctx: Ctx) -> ApiResult<Response> {
    let principal = ctx.principal()?;
    let params = ctx.list_params()?;
    let mut product = params.uuid_filter("product");
    principal.reads_catalog()?;
    if let Some(p) = principal.product_id() {
        product = Some(p);
    } else if !principal.is_admin() {
        return Err(Error::access_denied().into());
    }
    let listing = policies::list_narrowed(ctx.db(), ctx.account_id(), product, &params.narrow(), params.page).await?;
    let account = ctx.account_id();
    Ok(params.document(listing, |p| render(account, &p)))
}

pub async fn update(ctx: Ctx, Body(body): Body) -> ApiResult<Response> {
    ctx.operator()?;
    let mut p = load(&ctx, ctx.param("id")).await?;
    let data = parse_data::<Map<String, Value>, PolicyRels>(body, "policies")?;
    if data.relationships.product.is_some() {
        return Err(
            Error::bad_request("unpermitted parameter", Source::Pointer("/data/relationships/product".into())).into()
        );
    }
    apply(&mut p, data.attributes, false)?;
    p.updated_at = time::now_ms();
    policies::update(ctx.db(), &p, &[crate::events::Raised::policy("policy.updated", &p)]).await?;
    Ok(document::ok(render(ctx.account_id(), &p)))
}

pub async fn delete(ctx: Ctx) -> ApiResult<Response> {
    ctx.operator()?;
    let p = load(&ctx, ctx.param("id")).await?;
    policies::delete(ctx.db(), ctx.account_id(), p.id, &[crate::events::Raised::policy("policy.deleted", &p)]).await?;
    Ok(document::no_content())
}

pub async fn list_entitlements(ctx: Ctx) -> ApiResult<Response> {
    let p = load(&ctx, ctx.param("id")).await?;
    let params = ctx.list_params()?;
    let listing = entitlements::list(ctx.db(), ctx.account_id(), Scope::Policy(p.id), params.page).await?;
    let account = ctx.account_id();
    Ok(params.document(listing, |e| super::entitlements::render(account, &e)))
}

/// Resolves linkage ids to entitlement ids of this account, or a 422 naming the first unknown.
pub async fn resolve_entitlements(ctx: &Ctx, ids: Vec<String>) -> Result<Vec<Uuid>, Error> {
    let mut out = Vec::with_capacity(ids.len());
    for id in ids {
        let e = entitlements::find(ctx.db(), ctx.account_id(), &id)
            .await?
            .ok_or_else(|| Error::invalid_rel("entitlement", "must exist", "ENTITLEMENT_NOT_FOUND"))?;
        out.push(e.id);
    }
    Ok(out)
}

pub async fn attach_entitlements(ctx: Ctx, Body(body): Body) -> ApiResult<Response> {
    ctx.operator()?;
    let p = load(&ctx, ctx.param("id")).await?;
    let ids = resolve_entitlements(&ctx, parse_linkages(body, "entitlements")?).await?;
    let events = [crate::events::Raised::policy("policy.entitlements.attached", &p)];
    let account = ctx.account_id();
    let attached =
        crate::service::catalog::attach_entitlements(ctx.db(), account, Scope::Policy(p.id), &[], &ids, &events)
            .await?;
    let data: Vec<serde_json::Value> = attached
        .iter()
        .map(|(e, at)| {
            crate::wire::entitlements::render_join(account, crate::wire::entitlements::JoinOwner::Policy(p.id), *e, *at)
        })
        .collect();
    Ok(document::respond(axum::http::StatusCode::OK, &serde_json::json!({ "data": data })))
}

pub async fn detach_entitlements(ctx: Ctx, Body(body): Body) -> ApiResult<Response> {
    ctx.operator()?;
    let p = load(&ctx, ctx.param("id")).await?;
    let ids = resolve_entitlements(&ctx, parse_linkages(body, "entitlements")?).await?;
    let events = [crate::events::Raised::policy("policy.entitlements.detached", &p)];
    crate::service::catalog::detach_entitlements(ctx.db(), ctx.account_id(), Scope::Policy(p.id), &[], &ids, &events)
        .await?;
    Ok(document::no_content())
}
