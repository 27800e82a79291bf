//! License validation: Keygen's checks, in Keygen's order, first failure wins
//! (`shared/reference/keygen.md` §3). Pure: the caller gathers the facts, this decides.

use serde::{Deserialize, Serialize};

use super::heartbeat;
use super::license::is_overdue;
use crate::store::licenses::LicenseRow;
use crate::time::Millis;

/// `meta.scope` of a validation request (echoed back in the response without its unset fields).
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Scope {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub product: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub policy: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
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
    #[serde(skip_serializing_if = "Option::is_none")]
    pub environment: Option<String>,
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

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    pub valid: bool,
    pub code: &'static str,
    pub detail: &'static str,
}

fn fail(code: &'static str, detail: &'static str) -> Outcome {
    Outcome { valid: false, code, detail }
}

fn matches_required(strategy: &str, matched: usize, given: usize) -> bool {
    match strategy {
        _ if given <= 1 => matched >= 1,
        "MATCH_TWO" => matched >= 2,
        "MATCH_MOST" => matched >= given.div_ceil(2),
        "MATCH_ALL" => matched == given,
        _ => matched >= 1,
    }
}

/// Runs the checks. `quick` skips every scope check (Keygen's `GET …/actions/validate`).
pub fn validate(l: &LicenseRow, facts: &Facts, scope: Option<&Scope>, quick: bool, now: Millis) -> Outcome {
    let rules = l.rules();
    let expired = l.expiry.is_some_and(|e| e < now);
    let floating = rules.floating;
    if l.owner_banned {
        return fail("BANNED", "is banned");
    }
    if l.suspended {
        return fail("SUSPENDED", "is suspended");
    }
    if expired && rules.expiration_strategy == "REVOKE_ACCESS" {
        return fail("EXPIRED", "is expired");
    }
    if is_overdue(rules, l.last_check_in_at, l.created_at, now) {
        return fail("OVERDUE", "is overdue for check in");
    }
    if !quick {
        let empty = Scope::default();
        let s = scope.unwrap_or(&empty);
        if let Some(out) = check_scopes(l, facts, s, now) {
            return out;
        }
    }
    if let Some(max) = l.max_users() {
        if l.users_count > max {
            return Outcome {
                valid: rules.within_overage(l.users_count, max),
                code: "TOO_MANY_USERS",
                detail: "has too many associated users",
            };
        }
    }
    if !rules.strict {
        return expiry_outcome(rules, expired);
    }
    let leased = leased_machines(l, facts);
    let count = leased.len() as i64;
    if !floating && count == 0 {
        return fail("NO_MACHINE", "must have exactly 1 associated machine");
    }
    if let Some(max) = l.max_machines() {
        if count > max {
            return Outcome {
                valid: rules.within_machine_overage(count, max),
                code: "TOO_MANY_MACHINES",
                detail: "has too many associated machines",
            };
        }
    }
    if floating && count == 0 {
        return fail("NO_MACHINES", "must have at least 1 associated machine");
    }
    let sum = |f: fn(&MachineFacts) -> i64| leased.iter().map(|m| f(m)).sum::<i64>();
    for (max, total, code, detail) in [
        (l.max_cores(), sum(|m| m.cores), "TOO_MANY_CORES", "has too many associated machine cores"),
        (l.max_memory(), sum(|m| m.memory), "TOO_MUCH_MEMORY", "has too much associated machine memory"),
        (l.max_disk(), sum(|m| m.disk), "TOO_MUCH_DISK", "has too much associated machine disk"),
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
fn leased_machines<'a>(l: &LicenseRow, facts: &'a Facts) -> Vec<&'a MachineFacts> {
    let per_user = l.rules().machine_leasing_strategy == "PER_USER";
    facts.machines.iter().filter(|m| !per_user || m.owner_id == facts.scope_user).collect()
}

