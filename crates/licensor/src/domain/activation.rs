//! The limits a machine activation must respect, resolved once from the license and its policy,
//! so every surface that activates (Keygen machines, OPSWAT deployments) enforces the same rules.

use uuid::Uuid;

use crate::model::{
    ActivationLimits, ActivationRefusal, ComponentUniqueness, License, Machine, MachineLeasing, MachineUniqueness,
    Uniqueness, Usage,
};

/// Where a fingerprint must be unique, per the policy's machine uniqueness strategy.
pub fn uniqueness(l: &License) -> Uniqueness {
    match l.rules().machine_uniqueness_strategy {
        MachineUniqueness::UniquePerAccount => Uniqueness::Account,
        MachineUniqueness::UniquePerProduct => Uniqueness::Product(l.product_id),
        MachineUniqueness::UniquePerPolicy => Uniqueness::Policy(l.policy_id),
        MachineUniqueness::UniquePerLicense => Uniqueness::License,
    }
}

/// Where a component fingerprint must be unique; `None` = within its machine (the default).
pub fn component_uniqueness(l: &License) -> Option<Uniqueness> {
    match l.rules().component_uniqueness_strategy {
        ComponentUniqueness::UniquePerAccount => Some(Uniqueness::Account),
        ComponentUniqueness::UniquePerProduct => Some(Uniqueness::Product(l.product_id)),
        ComponentUniqueness::UniquePerPolicy => Some(Uniqueness::Policy(l.policy_id)),
        ComponentUniqueness::UniquePerLicense => Some(Uniqueness::License),
        ComponentUniqueness::UniquePerMachine => None,
    }
}

/// The limits for a new machine on `l`; `activation_token` is a license token whose
/// `maxActivations` the activation counts against.
pub fn limits(l: &License, activation_token: Option<Uuid>) -> ActivationLimits {
    let rules = l.rules();
    ActivationLimits {
        max_machines: l.max_machines().map(|max| {
            if !rules.floating && !rules.allows_whole_machine_overage() {
                max
            } else {
                rules.overage_allowance(max).unwrap_or(i64::MAX)
            }
        }),
        max_cores: l.max_cores().map(|max| rules.overage_allowance(max).unwrap_or(i64::MAX)),
        max_memory: l.max_memory().map(|max| rules.overage_allowance(max).unwrap_or(i64::MAX)),
        max_disk: l.max_disk().map(|max| rules.overage_allowance(max).unwrap_or(i64::MAX)),
        group_machines: None,
        per_owner: rules.machine_leasing_strategy == MachineLeasing::PerUser,
        uniqueness: uniqueness(l),
        component_uniqueness: component_uniqueness(l),
        activation_token,
    }
}

/// Whether a machine may join (or change within) its license and group, given what the others
/// already hold: its fingerprint and components free in their scopes, then the machine count
/// (the first machine is always admitted, as Keygen does), cores, memory and disk, then the
/// group's machine count.
pub fn decide(usage: &Usage, limits: &ActivationLimits, m: &Machine) -> Result<(), ActivationRefusal> {
    if usage.fingerprint_taken {
        return Err(ActivationRefusal::FingerprintTaken);
    }
    if let Some(i) = usage.component_taken {
        return Err(ActivationRefusal::ComponentFingerprintTaken(i));
    }
    if let (Some(max), Some(others)) = (limits.max_machines, usage.machines) {
        if others > 0 && others + 1 > max {
            return Err(ActivationRefusal::MachineLimit);
        }
    }
    for (max, used, amount, refusal) in [
        (limits.max_cores, usage.cores, m.cores, ActivationRefusal::CoreLimit),
        (limits.max_memory, usage.memory, m.memory, ActivationRefusal::MemoryLimit),
        (limits.max_disk, usage.disk, m.disk, ActivationRefusal::DiskLimit),
    ] {
        if let (Some(max), Some(used)) = (max, used) {
            if used.saturating_add(amount.unwrap_or(0)) > max {
                return Err(refusal);
            }
        }
    }
    if let (Some((_, max)), Some(others)) = (limits.group_machines, usage.group_machines) {
        if others + 1 > max {
            return Err(ActivationRefusal::GroupMachineLimit);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> ActivationLimits {
        ActivationLimits {
            max_machines: Some(2),
            max_cores: Some(8),
            max_memory: None,
            max_disk: None,
            group_machines: Some((uuid::Uuid::nil(), 3)),
            per_owner: false,
            uniqueness: Uniqueness::License,
            component_uniqueness: None,
            activation_token: None,
        }
    }

    fn machine(cores: Option<i64>) -> Machine {
        let mut l = crate::model::License::for_tests(crate::model::PolicyRules::default());
        l.max_machines = Some(2);
        let mut m = Machine::new(&l, uuid::Uuid::nil(), "fp".into(), 0);
        m.cores = cores;
        m
    }

    #[test]
    fn the_first_failing_limit_refuses() {
        let ok = Usage { machines: Some(1), cores: Some(4), group_machines: Some(2), ..Usage::default() };
        assert_eq!(decide(&ok, &limits(), &machine(Some(4))), Ok(()));
        let full = Usage { machines: Some(2), ..ok };
        assert_eq!(decide(&full, &limits(), &machine(None)), Err(ActivationRefusal::MachineLimit));
        assert_eq!(decide(&ok, &limits(), &machine(Some(5))), Err(ActivationRefusal::CoreLimit));
        let group_full = Usage { group_machines: Some(3), ..ok };
        assert_eq!(decide(&group_full, &limits(), &machine(None)), Err(ActivationRefusal::GroupMachineLimit));
        let taken = Usage { fingerprint_taken: true, machines: Some(2), ..ok };
        assert_eq!(decide(&taken, &limits(), &machine(None)), Err(ActivationRefusal::FingerprintTaken));
        // The first machine is always admitted, even over a limit of zero.
        let zero = ActivationLimits { max_machines: Some(0), ..limits() };
        assert_eq!(decide(&Usage { machines: Some(0), ..Usage::default() }, &zero, &machine(None)), Ok(()));
        // What was not measured is not decided on.
        assert_eq!(decide(&Usage::default(), &limits(), &machine(Some(99))), Ok(()));
    }
}
