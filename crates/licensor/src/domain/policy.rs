//! Policy rules: every knob Keygen's policies have, with Keygen's defaults and constraints.
//!
//! The rules are stored as one JSON document per policy (they are read whole, with the policy,
//! and never queried field by field), and the same struct is the policy's wire attributes.

use crate::error::{Error, Result};
use crate::model::PolicyRules;

pub const UNIQUENESS: &[&str] =
    &["UNIQUE_PER_ACCOUNT", "UNIQUE_PER_PRODUCT", "UNIQUE_PER_POLICY", "UNIQUE_PER_LICENSE"];
pub const COMPONENT_UNIQUENESS: &[&str] =
    &["UNIQUE_PER_ACCOUNT", "UNIQUE_PER_PRODUCT", "UNIQUE_PER_POLICY", "UNIQUE_PER_LICENSE", "UNIQUE_PER_MACHINE"];
pub const MATCHING: &[&str] = &["MATCH_ANY", "MATCH_TWO", "MATCH_MOST", "MATCH_ALL"];
pub const EXPIRATION: &[&str] = &["RESTRICT_ACCESS", "REVOKE_ACCESS", "MAINTAIN_ACCESS", "ALLOW_ACCESS"];
pub const EXPIRATION_BASIS: &[&str] =
    &["FROM_CREATION", "FROM_FIRST_VALIDATION", "FROM_FIRST_ACTIVATION", "FROM_FIRST_USE", "FROM_FIRST_DOWNLOAD"];
pub const RENEWAL_BASIS: &[&str] = &["FROM_EXPIRY", "FROM_NOW", "FROM_NOW_IF_EXPIRED"];
pub const TRANSFER: &[&str] = &["KEEP_EXPIRY", "RESET_EXPIRY"];
pub const AUTHENTICATION: &[&str] = &["TOKEN", "LICENSE", "SESSION", "MIXED", "NONE"];
pub const MACHINE_LEASING: &[&str] = &["PER_LICENSE", "PER_USER"];
pub const PROCESS_LEASING: &[&str] = &["PER_MACHINE", "PER_LICENSE", "PER_USER"];
pub const OVERAGE: &[&str] =
    &["ALWAYS_ALLOW_OVERAGE", "ALLOW_1_25X_OVERAGE", "ALLOW_1_5X_OVERAGE", "ALLOW_2X_OVERAGE", "NO_OVERAGE"];
pub const SCHEMES: &[&str] = &[
    "LEGACY_ENCRYPT",
    "RSA_2048_PKCS1_ENCRYPT",
    "RSA_2048_PKCS1_SIGN",
    "RSA_2048_PKCS1_PSS_SIGN",
    "RSA_2048_JWT_RS256",
    "RSA_2048_PKCS1_SIGN_V2",
    "RSA_2048_PKCS1_PSS_SIGN_V2",
    "ED25519_SIGN",
    "ECDSA_P256_SIGN",
];
pub const CHECK_IN_INTERVALS: &[&str] = &["day", "week", "month", "year"];
pub const CULL: &[&str] = &["DEACTIVATE_DEAD", "KEEP_DEAD"];
pub const RESURRECTION: &[&str] = &[
    "ALWAYS_REVIVE",
    "15_MINUTE_REVIVE",
    "10_MINUTE_REVIVE",
    "5_MINUTE_REVIVE",
    "2_MINUTE_REVIVE",
    "1_MINUTE_REVIVE",
    "NO_REVIVE",
];
pub const HEARTBEAT_BASIS: &[&str] = &["FROM_CREATION", "FROM_FIRST_PING"];

/// Default heartbeat window when a policy sets none.
pub const DEFAULT_HEARTBEAT_DURATION: i64 = 600;

/// `maxMachines` → `MAX_MACHINES`, the prefix of Keygen's attribute error codes.
pub fn code_prefix(camel: &str) -> String {
    let mut out = String::with_capacity(camel.len() + 4);
    for c in camel.chars() {
        if c.is_ascii_uppercase() {
            out.push('_');
        }
        out.push(c.to_ascii_uppercase());
    }
    out
}

