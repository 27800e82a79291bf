//! License use cases: issuing (the one path every surface creates licenses by, so keys, expiry,
//! uniqueness and signing follow the same rules wherever a license comes from), finding a
//! license for a caller, and the actions on it: suspend, reinstate, renew, revoke, check in,
//! usage. Starting an expiry clock is here too, once for every event that starts one.

use serde_json::Value;
use sqlx::types::Json;
use uuid::Uuid;

use super::access::{self, LicenseAction};
use crate::auth::Principal;
use crate::db::{is_unique_violation, Db};
use crate::domain::keys::{check_custom_key, key_too_long, MAX_KEY_LEN};
use crate::domain::license;
use crate::error::{Error, Result, Source};
use crate::events::Raised;
use crate::model::{Account, ExpirationBasis, License, Policy};
use crate::store::entitlements::{self, Scope};
use crate::store::licenses;
use crate::time;

/// The shortest custom key under a policy whose keys authenticate (Keygen's minimum, 6, is
/// for keys that only identify a license).
pub const MIN_CREDENTIAL_KEY_LEN: usize = 16;

/// What a caller may choose for a new license; everything else comes from the policy.
#[derive(Debug, Default, Clone)]
pub struct NewLicense {
    pub id: Option<Uuid>,
    pub name: Option<String>,
    pub key: Option<String>,
    /// `Some(None)` asks for no expiry even when the policy has a duration.
    pub expiry: Option<Option<i64>>,
    pub owner: Option<Uuid>,
    pub group: Option<Uuid>,
    pub protected: Option<bool>,
    pub suspended: bool,
    pub max_machines: Option<i64>,
    pub max_processes: Option<i64>,
    pub max_users: Option<i64>,
    pub max_cores: Option<i64>,
    pub max_uses: Option<i64>,
    pub max_memory: Option<i64>,
    pub max_disk: Option<i64>,
    pub metadata: Option<Value>,
    /// The owner's email, for the seed of signed keys.
    pub owner_email: Option<String>,
}

/// The product's policy called `name`, created on first use as a floating policy with
/// `metadata`. Surfaces that sell by a single limit set on each license (the licensing API's
/// types, the core API's protocols) issue under such policies, so only that limit applies.
pub async fn floating_policy(
    db: &Db,
    account: uuid::Uuid,
    product: uuid::Uuid,
    name: &str,
    metadata: Value,
) -> Result<Policy> {
    let now = time::now_ms();
    let policy = Policy {
        id: Uuid::new_v4(),
        account_id: account,
        product_id: product,
        name: name.to_string(),
        rules: Json(crate::model::PolicyRules { floating: true, ..Default::default() }),
        metadata: Json(metadata),
        created_at: now,
        updated_at: now,
    };
    crate::store::policies::find_or_insert_named(db, &policy).await
}

impl NewLicense {
    /// The license-level limit of `metric`.
    pub fn limit_mut(&mut self, metric: crate::domain::projection::Metric) -> &mut Option<i64> {
        use crate::domain::projection::Metric;
        match metric {
            Metric::Machines => &mut self.max_machines,
            Metric::Cores => &mut self.max_cores,
            Metric::Users => &mut self.max_users,
            Metric::Processes => &mut self.max_processes,
            Metric::Uses => &mut self.max_uses,
        }
    }
}

