//! License validation: Keygen's checks, in Keygen's order, first failure wins
//! (docs/api.md, "Validation"). Pure: the caller gathers the facts, this decides.

use serde::{Deserialize, Serialize};

use super::heartbeat;
use super::license::is_overdue;
use crate::model::{ExpirationStrategy, HeartbeatStatus, License, MachineLeasing, Matching, ProcessLeasing};
use crate::time::Millis;

/// `meta.scope` of a validation request (echoed back in the response without its unset fields).
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Scope {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub product: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub policy: Option<String>,
    /// Absent, `null` (`Some(None)`: matches only a license without an owner), or an id or email.
    #[serde(default, deserialize_with = "present", skip_serializing_if = "Option::is_none")]
    pub user: Option<Option<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub machine: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fingerprint: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fingerprints: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub components: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub entitlements: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub checksum: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
}

impl Scope {
    /// The fingerprints asked about, each once, in the order given.
    pub fn fingerprint_list(&self) -> Option<Vec<&str>> {
        let given: Vec<&str> = match (&self.fingerprint, &self.fingerprints) {
            (Some(f), _) => vec![f.as_str()],
            (None, Some(fs)) => fs.iter().map(String::as_str).collect(),
            (None, None) => return None,
        };
        let mut unique = Vec::with_capacity(given.len());
        for f in given {
            if !unique.contains(&f) {
                unique.push(f);
            }
        }
        Some(unique)
    }
}

/// Keeps an explicit `null` apart from an absent key: `Some(None)`.
fn present<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Option<String>>, D::Error> {
    Option::<String>::deserialize(d).map(Some)
}

/// A machine as validation sees it.
#[derive(Debug, Clone)]
pub struct MachineFacts {
    pub id: String,
    pub fingerprint: String,
    pub owner_id: Option<String>,
    pub cores: i64,
    pub memory: i64,
    pub disk: i64,
    pub last_heartbeat: Option<Millis>,
    pub created_at: Millis,
    pub processes: i64,
    pub max_processes: Option<i64>,
    /// Component fingerprints, loaded only when the scope asks about components.
    pub components: Vec<String>,
}

/// Everything validation needs besides the license row.
#[derive(Debug, Default)]
pub struct Facts {
    pub machines: Vec<MachineFacts>,
    /// Codes of the license's entitlements (own and policy's).
    pub entitlements: Vec<String>,
    /// For a `user` scope: the resolved user id, if that user owns or is attached to the license.
    pub scope_user: Option<String>,
    pub processes_total: i64,
}

crate::model::strategy::wire_enum!(
    /// Every outcome a validation can have, as Keygen names it in `meta.code`.
    ValidationCode {
        Valid = "VALID",
        NotFound = "NOT_FOUND",
        Banned = "BANNED",
        Suspended = "SUSPENDED",
        Expired = "EXPIRED",
        Overdue = "OVERDUE",
        ProductScopeMismatch = "PRODUCT_SCOPE_MISMATCH",
        ProductScopeRequired = "PRODUCT_SCOPE_REQUIRED",
        PolicyScopeMismatch = "POLICY_SCOPE_MISMATCH",
        PolicyScopeRequired = "POLICY_SCOPE_REQUIRED",
        UserScopeMismatch = "USER_SCOPE_MISMATCH",
        UserScopeRequired = "USER_SCOPE_REQUIRED",
        EntitlementsMissing = "ENTITLEMENTS_MISSING",
        EntitlementsScopeEmpty = "ENTITLEMENTS_SCOPE_EMPTY",
        MachineScopeMismatch = "MACHINE_SCOPE_MISMATCH",
        MachineScopeRequired = "MACHINE_SCOPE_REQUIRED",
        NoMachine = "NO_MACHINE",
        NoMachines = "NO_MACHINES",
        HeartbeatNotStarted = "HEARTBEAT_NOT_STARTED",
        HeartbeatDead = "HEARTBEAT_DEAD",
        FingerprintScopeEmpty = "FINGERPRINT_SCOPE_EMPTY",
        FingerprintScopeMismatch = "FINGERPRINT_SCOPE_MISMATCH",
        FingerprintScopeRequired = "FINGERPRINT_SCOPE_REQUIRED",
        ComponentsScopeEmpty = "COMPONENTS_SCOPE_EMPTY",
        ComponentsScopeMismatch = "COMPONENTS_SCOPE_MISMATCH",
        ComponentsScopeRequired = "COMPONENTS_SCOPE_REQUIRED",
        ChecksumScopeMismatch = "CHECKSUM_SCOPE_MISMATCH",
        ChecksumScopeRequired = "CHECKSUM_SCOPE_REQUIRED",
        VersionScopeMismatch = "VERSION_SCOPE_MISMATCH",
        VersionScopeRequired = "VERSION_SCOPE_REQUIRED",
        TooManyUsers = "TOO_MANY_USERS",
        TooManyMachines = "TOO_MANY_MACHINES",
        TooManyCores = "TOO_MANY_CORES",
        TooMuchMemory = "TOO_MUCH_MEMORY",
        TooMuchDisk = "TOO_MUCH_DISK",
        TooManyProcesses = "TOO_MANY_PROCESSES",
    }
);

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    pub valid: bool,
    pub code: ValidationCode,
    pub detail: &'static str,
}