fn one_of(attr: &str, value: &str, allowed: &[&str], what: &str) -> Result<()> {
    if allowed.contains(&value) {
        Ok(())
    } else {
        Err(Error::invalid_attr(attr, format!("unsupported {what}"), format!("{}_NOT_ALLOWED", code_prefix(attr))))
    }
}

fn at_least(attr: &str, value: Option<i64>, min: i64) -> Result<()> {
    value.map_or(Ok(()), |v| check_range(attr, v, min))
}

/// Keygen's bounds on a number attribute (of a policy, license or machine): at least `min`,
/// at most 2,147,483,647, except memory and disk sizes, which may use all 64 bits.
pub fn check_range(attr: &str, value: i64, min: i64) -> Result<()> {
    let max = if matches!(attr, "maxMemory" | "maxDisk" | "memory" | "disk") { i64::MAX } else { i32::MAX as i64 };
    let detail = if value < min {
        format!("must be greater than or equal to {min}")
    } else if value > max {
        format!("must be less than or equal to {max}")
    } else {
        return Ok(());
    };
    Err(Error::invalid_attr(attr, detail, format!("{}_INVALID", code_prefix(attr))))
}

impl PolicyRules {
    /// Fills in values Keygen derives from others (node-locked ⇒ one machine), then checks
    /// every constraint. The first violation is returned, pointing at its attribute.
    pub fn normalize_and_validate(&mut self) -> Result<()> {
        if !self.floating && self.max_machines.is_none() {
            self.max_machines = Some(1);
        }
        if self.encrypted && self.scheme.is_none() {
            self.scheme = Some(String::from("LEGACY_ENCRYPT"));
        }
        at_least("duration", self.duration, 86_400)?;
        at_least("maxMachines", self.max_machines, if self.floating { 1 } else { 0 })?;
        if !self.floating && self.max_machines != Some(1) {
            return Err(Error::invalid_attr(
                "maxMachines",
                "must be equal to 1 for non-floating policy",
                "MAX_MACHINES_INVALID",
            ));
        }
        at_least("maxProcesses", self.max_processes, 1)?;
        at_least("maxUsers", self.max_users, 1)?;
        at_least("maxCores", self.max_cores, 1)?;
        at_least("maxMemory", self.max_memory, 1)?;
        at_least("maxDisk", self.max_disk, 1)?;
        at_least("maxUses", self.max_uses, 0)?;
        at_least("heartbeatDuration", self.heartbeat_duration, 60)?;
        one_of(
            "machineUniquenessStrategy",
            &self.machine_uniqueness_strategy,
            UNIQUENESS,
            "machine uniqueness strategy",
        )?;
        one_of("machineMatchingStrategy", &self.machine_matching_strategy, MATCHING, "machine matching strategy")?;
        one_of(
            "componentUniquenessStrategy",
            &self.component_uniqueness_strategy,
            COMPONENT_UNIQUENESS,
            "component uniqueness strategy",
        )?;
        one_of(
            "componentMatchingStrategy",
            &self.component_matching_strategy,
            MATCHING,
            "component matching strategy",
        )?;
        one_of("expirationStrategy", &self.expiration_strategy, EXPIRATION, "expiration strategy")?;
        one_of("expirationBasis", &self.expiration_basis, EXPIRATION_BASIS, "expiration basis")?;
        one_of("renewalBasis", &self.renewal_basis, RENEWAL_BASIS, "renewal basis")?;
        one_of("transferStrategy", &self.transfer_strategy, TRANSFER, "transfer strategy")?;
        one_of("authenticationStrategy", &self.authentication_strategy, AUTHENTICATION, "authentication strategy")?;
        one_of("machineLeasingStrategy", &self.machine_leasing_strategy, MACHINE_LEASING, "machine leasing strategy")?;
        one_of("processLeasingStrategy", &self.process_leasing_strategy, PROCESS_LEASING, "process leasing strategy")?;
        one_of("overageStrategy", &self.overage_strategy, OVERAGE, "overage strategy")?;
        one_of("heartbeatCullStrategy", &self.heartbeat_cull_strategy, CULL, "heartbeat cull strategy")?;
        one_of(
            "heartbeatResurrectionStrategy",
            &self.heartbeat_resurrection_strategy,
            RESURRECTION,
            "heartbeat resurrection strategy",
        )?;
        one_of("heartbeatBasis", &self.heartbeat_basis, HEARTBEAT_BASIS, "heartbeat basis")?;
        if let Some(scheme) = &self.scheme {
            one_of("scheme", scheme, SCHEMES, "encryption scheme")?;
        }
        if self.use_pool && (self.encrypted || self.scheme.is_some()) {
            return Err(Error::invalid_attr(
                "usePool",
                "cannot be used with an encrypted or signed scheme",
                "USE_POOL_NOT_SUPPORTED",
            ));
        }
        if self.heartbeat_resurrection_strategy == "ALWAYS_REVIVE" && self.heartbeat_cull_strategy != "KEEP_DEAD" {
            return Err(Error::invalid_attr(
                "heartbeatCullStrategy",
                "must be KEEP_DEAD when resurrection strategy is ALWAYS_REVIVE",
                "HEARTBEAT_CULL_STRATEGY_NOT_ALLOWED",
            ));
        }
        if self.require_check_in {
            match &self.check_in_interval {
                Some(i) => one_of("checkInInterval", i, CHECK_IN_INTERVALS, "check-in interval")?,
                None => {
                    return Err(Error::invalid_attr(
                        "checkInInterval",
                        "must be present when check-in is required",
                        "CHECK_IN_INTERVAL_MISSING",
                    ))
                }
            }
            match self.check_in_interval_count {
                Some(c) if (1..=365).contains(&c) => {}
                Some(_) => {
                    return Err(Error::invalid_attr(
                        "checkInIntervalCount",
                        "must be between 1 and 365",
                        "CHECK_IN_INTERVAL_COUNT_INVALID",
                    ))
                }
                None => {
                    return Err(Error::invalid_attr(
                        "checkInIntervalCount",
                        "must be present when check-in is required",
                        "CHECK_IN_INTERVAL_COUNT_MISSING",
                    ))
                }
            }
        }
        self.validate_overage()?;
        Ok(())
    }

