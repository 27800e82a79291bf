//! What each policy rule means, in a sentence, for the console's policy page. Keyed by the
//! rule's wire name (camelCase, as the API and the policy's JSON spell it).

pub const EXPLAINED: &[(&str, &str)] = &[
    ("duration", "Seconds a license lasts from when its clock starts; empty: perpetual."),
    ("expirationBasis", "When the clock starts: at creation, or at the first validation, activation, use or download."),
    ("expirationStrategy", "What an expired license may still do: nothing, keep working, or keep working on the versions released before expiry."),
    ("renewalBasis", "Renewal adds the duration to the current expiry, or starts it afresh from now."),
    ("strict", "Validation fails when the license holds more machines, cores, processes or users than allowed."),
    ("floating", "A license may be used on several machines (up to maxMachines); otherwise on one."),
    ("maxMachines", "Machines a license may activate at once."),
    ("maxCores", "CPU cores summed over a license's machines."),
    ("maxMemory", "Memory in bytes summed over a license's machines."),
    ("maxDisk", "Disk in bytes summed over a license's machines."),
    ("maxProcesses", "Processes running at once, counted as processLeasingStrategy says."),
    ("maxUsers", "Users of a license, its owner included."),
    ("maxUses", "How many times a license's usage may be incremented."),
    ("overageStrategy", "How far past a limit activations may go: no overage, always, 1.25×, 1.5× or 2×."),
    ("machineUniquenessStrategy", "Where a machine fingerprint must be unique: per license, policy, product or account."),
    ("machineMatchingStrategy", "How many of several fingerprints given at validation must match."),
    ("componentUniquenessStrategy", "Where a component fingerprint must be unique."),
    ("componentMatchingStrategy", "How many of a machine's components must match at validation."),
    ("machineLeasingStrategy", "Machines counted per license, or per machine owner (each user gets the limit)."),
    ("processLeasingStrategy", "Processes counted per machine, per license or per user."),
    ("transferStrategy", "When a license moves to this policy: keep its expiry, or reset it from the new policy."),
    ("authenticationStrategy", "What may authenticate as a license: its key, a license token, both, or neither."),
    ("scheme", "Keys are signed (or encrypted) data the product can verify offline with the account's public key."),
    ("encrypted", "Keys are encrypted (legacy); excludes a key pool."),
    ("usePool", "Licenses take their keys from the policy's pool of keys made ahead of time."),
    ("protected", "Only the vendor (admins, products) may create licenses and activate machines; customers may not."),
    ("requireProductScope", "Validation must name the product."),
    ("requirePolicyScope", "Validation must name the policy."),
    ("requireMachineScope", "Validation must name the machine."),
    ("requireFingerprintScope", "Validation must give the machine's fingerprint."),
    ("requireComponentsScope", "Validation must give the machine's component fingerprints."),
    ("requireUserScope", "Validation must name the user."),
    ("requireChecksumScope", "Validation must give the artifact's checksum."),
    ("requireVersionScope", "Validation must give the product version."),
    ("requireCheckIn", "Licenses must check in every interval, or validation fails (CHECK_IN_OVERDUE)."),
    ("checkInInterval", "The unit of the check-in interval: day, week, month or year."),
    ("checkInIntervalCount", "How many of those units between check-ins."),
    ("requireHeartbeat", "Machines must send heartbeats, or they are dead (HEARTBEAT_DEAD) and culled."),
    ("heartbeatDuration", "Seconds a machine may go without a heartbeat."),
    ("heartbeatBasis", "When the heartbeat clock starts: at activation, or at the first ping."),
    ("heartbeatCullStrategy", "Whether dead machines are deactivated, or kept (and counted)."),
    ("heartbeatResurrectionStrategy", "How long after dying a machine may come back with a ping."),
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_rule_is_explained_once() {
        let rules = serde_json::to_value(crate::model::PolicyRules::default()).unwrap();
        let names: Vec<&String> = rules.as_object().unwrap().keys().collect();
        for name in &names {
            assert_eq!(EXPLAINED.iter().filter(|(n, _)| n == name).count(), 1, "{name}");
        }
        assert_eq!(EXPLAINED.len(), names.len(), "no explanation of a rule that does not exist");
    }
}