fn fail(code: ValidationCode, detail: &'static str) -> Outcome {
    Outcome { valid: false, code, detail }
}

/// The first checks, on the license alone, in Keygen's order: banned, suspended, expired under
/// REVOKE_ACCESS. A license key that fails one does not authenticate either.
pub fn revoked(l: &License, now: Millis) -> Option<Outcome> {
    if l.owner_banned {
        return Some(fail(ValidationCode::Banned, "is banned"));
    }
    if l.suspended {
        return Some(fail(ValidationCode::Suspended, "is suspended"));
    }
    let expired = l.expiry.is_some_and(|e| e < now);
    if expired && l.rules().expiration_strategy == ExpirationStrategy::RevokeAccess {
        return Some(fail(ValidationCode::Expired, "is expired"));
    }
    None
}

/// What a validation says of the license itself, before any scope or machine: [`revoked`], an
/// overdue check-in, then expiry per the expiration strategy. The gate of surfaces that hand a
/// license out to be used offline (an activation file is only worth issuing for a license that
/// validates).
pub fn standing(l: &License, now: Millis) -> Outcome {
    if let Some(out) = revoked(l, now) {
        return out;
    }
    if is_overdue(l.rules(), l.last_check_in_at, now) {
        return fail(ValidationCode::Overdue, "is overdue for check in");
    }
    expiry_outcome(l.rules(), l.expiry.is_some_and(|e| e < now))
}

