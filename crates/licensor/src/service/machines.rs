//! Machine use cases: activation (with every limit, on every surface that activates), resizing,
//! deactivation and heartbeats.

use uuid::Uuid;

use super::access::{self, MachineAction};
use crate::auth::Principal;
use crate::db::{is_unique_violation, Db};
use crate::domain::activation;
use crate::domain::heartbeat;
use crate::error::{Error, Result, Source};
use crate::events::Raised;
use crate::model::{
    ActivationLimits, ActivationRefusal, Component, ExpirationBasis, HeartbeatStatus, License, Machine, Token,
    Uniqueness,
};
use crate::ratelimit;
use crate::state::AppState;
use crate::store::machines as store;
use crate::store::{groups, licenses, users};
use crate::time;

/// Why an activation (or a resize) was refused, with what each surface needs to word it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// The fingerprint is taken within the policy's uniqueness scope.
    FingerprintTaken(Uniqueness),
    /// The component at `index` of the request holds a fingerprint taken within `uniqueness`
    /// (`None`: within the machine).
    ComponentFingerprintTaken {
        index: usize,
        uniqueness: Option<Uniqueness>,
    },
    /// A license limit is reached; `per_user` when it counts the owner's machines only.
    MachineLimit {
        max: i64,
        per_user: bool,
    },
    CoreLimit {
        max: i64,
        per_user: bool,
    },
    MemoryLimit {
        max: i64,
        per_user: bool,
    },
    DiskLimit {
        max: i64,
        per_user: bool,
    },
    /// The machine's group holds its most machines.
    GroupMachineLimit {
        max: i64,
    },
    /// The license token's `maxActivations` is spent.
    ActivationsLimit {
        max: i64,
    },
    /// A client-chosen id is taken.
    IdTaken,
}

/// An activation either refused by a rule (which each surface words its own way) or failed.
#[derive(Debug)]
pub enum ActivateError {
    Refused(Refusal),
    Failed(Error),
}

impl From<Error> for ActivateError {
    fn from(e: Error) -> Self {
        ActivateError::Failed(e)
    }
}

/// A machine to activate: the draft row (from [`Machine::new`], attributes set) and its
/// components.
pub struct NewMachine {
    pub machine: Machine,
    pub components: Vec<Component>,
    /// Whether the client chose the machine's id.
    pub chosen_id: bool,
}

fn refusal(r: ActivationRefusal, l: &License, limits: &ActivationLimits, token: Option<&Token>) -> Refusal {
    let per_user = limits.per_owner;
    match r {
        ActivationRefusal::FingerprintTaken => Refusal::FingerprintTaken(limits.uniqueness),
        ActivationRefusal::ComponentFingerprintTaken(index) => {
            Refusal::ComponentFingerprintTaken { index, uniqueness: limits.component_uniqueness }
        }
        ActivationRefusal::MachineLimit => Refusal::MachineLimit { max: l.max_machines().unwrap_or(0), per_user },
        ActivationRefusal::CoreLimit => Refusal::CoreLimit { max: l.max_cores().unwrap_or(0), per_user },
        ActivationRefusal::MemoryLimit => Refusal::MemoryLimit { max: l.max_memory().unwrap_or(0), per_user },
        ActivationRefusal::DiskLimit => Refusal::DiskLimit { max: l.max_disk().unwrap_or(0), per_user },
        ActivationRefusal::GroupMachineLimit => {
            Refusal::GroupMachineLimit { max: limits.group_machines.map(|(_, max)| max).unwrap_or(0) }
        }
        ActivationRefusal::ActivationsLimit => {
            Refusal::ActivationsLimit { max: token.and_then(|t| t.max_activations).unwrap_or(0) }
        }
    }
}

/// The license token `p` authenticated with, whose activation and deactivation allowances its
/// machine changes count against.
fn license_token(p: &Principal) -> Option<&Token> {
    p.token.as_ref().filter(|t| t.bearer_type == "license")
}

/// The license an activation names by id or key. When the caller is that license (a license
/// key or token, most activations), it is the copy authentication read (or found in the
/// license cache): [`activate`] checks it under the license's lock, so a second read here
/// would buy nothing and cost a tenth of the activation.
pub async fn license_named(db: &Db, p: &Principal, account: Uuid, id_or_key: &str) -> Result<Option<License>> {
    if let Some(own) = p.license().filter(|l| l.account_id == account) {
        // As `find_by_id_or_key` reads it: a UUID names an id, else a key.
        let named = match Uuid::parse_str(id_or_key) {
            Ok(id) => id == own.id,
            Err(_) => own.key == id_or_key,
        };
        if named {
            return Ok(Some(own.clone()));
        }
    }
    licenses::find_by_id_or_key(db, account, id_or_key).await
}

