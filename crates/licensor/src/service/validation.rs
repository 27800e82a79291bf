//! Validating a license: gather the facts the license and scope make relevant (and nothing
//! more: an unscoped validation of a non-strict license costs no query beyond the license
//! itself), start a FROM_FIRST_VALIDATION clock, decide with `domain::validation`, and note the
//! instant.

use super::access;
use crate::auth::Principal;
use crate::domain::validation::{self, Facts, MachineFacts, Outcome, Scope, ValidationCode};
use crate::error::{Error, Result};
use crate::model::{ExpirationBasis, License};
use crate::state::AppState;
use crate::store::{components, entitlements, licenses, machines, processes, users};
use crate::time;
use uuid::Uuid;

/// A license to validate, as found, with what was read beside it.
#[derive(Debug, Default)]
pub struct Found {
    /// `None`: the key or id named none.
    pub license: Option<License>,
    /// It came from the node's license cache, which may lag a change made on another node by
    /// milliseconds (at most `license_cache::BOUND`); its machines may come from there too.
    pub cached: bool,
    /// Its machines, read with it (see [`by_key`]).
    pub activations: Option<Vec<machines::Activation>>,
}

impl Found {
    /// A license the caller read itself (by id).
    pub fn read(license: License) -> Self {
        Found { license: Some(license), ..Found::default() }
    }
}

/// The license with `key` in `account`, as a validation for `scope` reads it: from this node's
/// cache when it is current (see [`crate::license_cache`]), else from the database, with its
/// machines when the validation will need them (SQLite; they are cached beside it).
pub async fn by_key(state: &AppState, account: Uuid, key: &str, scope: Option<&Scope>) -> Result<Found> {
    let cache = state.license_cache.as_deref();
    let ticket = match cache.map(|c| c.get(account, key)) {
        Some(Ok(license)) => {
            return Ok(Found { license: Some(license.as_ref().clone()), cached: true, activations: None })
        }
        Some(Err(ticket)) => ticket,
        None => None,
    };
    let found =
        licenses::find_to_validate_with_machines(&state.db, account, key, |l| needs_machines(l, scope, false)).await?;
    let (license, activations) = found.map_or((None, None), |(l, a)| (Some(l), a));
    if let (Some(cache), Some(ticket), Some(l)) = (cache, ticket, &license) {
        cache.put(ticket, l);
        if let Some(rows) = &activations {
            cache.put_activations(ticket, l.id, rows);
        }
    }
    Ok(Found { license, cached: false, activations })
}

/// Whether validating `l` for `scope` reads its machines.
fn needs_machines(l: &License, scope: Option<&Scope>, quick: bool) -> bool {
    let scoped = !quick
        && scope.is_some_and(|s| {
            s.machine.is_some() || s.fingerprint.is_some() || s.fingerprints.is_some() || s.components.is_some()
        });
    (l.rules().strict || scoped) && l.machines_count > 0
}

