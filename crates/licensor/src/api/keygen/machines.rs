//! Machines: activation (create) with limits that hold under concurrency, deactivation
//! (delete), update, heartbeats, and their relationships.

use axum::response::Response;
use serde::Deserialize;
use serde_json::{json, Value};
use sqlx::types::Json;
use uuid::Uuid;

use super::document;
use super::error::ApiResult;
use super::extract::{decode_at, nullable, parse_data, rel_uuid, Body, Ctx, RelInput};
use crate::auth::Bearer;
use crate::domain::metadata;
use crate::error::{Error, Source};
use crate::model::{Component, License, Machine, Uniqueness};
use crate::service;
use crate::service::access::MachineAction;
use crate::service::machines::{ActivateError, NewMachine, Refusal};
use crate::store::licenses;
use crate::store::machines::{self, MachineFilter};
use crate::time;

pub use crate::wire::machines::{render, render_with_status, MachineAttributes};

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct MachineInput {
    fingerprint: Option<String>,
    #[serde(default, deserialize_with = "nullable")]
    name: Option<Option<String>>,
    #[serde(default, deserialize_with = "nullable")]
    ip: Option<Option<String>>,
    #[serde(default, deserialize_with = "nullable")]
    hostname: Option<Option<String>>,
    #[serde(default, deserialize_with = "nullable")]
    platform: Option<Option<String>>,
    #[serde(default, deserialize_with = "nullable")]
    cores: Option<Option<i64>>,
    #[serde(default, deserialize_with = "nullable")]
    memory: Option<Option<i64>>,
    #[serde(default, deserialize_with = "nullable")]
    disk: Option<Option<i64>>,
    #[serde(default, deserialize_with = "nullable")]
    max_processes: Option<Option<i64>>,
    metadata: Option<Value>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct MachineRels {
    license: Option<RelInput>,
    owner: Option<RelInput>,
    user: Option<RelInput>,
    group: Option<RelInput>,
    components: Option<Value>,
}

fn apply(m: &mut Machine, a: MachineInput) -> Result<(), Error> {
    if let Some(v) = a.name {
        m.name = v;
    }
    if let Some(v) = a.ip {
        m.ip = v;
    }
    if let Some(v) = a.hostname {
        m.hostname = v;
    }
    if let Some(v) = a.platform {
        m.platform = v;
    }
    // Keygen's bounds: counts are 32-bit, memory and disk any positive 64-bit size (their
    // sums per license saturate rather than overflow, see migration 0009).
    for (attr, input, slot) in [
        ("cores", a.cores, &mut m.cores),
        ("memory", a.memory, &mut m.memory),
        ("disk", a.disk, &mut m.disk),
        ("maxProcesses", a.max_processes, &mut m.max_processes),
    ] {
        if let Some(v) = input {
            if let Some(n) = v {
                crate::domain::policy::check_range(attr, n, 1)?;
            }
            *slot = v;
        }
    }
    if let Some(md) = a.metadata {
        m.metadata = Json(metadata::accept(md)?);
    }
    Ok(())
}

/// Nested components given at activation: `{"data": [{"type": "components", "attributes": {fingerprint, name}}]}`.
fn parse_components(value: Option<Value>, account: Uuid, machine: Uuid, now: i64) -> Result<Vec<Component>, Error> {
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Many {
        data: Vec<One>,
    }
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct One {
        #[serde(rename = "type")]
        _kind: String,
        attributes: Attrs,
    }
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Attrs {
        fingerprint: String,
        name: String,
        #[serde(default)]
        metadata: Option<Value>,
    }
    let Some(value) = value else { return Ok(Vec::new()) };
    let many: Many = decode_at(value, "/data/relationships/components")?;
    let fingerprints: Vec<&str> = many.data.iter().map(|c| c.attributes.fingerprint.as_str()).collect();
    if let Some(i) =
        (0..fingerprints.len()).find(|&i| fingerprints.iter().filter(|f| **f == fingerprints[i]).count() > 1)
    {
        return Err(Error::Invalid {
            detail: "is duplicated".into(),
            code: "COMPONENTS_FINGERPRINT_CONFLICT".into(),
            location: component_pointer(i),
        });
    }
    many.data
        .into_iter()
        .map(|c| {
            Ok(Component {
                id: crate::model::fleet_id(),
                account_id: account,
                machine_id: machine,
                fingerprint: c.attributes.fingerprint,
                name: c.attributes.name,
                metadata: Json(match c.attributes.metadata {
                    Some(m) => metadata::accept(m)?,
                    None => json!({}),
                }),
                created_at: now,
                updated_at: now,
            })
        })
        .collect()
}

fn taken_detail(u: Uniqueness) -> &'static str {
    match u {
        Uniqueness::Account => "has already been taken for this account",
        Uniqueness::Product(_) => "has already been taken for this product",
        Uniqueness::Policy(_) => "has already been taken for this policy",
        Uniqueness::License => "has already been taken",
    }
}

