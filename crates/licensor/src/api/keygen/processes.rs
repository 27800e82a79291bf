//! Processes: spawn (with the process limit per leasing strategy), list, show, update,
//! kill, and heartbeats.

use axum::response::Response;
use serde::Deserialize;
use serde_json::Value;
use sqlx::types::Json;
use uuid::Uuid;

use super::document;
use super::error::ApiResult;
use super::extract::{parse_data, Body, Ctx, RelInput};
use crate::auth::Bearer;
use crate::domain::{heartbeat, metadata};
use crate::error::{Error, Source};
use crate::events::Raised;
use crate::model::{Process, ProcessLeasing};
use crate::store::licenses;
use crate::store::machines;
use crate::store::processes::{self, ProcessFilter, ProcessScope, SpawnRefusal};
use crate::time;

pub use crate::wire::processes::{render, ProcessAttributes};

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct ProcessInput {
    /// `Some(None)` for an explicit null.
    #[serde(default, deserialize_with = "super::extract::nullable")]
    pid: Option<Option<Value>>,
    metadata: Option<Value>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct ProcessRels {
    machine: Option<RelInput>,
}

/// Loads the machine (and license) a process belongs to, checking the caller may manage it.
async fn managed_machine(ctx: &Ctx, machine_id: &str) -> Result<(crate::model::Machine, crate::model::License), Error> {
    let p = ctx.principal()?;
    let m = machines::find_by_id_or_fingerprint(ctx.db(), ctx.account_id(), machine_id)
        .await?
        .ok_or_else(|| Error::invalid_rel("machine", "must exist", "MACHINE_NOT_FOUND"))?;
    let l = licenses::find(ctx.db(), ctx.account_id(), m.license_id)
        .await?
        .ok_or_else(|| Error::not_found("license", m.license_id.to_string()))?;
    // A process follows its machine: who may activate the machine may run processes on it.
    if crate::service::access::may_touch_machine(p, &l, m.owner_id, crate::service::access::MachineAction::Activate) {
        Ok((m, l))
    } else {
        Err(Error::access_denied())
    }
}

pub async fn create(ctx: Ctx, Body(body): Body) -> ApiResult<Response> {
    ctx.principal()?; // credentials before the body's checks
    let data = parse_data::<ProcessInput, ProcessRels>(body, "processes")?;
    let pointer = || Source::Pointer("/data/attributes/pid".into());
    let pid = match data.attributes.pid {
        Some(None) => return Err(Error::bad_request("cannot be null", pointer()).into()),
        Some(Some(Value::String(s))) if s.trim().is_empty() => {
            return Err(Error::bad_request("cannot be blank", pointer()).into())
        }
        Some(Some(Value::String(s))) => s,
        Some(Some(other)) => {
            let kind = match other {
                Value::Number(n) if n.is_f64() => "float",
                Value::Number(_) => "integer",
                Value::Bool(_) => "boolean",
                Value::Array(_) => "array",
                _ => "object",
            };
            let detail = format!("type mismatch (received {kind} expected string)");
            return Err(Error::bad_request(detail, pointer()).into());
        }
        None => return Err(Error::bad_request("is missing", pointer()).into()),
    };
    let chosen = super::extract::chosen_id(data.id.as_deref())?;
    if matches!(pid.as_str(), "actions" | "action") {
        return Err(Error::invalid_attr("pid", "is reserved", "PID_NOT_ALLOWED").into());
    }
    let machine_id = super::extract::required_rel_id(&data.relationships.machine, "machine")?;
    let (m, l) = managed_machine(&ctx, &machine_id).await?;
    let rules = l.rules();
    let now = time::now_ms();
    if let Some(id) = chosen {
        if processes::id_taken(ctx.db(), id).await? {
            return Err(super::extract::id_conflict("process").into());
        }
    }
    let process = Process {
        id: chosen.unwrap_or_else(crate::model::fleet_id),
        account_id: ctx.account_id(),
        machine_id: m.id,
        license_id: l.id,
        pid,
        last_heartbeat_at: now,
        metadata: Json(match data.attributes.metadata {
            Some(md) => metadata::accept(md)?,
            None => serde_json::json!({}),
        }),
        created_at: now,
        updated_at: now,
    };
    let (scope, limit) = match rules.process_leasing_strategy {
        ProcessLeasing::PerLicense => (ProcessScope::License, l.max_processes()),
        ProcessLeasing::PerUser => (ProcessScope::User(m.owner_id), l.max_processes()),
        ProcessLeasing::PerMachine => (ProcessScope::Machine, m.max_processes.or(l.max_processes())),
    };
    let max = limit.map(|max| rules.overage_allowance(max).unwrap_or(i64::MAX));
    let interval = rules.heartbeat_duration_secs();
    let events = [Raised::process("process.created", &process, interval, l.product_id)];
    match processes::spawn(ctx.db(), &process, scope, max, &events).await? {
        Ok(()) => {}
        Err(SpawnRefusal::PidTaken) => {
            return Err(Error::invalid_attr("pid", "has already been taken", "PID_TAKEN").into())
        }
        Err(SpawnRefusal::Limit) => {
            let what = match scope {
                ProcessScope::Machine => "machine",
                ProcessScope::License => "license",
                ProcessScope::User(_) => "user",
            };
            return Err(Error::invalid(
                format!("process count has exceeded maximum allowed for {what} ({})", limit.unwrap_or(0)),
                "MACHINE_PROCESS_LIMIT_EXCEEDED",
            )
            .into());
        }
    }
    Ok(document::created(render(ctx.account_id(), &process, rules.heartbeat_duration_secs(), l.product_id)))
}

async fn load(ctx: &Ctx) -> Result<(Process, crate::model::License), Error> {
    let id = ctx.param("id");
    let uuid = Uuid::parse_str(id).map_err(|_| Error::not_found("process", id))?;
    let p = processes::find(ctx.db(), ctx.account_id(), uuid).await?.ok_or_else(|| Error::not_found("process", id))?;
    let (_, l) = managed_machine(ctx, &p.machine_id.to_string()).await.map_err(|e| match e {
        Error::Invalid { .. } => Error::not_found("process", id),
        other => other,
    })?;
    Ok((p, l))
}

pub async fn show(ctx: Ctx) -> ApiResult<Response> {
    let (p, l) = load(&ctx).await?;
    Ok(document::ok(render(ctx.account_id(), &p, l.rules().heartbeat_duration_secs(), l.product_id)))
}

/// `GET /processes/{id}/machine`, `…/license`, `…/product`: the resources its links name.
pub async fn show_machine(ctx: Ctx) -> ApiResult<Response> {
    let (p, _) = load(&ctx).await?;
    let m = machines::find(ctx.db(), ctx.account_id(), p.machine_id)
        .await?
        .ok_or_else(|| Error::not_found("machine", p.machine_id.to_string()))?;
    Ok(document::ok(super::machines::render(ctx.account_id(), &m)))
}

pub async fn show_license(ctx: Ctx) -> ApiResult<Response> {
    let (_, l) = load(&ctx).await?;
    Ok(document::ok(super::licenses::render(ctx.account_id(), &l)))
}

pub async fn show_product(ctx: Ctx) -> ApiResult<Response> {
    let (_, l) = load(&ctx).await?;
    super::licenses::product_of(&ctx, &l).await
}

pub async fn list(ctx: Ctx) -> ApiResult<Response> {
    let principal = ctx.principal()?;
    let params = ctx.list_params()?;
    let mut f = ProcessFilter {
        machine: params.uuid_filter("machine"),
        license: params.uuid_filter("license"),
        product: params.uuid_filter("product"),
        user: None,
    };
    match &principal.bearer {
        Bearer::Admin(_) => {}
        Bearer::Product(p) => f.product = Some(p.id),
        Bearer::License(l) => f.license = Some(l.id),
        Bearer::User(u) => f.user = Some(u.id),
    }
    let listing = processes::list(ctx.db(), ctx.account_id(), &f, params.page).await?;
    // Render with each process's own license interval.
    let mut rows = Vec::with_capacity(listing.rows.len());
    for p in listing.rows {
        let l = licenses::find(ctx.db(), ctx.account_id(), p.license_id).await?;
        let (interval, product) =
            l.map(|l| (l.rules().heartbeat_duration_secs(), l.product_id)).unwrap_or((600, Uuid::nil()));
        rows.push((p, interval, product));
    }
    let account = ctx.account_id();
    Ok(params
        .document(crate::model::Listing { rows, total: listing.total }, |(p, i, prod)| render(account, &p, i, prod)))
}

pub async fn update(ctx: Ctx, Body(body): Body) -> ApiResult<Response> {
    let (mut p, l) = load(&ctx).await?;
    let data = parse_data::<ProcessInput, ProcessRels>(body, "processes")?;
    if data.attributes.pid.is_some() || data.relationships.machine.is_some() {
        return Err(Error::bad_request("unpermitted parameter", Source::Pointer("/data/attributes/pid".into())).into());
    }
    if let Some(md) = data.attributes.metadata {
        p.metadata = Json(metadata::accept(md)?);
    }
    p.updated_at = time::now_ms();
    // Keygen raises no event for a process's metadata.
    processes::update_metadata(ctx.db(), &p, &[]).await?;
    Ok(document::ok(render(ctx.account_id(), &p, l.rules().heartbeat_duration_secs(), l.product_id)))
}

pub async fn delete(ctx: Ctx) -> ApiResult<Response> {
    let (p, l) = load(&ctx).await?;
    let interval = l.rules().heartbeat_duration_secs();
    processes::delete(
        ctx.db(),
        ctx.account_id(),
        p.id,
        &[Raised::process("process.deleted", &p, interval, l.product_id)],
    )
    .await?;
    Ok(document::no_content())
}

/// `POST /processes/{id}/actions/ping`: a dead process stays dead unless the policy revives.
pub async fn ping(ctx: Ctx) -> ApiResult<Response> {
    let (mut p, l) = load(&ctx).await?;
    let rules = l.rules();
    let interval = rules.heartbeat_duration_secs();
    let now = time::now_ms();
    if heartbeat::process_status(interval, p.last_heartbeat_at, now) == crate::model::HeartbeatStatus::Dead
        && !heartbeat::can_resurrect(rules, Some(p.last_heartbeat_at), p.created_at, now)
    {
        return Err(Error::invalid("is dead", "PROCESS_HEARTBEAT_DEAD").into());
    }
    p.last_heartbeat_at = now;
    p.updated_at = now;
    let events = [Raised::process("process.heartbeat.ping", &p, interval, l.product_id)];
    processes::ping(ctx.db(), ctx.account_id(), p.id, now, &events).await?;
    Ok(document::ok(render(ctx.account_id(), &p, interval, l.product_id)))
}
