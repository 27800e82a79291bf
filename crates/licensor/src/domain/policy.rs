//! Policy rules: Keygen's constraints on a policy's attributes, and what its strategies mean
//! for overage, authentication and transfers. The rules themselves are `model::PolicyRules`.

use serde_json::{Map, Value};

use crate::error::{Error, Result};
use crate::model::strategy::*;
use crate::model::PolicyRules;

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

fn unsupported(attr: &str, what: &str) -> Error {
    Error::invalid_attr(attr, format!("unsupported {what}"), format!("{}_NOT_ALLOWED", code_prefix(attr)))
}

/// The enumerated attributes: name, what Keygen calls it in "unsupported …", and the test of a
/// spelling.
type Known = fn(&str) -> bool;
const ENUMERATED: &[(&str, &str, Known)] = &[
    ("machineUniquenessStrategy", "machine uniqueness strategy", |s| MachineUniqueness::parse(s).is_some()),
    ("machineMatchingStrategy", "machine matching strategy", |s| Matching::parse(s).is_some()),
    ("componentUniquenessStrategy", "component uniqueness strategy", |s| ComponentUniqueness::parse(s).is_some()),
    ("componentMatchingStrategy", "component matching strategy", |s| Matching::parse(s).is_some()),
    ("expirationStrategy", "expiration strategy", |s| ExpirationStrategy::parse(s).is_some()),
    ("expirationBasis", "expiration basis", |s| ExpirationBasis::parse(s).is_some()),
    ("renewalBasis", "renewal basis", |s| RenewalBasis::parse(s).is_some()),
    ("transferStrategy", "transfer strategy", |s| TransferStrategy::parse(s).is_some()),
    ("authenticationStrategy", "authentication strategy", |s| AuthenticationStrategy::parse(s).is_some()),
    ("machineLeasingStrategy", "machine leasing strategy", |s| MachineLeasing::parse(s).is_some()),
    ("processLeasingStrategy", "process leasing strategy", |s| ProcessLeasing::parse(s).is_some()),
    ("overageStrategy", "overage strategy", |s| OverageStrategy::parse(s).is_some()),
    ("heartbeatCullStrategy", "heartbeat cull strategy", |s| CullStrategy::parse(s).is_some()),
    ("heartbeatResurrectionStrategy", "heartbeat resurrection strategy", |s| ResurrectionStrategy::parse(s).is_some()),
    ("heartbeatBasis", "heartbeat basis", |s| HeartbeatBasis::parse(s).is_some()),
    ("scheme", "encryption scheme", |s| Scheme::parse(s).is_some()),
];