    /// Keygen's per-limit refusals of a fractional overage, in its order and words.
    fn validate_overage(&self) -> Result<()> {
        let (strategy, divisor) = match self.overage_strategy.as_str() {
            s @ "ALLOW_1_25X_OVERAGE" => (s, 4),
            s @ "ALLOW_1_5X_OVERAGE" => (s, 2),
            _ => return Ok(()),
        };
        let refuse = |why: String| {
            Err(Error::invalid_attr(
                "overageStrategy",
                format!("incompatible overage strategy (cannot use {strategy} {why})"),
                "OVERAGE_STRATEGY_NOT_ALLOWED",
            ))
        };
        if !self.floating {
            return refuse("for node-locked policy".into());
        }
        for (name, limit) in [
            ("machines", self.max_machines),
            ("cores", self.max_cores),
            ("memory", self.max_memory),
            ("disk", self.max_disk),
            ("processes", self.max_processes),
            ("users", self.max_users),
        ] {
            if limit.is_some_and(|l| l % divisor != 0) {
                return refuse(format!("with a max {name} value not divisible by {divisor}"));
            }
        }
        Ok(())
    }

    pub fn heartbeat_duration_secs(&self) -> i64 {
        self.heartbeat_duration.unwrap_or(DEFAULT_HEARTBEAT_DURATION)
    }