/// Keygen's wording for a component fingerprint taken within its uniqueness scope.
pub(super) fn component_taken_detail(u: Option<Uniqueness>) -> &'static str {
    match u {
        Some(Uniqueness::License) => "has already been taken for this license",
        Some(u) => taken_detail(u),
        None => "has already been taken",
    }
}

/// Where an error about the `i`th component of an activation points.
fn component_pointer(i: usize) -> Source {
    Source::Pointer(format!("/data/relationships/components/data/{i}/attributes/fingerprint").into())
}

/// An activation (or resize) refusal in Keygen's words.
pub(super) fn refusal_error(refusal: Refusal) -> Error {
    let holder = |per_user: bool| if per_user { "user" } else { "license" };
    match refusal {
        Refusal::FingerprintTaken(u) => Error::invalid_attr("fingerprint", taken_detail(u), "FINGERPRINT_TAKEN"),
        Refusal::ComponentFingerprintTaken { index, uniqueness } => Error::Invalid {
            detail: component_taken_detail(uniqueness).into(),
            code: "COMPONENTS_FINGERPRINT_TAKEN".into(),
            location: component_pointer(index),
        },
        Refusal::MachineLimit { max, per_user } => Error::invalid(
            format!("machine count has exceeded maximum allowed for {} ({max})", holder(per_user)),
            "MACHINE_LIMIT_EXCEEDED",
        ),
        Refusal::CoreLimit { max, per_user } => Error::invalid(
            format!("machine core count has exceeded maximum allowed for {} ({max})", holder(per_user)),
            "MACHINE_CORE_LIMIT_EXCEEDED",
        ),
        Refusal::MemoryLimit { max, per_user } => Error::invalid(
            format!("machine memory has exceeded maximum allowed for {} ({max})", holder(per_user)),
            "MACHINE_MEMORY_LIMIT_EXCEEDED",
        ),
        Refusal::DiskLimit { max, per_user } => Error::invalid(
            format!("machine disk has exceeded maximum allowed for {} ({max})", holder(per_user)),
            "MACHINE_DISK_LIMIT_EXCEEDED",
        ),
        Refusal::GroupMachineLimit { max } => Error::invalid_rel(
            "group",
            format!("machine count has exceeded maximum allowed by current group ({max})"),
            "GROUP_MACHINE_LIMIT_EXCEEDED",
        ),
        Refusal::ActivationsLimit { max } => Error::Invalid {
            detail: format!("exceeds maximum allowed ({max})").into(),
            code: "ACTIVATIONS_LIMIT_EXCEEDED".into(),
            location: Source::Pointer("/data/attributes/activations".into()),
        },
        Refusal::IdTaken => super::extract::id_conflict("machine"),
    }
}

/// A failed activation, resize or move as Keygen answers it.
pub(super) fn activate_error(e: ActivateError) -> Error {
    match e {
        ActivateError::Refused(r) => refusal_error(r),
        ActivateError::Failed(e) => e,
    }
}