fn expiry_outcome(rules: &super::policy::PolicyRules, expired: bool) -> Outcome {
    if expired {
        let valid = matches!(rules.expiration_strategy.as_str(), "MAINTAIN_ACCESS" | "ALLOW_ACCESS");
        return Outcome { valid, code: "EXPIRED", detail: "is expired" };
    }
    Outcome { valid: true, code: "VALID", detail: "is valid" }
}

fn process_limit(l: &LicenseRow, facts: &Facts, scope: Option<&Scope>, now: Millis) -> Option<Outcome> {
    let rules = l.rules();
    let (count, max) = match rules.process_leasing_strategy.as_str() {
        "PER_MACHINE" => {
            let fp = scope.and_then(|s| s.fingerprint.as_deref());
            let id = scope.and_then(|s| s.machine.as_deref());
            let alive =
                |m: &&MachineFacts| heartbeat::machine_status(rules, m.last_heartbeat, m.created_at, now) != "DEAD";
            let m = facts
                .machines
                .iter()
                .filter(alive)
                .find(|m| Some(m.fingerprint.as_str()) == fp || Some(m.id.as_str()) == id)?;
            (m.processes, m.max_processes.or(l.max_processes())?)
        }
        // A process counts toward its machine's owner: the user in scope, else the ownerless bucket.
        "PER_USER" => {
            let bucket = facts.machines.iter().filter(|m| m.owner_id == facts.scope_user);
            (bucket.map(|m| m.processes).sum(), l.max_processes()?)
        }
        _ => (facts.processes_total, l.max_processes()?),
    };
    (count > max).then(|| Outcome {
        valid: rules.within_overage(count, max),
        code: "TOO_MANY_PROCESSES",
        detail: "has too many associated processes",
    })
}

