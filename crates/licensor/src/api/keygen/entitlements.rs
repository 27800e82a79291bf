//! Entitlements: CRUD (id or code).

use axum::response::Response;
use serde::Deserialize;
use serde_json::Value;
use sqlx::types::Json;

use super::document;
use super::error::ApiResult;
use super::extract::{parse_data, Body, Ctx, NoRels};
use crate::domain::metadata;
use crate::error::{Error, Source};
use crate::model::Entitlement;
use crate::store::entitlements::{self, Scope};
use crate::time;

pub use crate::wire::entitlements::{render, EntitlementAttributes};

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct EntitlementInput {
    name: Option<String>,
    code: Option<String>,
    metadata: Option<Value>,
    /// Licensor's: the entitlement's key as an extension on the licensing surface, chosen at
    /// creation.
    licensing_key: Option<i64>,
}

fn apply(e: &mut Entitlement, a: EntitlementInput) -> Result<(), Error> {
    if let Some(name) = a.name {
        crate::service::catalog::not_blank("name", &name)?;
        e.name = name;
    }
    if let Some(code) = a.code {
        crate::service::catalog::not_blank("code", &code)?;
        e.code = code;
    }
    if let Some(m) = a.metadata {
        e.metadata = Json(metadata::accept(m)?);
    }
    Ok(())
}

pub async fn create(ctx: Ctx, Body(body): Body) -> ApiResult<Response> {
    ctx.admin()?;
    let data = parse_data::<EntitlementInput, NoRels>(body, "entitlements")?;
    for (attr, present) in [("name", data.attributes.name.is_some()), ("code", data.attributes.code.is_some())] {
        if !present {
            return Err(
                Error::bad_request("is missing", Source::Pointer(format!("/data/attributes/{attr}").into())).into()
            );
        }
    }
    let key = super::products::licensing_key(data.attributes.licensing_key, true)?;
    let mut e = Entitlement::new(ctx.account_id(), String::new(), String::new(), time::now_ms());
    apply(&mut e, data.attributes)?;
    let e = crate::service::catalog::create_entitlement_keyed(ctx.db(), &e, key).await?;
    Ok(document::created(render(ctx.account_id(), &e)))
}

async fn load(ctx: &Ctx) -> Result<Entitlement, Error> {
    let p = ctx.principal()?;
    let id = ctx.param("id");
    let e =
        entitlements::find(ctx.db(), ctx.account_id(), id).await?.ok_or_else(|| Error::not_found("entitlement", id))?;
    if p.is_admin() || p.product_id().is_some() {
        Ok(e)
    } else {
        Err(Error::access_denied())
    }
}

pub async fn show(ctx: Ctx) -> ApiResult<Response> {
    let e = load(&ctx).await?;
    Ok(document::ok(render(ctx.account_id(), &e)))
}

pub async fn list(ctx: Ctx) -> ApiResult<Response> {
    let p = ctx.principal()?;
    let params = ctx.list_params()?;
    let scope = match p.license() {
        Some(l) => Scope::License(l.id),
        None if p.is_admin() || p.product_id().is_some() => Scope::Account,
        None => return Err(Error::access_denied().into()),
    };
    let listing = entitlements::list(ctx.db(), ctx.account_id(), scope, params.page).await?;
    let account = ctx.account_id();
    Ok(params.document(listing, |e| render(account, &e)))
}

pub async fn update(ctx: Ctx, Body(body): Body) -> ApiResult<Response> {
    ctx.admin()?;
    let mut e = load(&ctx).await?;
    let data = parse_data::<EntitlementInput, NoRels>(body, "entitlements")?;
    super::products::licensing_key(data.attributes.licensing_key, false)?;
    apply(&mut e, data.attributes)?;
    e.updated_at = time::now_ms();
    entitlements::update(ctx.db(), &e, &[crate::events::Raised::entitlement("entitlement.updated", &e)])
        .await
        .map_err(|e| crate::error::taken(e, "code", "CODE_TAKEN"))?;
    Ok(document::ok(render(ctx.account_id(), &e)))
}

pub async fn delete(ctx: Ctx) -> ApiResult<Response> {
    ctx.admin()?;
    let e = load(&ctx).await?;
    entitlements::delete(
        ctx.db(),
        ctx.account_id(),
        e.id,
        &[crate::events::Raised::entitlement("entitlement.deleted", &e)],
    )
    .await?;
    Ok(document::no_content())
}
