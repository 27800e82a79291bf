//! A machine's relationships: its product, owner and group (readable by whoever sees the
//! machine, changed by admins and its product, with the limits re-checked), and its components
//! and processes.

use axum::response::Response;
use uuid::Uuid;

use super::document;
use super::error::ApiResult;
use super::extract::{Body, Ctx};
use super::licenses::{null_data, parse_to_one};
use super::machines::{activate_error, load, load_managed};
use crate::error::Error;
use crate::service;
use crate::service::access::MachineAction;
use crate::store::processes::ProcessFilter;
use crate::store::{components, groups, processes, users};

pub async fn show_product(ctx: Ctx) -> ApiResult<Response> {
    let (_, l) = load(&ctx).await?;
    super::licenses::product_of(&ctx, &l).await
}

pub async fn show_owner(ctx: Ctx) -> ApiResult<Response> {
    let (m, _) = load(&ctx).await?;
    ctx.principal()?.reads_catalog()?;
    let owner = match m.owner_id {
        Some(id) => users::find(ctx.db(), ctx.account_id(), id).await?,
        None => None,
    };
    Ok(owner.map_or_else(null_data, |u| document::ok(super::users::render(ctx.account_id(), &u))))
}

pub async fn show_group(ctx: Ctx) -> ApiResult<Response> {
    let (m, _) = load(&ctx).await?;
    let group = match m.group_id {
        Some(id) => groups::find(ctx.db(), ctx.account_id(), id).await?,
        None => None,
    };
    Ok(group.map_or_else(null_data, |g| document::ok(super::groups::render(ctx.account_id(), &g))))
}

/// `PUT /machines/{id}/owner`: the new owner must be one of the license's users; under PER_USER
/// leasing the machine moves into the new owner's allowance, which must have room.
pub async fn change_owner(ctx: Ctx, Body(body): Body) -> ApiResult<Response> {
    let (m, l) = load_managed(&ctx, MachineAction::Reassign).await?;
    let owner = parse_to_one(body, "owner")?;
    let m = service::machines::set_owner(ctx.db(), ctx.principal()?, &l, m, owner).await.map_err(activate_error)?;
    Ok(document::ok(super::machines::render(ctx.account_id(), &m)))
}

/// `PUT /machines/{id}/group`: the new group must exist and have room for one more machine.
pub async fn change_group(ctx: Ctx, Body(body): Body) -> ApiResult<Response> {
    let (m, l) = load_managed(&ctx, MachineAction::Reassign).await?;
    let group = parse_to_one(body, "group")?;
    let m = service::machines::set_group(ctx.db(), ctx.principal()?, &l, m, group).await.map_err(activate_error)?;
    Ok(document::ok(super::machines::render(ctx.account_id(), &m)))
}

pub async fn list_components(ctx: Ctx) -> ApiResult<Response> {
    let (m, _) = load(&ctx).await?;
    let params = ctx.list_params()?;
    let listing = components::list(ctx.db(), ctx.account_id(), Some(m.id), None, params.page).await?;
    let account = ctx.account_id();
    Ok(params.document(listing, |c| super::components::render(account, &c)))
}

pub async fn show_component(ctx: Ctx) -> ApiResult<Response> {
    let (m, _) = load(&ctx).await?;
    let id = ctx.param("component");
    let c = match Uuid::parse_str(id) {
        Ok(uuid) => components::find(ctx.db(), ctx.account_id(), uuid).await?.filter(|c| c.machine_id == m.id),
        Err(_) => None,
    };
    let c = c.ok_or_else(|| Error::not_found("component", id))?;
    Ok(document::ok(super::components::render(ctx.account_id(), &c)))
}

pub async fn list_processes(ctx: Ctx) -> ApiResult<Response> {
    let (m, l) = load(&ctx).await?;
    let params = ctx.list_params()?;
    let f = ProcessFilter { machine: Some(m.id), license: None, product: None, user: None };
    let listing = processes::list(ctx.db(), ctx.account_id(), &f, params.page).await?;
    let (account, interval) = (ctx.account_id(), l.rules().heartbeat_duration_secs());
    Ok(params.document(listing, |p| super::processes::render(account, &p, interval, l.product_id)))
}

pub async fn show_process(ctx: Ctx) -> ApiResult<Response> {
    let (m, l) = load(&ctx).await?;
    let id = ctx.param("process");
    let p = match Uuid::parse_str(id) {
        Ok(uuid) => processes::find(ctx.db(), ctx.account_id(), uuid).await?.filter(|p| p.machine_id == m.id),
        Err(_) => None,
    };
    let p = p.ok_or_else(|| Error::not_found("process", id))?;
    let interval = l.rules().heartbeat_duration_secs();
    Ok(document::ok(super::processes::render(ctx.account_id(), &p, interval, l.product_id)))
}