/// Creates a license under `policy` for `p`, who was allowed to. The key is generated (or
/// signed, for signing schemes) unless supplied; expiry follows the policy's duration and
/// expiration basis. The license returned is the row as written, as a read would show it
/// (`a_created_license_reads_back_as_it_was_answered` holds this), so no surface reads it again.
pub async fn issue(
    db: &Db,
    account: &Account,
    master: &crate::crypto::MasterKey,
    policy: &Policy,
    new: NewLicense,
    p: &Principal,
) -> Result<License> {
    let now = time::now_ms();
    let rules = &policy.rules.0;
    // Under a signing scheme the key is the dataset the account signs, which offline clients
    // trust: only the vendor writes it.
    if new.key.is_some() && rules.scheme.is_some() && !access::is_operator(p) {
        return Err(Error::bad_request("unpermitted parameter", Source::Pointer("/data/attributes/key".into())));
    }
    let id = new.id.unwrap_or_else(Uuid::new_v4);
    let owner = match new.owner {
        Some(owner) => crate::store::users::find(db, account.id, owner).await?,
        None => None,
    };
    // A license with no group of its own joins its owner's (Keygen; seed 002), within the
    // group's maxLicenses like any other.
    let group = new.group.or_else(|| owner.as_ref().and_then(|u| u.group_id));
    for (attr, v) in [
        ("maxMachines", new.max_machines),
        ("maxProcesses", new.max_processes),
        ("maxUsers", new.max_users),
        ("maxCores", new.max_cores),
        ("maxUses", new.max_uses),
        ("maxMemory", new.max_memory),
        ("maxDisk", new.max_disk),
    ] {
        if let Some(v) = v {
            license::check_limit(attr, v, rules.floating)?;
        }
    }
    let expiry = match new.expiry {
        Some(e) => e,
        None => license::initial_expiry(rules, now),
    };
    let mut row = License {
        id,
        account_id: account.id,
        product_id: policy.product_id,
        policy_id: policy.id,
        owner_id: new.owner,
        group_id: group,
        key: String::new(),
        name: new.name,
        expiry,
        suspended: new.suspended,
        // Copied from the policy at creation, as in Keygen: later changes to the policy's flag
        // leave existing licenses as they were.
        protected: Some(new.protected.unwrap_or(rules.protected)),
        uses: 0,
        max_machines: new.max_machines,
        max_processes: new.max_processes,
        max_users: new.max_users,
        max_cores: new.max_cores,
        max_uses: new.max_uses,
        max_memory: new.max_memory,
        max_disk: new.max_disk,
        last_validated_at: None,
        last_check_out_at: None,
        last_check_in_at: rules.require_check_in.then_some(now),
        metadata: Json(match new.metadata {
            Some(m) => crate::domain::metadata::accept(m)?,
            None => Value::Object(Default::default()),
        }),
        created_at: now,
        updated_at: now,
        policy_rules: policy.rules.0.clone().into(),
        machines_count: 0,
        machines_cores: 0,
        machines_memory: 0,
        machines_disk: 0,
        users_count: 0,
        owner_banned: owner.is_some_and(|u| u.banned_at.is_some()),
    };
    row.key = match (&rules.scheme, new.key) {
        (None, Some(k)) => {
            check_custom_key(&k)?;
            // A key that logs in (LICENSE or MIXED authentication) is a credential: long
            // enough that guessing one, with validate-key telling found from not found, is out.
            if rules.allows_license_auth() && k.len() < MIN_CREDENTIAL_KEY_LEN {
                return Err(Error::invalid_attr(
                    "key",
                    format!(
                        "is too short for a policy whose keys authenticate (minimum is {MIN_CREDENTIAL_KEY_LEN} characters)"
                    ),
                    "KEY_TOO_SHORT",
                ));
            }
            k
        }
        (None, None) if rules.use_pool => String::new(),
        (None, None) => license::generate_key(),
        (Some(scheme), seed) => crate::domain::keys::sign_key(
            *scheme,
            account,
            master,
            policy,
            &row,
            seed.as_deref(),
            new.owner_email.as_deref(),
        )?,
    };
    if row.key.len() > MAX_KEY_LEN {
        return Err(key_too_long());
    }
    let group_max = match row.group_id {
        Some(g) => crate::store::groups::find(db, account.id, g).await?.and_then(|g| g.max_licenses),
        None => None,
    };
    // A pooled policy's license takes the pool's newest key as it is written.
    let pool_of = (row.key.is_empty() && rules.use_pool).then_some(policy.id);
    let events = |l: &License| vec![Raised::license("license.created", l)];
    let inserted = licenses::insert_within_group(db, &row, group_max, pool_of, events).await.map_err(|e| {
        if is_unique_violation(&e) {
            if new.id.is_some() && licenses_id_conflict(&e) {
                Error::invalid_attr("id", "has already been taken", "ID_TAKEN")
            } else {
                Error::invalid_attr("key", "has already been taken", "KEY_TAKEN")
            }
        } else {
            Error::from(e)
        }
    })?;
    match inserted {
        licenses::Inserted::Yes(key) => {
            row.key = key;
            Ok(row)
        }
        licenses::Inserted::PoolEmpty => Err(Error::invalid_rel("policy", "pool is empty", "POLICY_POOL_EMPTY")),
        licenses::Inserted::GroupFull => Err(Error::invalid_rel(
            "group",
            format!("license count has exceeded maximum allowed by current group ({})", group_max.unwrap_or(0)),
            "GROUP_LICENSE_LIMIT_EXCEEDED",
        )),
    }
}