/// That `p` may activate a machine of `license` for `owner` in `group`, and what the group
/// allows: the witness [`activate`] needs, so no surface activates without the checks.
pub struct Admission {
    group_machines: Option<(Uuid, i64)>,
}

/// Checks who may activate on `license`: the owner, when given, must exist and be one of the
/// license's users; `p` must be allowed (users only for themselves or their licenses, never
/// under a protected license); the group, when given, must exist.
pub async fn admit(
    db: &Db,
    p: &Principal,
    license: &License,
    owner: Option<Uuid>,
    group: Option<Uuid>,
) -> std::result::Result<Admission, ActivateError> {
    if let Some(owner) = owner {
        users::find(db, license.account_id, owner)
            .await?
            .ok_or_else(|| Error::invalid_rel("owner", "must exist", "OWNER_NOT_FOUND"))?;
        // A machine belongs to one of its license's users (owner or attached).
        if !licenses::has_user(db, license, owner).await? {
            return Err(Error::invalid_rel("owner", "must be a valid license user", "OWNER_INVALID").into());
        }
    }
    if !access::may_touch_machine(p, license, owner, MachineAction::Activate) {
        return Err(Error::access_denied().into());
    }
    let mut group_machines = None;
    if let Some(g) = group {
        let group = groups::find(db, license.account_id, g)
            .await?
            .ok_or_else(|| Error::invalid_rel("group", "must exist", "GROUP_NOT_FOUND"))?;
        group_machines = group.max_machines.map(|max| (group.id, max));
    }
    Ok(Admission { group_machines })
}

/// Refuses an id a client chose when a machine, in any account, has it.
pub async fn ensure_id_free(db: &Db, id: Uuid) -> std::result::Result<(), ActivateError> {
    if store::id_taken(db, id).await? {
        return Err(ActivateError::Refused(Refusal::IdTaken));
    }
    Ok(())
}

/// Activates `new` on `license` for `p`, whom [`admit`] admitted. Every limit (machines, cores,
/// memory, disk, the group's machines, the token's activations, fingerprint and component
/// uniqueness) is checked under the license's lock, so it holds across concurrent requests
/// and nodes, against the license as it is under that lock: `license` may be an earlier copy.
/// A FROM_FIRST_ACTIVATION expiry starts with the first machine.
pub async fn activate(
    state: &AppState,
    p: &Principal,
    license: &License,
    admission: Admission,
    new: NewMachine,
) -> std::result::Result<Machine, ActivateError> {
    let db = &state.db;
    let NewMachine { machine: mut m, components, chosen_id } = new;
    if !access::is_operator(p) && m.max_processes.is_some() {
        return Err(Error::bad_request(
            "unpermitted parameter",
            Source::Pointer("/data/attributes/maxProcesses".into()),
        )
        .into());
    }
    let mut events = [Raised::machine("machine.created", &m)];
    // Counted in the activation's own transaction: one commit, and counted when refused too.
    let mut count = state
        .limiter
        .config
        .license_changes
        .map(|rate| ratelimit::Limiter::exact_hit(change_bucket(license.id), rate, time::now_ms()));
    let (mut license, mut admission) = (std::borrow::Cow::Borrowed(license), admission);
    // The copy decided on is checked under the license's lock; when its terms changed
    // meanwhile (on another node, within the license cache's bound), decide again on the
    // license as it is, as though the request had come after the change. Twice at most: a
    // license whose terms change under every try is answered with a conflict.
    let mut tries = 0;
    loop {
        let mut limits = activation::limits(&license, license_token(p).map(|t| t.id));
        limits.group_machines = admission.group_machines;
        let basis = store::Basis { license: &license, limits: &limits, decide: activation::decide };
        match store::activate(db, basis, &m, &components, &events, count.as_ref()).await {
            Ok(store::Activated::Changed) if tries < 2 => {
                tries += 1;
                let now = licenses::find(db, m.account_id, m.license_id)
                    .await?
                    .ok_or_else(|| Error::invalid_rel("license", "must exist", "LICENSE_NOT_FOUND"))?;
                crate::auth::license_still_stands(p, &now)?;
                admission = admit(db, p, &now, m.owner_id, m.group_id).await?;
                m.follow(&now);
                events = [Raised::machine("machine.created", &m)];
                (license, count) = (std::borrow::Cow::Owned(now), None);
            }
            Ok(store::Activated::Changed) => {
                return Err(
                    Error::conflict("the license changed during activation; try again", "LICENSE_CHANGED").into()
                )
            }
            Ok(store::Activated::Yes) => break,
            Ok(store::Activated::OverRate(verdict)) => return Err(too_many_changes(state, &verdict).into()),
            Ok(store::Activated::Refused(r)) => {
                return Err(ActivateError::Refused(refusal(r, &license, &limits, license_token(p))))
            }
            Err(Error::Database(e)) if is_unique_violation(&e) && chosen_id => {
                return Err(ActivateError::Refused(Refusal::IdTaken))
            }
            // Another request took the fingerprint between our check and our insert.
            Err(Error::Database(e)) if is_unique_violation(&e) => {
                return Err(ActivateError::Refused(Refusal::FingerprintTaken(limits.uniqueness)))
            }
            Err(e) => return Err(e.into()),
        }
    }
    super::licenses::start_clock(db, &license, ExpirationBasis::FromFirstActivation).await?;
    Ok(m)
}

