//! Components: hardware fingerprints under a machine.

use axum::response::Response;
use serde::Deserialize;
use serde_json::Value;
use sqlx::types::Json;
use uuid::Uuid;

use super::document;
use super::error::ApiResult;
use super::extract::{parse_data, Body, Ctx, RelInput};
use crate::domain::metadata;
use crate::error::{Error, Source};
use crate::events::Raised;
use crate::model::{Component, License};
use crate::store::components;
use crate::store::machines;
use crate::time;

pub use crate::wire::components::{render, ComponentAttributes};

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct ComponentInput {
    fingerprint: Option<String>,
    name: Option<String>,
    metadata: Option<Value>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct ComponentRels {
    machine: Option<RelInput>,
}

/// Admins, the machine's product, license or (unprotected) user may manage its components.
async fn check_machine(ctx: &Ctx, machine_id: &str) -> Result<(crate::model::Machine, License), Error> {
    let p = ctx.principal()?;
    let m = machines::find_by_id_or_fingerprint(ctx.db(), ctx.account_id(), machine_id)
        .await?
        .ok_or_else(|| Error::invalid_rel("machine", "must exist", "MACHINE_NOT_FOUND"))?;
    let l = crate::store::licenses::find(ctx.db(), ctx.account_id(), m.license_id)
        .await?
        .ok_or_else(|| Error::not_found("machine", machine_id))?;
    if crate::service::access::may_read_license(ctx.db(), p, &l).await? {
        Ok((m, l))
    } else {
        Err(Error::access_denied())
    }
}

pub async fn create(ctx: Ctx, Body(body): Body) -> ApiResult<Response> {
    ctx.principal()?; // credentials before the body's checks
    let data = parse_data::<ComponentInput, ComponentRels>(body, "components")?;
    let a = data.attributes;
    let fingerprint = a
        .fingerprint
        .ok_or_else(|| Error::bad_request("is missing", Source::Pointer("/data/attributes/fingerprint".into())))?;
    let name =
        a.name.ok_or_else(|| Error::bad_request("is missing", Source::Pointer("/data/attributes/name".into())))?;
    let machine_id = super::extract::required_rel_id(&data.relationships.machine, "machine")?;
    let (m, license) = check_machine(&ctx, &machine_id).await?;
    let now = time::now_ms();
    let c = Component {
        id: crate::model::fleet_id(),
        account_id: ctx.account_id(),
        machine_id: m.id,
        fingerprint,
        name,
        metadata: Json(match a.metadata {
            Some(md) => metadata::accept(md)?,
            None => serde_json::json!({}),
        }),
        created_at: now,
        updated_at: now,
    };
    let scope = crate::domain::activation::component_uniqueness(&license);
    let events = [Raised::component("component.created", &c, license.product_id)];
    if let Err(components::Refusal::Taken) = components::insert(ctx.db(), &c, scope, &events).await? {
        let detail = super::machines::component_taken_detail(scope);
        return Err(Error::invalid_attr("fingerprint", detail, "FINGERPRINT_TAKEN").into());
    }
    Ok(document::created(render(ctx.account_id(), &c)))
}

async fn load(ctx: &Ctx) -> Result<Component, Error> {
    Ok(load_with_machine(ctx).await?.0)
}

async fn load_with_machine(ctx: &Ctx) -> Result<(Component, crate::model::Machine, License), Error> {
    let id = ctx.param("id");
    let uuid = Uuid::parse_str(id).map_err(|_| Error::not_found("component", id))?;
    let c =
        components::find(ctx.db(), ctx.account_id(), uuid).await?.ok_or_else(|| Error::not_found("component", id))?;
    let (m, l) = check_machine(ctx, &c.machine_id.to_string()).await?;
    Ok((c, m, l))
}

/// `GET /components/{id}/machine`, `…/license`, `…/product`: the resources its links name.
pub async fn show_machine(ctx: Ctx) -> ApiResult<Response> {
    let (_, m, _) = load_with_machine(&ctx).await?;
    Ok(document::ok(super::machines::render(ctx.account_id(), &m)))
}

pub async fn show_license(ctx: Ctx) -> ApiResult<Response> {
    let (_, _, l) = load_with_machine(&ctx).await?;
    Ok(document::ok(super::licenses::render(ctx.account_id(), &l)))
}

pub async fn show_product(ctx: Ctx) -> ApiResult<Response> {
    let (_, _, l) = load_with_machine(&ctx).await?;
    super::licenses::product_of(&ctx, &l).await
}

pub async fn show(ctx: Ctx) -> ApiResult<Response> {
    let c = load(&ctx).await?;
    Ok(document::ok(render(ctx.account_id(), &c)))
}

pub async fn list(ctx: Ctx) -> ApiResult<Response> {
    let p = ctx.principal()?;
    let params = ctx.list_params()?;
    let mut machine = params.uuid_filter("machine");
    let mut license = params.uuid_filter("license");
    if let Some(l) = p.license() {
        license = Some(l.id);
    } else if !p.is_admin() {
        // Others list per machine they can see.
        let Some(m) = machine else { return Err(Error::access_denied().into()) };
        check_machine(&ctx, &m.to_string()).await?;
        machine = Some(m);
    }
    let listing = components::list(ctx.db(), ctx.account_id(), machine, license, params.page).await?;
    let account = ctx.account_id();
    Ok(params.document(listing, |c| render(account, &c)))
}

pub async fn update(ctx: Ctx, Body(body): Body) -> ApiResult<Response> {
    let (mut c, _, l) = load_with_machine(&ctx).await?;
    let data = parse_data::<ComponentInput, ComponentRels>(body, "components")?;
    if data.attributes.fingerprint.is_some() {
        return Err(Error::bad_request(
            "unpermitted parameter",
            Source::Pointer("/data/attributes/fingerprint".into()),
        )
        .into());
    }
    if let Some(n) = data.attributes.name {
        c.name = n;
    }
    if let Some(md) = data.attributes.metadata {
        c.metadata = Json(metadata::accept(md)?);
    }
    c.updated_at = time::now_ms();
    components::update(ctx.db(), &c, &[Raised::component("component.updated", &c, l.product_id)]).await?;
    Ok(document::ok(render(ctx.account_id(), &c)))
}

pub async fn delete(ctx: Ctx) -> ApiResult<Response> {
    let (c, _, l) = load_with_machine(&ctx).await?;
    components::delete(ctx.db(), ctx.account_id(), c.id, &[Raised::component("component.deleted", &c, l.product_id)])
        .await?;
    Ok(document::no_content())
}
