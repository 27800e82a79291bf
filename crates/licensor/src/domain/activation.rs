//! The limits a machine activation must respect, resolved once from the license and its policy,
//! so every surface that activates (Keygen machines, OPSWAT deployments) enforces the same rules.

use uuid::Uuid;

use crate::model::{ActivationLimits, ComponentUniqueness, License, MachineLeasing, MachineUniqueness, Uniqueness};

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