fn licenses_id_conflict(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Database(d) => {
            let msg = d.message();
            msg.contains("licenses_pkey") || msg.contains("licenses.id")
        }
        _ => false,
    }
}

/// The license `id_or_key` names in `account`, for a caller who may read it; one it may not
/// read is not found, as Keygen answers (lookups are scoped to what the bearer can see).
pub async fn find(db: &Db, p: &Principal, account: Uuid, id_or_key: &str) -> Result<License> {
    match licenses::find_by_id_or_key(db, account, id_or_key).await? {
        Some(l) if access::may_read_license(db, p, &l).await? => Ok(l),
        _ => Err(Error::not_found("license", id_or_key)),
    }
}

/// [`find`], then refused (403) unless the caller may also do `action` to it.
pub async fn find_for(
    db: &Db,
    p: &Principal,
    account: Uuid,
    id_or_key: &str,
    action: LicenseAction,
) -> Result<License> {
    let l = find(db, p, account, id_or_key).await?;
    if access::may_change_license(p, &l, action) {
        Ok(l)
    } else {
        Err(Error::access_denied())
    }
}

/// Writes what `change` does to `l`, only the columns it changes (see `store::licenses::update`),
/// and returns the license as written.
/// The change raises `event`, committed with it.
async fn change(
    db: &Db,
    l: License,
    event: &'static str,
    change: impl FnOnce(&mut License) -> Result<()>,
) -> Result<License> {
    let mut next = l.clone();
    change(&mut next)?;
    next.updated_at = time::now_ms();
    licenses::update(db, &l, &next, &[Raised::license(event, &next)]).await?;
    Ok(next)
}

fn suspended_error(detail: &'static str) -> Error {
    Error::Unprocessable { detail: detail.into(), location: Source::Pointer("/data/attributes/suspended".into()) }
}

pub async fn suspend(db: &Db, p: &Principal, account: Uuid, id: &str) -> Result<License> {
    let l = find_for(db, p, account, id, LicenseAction::Manage).await?;
    change(db, l, "license.suspended", |l| {
        if l.suspended {
            return Err(suspended_error("is already suspended"));
        }
        l.suspended = true;
        Ok(())
    })
    .await
}

pub async fn reinstate(db: &Db, p: &Principal, account: Uuid, id: &str) -> Result<License> {
    let l = find_for(db, p, account, id, LicenseAction::Manage).await?;
    change(db, l, "license.reinstated", |l| {
        if !l.suspended {
            return Err(suspended_error("is not suspended"));
        }
        l.suspended = false;
        Ok(())
    })
    .await
}

pub async fn renew(db: &Db, p: &Principal, account: Uuid, id: &str) -> Result<License> {
    let l = find_for(db, p, account, id, LicenseAction::Renew).await?;
    change(db, l, "license.renewed", |l| {
        if l.rules().duration.is_none() {
            return Err(Error::unprocessable("cannot be renewed because the policy does not have a duration"));
        }
        // A license whose clock has not started (a FROM_FIRST_* basis) has nothing to renew yet.
        if l.expiry.is_none() {
            return Err(Error::unprocessable("cannot be renewed because the license does not have an expiry"));
        }
        let next = license::renewed_expiry(l.rules(), l.expiry, time::now_ms())
            .ok_or_else(|| Error::unprocessable("cannot be renewed past the year 9999"))?;
        l.expiry = Some(next);
        Ok(())
    })
    .await
}

pub async fn check_in(db: &Db, p: &Principal, account: Uuid, id: &str) -> Result<License> {
    let l = find_for(db, p, account, id, LicenseAction::CheckInOrUse).await?;
    change(db, l, "license.checked-in", |l| {
        if !l.rules().require_check_in {
            return Err(Error::unprocessable("cannot be checked in because the policy does not require it"));
        }
        l.last_check_in_at = Some(time::now_ms());
        Ok(())
    })
    .await
}

