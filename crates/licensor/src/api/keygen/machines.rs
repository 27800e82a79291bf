//! Machines: activation (create) with limits that hold under concurrency, deactivation
//! (delete), update, heartbeats, and their relationships.

use axum::response::Response;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use sqlx::types::Json;
use uuid::Uuid;

use super::document::{self, Resource};
use super::error::ApiResult;
use super::extract::{decode_at, nullable, parse_data, rel_uuid, Body, Ctx, RelInput};
use crate::auth::{Bearer, Principal};
use crate::domain::{heartbeat, metadata};
use crate::error::{Error, Source};
use crate::model::{Component, ExpirationBasis, HeartbeatStatus, License, Machine};
use crate::store::licenses;
use crate::store::machines::{self, ActivationLimits, ActivationRefusal, MachineFilter, Uniqueness};
use crate::store::users;
use crate::time;

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct MachineAttributes {
    fingerprint: String,
    cores: Option<i64>,
    memory: Option<i64>,
    disk: Option<i64>,
    ip: Option<String>,
    hostname: Option<String>,
    platform: Option<String>,
    name: Option<String>,
    require_heartbeat: bool,
    heartbeat_status: HeartbeatStatus,
    heartbeat_duration: Option<i64>,
    max_processes: Option<i64>,
    last_check_out: Option<String>,
    last_heartbeat: Option<String>,
    next_heartbeat: Option<String>,
    metadata: Value,
    created: String,
    updated: String,
}

pub fn render(account: Uuid, m: &Machine) -> Resource<MachineAttributes> {
    render_with_status(account, m, None)
}

pub fn render_with_status(account: Uuid, m: &Machine, status: Option<HeartbeatStatus>) -> Resource<MachineAttributes> {
    let rules = &m.policy_rules.0;
    let now = time::now_ms();
    Resource::new(
        account,
        "machines",
        m.id,
        MachineAttributes {
            fingerprint: m.fingerprint.clone(),
            cores: m.cores,
            memory: m.memory,
            disk: m.disk,
            ip: m.ip.clone(),
            hostname: m.hostname.clone(),
            platform: m.platform.clone(),
            name: m.name.clone(),
            require_heartbeat: rules.require_heartbeat,
            heartbeat_status: status
                .unwrap_or_else(|| heartbeat::machine_status(rules, m.last_heartbeat_at, m.created_at, now)),
            heartbeat_duration: Some(rules.heartbeat_duration_secs()),
            max_processes: m.max_processes,
            last_check_out: time::iso_opt(m.last_check_out_at),
            last_heartbeat: time::iso_opt(m.last_heartbeat_at),
            next_heartbeat: time::iso_opt(heartbeat::next_heartbeat(rules, m.last_heartbeat_at)),
            metadata: metadata::render(&m.metadata.0),
            created: time::iso(m.created_at),
            updated: time::iso(m.updated_at),
        },
    )
    .account(account)
    .one("product", "products", Some(m.product_id))
    .one("license", "licenses", Some(m.license_id))
    .one("group", "groups", m.group_id)
    .one("owner", "users", m.owner_id)
    .many("components", None)
    .many("processes", None)
}

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
                id: Uuid::new_v4(),
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

/// What is done to a machine (or to its processes, which follow its rules).
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum MachineAction {
    Activate,
    Update,
    Deactivate,
    Ping,
    Reset,
}