/// Runs the checks. `quick` skips every scope check (Keygen's `GET …/actions/validate`).
pub fn validate(l: &License, facts: &Facts, scope: Option<&Scope>, quick: bool, now: Millis) -> Outcome {
    let rules = l.rules();
    let expired = l.expiry.is_some_and(|e| e < now);
    let floating = rules.floating;
    if let Some(out) = revoked(l, now) {
        return out;
    }
    if is_overdue(rules, l.last_check_in_at, now) {
        return fail(ValidationCode::Overdue, "is overdue for check in");
    }
    if !quick {
        let empty = Scope::default();
        let s = scope.unwrap_or(&empty);
        if let Some(out) = check_scopes(l, facts, s, now) {
            return out;
        }
    }
    if let Some(max) = l.max_users() {
        if l.users_total() > max {
            return Outcome {
                valid: rules.within_overage(l.users_total(), max),
                code: ValidationCode::TooManyUsers,
                detail: "has too many associated users",
            };
        }
    }
    if !rules.strict {
        return expiry_outcome(rules, expired);
    }
    // NO_MACHINE(S) look at every machine of the license; the limits at the machines leased to
    // the user in scope when leasing is PER_USER.
    let total = facts.machines.len() as i64;
    let leased = leased_machines(l, facts);
    let count = leased.len() as i64;
    if !floating && total == 0 {
        return fail(ValidationCode::NoMachine, "must have exactly 1 associated machine");
    }
    // A node-locked license allows one machine unless it says otherwise.
    if let Some(max) = l.max_machines().or((!floating).then_some(1)).filter(|_| total > 1) {
        if count > max {
            return Outcome {
                valid: rules.within_machine_overage(count, max),
                code: ValidationCode::TooManyMachines,
                detail: "has too many associated machines",
            };
        }
    }
    if floating && total == 0 {
        return fail(ValidationCode::NoMachines, "must have at least 1 associated machine");
    }
    let sum = |f: fn(&MachineFacts) -> i64| leased.iter().map(|m| f(m)).sum::<i64>();
    for (max, total, code, detail) in [
        (l.max_cores(), sum(|m| m.cores), ValidationCode::TooManyCores, "has too many associated machine cores"),
        (l.max_memory(), sum(|m| m.memory), ValidationCode::TooMuchMemory, "has too much associated machine memory"),
        (l.max_disk(), sum(|m| m.disk), ValidationCode::TooMuchDisk, "has too much associated machine disk"),
    ] {
        if let Some(max) = max {
            if total > max {
                return Outcome { valid: rules.within_overage(total, max), code, detail };
            }
        }
    }
    if let Some(out) = process_limit(l, facts, scope, now) {
        return out;
    }
    expiry_outcome(rules, expired)
}

/// The machines the strict limits count: all of the license's, or under PER_USER leasing only
/// those of the user in scope (the ownerless ones when no user is in scope), as activation
/// counts them.
fn leased_machines<'a>(l: &License, facts: &'a Facts) -> Vec<&'a MachineFacts> {
    let per_user = l.rules().machine_leasing_strategy == MachineLeasing::PerUser;
    facts.machines.iter().filter(|m| !per_user || m.owner_id == facts.scope_user).collect()
}

fn expiry_outcome(rules: &crate::model::PolicyRules, expired: bool) -> Outcome {
    if expired {
        let valid =
            matches!(rules.expiration_strategy, ExpirationStrategy::MaintainAccess | ExpirationStrategy::AllowAccess);
        return Outcome { valid, code: ValidationCode::Expired, detail: "is expired" };
    }
    Outcome { valid: true, code: ValidationCode::Valid, detail: "is valid" }
}

fn process_limit(l: &License, facts: &Facts, scope: Option<&Scope>, now: Millis) -> Option<Outcome> {
    let rules = l.rules();
    let license_max = l.max_processes()?;
    let (count, max) = match rules.process_leasing_strategy {
        // The live machine in scope, by fingerprint(s) or id; with neither, nothing to count.
        ProcessLeasing::PerMachine => {
            let s = scope?;
            let alive = |m: &&MachineFacts| {
                heartbeat::machine_status(rules, m.last_heartbeat, m.created_at, now) != HeartbeatStatus::Dead
            };
            let m = match s.fingerprint_list() {
                Some(fps) => facts.machines.iter().filter(alive).find(|m| fps.contains(&m.fingerprint.as_str()))?,
                None => {
                    let id = s.machine.as_deref()?;
                    facts.machines.iter().filter(alive).find(|m| m.id == id)?
                }
            };
            (m.processes, m.max_processes.unwrap_or(license_max))
        }
        // A process counts toward its machine's owner: the user in scope, else the ownerless bucket.
        ProcessLeasing::PerUser => {
            let bucket = facts.machines.iter().filter(|m| m.owner_id == facts.scope_user);
            (bucket.map(|m| m.processes).sum(), license_max)
        }
        ProcessLeasing::PerLicense => (facts.processes_total, license_max),
    };
    (count > max).then(|| Outcome {
        valid: rules.within_overage(count, max),
        code: ValidationCode::TooManyProcesses,
        detail: "has too many associated processes",
    })
}