/// Deletes a license (revocation is the same act), with its tokens.
pub async fn revoke(db: &Db, p: &Principal, account: Uuid, id: &str) -> Result<()> {
    let l = find_for(db, p, account, id, LicenseAction::Destroy).await?;
    licenses::delete(db, account, l.id, &[Raised::license("license.revoked", &l)]).await
}

/// Who may change a license's usage in `direction`: increments are the owner's and the
/// license's own (unless protected), decrements the vendor's.
pub fn usage_action(direction: Usage) -> LicenseAction {
    match direction {
        Usage::Increment => LicenseAction::CheckInOrUse,
        Usage::Decrement => LicenseAction::Manage,
    }
}

/// The direction of a usage change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Usage {
    Increment,
    Decrement,
}

/// Adds (or takes back) `n` uses of `l`, found for the caller with [`usage_action`]. Increments
/// count against `maxUses`, which no overage strategy stretches (as in Keygen), and may start
/// a FROM_FIRST_USE clock.
pub async fn change_uses(db: &Db, l: &License, direction: Usage, n: i64) -> Result<License> {
    let delta = if direction == Usage::Increment { n } else { -n };
    let now = time::now_ms();
    let uses = Source::Pointer("/data/attributes/uses".into());
    let event = if direction == Usage::Increment { "license.usage.incremented" } else { "license.usage.decremented" };
    let raise = |uses: i64| {
        let mut after = l.clone();
        after.uses = uses;
        after.updated_at = now;
        vec![Raised::license(event, &after)]
    };
    match licenses::add_uses(db, l.account_id, l.id, delta, l.max_uses(), now, raise).await? {
        Some(_) => {}
        None if direction == Usage::Increment => {
            return Err(Error::Invalid {
                detail: format!(
                    "usage exceeds maximum allowed for license ({})",
                    l.max_uses().unwrap_or(i32::MAX as i64)
                )
                .into(),
                code: "USES_LIMIT_EXCEEDED".into(),
                location: uses,
            })
        }
        None => {
            return Err(Error::Invalid {
                detail: "must be greater than or equal to 0".into(),
                code: "USES_INVALID".into(),
                location: uses,
            })
        }
    }
    if direction == Usage::Increment && n > 0 {
        start_clock(db, l, ExpirationBasis::FromFirstUse).await?;
    }
    reload(db, l.account_id, l.id).await
}

pub async fn reset_uses(db: &Db, p: &Principal, account: Uuid, id: &str) -> Result<License> {
    let l = find_for(db, p, account, id, LicenseAction::Manage).await?;
    let now = time::now_ms();
    let mut after = l.clone();
    after.uses = 0;
    after.updated_at = now;
    licenses::reset_uses(db, account, l.id, now, &[Raised::license("license.usage.reset", &after)]).await?;
    reload(db, account, l.id).await
}

/// Gives `l` a new owner (or none). The owner counts as one of the license's users, so the
/// change is refused past `maxUsers` (with the policy's overage), checked under the license's
/// lock. A license with no group joins the new owner's (within its `maxLicenses`). Callers
/// have already checked the caller may manage `l`.
pub async fn set_owner(db: &Db, l: &License, owner: Option<Uuid>) -> Result<License> {
    let mut join_group = None;
    if let Some(id) = owner {
        let user = crate::store::users::find(db, l.account_id, id)
            .await?
            .ok_or_else(|| Error::invalid_rel("owner", "must exist", "OWNER_NOT_FOUND"))?;
        // A license with no group joins its new owner's, as at creation.
        if let (None, Some(g)) = (l.group_id, user.group_id) {
            let max = crate::store::groups::find(db, l.account_id, g).await?.and_then(|g| g.max_licenses);
            join_group = Some((g, max));
        }
    }
    let max = l.max_users().and_then(|m| l.rules().overage_allowance(m));
    let mut after = l.clone();
    after.owner_id = owner;
    let events = [Raised::license("license.owner.updated", &after)];
    match licenses::set_owner(db, l, owner, max, join_group, time::now_ms(), &events).await? {
        licenses::OwnerSet::Done => reload(db, l.account_id, l.id).await,
        licenses::OwnerSet::UsersFull => Err(Error::invalid_rel(
            "users",
            format!("user count has exceeded maximum allowed for license ({})", l.max_users().unwrap_or(0)),
            "USER_LIMIT_EXCEEDED",
        )),
        licenses::OwnerSet::GroupFull(max) => Err(Error::invalid_rel(
            "group",
            format!("license count has exceeded maximum allowed by current group ({max})"),
            "GROUP_LICENSE_LIMIT_EXCEEDED",
        )),
    }
}

