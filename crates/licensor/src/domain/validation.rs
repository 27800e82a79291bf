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
    let count = facts.machines.len() as i64;
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
    let sum = |f: fn(&MachineFacts) -> i64| facts.machines.iter().map(f).sum::<i64>();
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
    if let Some(out) = process_limit(l, facts, scope) {
        return out;
    }
    expiry_outcome(rules, expired)
}

fn expiry_outcome(rules: &super::policy::PolicyRules, expired: bool) -> Outcome {
    if expired {
        let valid = matches!(rules.expiration_strategy.as_str(), "MAINTAIN_ACCESS" | "ALLOW_ACCESS");
        return Outcome { valid, code: "EXPIRED", detail: "is expired" };
    }
    Outcome { valid: true, code: "VALID", detail: "is valid" }
}

fn process_limit(l: &LicenseRow, facts: &Facts, scope: Option<&Scope>) -> Option<Outcome> {
    let rules = l.rules();
    let detail = "has too many associated processes";
    match rules.process_leasing_strategy.as_str() {
        "PER_MACHINE" => {
            let fp = scope.and_then(|s| s.fingerprint.as_deref());
            let id = scope.and_then(|s| s.machine.as_deref());
            let m = facts.machines.iter().find(|m| Some(m.fingerprint.as_str()) == fp || Some(m.id.as_str()) == id)?;
            let max = m.max_processes.or(l.max_processes())?;
            (m.processes > max).then(|| Outcome {
                valid: rules.within_overage(m.processes, max),
                code: "TOO_MANY_PROCESSES",
                detail,
            })
        }
        _ => {
            let max = l.max_processes()?;
            (facts.processes_total > max).then(|| Outcome {
                valid: rules.within_overage(facts.processes_total, max),
                code: "TOO_MANY_PROCESSES",
                detail,
            })
        }
    }
}

fn check_scopes(l: &LicenseRow, facts: &Facts, s: &Scope, now: Millis) -> Option<Outcome> {
    let rules = l.rules();
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