fn check_scopes(l: &License, facts: &Facts, s: &Scope, now: Millis) -> Option<Outcome> {
    let rules = l.rules();
    match &s.product {
        Some(p) if *p != l.product_id.to_string() => {
            return Some(fail(ValidationCode::ProductScopeMismatch, "product scope does not match"))
        }
        None if rules.require_product_scope => {
            return Some(fail(ValidationCode::ProductScopeRequired, "product scope is required"))
        }
        _ => {}
    }
    match &s.policy {
        Some(p) if *p != l.policy_id.to_string() => {
            return Some(fail(ValidationCode::PolicyScopeMismatch, "policy scope does not match"))
        }
        None if rules.require_policy_scope => {
            return Some(fail(ValidationCode::PolicyScopeRequired, "policy scope is required"))
        }
        _ => {}
    }
    match &s.user {
        // `null` asks for a license without an owner.
        Some(None) if l.owner_id.is_some() => {
            return Some(fail(ValidationCode::UserScopeMismatch, "user scope does not match"))
        }
        Some(Some(_)) if facts.scope_user.is_none() => {
            return Some(fail(ValidationCode::UserScopeMismatch, "user scope does not match"))
        }
        None if rules.require_user_scope => {
            return Some(fail(ValidationCode::UserScopeRequired, "user scope is required"))
        }
        _ => {}
    }
    if let Some(codes) = &s.entitlements {
        if codes.is_empty() {
            return Some(fail(ValidationCode::EntitlementsScopeEmpty, "entitlements scope is empty"));
        }
        if !codes.iter().all(|c| facts.entitlements.contains(c)) {
            return Some(fail(ValidationCode::EntitlementsMissing, "is missing one or more required entitlements"));
        }
    }
    let no_machine = |what: &'static str| -> Outcome {
        match (rules.floating, what) {
            (true, "machine") => {
                fail(ValidationCode::NoMachines, "machine is not activated (has no associated machines)")
            }
            (false, "machine") => {
                fail(ValidationCode::NoMachine, "machine is not activated (has no associated machine)")
            }
            (true, _) => fail(ValidationCode::NoMachines, "fingerprint is not activated (has no associated machines)"),
            (false, _) => fail(ValidationCode::NoMachine, "fingerprint is not activated (has no associated machine)"),
        }
    };
    let status = |m: &MachineFacts| heartbeat::machine_status(rules, m.last_heartbeat, m.created_at, now);
    let foreign_owner =
        |m: &MachineFacts| facts.scope_user.is_some() && m.owner_id.is_some() && m.owner_id != facts.scope_user;
    match &s.machine {
        Some(id) => {
            if facts.machines.is_empty() {
                return Some(no_machine("machine"));
            }
            let Some(m) = facts.machines.iter().find(|m| m.id == *id) else {
                return Some(fail(
                    ValidationCode::MachineScopeMismatch,
                    "machine is not activated (does not match any associated machines)",
                ));
            };
            if foreign_owner(m) {
                return Some(fail(
                    ValidationCode::UserScopeMismatch,
                    "user scope does not match (does not match associated machine owner)",
                ));
            }
            match status(m) {
                HeartbeatStatus::NotStarted if rules.require_heartbeat => {
                    return Some(fail(ValidationCode::HeartbeatNotStarted, "machine heartbeat is required"))
                }
                HeartbeatStatus::Dead => return Some(fail(ValidationCode::HeartbeatDead, "machine heartbeat is dead")),
                _ => {}
            }
        }
        None if rules.require_machine_scope => {
            return Some(fail(ValidationCode::MachineScopeRequired, "machine scope is required"))
        }
        None => {}
    }
    match s.fingerprint_list() {
        Some(fps) => {
            if fps.is_empty() {
                return Some(fail(ValidationCode::FingerprintScopeEmpty, "fingerprint scope is empty"));
            }
            if facts.machines.is_empty() {
                return Some(no_machine("fingerprint"));
            }
            let matched: Vec<&MachineFacts> =
                facts.machines.iter().filter(|m| fps.contains(&m.fingerprint.as_str())).collect();
            let dead = matched.iter().filter(|m| status(m) == HeartbeatStatus::Dead).count();
            if dead == fps.len() {
                return Some(fail(ValidationCode::HeartbeatDead, "machine heartbeat is dead"));
            }
            let alive: Vec<&MachineFacts> =
                matched.into_iter().filter(|m| status(m) != HeartbeatStatus::Dead).collect();
            if let Some(detail) = fingerprint_mismatch(rules.machine_matching_strategy, alive.len(), fps.len()) {
                return Some(fail(ValidationCode::FingerprintScopeMismatch, detail));
            }
            if alive.iter().any(|m| foreign_owner(m)) {
                return Some(fail(
                    ValidationCode::UserScopeMismatch,
                    "user scope does not match (does not match associated machine owners)",
                ));
            }
            if rules.require_heartbeat && alive.iter().any(|m| status(m) == HeartbeatStatus::NotStarted) {
                return Some(fail(ValidationCode::HeartbeatNotStarted, "machine heartbeat is required"));
            }
        }
        None if rules.require_fingerprint_scope => {
            return Some(fail(ValidationCode::FingerprintScopeRequired, "fingerprint scope is required"))
        }
        None => {}
    }
    match &s.components {
        Some(components) => {
            let Some(fp) = &s.fingerprint else {
                return Some(fail(
                    ValidationCode::FingerprintScopeRequired,
                    "fingerprint scope is required when using the components scope",
                ));
            };
            let mut unique: Vec<&String> = Vec::with_capacity(components.len());
            for c in components {
                if !unique.contains(&c) {
                    unique.push(c);
                }
            }
            if unique.is_empty() {
                return Some(fail(ValidationCode::ComponentsScopeEmpty, "components scope is empty"));
            }
            let machine = facts.machines.iter().find(|m| m.fingerprint == *fp)?;
            let matched = unique.iter().filter(|c| machine.components.contains(c)).count();
            if let Some(detail) = component_mismatch(rules.component_matching_strategy, matched, unique.len()) {
                return Some(fail(ValidationCode::ComponentsScopeMismatch, detail));
            }
        }
        None if rules.require_components_scope => {
            return Some(fail(ValidationCode::ComponentsScopeRequired, "components scope is required"))
        }
        None => {}
    }
    // No release distribution here: any checksum or version asked for is one we do not have.
    match &s.checksum {
        Some(_) => {
            return Some(fail(
                ValidationCode::ChecksumScopeMismatch,
                "checksum scope is not valid (does not match any accessible artifacts)",
            ))
        }
        None if rules.require_checksum_scope => {
            return Some(fail(ValidationCode::ChecksumScopeRequired, "checksum scope is required"))
        }
        None => {}
    }
    match &s.version {
        Some(_) => {
            return Some(fail(
                ValidationCode::VersionScopeMismatch,
                "version scope is not valid (does not match any accessible releases)",
            ))
        }
        None if rules.require_version_scope => {
            return Some(fail(ValidationCode::VersionScopeRequired, "version scope is required"))
        }
        None => {}
    }
    None
}