/// Refuses an unknown spelling of an enumerated attribute as Keygen does (`422 unsupported …`,
/// `…_NOT_ALLOWED`), before the attributes are decoded into typed rules. Values of another
/// type are left to the decoder, which reports the type mismatch.
pub fn check_enumerated(attrs: &Map<String, Value>) -> Result<()> {
    for (attr, what, known) in ENUMERATED {
        if let Some(Value::String(v)) = attrs.get(*attr) {
            if !known(v) {
                return Err(unsupported(attr, what));
            }
        }
    }
    Ok(())
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
            self.scheme = Some(Scheme::LegacyEncrypt);
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
        // A pooled key is written by the vendor ahead of time: nothing to encrypt or sign.
        if self.use_pool && self.encrypted {
            return Err(Error::invalid_attr(
                "encrypted",
                "cannot be encrypted and use a pool",
                "ENCRYPTED_NOT_SUPPORTED",
            ));
        }
        if self.use_pool && self.scheme.is_some() {
            return Err(Error::invalid_attr("scheme", "cannot use a scheme and use a pool", "SCHEME_NOT_SUPPORTED"));
        }
        if self.heartbeat_resurrection_strategy == ResurrectionStrategy::AlwaysRevive
            && self.heartbeat_cull_strategy != CullStrategy::KeepDead
        {
            return Err(Error::invalid_attr(
                "heartbeatCullStrategy",
                "must be KEEP_DEAD when resurrection strategy is ALWAYS_REVIVE",
                "HEARTBEAT_CULL_STRATEGY_NOT_ALLOWED",
            ));
        }
        if self.require_check_in {
            match &self.check_in_interval {
                Some(_) if self.check_in_unit().is_some() => {}
                Some(_) => return Err(unsupported("checkInInterval", "check-in interval")),
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
        let (strategy, divisor) = match self.overage_strategy {
            s @ OverageStrategy::Allow1_25xOverage => (s, 4),
            s @ OverageStrategy::Allow1_5xOverage => (s, 2),
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
        match self.overage_strategy {
            OverageStrategy::AlwaysAllowOverage => None,
            OverageStrategy::Allow1_25xOverage => Some(limit * 5 / 4),
            OverageStrategy::Allow1_5xOverage => Some(limit * 3 / 2),
            OverageStrategy::Allow2xOverage => Some(limit * 2),
            OverageStrategy::NoOverage => Some(limit),
        }
    }

    /// Whether `count` is within `limit` once overage is allowed for.
    pub fn within_overage(&self, count: i64, limit: i64) -> bool {
        self.overage_allowance(limit).is_none_or(|max| count <= max)
    }

    /// Node-locked policies only honour overage factors that allow a whole second machine.
    pub fn within_machine_overage(&self, count: i64, limit: i64) -> bool {
        if !self.floating && !self.allows_whole_machine_overage() {
            return count <= limit;
        }
        self.within_overage(count, limit)
    }

    /// Whether the overage strategy lets a node-locked license hold a whole second machine.
    pub fn allows_whole_machine_overage(&self) -> bool {
        matches!(self.overage_strategy, OverageStrategy::AlwaysAllowOverage | OverageStrategy::Allow2xOverage)
    }

    pub fn allows_license_auth(&self) -> bool {
        matches!(self.authentication_strategy, AuthenticationStrategy::License | AuthenticationStrategy::Mixed)
    }

    pub fn allows_token_auth(&self) -> bool {
        matches!(self.authentication_strategy, AuthenticationStrategy::Token | AuthenticationStrategy::Mixed)
    }
}

/// How strict a uniqueness strategy is (machines or components), loosest first.
fn uniqueness_rank(s: ComponentUniqueness) -> u8 {
    match s {
        ComponentUniqueness::UniquePerAccount => 4,
        ComponentUniqueness::UniquePerProduct => 3,
        ComponentUniqueness::UniquePerPolicy => 2,
        ComponentUniqueness::UniquePerLicense => 1,
        ComponentUniqueness::UniquePerMachine => 0,
    }
}

/// Why a license may not move from policy `old` to `next`, if it may not. As in Keygen, the
/// first difference decides: encryption, pooling, scheme, then the machine uniqueness strategy
/// (refused only when stricter) and, only when that is unchanged, the component one.
pub fn transfer_refusal(old: &PolicyRules, next: &PolicyRules) -> Option<&'static str> {
    let stricter = |a: ComponentUniqueness, b: ComponentUniqueness| uniqueness_rank(b) > uniqueness_rank(a);
    if old.encrypted != next.encrypted {
        Some("cannot change from an encrypted policy to an unencrypted policy (or vice-versa)")
    } else if old.use_pool != next.use_pool {
        Some("cannot change from a pooled policy to an unpooled policy (or vice-versa)")
    } else if old.scheme != next.scheme {
        Some("cannot change to a policy with a different scheme")
    } else if old.machine_uniqueness_strategy != next.machine_uniqueness_strategy {
        stricter(old.machine_uniqueness_strategy.into(), next.machine_uniqueness_strategy.into())
            .then_some("cannot change to a policy with a more strict machine uniqueness strategy")
    } else {
        stricter(old.component_uniqueness_strategy, next.component_uniqueness_strategy)
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
        assert_eq!(r.expiration_strategy, ExpirationStrategy::RestrictAccess);
        assert_eq!(r.overage_strategy, OverageStrategy::NoOverage);
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
            machine_uniqueness_strategy: MachineUniqueness::UniquePerPolicy,
            component_uniqueness_strategy: ComponentUniqueness::UniquePerMachine,
            ..Default::default()
        };
        assert_eq!(transfer_refusal(&base, &base), None);
        let stricter_machines =
            PolicyRules { machine_uniqueness_strategy: MachineUniqueness::UniquePerAccount, ..base.clone() };
        assert!(transfer_refusal(&base, &stricter_machines).unwrap().contains("machine uniqueness"));
        let stricter_components =
            PolicyRules { component_uniqueness_strategy: ComponentUniqueness::UniquePerAccount, ..base.clone() };
        assert!(transfer_refusal(&base, &stricter_components).unwrap().contains("component uniqueness"));
        // A looser machine strategy decides alone: the stricter component one is not looked at.
        let looser_machines =
            PolicyRules { machine_uniqueness_strategy: MachineUniqueness::UniquePerLicense, ..stricter_components };
        assert_eq!(transfer_refusal(&base, &looser_machines), None);
        let encrypted = PolicyRules { encrypted: true, ..stricter_machines };
        assert!(transfer_refusal(&base, &encrypted).unwrap().contains("encrypted"));
    }

    #[test]
    fn fractional_overage_needs_divisible_limits() {
        let mut r = PolicyRules {
            floating: true,
            max_machines: Some(5),
            overage_strategy: OverageStrategy::Allow1_25xOverage,
            ..Default::default()
        };
        assert!(r.normalize_and_validate().is_err());
        let mut r = PolicyRules {
            floating: true,
            max_machines: Some(4),
            overage_strategy: OverageStrategy::Allow1_25xOverage,
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
            PolicyRules { floating: true, overage_strategy: OverageStrategy::Allow1_5xOverage, ..Default::default() };
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
        let attrs = serde_json::json!({"expirationStrategy": "SOMETIMES", "scheme": null, "maxMachines": "x"});
        let err = check_enumerated(attrs.as_object().unwrap()).unwrap_err();
        assert!(matches!(err, Error::Invalid { ref code, .. } if code == "EXPIRATION_STRATEGY_NOT_ALLOWED"));
        let ok = serde_json::json!({"expirationStrategy": "REVOKE_ACCESS", "checkInInterval": "fortnight"});
        check_enumerated(ok.as_object().unwrap()).unwrap();
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
        let r = PolicyRules { overage_strategy: OverageStrategy::Allow1_5xOverage, ..Default::default() };
        assert!(!r.within_machine_overage(2, 1));
        let r = PolicyRules { overage_strategy: OverageStrategy::Allow2xOverage, ..Default::default() };
        assert!(r.within_machine_overage(2, 1));
    }
}