/// Attaches users to `l`, within `maxUsers` (with the policy's overage) under the license's
/// lock. The owner is attached through ownership already (`USER_CONFLICT`).
pub async fn attach_users(db: &Db, l: &License, ids: &[Uuid]) -> Result<()> {
    if ids.iter().any(|id| l.owner_id == Some(*id)) {
        return Err(Error::invalid_rel("user", "already exists (user is attached through owner)", "USER_CONFLICT"));
    }
    let max = l.max_users().and_then(|m| l.rules().overage_allowance(m));
    let events = [Raised::license("license.users.attached", l)];
    if !licenses::attach_users(db, l.account_id, l.id, ids, max, time::now_ms(), &events).await? {
        return Err(Error::invalid(
            format!("user count has exceeded maximum allowed for license ({})", l.max_users().unwrap_or(0)),
            "USER_LIMIT_EXCEEDED",
        ));
    }
    Ok(())
}

/// Detaches users from `l`; its owner stays (changing the owner is [`set_owner`]).
pub async fn detach_users(db: &Db, l: &License, ids: &[Uuid]) -> Result<()> {
    if let Some(owner) = ids.iter().find(|id| l.owner_id == Some(**id)) {
        return Err(Error::Forbidden {
            detail: format!("cannot detach user '{owner}' (user is attached through owner)").into(),
            code: None,
        });
    }
    licenses::detach_users(db, l.account_id, l.id, ids, &[Raised::license("license.users.detached", l)]).await
}

pub async fn attach_entitlements(db: &Db, l: &License, ids: &[Uuid]) -> Result<Vec<(Uuid, i64)>> {
    let events = [Raised::license("license.entitlements.attached", l)];
    let inherited = inherited_entitlements(db, l).await?;
    super::catalog::attach_entitlements(db, l.account_id, Scope::License(l.id), &inherited, ids, &events).await
}

async fn inherited_entitlements(db: &Db, l: &License) -> Result<Vec<Uuid>> {
    entitlements::attached(db, l.account_id, Scope::Policy(l.policy_id)).await
}

/// Detaches entitlements attached to `l` itself; those its policy grants stay
/// (`ENTITLEMENTS_NOT_ALLOWED`).
pub async fn detach_entitlements(db: &Db, l: &License, ids: &[Uuid]) -> Result<()> {
    let events = [Raised::license("license.entitlements.detached", l)];
    let inherited = inherited_entitlements(db, l).await?;
    super::catalog::detach_entitlements(db, l.account_id, Scope::License(l.id), &inherited, ids, &events).await
}

/// The license as stored now (after a write that other columns or nodes may have joined).
pub async fn reload(db: &Db, account: Uuid, id: Uuid) -> Result<License> {
    licenses::find(db, account, id).await?.ok_or_else(|| Error::not_found("license", id.to_string()))
}

/// Starts `l`'s expiry clock if its policy starts it at `event` and it has not started yet:
/// the policy's duration added on the calendar from now, as at creation. The write is
/// conditional, so the first event wins when nodes race; the expiry returned is the stored one.
pub async fn start_clock(db: &Db, l: &License, event: ExpirationBasis) -> Result<Option<i64>> {
    let rules = l.rules();
    if l.expiry.is_some() || rules.expiration_basis != event || event == ExpirationBasis::FromCreation {
        return Ok(l.expiry);
    }
    let Some(expiry) = license::expiry_from(rules, time::now_ms()) else { return Ok(None) };
    licenses::start_expiry_clock(db, l.account_id, l.id, expiry).await?;
    Ok(licenses::find(db, l.account_id, l.id).await?.and_then(|stored| stored.expiry).or(Some(expiry)))
}