/// Why `alive` live matches out of `given` distinct fingerprints fail the machine matching
/// strategy; a single fingerprint needs one match whatever the strategy.
fn fingerprint_mismatch(strategy: Matching, alive: usize, given: usize) -> Option<&'static str> {
    let (ok, detail) = match strategy {
        _ if given <= 1 => (alive >= 1, "fingerprint is not activated (does not match any associated machines)"),
        Matching::MatchMost => (
            alive >= given.div_ceil(2),
            "one or more fingerprint is not activated (does not match enough associated machines)",
        ),
        Matching::MatchTwo => {
            (alive >= 2, "one or more fingerprint is not activated (does not match at least 2 associated machines)")
        }
        Matching::MatchAll => {
            (alive >= given, "one or more fingerprint is not activated (does not match all associated machines)")
        }
        _ => (alive >= 1, "one or more fingerprint is not activated (does not match any associated machines)"),
    };
    (!ok).then_some(detail)
}

/// Why `matched` of `given` distinct components fail the component matching strategy (no
/// exception for a single component: MATCH_TWO always needs two).
fn component_mismatch(strategy: Matching, matched: usize, given: usize) -> Option<&'static str> {
    let (ok, detail) = match strategy {
        Matching::MatchMost => (
            matched >= given.div_ceil(2),
            "one or more component is not activated (does not match enough associated components)",
        ),
        Matching::MatchTwo => {
            (matched >= 2, "one or more component is not activated (does not match at least 2 associated components)")
        }
        Matching::MatchAll => {
            (matched >= given, "one or more component is not activated (does not match all associated components)")
        }
        _ => (matched >= 1, "one or more component is not activated (does not match any associated components)"),
    };
    (!ok).then_some(detail)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::PolicyRules;
    use uuid::Uuid;

    fn license(rules: PolicyRules) -> License {
        License::for_tests(rules)
    }

    fn machine(id: &str, owner: Option<&str>, processes: i64) -> MachineFacts {
        MachineFacts {
            id: id.into(),
            fingerprint: format!("fp-{id}"),
            owner_id: owner.map(str::to_string),
            cores: 1,
            memory: 0,
            disk: 0,
            last_heartbeat: None,
            created_at: 0,
            processes,
            max_processes: None,
            components: Vec::new(),
        }
    }

    #[test]
    fn a_null_user_scope_asks_for_an_ownerless_license() {
        let mut l = license(PolicyRules::default());
        let scope: Scope = serde_json::from_str(r#"{"user": null}"#).unwrap();
        assert_eq!(scope.user, Some(None));
        assert_eq!(serde_json::to_string(&scope).unwrap(), r#"{"user":null}"#, "echoed as sent");
        assert_eq!(validate(&l, &Facts::default(), Some(&scope), false, 1).code.as_str(), "VALID");
        l.owner_id = Some(Uuid::nil());
        assert_eq!(validate(&l, &Facts::default(), Some(&scope), false, 1).code.as_str(), "USER_SCOPE_MISMATCH");
        let absent: Scope = serde_json::from_str("{}").unwrap();
        assert_eq!(absent.user, None);
        assert_eq!(validate(&l, &Facts::default(), Some(&absent), false, 1).code.as_str(), "VALID");
    }

    #[test]
    fn per_user_leasing_counts_the_scoped_users_machines() {
        let rules = PolicyRules {
            strict: true,
            floating: true,
            max_machines: Some(1),
            max_cores: Some(2),
            machine_leasing_strategy: MachineLeasing::parse("PER_USER").unwrap(),
            ..PolicyRules::default()
        };
        let l = license(rules.clone());
        let facts = |scope_user: Option<&str>| Facts {
            machines: vec![machine("a", Some("u1"), 0), machine("b", Some("u1"), 0), machine("c", None, 0)],
            scope_user: scope_user.map(str::to_string),
            ..Facts::default()
        };
        assert_eq!(validate(&l, &facts(Some("u1")), None, false, 1).code.as_str(), "TOO_MANY_MACHINES");
        // A user without machines has nothing over the limit; NO_MACHINES looks at the license.
        assert_eq!(validate(&l, &facts(Some("u2")), None, false, 1).code.as_str(), "VALID");
        assert_eq!(validate(&l, &facts(None), None, false, 1).code.as_str(), "VALID");
        // Per license, the same three machines are too many.
        let per_license = license(PolicyRules {
            machine_leasing_strategy: MachineLeasing::parse("PER_LICENSE").unwrap(),
            ..rules.clone()
        });
        assert_eq!(validate(&per_license, &facts(None), None, false, 1).code.as_str(), "TOO_MANY_MACHINES");
        // Cores are leased per user too: u1's two machines hold two cores, within the limit.
        let l = license(PolicyRules { max_machines: Some(5), ..rules });
        assert_eq!(validate(&l, &facts(Some("u1")), None, false, 1).code.as_str(), "VALID");
    }

    #[test]
    fn process_limits_per_leasing_strategy() {
        let rules = PolicyRules { strict: true, floating: true, max_processes: Some(2), ..PolicyRules::default() };
        let facts = |scope_user: Option<&str>| Facts {
            machines: vec![machine("a", Some("u1"), 3), machine("b", Some("u1"), 1), machine("c", None, 1)],
            scope_user: scope_user.map(str::to_string),
            processes_total: 5,
            ..Facts::default()
        };
        let by_fp = |fp: &str| Scope { fingerprint: Some(fp.into()), ..Scope::default() };
        let by_fps = |fps: &[&str]| Scope {
            fingerprints: Some(fps.iter().map(|f| f.to_string()).collect()),
            ..Scope::default()
        };
        let by_id = |id: &str| Scope { machine: Some(id.into()), ..Scope::default() };
        let per = |strategy: &str| {
            license(PolicyRules { process_leasing_strategy: ProcessLeasing::parse(strategy).unwrap(), ..rules.clone() })
        };
        // PER_MACHINE: the processes of the machine in scope (by fingerprint, fingerprints or id);
        // with no machine in scope, nothing to count. Scopes are checked in full validation only,
        // so these run quick to isolate the process limit.
        let pm = per("PER_MACHINE");
        assert_eq!(validate(&pm, &facts(None), Some(&by_fp("fp-a")), true, 1).code.as_str(), "TOO_MANY_PROCESSES");
        assert_eq!(
            validate(&pm, &facts(None), Some(&by_fps(&["fp-x", "fp-a"])), true, 1).code.as_str(),
            "TOO_MANY_PROCESSES"
        );
        assert_eq!(validate(&pm, &facts(None), Some(&by_id("a")), true, 1).code.as_str(), "TOO_MANY_PROCESSES");
        assert_eq!(validate(&pm, &facts(None), Some(&by_fp("fp-b")), true, 1).code.as_str(), "VALID");
        assert_eq!(validate(&pm, &facts(None), None, false, 1).code.as_str(), "VALID");
        // PER_LICENSE: all five.
        assert_eq!(validate(&per("PER_LICENSE"), &facts(None), None, false, 1).code.as_str(), "TOO_MANY_PROCESSES");
        // PER_USER: u1 runs four, the ownerless bucket one.
        assert_eq!(validate(&per("PER_USER"), &facts(Some("u1")), None, false, 1).code.as_str(), "TOO_MANY_PROCESSES");
        assert_eq!(validate(&per("PER_USER"), &facts(None), None, false, 1).code.as_str(), "VALID");
        // Overage turns the refusal into a valid TOO_MANY_PROCESSES.
        let l = license(PolicyRules {
            process_leasing_strategy: ProcessLeasing::parse("PER_LICENSE").unwrap(),
            overage_strategy: crate::model::OverageStrategy::AlwaysAllowOverage,
            ..rules.clone()
        });
        let out = validate(&l, &facts(None), None, false, 1);
        assert_eq!((out.code.as_str(), out.valid), ("TOO_MANY_PROCESSES", true));
        // A machine's own limit applies only where the license has one at all.
        let mut m = machine("a", None, 3);
        m.max_processes = Some(1);
        let facts = Facts { machines: vec![m], processes_total: 3, ..Facts::default() };
        let unlimited = license(PolicyRules { max_processes: None, ..rules.clone() });
        assert_eq!(validate(&unlimited, &facts, Some(&by_id("a")), true, 1).code.as_str(), "VALID");
    }

    #[test]
    fn first_failure_wins() {
        // A strict, node-locked license that is expired under RESTRICT_ACCESS and has no machine
        // reports the machine, not the expiry (as Keygen orders its checks).
        let rules = PolicyRules { strict: true, floating: false, ..PolicyRules::default() };
        let mut l = license(rules);
        l.expiry = Some(0);
        assert_eq!(validate(&l, &Facts::default(), None, false, 1).code.as_str(), "NO_MACHINE");
        l.suspended = true;
        assert_eq!(validate(&l, &Facts::default(), None, false, 1).code.as_str(), "SUSPENDED");
        l.owner_banned = true;
        assert_eq!(validate(&l, &Facts::default(), None, false, 1).code.as_str(), "BANNED");
    }

    #[test]
    fn matching_strategies() {
        assert_eq!(fingerprint_mismatch(Matching::parse("MATCH_ANY").unwrap(), 1, 3), None);
        assert!(fingerprint_mismatch(Matching::parse("MATCH_TWO").unwrap(), 1, 3).unwrap().contains("at least 2"));
        assert_eq!(fingerprint_mismatch(Matching::parse("MATCH_TWO").unwrap(), 2, 3), None);
        assert_eq!(fingerprint_mismatch(Matching::parse("MATCH_MOST").unwrap(), 2, 4), None);
        assert!(fingerprint_mismatch(Matching::parse("MATCH_MOST").unwrap(), 1, 4).unwrap().contains("enough"));
        assert_eq!(fingerprint_mismatch(Matching::parse("MATCH_MOST").unwrap(), 2, 3), None);
        assert!(fingerprint_mismatch(Matching::parse("MATCH_ALL").unwrap(), 2, 3).unwrap().contains("all associated"));
        assert_eq!(fingerprint_mismatch(Matching::parse("MATCH_ALL").unwrap(), 1, 1), None);
        assert_eq!(
            fingerprint_mismatch(Matching::parse("MATCH_ANY").unwrap(), 0, 1),
            Some("fingerprint is not activated (does not match any associated machines)")
        );
        // One fingerprint needs one match whatever the strategy; one component does not.
        assert_eq!(fingerprint_mismatch(Matching::parse("MATCH_TWO").unwrap(), 1, 1), None);
        assert!(component_mismatch(Matching::parse("MATCH_TWO").unwrap(), 1, 1).is_some());
        assert_eq!(component_mismatch(Matching::parse("MATCH_ANY").unwrap(), 1, 3), None);
        assert!(component_mismatch(Matching::parse("MATCH_ALL").unwrap(), 2, 3)
            .unwrap()
            .contains("all associated components"));
    }

    #[test]
    fn fingerprints_count_once_and_die_together() {
        let rules = PolicyRules {
            floating: true,
            require_heartbeat: true,
            heartbeat_duration: Some(60),
            machine_matching_strategy: Matching::parse("MATCH_ALL").unwrap(),
            ..PolicyRules::default()
        };
        let l = license(rules);
        let now = 10 * 60 * 1000;
        let mut dead = machine("d", None, 0);
        dead.last_heartbeat = Some(0);
        let mut alive = machine("a", None, 0);
        alive.last_heartbeat = Some(now);
        let facts = Facts { machines: vec![dead, alive], ..Facts::default() };
        let fps = |list: &[&str]| Scope {
            fingerprints: Some(list.iter().map(|f| f.to_string()).collect()),
            ..Scope::default()
        };
        // A repeated fingerprint is one fingerprint: MATCH_ALL holds.
        assert_eq!(validate(&l, &facts, Some(&fps(&["fp-a", "fp-a"])), false, now).code.as_str(), "VALID");
        // Dead only when every distinct fingerprint matched a dead machine.
        assert_eq!(validate(&l, &facts, Some(&fps(&["fp-d", "fp-d"])), false, now).code.as_str(), "HEARTBEAT_DEAD");
        assert_eq!(
            validate(&l, &facts, Some(&fps(&["fp-d", "fp-x"])), false, now).code.as_str(),
            "FINGERPRINT_SCOPE_MISMATCH"
        );
    }
}