/// `POST /machines`: activation.
pub async fn create(ctx: Ctx, Body(body): Body) -> ApiResult<Response> {
    let p = ctx.principal()?.clone();
    let data = parse_data::<MachineInput, MachineRels>(body, "machines")?;
    let fingerprint = data
        .attributes
        .fingerprint
        .clone()
        .ok_or_else(|| Error::bad_request("is missing", Source::Pointer("/data/attributes/fingerprint".into())))?;
    if fingerprint.trim().is_empty() {
        return Err(Error::invalid_attr("fingerprint", "cannot be blank", "FINGERPRINT_BLANK").into());
    }
    if fingerprint.len() > 4096 {
        return Err(Error::invalid_attr(
            "fingerprint",
            "is too long (maximum is 4096 characters)",
            "FINGERPRINT_TOO_LONG",
        )
        .into());
    }
    if matches!(fingerprint.as_str(), "actions" | "action") {
        return Err(Error::invalid_attr("fingerprint", "is reserved", "FINGERPRINT_NOT_ALLOWED").into());
    }
    let license_id = super::extract::required_rel_id(&data.relationships.license, "license")?;
    let license = service::machines::license_named(ctx.db(), &p, ctx.account_id(), &license_id)
        .await?
        .ok_or_else(|| Error::invalid_rel("license", "must exist", "LICENSE_NOT_FOUND"))?;
    let owner_rel =
        if data.relationships.owner.is_some() { &data.relationships.owner } else { &data.relationships.user };
    let owner = rel_uuid(owner_rel, "owner")?.flatten();
    let group = rel_uuid(&data.relationships.group, "group")?.flatten();
    let admission = service::machines::admit(ctx.db(), &p, &license, owner, group).await.map_err(activate_error)?;
    // Clients may choose the machine's id (Keygen allows it, e.g. to make activation idempotent).
    let chosen = super::extract::chosen_id(data.id.as_deref())?;
    if let Some(id) = chosen {
        service::machines::ensure_id_free(ctx.db(), id).await.map_err(activate_error)?;
    }
    if !service::access::is_operator(&p) && data.attributes.max_processes.is_some() {
        return Err(Error::bad_request(
            "unpermitted parameter",
            Source::Pointer("/data/attributes/maxProcesses".into()),
        )
        .into());
    }
    let now = time::now_ms();
    let mut m = Machine::new(&license, chosen.unwrap_or_else(crate::model::fleet_id), fingerprint, now);
    (m.owner_id, m.group_id) = (owner, group);
    let mut attrs = data.attributes;
    attrs.fingerprint = None;
    apply(&mut m, attrs)?;
    let components = parse_components(data.relationships.components, ctx.account_id(), m.id, now)?;
    let new = NewMachine { machine: m, components, chosen_id: chosen.is_some() };
    let m = service::machines::activate(&ctx.state, &p, &license, admission, new).await.map_err(activate_error)?;
    ctx.state.metrics.activations.inc(&["keygen"]);
    Ok(document::created(render(ctx.account_id(), &m)))
}

/// The machine named by `id` (UUID or fingerprint) with its license, if the caller may see it.
pub async fn load(ctx: &Ctx) -> Result<(Machine, License), Error> {
    service::machines::find(ctx.db(), ctx.principal()?, ctx.account_id(), ctx.param("id")).await
}

/// [`load`], for a caller who may also do `action` to it.
pub(super) async fn load_managed(ctx: &Ctx, action: MachineAction) -> Result<(Machine, License), Error> {
    service::machines::find_for(ctx.db(), ctx.principal()?, ctx.account_id(), ctx.param("id"), action).await
}

pub async fn show(ctx: Ctx) -> ApiResult<Response> {
    let (m, _) = load(&ctx).await?;
    Ok(document::ok(render(ctx.account_id(), &m)))
}