/// Whether `p` may do `action` to a machine of `l` owned by `owner`, as Keygen's machine and
/// heartbeat policies decide: users only for machines they own or on licenses they own, and
/// never under a protected license; a license not to update itself when protected; heartbeat
/// resets only by the admin or the product.
pub(super) fn may(p: &Principal, l: &License, owner: Option<Uuid>, action: MachineAction) -> bool {
    match &p.bearer {
        Bearer::Admin(_) => true,
        Bearer::Product(prod) => prod.id == l.product_id,
        Bearer::License(me) => {
            me.id == l.id
                && match action {
                    MachineAction::Reset => false,
                    MachineAction::Update => !l.is_protected(),
                    _ => true,
                }
        }
        Bearer::User(u) => {
            action != MachineAction::Reset && !l.is_protected() && (owner == Some(u.id) || l.owner_id == Some(u.id))
        }
    }
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

/// The error an activation (or a resize) refused for `refusal` answers with, in Keygen's words.
pub(super) fn activation_error(
    refusal: ActivationRefusal,
    license: &License,
    limits: &ActivationLimits,
    group_limit: Option<(Uuid, i64)>,
    token_max: Option<i64>,
) -> Error {
    let holder = if limits.per_owner { "user" } else { "license" };
    match refusal {
        ActivationRefusal::FingerprintTaken => {
            Error::invalid_attr("fingerprint", taken_detail(limits.uniqueness), "FINGERPRINT_TAKEN")
        }
        ActivationRefusal::ComponentFingerprintTaken(i) => Error::Invalid {
            detail: component_taken_detail(limits.component_uniqueness).into(),
            code: "COMPONENTS_FINGERPRINT_TAKEN".into(),
            location: component_pointer(i),
        },
        ActivationRefusal::MachineLimit if limits.per_owner => Error::invalid(
            format!("machine count has exceeded maximum allowed for user ({})", license.max_machines().unwrap_or(0)),
            "MACHINE_LIMIT_EXCEEDED",
        ),
        ActivationRefusal::MachineLimit => Error::invalid(
            format!("machine count has exceeded maximum allowed for license ({})", license.max_machines().unwrap_or(0)),
            "MACHINE_LIMIT_EXCEEDED",
        ),
        ActivationRefusal::CoreLimit => Error::invalid(
            format!(
                "machine core count has exceeded maximum allowed for {holder} ({})",
                license.max_cores().unwrap_or(0)
            ),
            "MACHINE_CORE_LIMIT_EXCEEDED",
        ),
        ActivationRefusal::MemoryLimit => Error::invalid(
            format!("machine memory has exceeded maximum allowed for {holder} ({})", license.max_memory().unwrap_or(0)),
            "MACHINE_MEMORY_LIMIT_EXCEEDED",
        ),
        ActivationRefusal::DiskLimit => Error::invalid(
            format!("machine disk has exceeded maximum allowed for {holder} ({})", license.max_disk().unwrap_or(0)),
            "MACHINE_DISK_LIMIT_EXCEEDED",
        ),
        ActivationRefusal::GroupMachineLimit => Error::invalid_rel(
            "group",
            format!(
                "machine count has exceeded maximum allowed by current group ({})",
                group_limit.map(|(_, max)| max).unwrap_or(0)
            ),
            "GROUP_MACHINE_LIMIT_EXCEEDED",
        ),
        ActivationRefusal::ActivationsLimit => Error::Invalid {
            detail: format!("exceeds maximum allowed ({})", token_max.unwrap_or(0)).into(),
            code: "ACTIVATIONS_LIMIT_EXCEEDED".into(),
            location: Source::Pointer("/data/attributes/activations".into()),
        },
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
    let license = licenses::find_by_id_or_key(ctx.db(), ctx.account_id(), &license_id)
        .await?
        .ok_or_else(|| Error::invalid_rel("license", "must exist", "LICENSE_NOT_FOUND"))?;
    let owner_rel =
        if data.relationships.owner.is_some() { &data.relationships.owner } else { &data.relationships.user };
    let owner = match rel_uuid(owner_rel, "owner")?.flatten() {
        Some(id) => {
            let user = users::find(ctx.db(), ctx.account_id(), id)
                .await?
                .ok_or_else(|| Error::invalid_rel("owner", "must exist", "OWNER_NOT_FOUND"))?;
            // A machine belongs to one of its license's users (owner or attached).
            if !licenses::has_user(ctx.db(), &license, user.id).await? {
                return Err(Error::invalid_rel("owner", "must be a valid license user", "OWNER_INVALID").into());
            }
            Some(user.id)
        }
        None => None,
    };
    if !may(&p, &license, owner, MachineAction::Activate) {
        return Err(Error::access_denied().into());
    }
    let group = rel_uuid(&data.relationships.group, "group")?.flatten();
    let mut group_limit = None;
    if let Some(g) = group {
        let row = crate::store::groups::find(ctx.db(), ctx.account_id(), g)
            .await?
            .ok_or_else(|| Error::invalid_rel("group", "must exist", "GROUP_NOT_FOUND"))?;
        group_limit = row.max_machines.map(|max| (row.id, max));
    }
    let rules = license.rules().clone();
    let now = time::now_ms();
    // Clients may choose the machine's id (Keygen allows it, e.g. to make activation idempotent).
    let chosen = super::extract::chosen_id(data.id.as_deref())?;
    let preset_id = chosen.is_some();
    if let Some(id) = chosen {
        if machines::id_taken(ctx.db(), id).await? {
            return Err(super::extract::id_conflict("machine").into());
        }
    }
    let id = chosen.unwrap_or_else(Uuid::new_v4);
    let mut m = Machine::new(&license, id, fingerprint, now);
    m.owner_id = owner;
    m.group_id = group;
    let mut attrs = data.attributes;
    attrs.fingerprint = None;
    if !(p.is_admin() || p.product_id().is_some()) && attrs.max_processes.is_some() {
        return Err(Error::bad_request(
            "unpermitted parameter",
            Source::Pointer("/data/attributes/maxProcesses".into()),
        )
        .into());
    }
    apply(&mut m, attrs)?;
    let components = parse_components(data.relationships.components, ctx.account_id(), id, now)?;
    let mut limits = crate::domain::activation::limits(
        &license,
        p.token.as_ref().filter(|t| t.bearer_type == "license").map(|t| t.id),
    );
    limits.group_machines = group_limit;
    match machines::activate(ctx.db(), &m, &components, &limits).await {
        Ok(Ok(())) => {}
        Ok(Err(refusal)) => {
            let token_max = p.token.as_ref().and_then(|t| t.max_activations);
            return Err(activation_error(refusal, &license, &limits, group_limit, token_max).into());
        }
        Err(Error::Database(e)) if crate::db::is_unique_violation(&e) && preset_id => {
            return Err(super::extract::id_conflict("machine").into());
        }
        Err(Error::Database(e)) if crate::db::is_unique_violation(&e) => {
            return Err(Error::invalid_attr("fingerprint", "has already been taken", "FINGERPRINT_TAKEN").into());
        }
        Err(e) => return Err(e.into()),
    }
    if rules.expiration_basis == ExpirationBasis::FromFirstActivation {
        if let Some(expiry) = crate::domain::license::expiry_from(&rules, now) {
            licenses::start_expiry_clock(ctx.db(), ctx.account_id(), license.id, expiry).await?;
        }
    }
    Ok(document::created(render(ctx.account_id(), &m)))
}

/// Loads the machine named by `id` (UUID or fingerprint) with its license, if the caller may see it.
pub async fn load(ctx: &Ctx) -> Result<(Machine, License), Error> {
    let p = ctx.principal()?;
    let id = ctx.param("id");
    let m = machines::find_by_id_or_fingerprint(ctx.db(), ctx.account_id(), id)
        .await?
        .ok_or_else(|| Error::not_found("machine", id))?;
    let l = licenses::find(ctx.db(), ctx.account_id(), m.license_id)
        .await?
        .ok_or_else(|| Error::not_found("machine", id))?;
    let visible = super::licenses::can_read(ctx, p, &l).await? || p.user_id().is_some_and(|u| m.owner_id == Some(u));
    // Lookups are scoped to what the bearer sees: a machine it cannot see is not found.
    if visible {
        Ok((m, l))
    } else {
        Err(Error::not_found("machine", id))
    }
}

pub(super) async fn load_managed(ctx: &Ctx, action: MachineAction) -> Result<(Machine, License), Error> {
    let (m, l) = load(ctx).await?;
    if may(ctx.principal()?, &l, m.owner_id, action) {
        Ok((m, l))
    } else {
        Err(Error::access_denied())
    }
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
    let f = MachineFilter { license: Some(l.id), ..Default::default() };
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
    let before = (m.cores, m.memory, m.disk);
    apply(&mut m, data.attributes)?;
    m.updated_at = time::now_ms();
    // Only the amounts that changed are checked against the license's limits.
    let mut limits = crate::domain::activation::limits(&license, None);
    limits.max_machines = None;
    limits.max_cores = limits.max_cores.filter(|_| m.cores != before.0);
    limits.max_memory = limits.max_memory.filter(|_| m.memory != before.1);
    limits.max_disk = limits.max_disk.filter(|_| m.disk != before.2);
    if let Err(refusal) = machines::update(ctx.db(), &m, Some(&limits)).await? {
        return Err(activation_error(refusal, &license, &limits, None, None).into());
    }
    Ok(document::ok(render(ctx.account_id(), &m)))
}

/// `DELETE /machines/{id}`: deactivation.
pub async fn delete(ctx: Ctx) -> ApiResult<Response> {
    let (m, _) = load_managed(&ctx, MachineAction::Deactivate).await?;
    let token = ctx.principal()?.token.as_ref().filter(|t| t.bearer_type == "license");
    match machines::deactivate(ctx.db(), ctx.account_id(), m.id, token.map(|t| t.id)).await? {
        None => Err(Error::Invalid {
            detail: format!("exceeds maximum allowed ({})", token.and_then(|t| t.max_deactivations).unwrap_or(0))
                .into(),
            code: "DEACTIVATIONS_LIMIT_EXCEEDED".into(),
            location: Source::Pointer("/data/attributes/deactivations".into()),
        }
        .into()),
        Some(_) => Ok(document::no_content()),
    }
}

/// `POST /machines/{id}/actions/ping`: a heartbeat. A dead machine is revived only if its
/// policy's resurrection strategy allows it now; else 422 MACHINE_HEARTBEAT_DEAD.
pub async fn ping(ctx: Ctx) -> ApiResult<Response> {
    let (mut m, _) = load_managed(&ctx, MachineAction::Ping).await?;
    let rules = m.policy_rules.0.clone();
    let now = time::now_ms();
    let status = heartbeat::machine_status(&rules, m.last_heartbeat_at, m.created_at, now);
    let mut shown = None;
    if status == HeartbeatStatus::Dead {
        if !heartbeat::can_resurrect(&rules, m.last_heartbeat_at, m.created_at, now) {
            return Err(Error::invalid("is dead", "MACHINE_HEARTBEAT_DEAD").into());
        }
        shown = Some(HeartbeatStatus::Resurrected);
    }
    machines::set_heartbeat(ctx.db(), ctx.account_id(), m.id, Some(now), now).await?;
    m.last_heartbeat_at = Some(now);
    m.updated_at = now;
    Ok(document::ok(render_with_status(ctx.account_id(), &m, shown)))
}

/// `POST /machines/{id}/actions/reset`: clears the heartbeat (back to NOT_STARTED).
pub async fn reset(ctx: Ctx) -> ApiResult<Response> {
    let (mut m, _) = load_managed(&ctx, MachineAction::Reset).await?;
    let now = time::now_ms();
    machines::set_heartbeat(ctx.db(), ctx.account_id(), m.id, None, now).await?;
    m.last_heartbeat_at = None;
    m.updated_at = now;
    Ok(document::ok(render(ctx.account_id(), &m)))
}

pub async fn show_license(ctx: Ctx) -> ApiResult<Response> {
    let (_, l) = load(&ctx).await?;
    Ok(document::ok(super::licenses::render(ctx.account_id(), &l)))
}