/// The machine `id_or_fingerprint` names in `account`, with its license, for a caller who may
/// see it (else not found).
pub async fn find(db: &Db, p: &Principal, account: Uuid, id_or_fingerprint: &str) -> Result<(Machine, License)> {
    let not_found = || Error::not_found("machine", id_or_fingerprint);
    let m = store::find_by_id_or_fingerprint(db, account, id_or_fingerprint).await?.ok_or_else(not_found)?;
    let l = licenses::find(db, account, m.license_id).await?.ok_or_else(not_found)?;
    if access::may_read_machine(db, p, &l, m.owner_id).await? {
        Ok((m, l))
    } else {
        Err(not_found())
    }
}

/// [`find`], then refused (403) unless the caller may also do `action` to the machine.
pub async fn find_for(
    db: &Db,
    p: &Principal,
    account: Uuid,
    id_or_fingerprint: &str,
    action: MachineAction,
) -> Result<(Machine, License)> {
    let (m, l) = find(db, p, account, id_or_fingerprint).await?;
    if access::may_touch_machine(p, &l, m.owner_id, action) {
        Ok((m, l))
    } else {
        Err(Error::access_denied())
    }
}

/// Saves `after` (the machine as read, `before`, with attributes changed). The amounts that
/// changed (cores, memory, disk) are checked against the license's limits under its lock, as
/// at activation; a lowered limit never blocks renaming a machine.
pub async fn resize(
    db: &Db,
    license: &License,
    before: &Machine,
    mut after: Machine,
) -> std::result::Result<Machine, ActivateError> {
    let mut limits = activation::limits(license, None);
    limits.max_machines = None;
    limits.max_cores = limits.max_cores.filter(|_| after.cores != before.cores);
    limits.max_memory = limits.max_memory.filter(|_| after.memory != before.memory);
    limits.max_disk = limits.max_disk.filter(|_| after.disk != before.disk);
    save_under(db, license, &mut after, &limits).await?;
    Ok(after)
}

/// Counts an activation or deactivation against the license's rate limit
/// (`--license-change-rate-limit`): activating and deactivating in turn to pass seats around is
/// churn the limit stops. Exact across nodes (a database counter).
async fn count_change(state: &AppState, license: Uuid) -> Result<()> {
    let Some(rate) = state.limiter.config.license_changes else { return Ok(()) };
    let v = ratelimit::Limiter::hit_exact(&state.db, &change_bucket(license), rate, time::now_ms()).await?;
    if v.allowed {
        return Ok(());
    }
    Err(too_many_changes(state, &v))
}

/// The rate-limit bucket of a license's activations and deactivations.
fn change_bucket(license: Uuid) -> String {
    ratelimit::bucket("license", &[license.as_bytes()])
}

/// The 429 of a license over its change limit.
fn too_many_changes(state: &AppState, v: &ratelimit::Verdict) -> Error {
    state.metrics.rate_limited.inc(&["any", "license_changes"]);
    Error::TooManyRequests {
        detail: format!(
            "This license has been activated or deactivated {} times in the last {}; retry after {} seconds",
            v.limit, v.window, v.retry_after
        )
        .into(),
        retry_after: v.retry_after,
    }
}

/// Deactivates (deletes) a machine, counting against the caller's license token's
/// `maxDeactivations` and the license's change rate limit; false when it was already gone.
pub async fn deactivate(state: &AppState, p: &Principal, m: &Machine) -> Result<bool> {
    let db = &state.db;
    let token = license_token(p);
    count_change(state, m.license_id).await?;
    let events = [Raised::machine("machine.deleted", m)];
    match store::deactivate(db, m.account_id, m.id, token.map(|t| t.id), &events).await? {
        None => Err(Error::Invalid {
            detail: format!("exceeds maximum allowed ({})", token.and_then(|t| t.max_deactivations).unwrap_or(0))
                .into(),
            code: "DEACTIVATIONS_LIMIT_EXCEEDED".into(),
            location: Source::Pointer("/data/attributes/deactivations".into()),
        }),
        Some(deleted) => Ok(deleted),
    }
}