pub async fn list(ctx: Ctx) -> ApiResult<Response> {
    let p = ctx.principal()?;
    let params = ctx.list_params()?;
    let license = match params.filter("license") {
        Some(id) => Some(
            licenses::find_by_id_or_key(ctx.db(), ctx.account_id(), id).await?.map(|l| l.id).unwrap_or(Uuid::nil()),
        ),
        None => None,
    };
    let mut f = MachineFilter {
        license,
        fingerprint: params.filter("fingerprint").map(str::to_string),
        owner: params.uuid_filter("owner"),
        product: params.uuid_filter("product"),
        policy: params.uuid_filter("policy"),
        group: params.uuid_filter("group"),
        user: params.uuid_filter("user"),
        narrow: params.narrow(),
    };
    match &p.bearer {
        Bearer::Admin(_) => {}
        Bearer::Product(prod) => f.product = Some(prod.id),
        Bearer::License(l) => f.license = Some(l.id),
        Bearer::User(u) => f.user = Some(u.id),
    }
    let listing = machines::list(ctx.db(), ctx.account_id(), &f, params.page).await?;
    let account = ctx.account_id();
    Ok(params.document(listing, |m| render(account, &m)))
}

/// `GET /licenses/{id}/machines`.
pub async fn list_for_license(ctx: Ctx) -> ApiResult<Response> {
    let l = super::licenses::load(&ctx).await?;
    let params = ctx.list_params()?;
    let f = MachineFilter { license: Some(l.id), narrow: params.narrow(), ..Default::default() };
    let listing = machines::list(ctx.db(), ctx.account_id(), &f, params.page).await?;
    let account = ctx.account_id();
    Ok(params.document(listing, |m| render(account, &m)))
}

pub async fn update(ctx: Ctx, Body(body): Body) -> ApiResult<Response> {
    let (mut m, license) = load_managed(&ctx, MachineAction::Update).await?;
    let p = ctx.principal()?;
    let data = parse_data::<MachineInput, MachineRels>(body, "machines")?;
    if data.attributes.fingerprint.is_some() {
        return Err(Error::bad_request(
            "is unpermitted (fingerprints are immutable)",
            Source::Pointer("/data/attributes/fingerprint".into()),
        )
        .into());
    }
    if !(p.is_admin() || p.product_id().is_some()) && data.attributes.max_processes.is_some() {
        return Err(Error::bad_request(
            "unpermitted parameter",
            Source::Pointer("/data/attributes/maxProcesses".into()),
        )
        .into());
    }
    if data.relationships.license.is_some()
        || data.relationships.owner.is_some()
        || data.relationships.group.is_some()
        || data.relationships.components.is_some()
    {
        return Err(Error::bad_request("unpermitted parameter", Source::Pointer("/data/relationships".into())).into());
    }
    let before = m.clone();
    apply(&mut m, data.attributes)?;
    let m = service::machines::resize(ctx.db(), &license, &before, m).await.map_err(activate_error)?;
    Ok(document::ok(render(ctx.account_id(), &m)))
}

/// `DELETE /machines/{id}`: deactivation.
pub async fn delete(ctx: Ctx) -> ApiResult<Response> {
    let (m, _) = load_managed(&ctx, MachineAction::Deactivate).await?;
    service::machines::deactivate(&ctx.state, ctx.principal()?, &m).await?;
    ctx.state.metrics.deactivations.inc(&["keygen"]);
    Ok(document::no_content())
}

/// `POST /machines/{id}/actions/ping`: a heartbeat.
pub async fn ping(ctx: Ctx) -> ApiResult<Response> {
    let (m, _) = load_managed(&ctx, MachineAction::Ping).await?;
    let (m, shown) = service::machines::ping(ctx.db(), m).await?;
    Ok(document::ok(render_with_status(ctx.account_id(), &m, shown)))
}

/// `POST /machines/{id}/actions/reset`: clears the heartbeat (back to NOT_STARTED).
pub async fn reset(ctx: Ctx) -> ApiResult<Response> {
    let (m, _) = load_managed(&ctx, MachineAction::Reset).await?;
    let m = service::machines::reset_heartbeat(ctx.db(), m).await?;
    Ok(document::ok(render(ctx.account_id(), &m)))
}

pub async fn show_license(ctx: Ctx) -> ApiResult<Response> {
    let (_, l) = load(&ctx).await?;
    Ok(document::ok(super::licenses::render(ctx.account_id(), &l)))
}