fn check_scopes(l: &LicenseRow, facts: &Facts, s: &Scope, now: Millis) -> Option<Outcome> {
    let rules = l.rules();
    // Environments are an Enterprise feature Licensor does not have: every license is global,
    // so naming any environment cannot match.
    if s.environment.is_some() {
        return Some(fail("ENVIRONMENT_SCOPE_MISMATCH", "environment scope does not match"));
    }
    match &s.product {
        Some(p) if *p != l.product_id.to_string() => {
            return Some(fail("PRODUCT_SCOPE_MISMATCH", "product scope does not match"))
        }
        None if rules.require_product_scope => {
            return Some(fail("PRODUCT_SCOPE_REQUIRED", "product scope is required"))
        }
        _ => {}
    }
    match &s.policy {
        Some(p) if *p != l.policy_id.to_string() => {
            return Some(fail("POLICY_SCOPE_MISMATCH", "policy scope does not match"))
        }
        None if rules.require_policy_scope => return Some(fail("POLICY_SCOPE_REQUIRED", "policy scope is required")),
        _ => {}
    }
    match &s.user {
        Some(_) if facts.scope_user.is_none() => return Some(fail("USER_SCOPE_MISMATCH", "user scope does not match")),
        None if rules.require_user_scope => return Some(fail("USER_SCOPE_REQUIRED", "user scope is required")),
        _ => {}
    }
    if let Some(codes) = &s.entitlements {
        if codes.is_empty() {
            return Some(fail("ENTITLEMENTS_SCOPE_EMPTY", "entitlements scope is empty"));
        }
        if !codes.iter().all(|c| facts.entitlements.contains(c)) {
            return Some(fail("ENTITLEMENTS_MISSING", "is missing one or more required entitlements"));
        }
    }
    let no_machine = || {
        if rules.floating {
            fail("NO_MACHINES", "machine is not activated (has no associated machines)")
        } else {
            fail("NO_MACHINE", "machine is not activated (has no associated machine)")
        }
    };
    let status = |m: &MachineFacts| heartbeat::machine_status(rules, m.last_heartbeat, m.created_at, now);
    let owner_mismatch =
        |m: &MachineFacts| facts.scope_user.is_some() && m.owner_id.is_some() && m.owner_id != facts.scope_user;
    match &s.machine {
        Some(id) => {
            if facts.machines.is_empty() {
                return Some(no_machine());
            }
            let Some(m) = facts.machines.iter().find(|m| m.id == *id) else {
                return Some(fail("MACHINE_SCOPE_MISMATCH", "machine scope does not match"));
            };
            if owner_mismatch(m) {
                return Some(fail(
                    "USER_SCOPE_MISMATCH",
                    "user scope does not match (does not match associated machine owner)",
                ));
            }
            match status(m) {
                "NOT_STARTED" if rules.require_heartbeat => {
                    return Some(fail("HEARTBEAT_NOT_STARTED", "machine heartbeat is required"))
                }
                "DEAD" => return Some(fail("HEARTBEAT_DEAD", "machine heartbeat is dead")),
                _ => {}
            }
        }
        None if rules.require_machine_scope => {
            return Some(fail("MACHINE_SCOPE_REQUIRED", "machine scope is required"))
        }
        None => {}
    }
    let fingerprints: Option<Vec<&str>> = match (&s.fingerprint, &s.fingerprints) {
        (Some(f), _) => Some(vec![f.as_str()]),
        (None, Some(fs)) => Some(fs.iter().map(String::as_str).collect()),
        (None, None) => None,
    };
    match fingerprints {
        Some(fps) => {
            if fps.is_empty() || fps.iter().any(|f| f.is_empty()) {
                return Some(fail("FINGERPRINT_SCOPE_EMPTY", "fingerprint scope is empty"));
            }
            if facts.machines.is_empty() {
                return Some(no_machine());
            }
            let matched: Vec<&MachineFacts> =
                facts.machines.iter().filter(|m| fps.contains(&m.fingerprint.as_str())).collect();
            if !matched.is_empty() && matched.iter().all(|m| status(m) == "DEAD") {
                return Some(fail("HEARTBEAT_DEAD", "machine heartbeat is dead"));
            }
            let alive = matched.iter().filter(|m| status(m) != "DEAD").count();
            if !matches_required(&rules.machine_matching_strategy, alive, fps.len()) {
                return Some(fail(
                    "FINGERPRINT_SCOPE_MISMATCH",
                    "fingerprint is not activated (does not match any associated machines)",
                ));
            }
            if matched.iter().any(|m| owner_mismatch(m)) {
                return Some(fail(
                    "USER_SCOPE_MISMATCH",
                    "user scope does not match (does not match associated machine owner)",
                ));
            }
            if rules.require_heartbeat && matched.iter().any(|m| status(m) == "NOT_STARTED") {
                return Some(fail("HEARTBEAT_NOT_STARTED", "machine heartbeat is required"));
            }
        }
        None if rules.require_fingerprint_scope => {
            return Some(fail("FINGERPRINT_SCOPE_REQUIRED", "fingerprint scope is required"))
        }
        None => {}
    }
    match &s.components {
        Some(components) => {
            let Some(fp) = &s.fingerprint else {
                return Some(fail(
                    "FINGERPRINT_SCOPE_REQUIRED",
                    "fingerprint scope is required when using the components scope",
                ));
            };
            if components.is_empty() {
                return Some(fail("COMPONENTS_SCOPE_EMPTY", "components scope is empty"));
            }
            let machine = facts.machines.iter().find(|m| m.fingerprint == *fp)?;
            let matched = components.iter().filter(|c| machine.components.contains(c)).count();
            if !matches_required(&rules.component_matching_strategy, matched, components.len()) {
                return Some(fail("COMPONENTS_SCOPE_MISMATCH", "components scope does not match"));
            }
        }
        None if rules.require_components_scope => {
            return Some(fail("COMPONENTS_SCOPE_REQUIRED", "components scope is required"))
        }
        None => {}
    }
    // No release distribution here: any checksum or version asked for is one we do not have.
    match &s.checksum {
        Some(_) => return Some(fail("CHECKSUM_SCOPE_MISMATCH", "checksum scope does not match")),
        None if rules.require_checksum_scope => {
            return Some(fail("CHECKSUM_SCOPE_REQUIRED", "checksum scope is required"))
        }
        None => {}
    }
    match &s.version {
        Some(_) => return Some(fail("VERSION_SCOPE_MISMATCH", "version scope does not match")),
        None if rules.require_version_scope => {
            return Some(fail("VERSION_SCOPE_REQUIRED", "version scope is required"))
        }
        None => {}
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::policy::PolicyRules;
    use uuid::Uuid;

    fn license(rules: PolicyRules) -> LicenseRow {
        LicenseRow {
            id: Uuid::nil(),
            account_id: Uuid::nil(),
            product_id: Uuid::nil(),
            policy_id: Uuid::nil(),
            owner_id: None,
            group_id: None,
            key: "K".into(),
            name: None,
            expiry: None,
            suspended: false,
            protected: None,
            uses: 0,
            max_machines: None,
            max_processes: None,
            max_users: None,
            max_cores: None,
            max_uses: None,
            max_memory: None,
            max_disk: None,
            last_validated_at: None,
            last_check_out_at: None,
            last_check_in_at: None,
            metadata: sqlx::types::Json(serde_json::json!({})),
            created_at: 0,
            updated_at: 0,
            policy_rules: crate::store::Rules(std::sync::Arc::new(rules)),
            machines_count: 0,
            machines_cores: 0,
            users_count: 0,
            owner_banned: false,
        }
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
    fn any_environment_scope_misses_a_global_license() {
        let l = license(PolicyRules::default());
        let scope = Scope { environment: Some("production".into()), ..Scope::default() };
        let out = validate(&l, &Facts::default(), Some(&scope), false, 1);
        assert_eq!(out.code, "ENVIRONMENT_SCOPE_MISMATCH");
        // It comes before the product scope (keygen.md §3, rows 6 and 7).
        let scope = Scope { product: Some("other".into()), ..scope };
        assert_eq!(validate(&l, &Facts::default(), Some(&scope), false, 1).code, "ENVIRONMENT_SCOPE_MISMATCH");
        // Quick validation skips scopes.
        assert_eq!(validate(&l, &Facts::default(), Some(&scope), true, 1).code, "VALID");
    }

    #[test]
    fn per_user_leasing_counts_the_scoped_users_machines() {
        let rules = PolicyRules {
            strict: true,
            floating: true,
            max_machines: Some(1),
            machine_leasing_strategy: "PER_USER".into(),
            ..PolicyRules::default()
        };
        let l = license(rules.clone());
        let facts = |scope_user: Option<&str>| Facts {
            machines: vec![machine("a", Some("u1"), 0), machine("b", Some("u1"), 0), machine("c", None, 0)],
            scope_user: scope_user.map(str::to_string),
            ..Facts::default()
        };
        assert_eq!(validate(&l, &facts(Some("u1")), None, false, 1).code, "TOO_MANY_MACHINES");
        assert_eq!(validate(&l, &facts(Some("u2")), None, false, 1).code, "NO_MACHINES");
        assert_eq!(validate(&l, &facts(None), None, false, 1).code, "VALID");
        // Per license, the same three machines are too many.
        let l = license(PolicyRules { machine_leasing_strategy: "PER_LICENSE".into(), ..rules });
        assert_eq!(validate(&l, &facts(None), None, false, 1).code, "TOO_MANY_MACHINES");
    }

    #[test]
    fn process_limits_per_leasing_strategy() {
        let rules = PolicyRules { strict: true, floating: true, max_processes: Some(2), ..PolicyRules::default() };
        let facts = |scope_user: Option<&str>| Facts {
            machines: vec![machine("a", Some("u1"), 2), machine("b", Some("u1"), 1), machine("c", None, 1)],
            scope_user: scope_user.map(str::to_string),
            processes_total: 4,
            ..Facts::default()
        };
        let by_fp = |fp: &str| Scope { fingerprint: Some(fp.into()), ..Scope::default() };
        let per = |strategy: &str| license(PolicyRules { process_leasing_strategy: strategy.into(), ..rules.clone() });
        // PER_MACHINE: the scoped machine's own processes; without a machine in scope, no check.
        assert_eq!(validate(&per("PER_MACHINE"), &facts(None), Some(&by_fp("fp-a")), false, 1).code, "VALID");
        assert_eq!(validate(&per("PER_MACHINE"), &facts(None), None, false, 1).code, "VALID");
        // PER_LICENSE: all four.
        assert_eq!(validate(&per("PER_LICENSE"), &facts(None), None, false, 1).code, "TOO_MANY_PROCESSES");
        // PER_USER: u1 runs three, the ownerless bucket one.
        assert_eq!(validate(&per("PER_USER"), &facts(Some("u1")), None, false, 1).code, "TOO_MANY_PROCESSES");
        assert_eq!(validate(&per("PER_USER"), &facts(None), None, false, 1).code, "VALID");
        // Overage turns the refusal into a valid TOO_MANY_PROCESSES.
        let l = license(PolicyRules {
            process_leasing_strategy: "PER_LICENSE".into(),
            overage_strategy: "ALLOW_2X_OVERAGE".into(),
            ..rules.clone()
        });
        let out = validate(&l, &facts(None), None, false, 1);
        assert_eq!((out.code, out.valid), ("TOO_MANY_PROCESSES", true));
    }

    #[test]
    fn per_machine_process_limit_skips_a_dead_machine() {
        let rules = PolicyRules {
            strict: true,
            floating: true,
            max_processes: Some(1),
            require_heartbeat: true,
            heartbeat_duration: Some(60),
            ..PolicyRules::default()
        };
        let l = license(rules);
        let mut busy = machine("a", None, 5);
        busy.last_heartbeat = Some(0);
        let facts = Facts { machines: vec![busy], ..Facts::default() };
        let scope = Scope { machine: Some("a".into()), ..Scope::default() };
        // Long after its heartbeat, with the scope checks skipped (quick), the dead machine's
        // processes do not count against it.
        assert_eq!(validate(&l, &facts, Some(&scope), true, 10 * 60 * 1000).code, "VALID");
        assert_eq!(validate(&l, &facts, Some(&scope), true, 1000).code, "TOO_MANY_PROCESSES");
    }

    #[test]
    fn first_failure_wins() {
        // A strict, node-locked license that is expired under RESTRICT_ACCESS and has no machine
        // reports the machine, not the expiry (keygen.md §3, rows 18 and 22).
        let rules = PolicyRules { strict: true, floating: false, ..PolicyRules::default() };
        let mut l = license(rules);
        l.expiry = Some(0);
        assert_eq!(validate(&l, &Facts::default(), None, false, 1).code, "NO_MACHINE");
        l.suspended = true;
        assert_eq!(validate(&l, &Facts::default(), None, false, 1).code, "SUSPENDED");
        l.owner_banned = true;
        assert_eq!(validate(&l, &Facts::default(), None, false, 1).code, "BANNED");
    }

    #[test]
    fn matching_strategies() {
        assert!(matches_required("MATCH_ANY", 1, 3));
        assert!(!matches_required("MATCH_TWO", 1, 3));
        assert!(matches_required("MATCH_TWO", 2, 3));
        assert!(matches_required("MATCH_MOST", 2, 4));
        assert!(!matches_required("MATCH_MOST", 1, 4));
        assert!(matches_required("MATCH_MOST", 2, 3));
        assert!(!matches_required("MATCH_ALL", 2, 3));
        assert!(matches_required("MATCH_ALL", 1, 1));
        assert!(!matches_required("MATCH_ANY", 0, 1));
    }
}
