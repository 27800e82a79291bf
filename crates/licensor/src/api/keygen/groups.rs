//! Groups: CRUD.

use axum::response::Response;
use serde::Deserialize;
use serde_json::Value;
use sqlx::types::Json;
use uuid::Uuid;

use super::document;
use super::error::ApiResult;
use super::extract::{nullable, parse_data, Body, Ctx, NoRels};
use crate::domain::metadata;
use crate::error::{Error, Source};
use crate::model::Group;
use crate::store::groups;
use crate::time;

pub use crate::wire::groups::{render, GroupAttributes};

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct GroupInput {
    name: Option<String>,
    #[serde(default, deserialize_with = "nullable")]
    max_users: Option<Option<i64>>,
    #[serde(default, deserialize_with = "nullable")]
    max_licenses: Option<Option<i64>>,
    #[serde(default, deserialize_with = "nullable")]
    max_machines: Option<Option<i64>>,
    metadata: Option<Value>,
}

fn apply(g: &mut Group, a: GroupInput) -> Result<(), Error> {
    if let Some(name) = a.name {
        crate::service::catalog::not_blank("name", &name)?;
        g.name = name;
    }
    for (attr, input, slot) in [
        ("maxUsers", a.max_users, &mut g.max_users),
        ("maxLicenses", a.max_licenses, &mut g.max_licenses),
        ("maxMachines", a.max_machines, &mut g.max_machines),
    ] {
        if let Some(v) = input {
            crate::service::catalog::group_cap(attr, v)?;
            *slot = v;
        }
    }
    if let Some(m) = a.metadata {
        g.metadata = Json(metadata::accept(m)?);
    }
    Ok(())
}

pub async fn create(ctx: Ctx, Body(body): Body) -> ApiResult<Response> {
    ctx.operator()?;
    let data = parse_data::<GroupInput, NoRels>(body, "groups")?;
    if data.attributes.name.is_none() {
        return Err(Error::bad_request("is missing", Source::Pointer("/data/attributes/name".into())).into());
    }
    let mut g = Group::new(ctx.account_id(), String::new(), time::now_ms());
    apply(&mut g, data.attributes)?;
    crate::service::catalog::create_group(ctx.db(), &g).await?;
    Ok(document::created(render(ctx.account_id(), &g)))
}

pub(super) async fn load(ctx: &Ctx) -> Result<Group, Error> {
    let p = ctx.principal()?;
    let id = ctx.param("id");
    let uuid = Uuid::parse_str(id).map_err(|_| Error::not_found("group", id))?;
    let g = groups::find(ctx.db(), ctx.account_id(), uuid).await?.ok_or_else(|| Error::not_found("group", id))?;
    let own = match &p.bearer {
        crate::auth::Bearer::User(u) => u.group_id == Some(g.id),
        crate::auth::Bearer::License(l) => l.group_id == Some(g.id),
        _ => false,
    };
    if p.is_admin() || p.product_id().is_some() || own {
        Ok(g)
    } else {
        Err(Error::access_denied())
    }
}

pub async fn show(ctx: Ctx) -> ApiResult<Response> {
    let g = load(&ctx).await?;
    Ok(document::ok(render(ctx.account_id(), &g)))
}

pub async fn list(ctx: Ctx) -> ApiResult<Response> {
    let p = ctx.principal()?;
    let params = ctx.list_params()?;
    let only = match &p.bearer {
        crate::auth::Bearer::Admin(_) | crate::auth::Bearer::Product(_) => None,
        crate::auth::Bearer::User(u) => Some(u.group_id.unwrap_or(Uuid::nil())),
        crate::auth::Bearer::License(l) => Some(l.group_id.unwrap_or(Uuid::nil())),
    };
    let listing = groups::list(ctx.db(), ctx.account_id(), only, params.page).await?;
    let account = ctx.account_id();
    Ok(params.document(listing, |g| render(account, &g)))
}

pub async fn update(ctx: Ctx, Body(body): Body) -> ApiResult<Response> {
    ctx.operator()?;
    let mut g = load(&ctx).await?;
    let data = parse_data::<GroupInput, NoRels>(body, "groups")?;
    apply(&mut g, data.attributes)?;
    g.updated_at = time::now_ms();
    groups::update(ctx.db(), &g, &[crate::events::Raised::group("group.updated", &g)]).await?;
    Ok(document::ok(render(ctx.account_id(), &g)))
}

pub async fn delete(ctx: Ctx) -> ApiResult<Response> {
    ctx.operator()?;
    let g = load(&ctx).await?;
    groups::delete(ctx.db(), ctx.account_id(), g.id, &[crate::events::Raised::group("group.deleted", &g)]).await?;
    Ok(document::no_content())
}