/// A heartbeat. A dead machine is revived only if its policy's resurrection strategy allows it
/// now (else 422 `MACHINE_HEARTBEAT_DEAD`); the status to show is `RESURRECTED` then.
pub async fn ping(db: &Db, mut m: Machine) -> Result<(Machine, Option<HeartbeatStatus>)> {
    let rules = m.policy_rules.clone();
    let now = time::now_ms();
    let mut shown = None;
    if heartbeat::machine_status(&rules, m.last_heartbeat_at, m.created_at, now) == HeartbeatStatus::Dead {
        if !heartbeat::can_resurrect(&rules, m.last_heartbeat_at, m.created_at, now) {
            return Err(Error::invalid("is dead", "MACHINE_HEARTBEAT_DEAD"));
        }
        shown = Some(HeartbeatStatus::Resurrected);
    }
    m.last_heartbeat_at = Some(now);
    m.updated_at = now;
    let mut events = vec![Raised::machine("machine.heartbeat.ping", &m)];
    if shown == Some(HeartbeatStatus::Resurrected) {
        events.push(Raised::machine("machine.heartbeat.resurrected", &m));
    }
    store::set_heartbeat(db, m.account_id, m.id, Some(now), now, &events).await?;
    Ok((m, shown))
}

/// Clears a machine's heartbeat (back to NOT_STARTED).
pub async fn reset_heartbeat(db: &Db, mut m: Machine) -> Result<Machine> {
    let now = time::now_ms();
    m.last_heartbeat_at = None;
    m.updated_at = now;
    store::set_heartbeat(db, m.account_id, m.id, None, now, &[Raised::machine("machine.heartbeat.reset", &m)]).await?;
    Ok(m)
}

/// Saves `m` under `limits` (only the limits the change can affect), refusals worded by the
/// caller's surface.
async fn save_under(
    db: &Db,
    l: &License,
    m: &mut Machine,
    limits: &ActivationLimits,
) -> std::result::Result<(), ActivateError> {
    m.updated_at = time::now_ms();
    let events = [Raised::machine("machine.updated", m)];
    match store::update(db, m, Some((limits, activation::decide)), &events).await? {
        Ok(()) => Ok(()),
        Err(r) => Err(ActivateError::Refused(refusal(r, l, limits, None))),
    }
}

/// Gives machine `m` of `l` a new owner (or none), who must be one of the license's users;
/// under PER_USER leasing the machine moves into the new owner's allowance, which must have
/// room. Admins and the license's product only.
pub async fn set_owner(
    db: &Db,
    p: &Principal,
    l: &License,
    mut m: Machine,
    owner: Option<Uuid>,
) -> std::result::Result<Machine, ActivateError> {
    if !access::is_operator(p) || p.product_id().is_some_and(|prod| prod != l.product_id) {
        return Err(Error::access_denied().into());
    }
    if let Some(id) = owner {
        users::find(db, l.account_id, id)
            .await?
            .ok_or_else(|| Error::invalid_rel("owner", "must exist", "OWNER_NOT_FOUND"))?;
        if !licenses::has_user(db, l, id).await? {
            return Err(Error::invalid_rel("owner", "must be a valid license user", "OWNER_INVALID").into());
        }
    }
    let mut limits = activation::limits(l, None);
    if !limits.per_owner || owner == m.owner_id {
        (limits.max_machines, limits.max_cores, limits.max_memory, limits.max_disk) = (None, None, None, None);
    }
    m.owner_id = owner;
    save_under(db, l, &mut m, &limits).await?;
    Ok(m)
}

/// Moves machine `m` of `l` into `group` (or out of any), which must exist and have room for
/// one more machine. Admins and the license's product only.
pub async fn set_group(
    db: &Db,
    p: &Principal,
    l: &License,
    mut m: Machine,
    group: Option<Uuid>,
) -> std::result::Result<Machine, ActivateError> {
    if !access::is_operator(p) || p.product_id().is_some_and(|prod| prod != l.product_id) {
        return Err(Error::access_denied().into());
    }
    let mut limits = activation::limits(l, None);
    (limits.max_machines, limits.max_cores, limits.max_memory, limits.max_disk) = (None, None, None, None);
    if let Some(id) = group {
        let g = groups::find(db, l.account_id, id)
            .await?
            .ok_or_else(|| Error::invalid_rel("group", "must exist", "GROUP_NOT_FOUND"))?;
        limits.group_machines = g.max_machines.filter(|_| m.group_id != Some(id)).map(|max| (id, max));
    }
    m.group_id = group;
    save_under(db, l, &mut m, &limits).await?;
    Ok(m)
}