    /// How far past a limit the overage strategy lets a count go: `limit × factor`.
    pub fn overage_allowance(&self, limit: i64) -> Option<i64> {
        match self.overage_strategy.as_str() {
            "ALWAYS_ALLOW_OVERAGE" => None,
            "ALLOW_1_25X_OVERAGE" => Some(limit * 5 / 4),
            "ALLOW_1_5X_OVERAGE" => Some(limit * 3 / 2),
            "ALLOW_2X_OVERAGE" => Some(limit * 2),
            _ => Some(limit),
        }
    }

    /// Whether `count` is within `limit` once overage is allowed for.
    pub fn within_overage(&self, count: i64, limit: i64) -> bool {
        self.overage_allowance(limit).is_none_or(|max| count <= max)
    }

    /// Node-locked policies only honour overage factors that allow a whole second machine.
    pub fn within_machine_overage(&self, count: i64, limit: i64) -> bool {
        if !self.floating && !matches!(self.overage_strategy.as_str(), "ALWAYS_ALLOW_OVERAGE" | "ALLOW_2X_OVERAGE") {
            return count <= limit;
        }
        self.within_overage(count, limit)
    }

    pub fn allows_license_auth(&self) -> bool {
        matches!(self.authentication_strategy.as_str(), "LICENSE" | "MIXED")
    }

    pub fn allows_token_auth(&self) -> bool {
        matches!(self.authentication_strategy.as_str(), "TOKEN" | "MIXED")
    }
}

/// How strict a uniqueness strategy is (machines or components), loosest first.
fn uniqueness_rank(s: &str) -> u8 {
    match s {
        "UNIQUE_PER_ACCOUNT" => 4,
        "UNIQUE_PER_PRODUCT" => 3,
        "UNIQUE_PER_POLICY" => 2,
        "UNIQUE_PER_LICENSE" => 1,
        _ => 0,
    }
}