/// What validation needs to know about `l` for `scope`, read with as few queries as that allows.
/// `cache`: the license's machines may come from the node's license cache;
/// `read`: they were read with the license.
async fn gather(
    state: &AppState,
    l: &License,
    scope: Option<&Scope>,
    quick: bool,
    cache: bool,
    read: Option<Vec<machines::Activation>>,
) -> Result<Facts> {
    let db = &state.db;
    let rules = l.rules();
    let mut facts = Facts::default();
    if needs_machines(l, scope, quick) {
        let rows = match (read, state.license_cache.as_deref().filter(|_| cache)) {
            (Some(rows), _) => rows,
            (None, Some(c)) => match c.activations(l.id) {
                Ok(rows) => rows.as_ref().clone(),
                Err(ticket) => {
                    let rows = machines::activations(db, l.account_id, l.id).await?;
                    if let Some(ticket) = ticket {
                        c.put_activations(ticket, l.id, &rows);
                    }
                    rows
                }
            },
            (None, None) => machines::activations(db, l.account_id, l.id).await?,
        };
        let counts = if rules.strict && (l.max_processes().is_some() || rows.iter().any(|m| m.max_processes.is_some()))
        {
            processes::counts_for_license(db, l.id).await?
        } else {
            Vec::new()
        };
        facts.processes_total = counts.iter().map(|(_, n)| n).sum();
        let component_fp = scope.filter(|s| !quick && s.components.is_some()).and_then(|s| s.fingerprint.clone());
        for m in rows {
            let components = match &component_fp {
                Some(fp) if *fp == m.fingerprint => components::fingerprints_for_machine(db, m.id).await?,
                _ => Vec::new(),
            };
            facts.machines.push(MachineFacts {
                id: m.id.to_string(),
                fingerprint: m.fingerprint,
                owner_id: m.owner_id.map(|o| o.to_string()),
                cores: m.cores.unwrap_or(0),
                memory: m.memory.unwrap_or(0),
                disk: m.disk.unwrap_or(0),
                last_heartbeat: m.last_heartbeat_at,
                created_at: m.created_at,
                processes: counts.iter().find(|(id, _)| *id == m.id).map(|(_, n)| *n).unwrap_or(0),
                max_processes: m.max_processes,
                components,
            });
        }
    }
    if !quick && scope.is_some_and(|s| s.entitlements.is_some()) {
        facts.entitlements = entitlements::codes_for_license(db, l.account_id, l.id, l.policy_id).await?;
    }
    if let Some(user) = scope.filter(|_| !quick).and_then(|s| s.user.as_ref()?.as_deref()) {
        if let Some(u) = users::find_by_id_or_email(db, l.account_id, user).await? {
            if licenses::has_user(db, l, u.id).await? {
                facts.scope_user = Some(u.id.to_string());
            }
        }
    }
    Ok(facts)
}

/// The outcome for a key or id that names no license (counted as such).
fn not_found(state: &AppState) -> (Outcome, Option<License>) {
    state.metrics.validations.inc(&[ValidationCode::NotFound.as_str()]);
    (Outcome { valid: false, code: ValidationCode::NotFound, detail: "does not exist" }, None)
}

/// Validates `found` (see [`Found`]) for `p`, anonymous or a bearer that may read it. `quick`
/// skips every scope (Keygen's `GET …/actions/validate`) and starts no clock. Returns the
/// outcome and the license as validated.
///
/// A refusal is never given on a cached copy: the license and its machines are read again,
/// and validated again, first. (A machine just activated elsewhere must not read NO_MACHINE.)
pub async fn validate(
    state: &AppState,
    p: Option<&Principal>,
    found: Found,
    scope: Option<&Scope>,
    quick: bool,
) -> Result<(Outcome, Option<License>)> {
    let Found { license, cached, activations } = found;
    let Some(mut l) = license else { return Ok(not_found(state)) };
    if let Some(p) = p {
        if !access::may_read_license(&state.db, p, &l).await? {
            return Err(Error::access_denied());
        }
    }
    let now = time::now_ms();
    if !quick {
        l.expiry = super::licenses::start_clock(&state.db, &l, ExpirationBasis::FromFirstValidation).await?;
    }
    let facts = gather(state, &l, scope, quick, cached, activations).await?;
    let mut outcome = validation::validate(&l, &facts, scope, quick, now);
    if cached && !outcome.valid {
        let Some(fresh) = licenses::find_to_validate(&state.db, l.account_id, &l.key).await? else {
            return Ok(not_found(state));
        };
        l = fresh;
        let facts = gather(state, &l, scope, quick, false, None).await?;
        outcome = validation::validate(&l, &facts, scope, quick, now);
    }
    state.metrics.validations.inc(&[outcome.code.as_str()]);
    state
        .note_validation(&l, outcome.valid, || {
            serde_json::json!({
                "ts": time::iso(now),
                "valid": outcome.valid,
                "detail": outcome.detail,
                "code": outcome.code.as_str(),
            })
        })
        .await?;
    // Quick validations count as validations too (Keygen records them).
    state.touch_validated(l.id, now);
    l.last_validated_at = Some(now);
    Ok((outcome, Some(l)))
}
