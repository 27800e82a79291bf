//! A stable machine fingerprint. Containers and cloned VMs share or lack a machine id, so an
//! operator-supplied value (an argument or `LICENSOR_FINGERPRINT`) always wins.

use sha2::{Digest, Sha256};

use crate::{Error, Result};

/// Environment variable an operator sets to pin the fingerprint (e.g. a Kubernetes pod's
/// stable identity).
pub const ENV: &str = "LICENSOR_FINGERPRINT";

/// The fingerprint for `app`: `operator` if given, else `$LICENSOR_FINGERPRINT`, else a hash of
/// the OS machine id salted with `app` (so two vendors on one machine see different values and
/// the raw machine id never leaves it).
pub fn fingerprint(app: &str, operator: Option<&str>) -> Result<String> {
    if let Some(fp) = operator.map(str::trim).filter(|s| !s.is_empty()) {
        return Ok(fp.to_string());
    }
    if let Ok(fp) = std::env::var(ENV) {
        if !fp.trim().is_empty() {
            return Ok(fp.trim().to_string());
        }
    }
    let id = ["/etc/machine-id", "/var/lib/dbus/machine-id"]
        .iter()
        .find_map(|p| std::fs::read_to_string(p).ok().map(|s| s.trim().to_string()).filter(|s| !s.is_empty()))
        .ok_or_else(|| Error::Io(format!("no machine id found; set {ENV}")))?;
    Ok(from_machine_id(app, &id))
}

/// The hash behind [`fingerprint`], exposed for tests and for platforms with their own id.
pub fn from_machine_id(app: &str, machine_id: &str) -> String {
    let mut h = Sha256::new();
    h.update(app.as_bytes());
    h.update(b":");
    h.update(machine_id.as_bytes());
    hex::encode(h.finalize())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn operator_value_wins_and_hash_is_stable() {
        assert_eq!(fingerprint("app", Some(" pod-7 ")).unwrap(), "pod-7");
        assert_eq!(from_machine_id("a", "m"), from_machine_id("a", "m"));
        assert_ne!(from_machine_id("a", "m"), from_machine_id("b", "m"));
        assert_eq!(from_machine_id("a", "m").len(), 64);
    }
}