/// Why a license may not move from policy `old` to `next`, if it may not. As in Keygen, the
/// first difference decides: encryption, pooling, scheme, then the machine uniqueness strategy
/// (refused only when stricter) and, only when that is unchanged, the component one.
pub fn transfer_refusal(old: &PolicyRules, next: &PolicyRules) -> Option<&'static str> {
    let stricter = |a: &str, b: &str| uniqueness_rank(b) > uniqueness_rank(a);
    if old.encrypted != next.encrypted {
        Some("cannot change from an encrypted policy to an unencrypted policy (or vice-versa)")
    } else if old.use_pool != next.use_pool {
        Some("cannot change from a pooled policy to an unpooled policy (or vice-versa)")
    } else if old.scheme != next.scheme {
        Some("cannot change to a policy with a different scheme")
    } else if old.machine_uniqueness_strategy != next.machine_uniqueness_strategy {
        stricter(&old.machine_uniqueness_strategy, &next.machine_uniqueness_strategy)
            .then_some("cannot change to a policy with a more strict machine uniqueness strategy")
    } else {
        stricter(&old.component_uniqueness_strategy, &next.component_uniqueness_strategy)
            .then_some("cannot change to a policy with a more strict component uniqueness strategy")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_keygens() {
        let mut r = PolicyRules::default();
        r.normalize_and_validate().unwrap();
        assert_eq!(r.max_machines, Some(1), "node-locked implies one machine");
        assert_eq!(r.expiration_strategy, "RESTRICT_ACCESS");
        assert_eq!(r.overage_strategy, "NO_OVERAGE");
    }

    #[test]
    fn node_locked_must_have_one_machine() {
        let mut r = PolicyRules { max_machines: Some(3), ..Default::default() };
        let err = r.normalize_and_validate().unwrap_err();
        assert!(matches!(err, Error::Invalid { ref code, .. } if code == "MAX_MACHINES_INVALID"));
    }

    #[test]
    fn transfers_are_decided_by_the_first_difference() {
        let base = PolicyRules {
            machine_uniqueness_strategy: String::from("UNIQUE_PER_POLICY"),
            component_uniqueness_strategy: String::from("UNIQUE_PER_MACHINE"),
            ..Default::default()
        };
        assert_eq!(transfer_refusal(&base, &base), None);
        let stricter_machines =
            PolicyRules { machine_uniqueness_strategy: String::from("UNIQUE_PER_ACCOUNT"), ..base.clone() };
        assert!(transfer_refusal(&base, &stricter_machines).unwrap().contains("machine uniqueness"));
        let stricter_components =
            PolicyRules { component_uniqueness_strategy: String::from("UNIQUE_PER_ACCOUNT"), ..base.clone() };
        assert!(transfer_refusal(&base, &stricter_components).unwrap().contains("component uniqueness"));
        // A looser machine strategy decides alone: the stricter component one is not looked at.
        let looser_machines =
            PolicyRules { machine_uniqueness_strategy: String::from("UNIQUE_PER_LICENSE"), ..stricter_components };
        assert_eq!(transfer_refusal(&base, &looser_machines), None);
        let encrypted = PolicyRules { encrypted: true, ..stricter_machines };
        assert!(transfer_refusal(&base, &encrypted).unwrap().contains("encrypted"));
    }

    #[test]
    fn fractional_overage_needs_divisible_limits() {
        let mut r = PolicyRules {
            floating: true,
            max_machines: Some(5),
            overage_strategy: String::from("ALLOW_1_25X_OVERAGE"),
            ..Default::default()
        };
        assert!(r.normalize_and_validate().is_err());
        let mut r = PolicyRules {
            floating: true,
            max_machines: Some(4),
            overage_strategy: String::from("ALLOW_1_25X_OVERAGE"),
            ..Default::default()
        };
        r.normalize_and_validate().unwrap();
        assert!(r.within_overage(5, 4));
        assert!(!r.within_overage(6, 4));
        // Memory and disk count too, each named in the refusal, as Keygen words it.
        let detail = |mut rules: PolicyRules| match rules.normalize_and_validate() {
            Err(Error::Invalid { detail, .. }) => detail.into_owned(),
            other => panic!("{other:?}"),
        };
        let base =
            PolicyRules { floating: true, overage_strategy: String::from("ALLOW_1_5X_OVERAGE"), ..Default::default() };
        assert_eq!(
            detail(PolicyRules { max_disk: Some(3), ..base.clone() }),
            "incompatible overage strategy (cannot use ALLOW_1_5X_OVERAGE with a max disk value not divisible by 2)"
        );
        assert_eq!(
            detail(PolicyRules { max_memory: Some(1), max_users: Some(3), ..base.clone() }),
            "incompatible overage strategy (cannot use ALLOW_1_5X_OVERAGE with a max memory value not divisible by 2)"
        );
        assert_eq!(
            detail(PolicyRules { floating: false, ..base }),
            "incompatible overage strategy (cannot use ALLOW_1_5X_OVERAGE for node-locked policy)"
        );
    }

    #[test]
    fn durations_and_enums_are_checked() {
        let mut r = PolicyRules { duration: Some(60), ..Default::default() };
        assert!(r.normalize_and_validate().is_err());
        let mut r = PolicyRules { expiration_strategy: String::from("SOMETIMES"), ..Default::default() };
        let err = r.normalize_and_validate().unwrap_err();
        assert!(matches!(err, Error::Invalid { ref code, .. } if code == "EXPIRATION_STRATEGY_NOT_ALLOWED"));
        let mut r = PolicyRules { require_check_in: true, ..Default::default() };
        assert!(r.normalize_and_validate().is_err());
    }

    #[test]
    fn codes_are_screaming_snake() {
        assert_eq!(code_prefix("maxMachines"), "MAX_MACHINES");
        assert_eq!(code_prefix("name"), "NAME");
    }

    #[test]
    fn node_locked_machine_overage() {
        let r = PolicyRules { overage_strategy: String::from("ALLOW_1_5X_OVERAGE"), ..Default::default() };
        assert!(!r.within_machine_overage(2, 1));
        let r = PolicyRules { overage_strategy: String::from("ALLOW_2X_OVERAGE"), ..Default::default() };
        assert!(r.within_machine_overage(2, 1));
    }
}
