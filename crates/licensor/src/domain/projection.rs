//! How one core license looks through the other surfaces (docs/licensing-v1.md, docs/core-v1.md).
//!
//! Surface identifiers that the vendors define as numbers (nginstack's signed 32-bit product,
//! extension and licenser keys; Astra's 9-digit serial) are derived from the core row's UUID,
//! which never changes, so they are stable without a column of their own. Pure functions only.

use uuid::Uuid;

use crate::model::{Account, Group, License};

/// A signed 32-bit key for `id`: its first four bytes, big-endian.
pub fn legacy_key(id: Uuid) -> i32 {
    let b = id.as_bytes();
    i32::from_be_bytes([b[0], b[1], b[2], b[3]])
}

/// The ids whose legacy key is `key`: every UUID from `key`'s four bytes followed by zeros to
/// the same followed by `ff`s. Ids compare bytewise on both engines, so the range finds them
/// through the primary key.
pub fn legacy_key_range(key: i32) -> (Uuid, Uuid) {
    let prefix = key.to_be_bytes();
    let (mut lo, mut hi) = ([0u8; 16], [0xffu8; 16]);
    lo[..4].copy_from_slice(&prefix);
    hi[..4].copy_from_slice(&prefix);
    (Uuid::from_bytes(lo), Uuid::from_bytes(hi))
}

/// A new id whose legacy key is `key`: the key's four bytes, then a random version-4 UUID's
/// other twelve (its version and variant bits are past the key). A vendor moving from an
/// installation with hard-coded product or extension keys keeps them this way.
pub fn id_with_legacy_key(key: i32) -> Uuid {
    let mut bytes = *Uuid::new_v4().as_bytes();
    bytes[..4].copy_from_slice(&key.to_be_bytes());
    Uuid::from_bytes(bytes)
}

/// A 9-digit serial number for a license.
pub fn serial(id: Uuid) -> u32 {
    let b = id.as_bytes();
    100_000_000 + u32::from_be_bytes([b[4], b[5], b[6], b[7]]) % 900_000_000
}

/// The quantity a license is sold by. Each maps onto one Keygen limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Metric {
    /// Concurrent seats: live machines (`maxMachines`).
    Machines,
    /// Processors: the sum of machine cores (`maxCores`).
    Cores,
    /// Named users attached to the license (`maxUsers`).
    Users,
    /// Concurrent connections: live processes (`maxProcesses`).
    Processes,
    /// A vendor-defined counter (`maxUses`).
    Uses,
}

impl Metric {
    pub const ALL: [Metric; 5] = [Metric::Machines, Metric::Cores, Metric::Users, Metric::Processes, Metric::Uses];

    /// nginstack's license type: long name or one-letter code.
    pub fn from_licensing_type(s: &str) -> Option<Metric> {
        Some(match s {
            "simultaneousUser" | "S" => Metric::Machines,
            "processor" | "P" => Metric::Cores,
            "nominalUser" | "U" => Metric::Users,
            "connection" | "C" => Metric::Processes,
            "custom" | "X" => Metric::Uses,
            _ => return None,
        })
    }

    pub fn licensing_type(self) -> &'static str {
        match self {
            Metric::Machines => "simultaneousUser",
            Metric::Cores => "processor",
            Metric::Users => "nominalUser",
            Metric::Processes => "connection",
            Metric::Uses => "custom",
        }
    }

    /// The name used in Astra entitlement rows and NLF `licenses.type`.
    pub fn name(self) -> &'static str {
        match self {
            Metric::Machines => "machines",
            Metric::Cores => "cores",
            Metric::Users => "users",
            Metric::Processes => "processes",
            Metric::Uses => "uses",
        }
    }

    pub fn from_name(s: &str) -> Option<Metric> {
        Metric::ALL.into_iter().find(|m| m.name() == s)
    }

    /// The effective limit of this metric on `l` (license override, else policy).
    pub fn limit(self, l: &License) -> Option<i64> {
        match self {
            Metric::Machines => l.max_machines().or_else(|| (!l.rules().floating).then_some(1)),
            Metric::Cores => l.max_cores(),
            Metric::Users => l.max_users(),
            Metric::Processes => l.max_processes(),
            Metric::Uses => l.max_uses(),
        }
    }

    /// The Keygen attribute that holds this metric's limit.
    pub fn attribute(self) -> &'static str {
        match self {
            Metric::Machines => "maxMachines",
            Metric::Cores => "maxCores",
            Metric::Users => "maxUsers",
            Metric::Processes => "maxProcesses",
            Metric::Uses => "maxUses",
        }
    }

    /// Checks a quantity sold in this metric against the bounds every license limit keeps
    /// (surfaces sell under floating policies): seats and cores from 1, the rest from 0, all
    /// 32-bit. The refusal's wording, for the surface to attach to its own field.
    pub fn check_quantity(self, quantity: i64) -> Result<(), String> {
        super::license::check_limit(self.attribute(), quantity, true).map_err(|e| match e {
            crate::error::Error::Invalid { detail, .. } => detail.into_owned(),
            other => other.to_string(),
        })
    }

    /// Sets this metric's license-level limit.
    pub fn set_limit(self, l: &mut License, value: Option<i64>) {
        match self {
            Metric::Machines => l.max_machines = value,
            Metric::Cores => l.max_cores = value,
            Metric::Users => l.max_users = value,
            Metric::Processes => l.max_processes = value,
            Metric::Uses => l.max_uses = value,
        }
    }
}

/// The metric a license is sold by and its quantity: the first limited metric in the order
/// machines, cores, users, processes, uses; `(Uses, 0)` when nothing is limited.
pub fn primary(l: &License) -> (Metric, i64) {
    // A license written through the licensing surface limits exactly one metric at license
    // level; prefer that over limits inherited from the policy.
    let own = [
        (Metric::Machines, l.max_machines),
        (Metric::Cores, l.max_cores),
        (Metric::Users, l.max_users),
        (Metric::Processes, l.max_processes),
        (Metric::Uses, l.max_uses),
    ];
    if let Some((m, Some(v))) = own.into_iter().find(|(_, v)| v.is_some()) {
        return (m, v);
    }
    Metric::ALL.into_iter().find_map(|m| m.limit(l).map(|v| (m, v))).unwrap_or((Metric::Uses, 0))
}

/// Astra's secondary capacity: the machine limit when the primary metric is another one.
pub fn secondary_capacity(l: &License) -> i64 {
    match primary(l) {
        (Metric::Machines, _) => 0,
        _ => Metric::Machines.limit(l).unwrap_or(0),
    }
}

/// Who a license is granted to: its group (the grant) by name, else the license's own name,
/// else the vendor account's name.
pub fn licensee_name(l: &License, group: Option<&Group>, account: &Account) -> String {
    group.map(|g| g.name.clone()).or_else(|| l.name.clone()).unwrap_or_else(|| account.name.clone())
}

/// The licensee's tax or customer id, kept in the grant group's metadata.
pub fn licensee_id(group: Option<&Group>) -> String {
    group.and_then(|g| g.metadata.0.get("licensee_id")).and_then(|v| v.as_str()).unwrap_or_default().to_string()
}

/// nginstack's licenser key: the grant group's key, or the license's own when it has no group.
pub fn licenser_key(l: &License) -> i32 {
    legacy_key(l.group_id.unwrap_or(l.id))
}

/// The date a "no expiry" license shows where a date is required.
pub const NEVER: &str = "9999-12-31";

/// `YYYY-MM-DD` of the last day a license is valid (UTC), or [`NEVER`].
pub fn expiration_date(expiry: Option<i64>) -> String {
    match expiry.and_then(chrono::DateTime::<chrono::Utc>::from_timestamp_millis) {
        Some(t) => t.format("%Y-%m-%d").to_string(),
        None => NEVER.to_string(),
    }
}

/// Parses a strict `YYYY-MM-DD`: the license is valid through the end of that day (UTC).
/// `Some(None)` for [`NEVER`].
pub fn parse_expiration(s: &str) -> Option<Option<i64>> {
    if s == NEVER {
        return Some(None);
    }
    if s.len() != 10 {
        return None;
    }
    let d = chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d").ok()?;
    let next = d.succ_opt()?.and_hms_opt(0, 0, 0)?.and_utc().timestamp_millis();
    Some(Some(next - 1))
}

#[cfg(test)]
mod tests {

    #[test]
    fn quantities_sold_keep_the_license_limit_bounds() {
        assert!(Metric::Machines.check_quantity(0).unwrap_err().contains("greater than or equal to 1"));
        assert!(Metric::Cores.check_quantity(0).is_err());
        assert_eq!(Metric::Users.check_quantity(0), Ok(()));
        assert_eq!(Metric::Uses.check_quantity(0), Ok(()));
        assert!(Metric::Processes.check_quantity(2_147_483_648).unwrap_err().contains("less than or equal"));
    }

    #[test]
    fn expiration_dates_round_trip() {
        let e = parse_expiration("2099-12-31").unwrap();
        assert_eq!(expiration_date(e), "2099-12-31");
        assert_eq!(parse_expiration(NEVER), Some(None));
        assert_eq!(expiration_date(None), NEVER);
        for bad in ["2099-13-01", "2099-1-1", "31/12/2099", "", "2099-12-31T00:00:00Z"] {
            assert_eq!(parse_expiration(bad), None, "{bad}");
        }
    }

    use super::*;

    #[test]
    fn legacy_keys_are_stable_and_signed() {
        let id = Uuid::parse_str("8ed2ffff-0000-4000-8000-000000000000").unwrap();
        assert_eq!(legacy_key(id), i32::from_be_bytes([0x8e, 0xd2, 0xff, 0xff]));
        assert!(legacy_key(id) < 0);
        assert_eq!(legacy_key(id), legacy_key(id));
    }

    #[test]
    fn serials_have_nine_digits() {
        for _ in 0..1000 {
            let s = serial(Uuid::new_v4());
            assert!((100_000_000..1_000_000_000).contains(&s), "{s}");
        }
    }

    #[test]
    fn licensing_types_round_trip() {
        for m in Metric::ALL {
            assert_eq!(Metric::from_licensing_type(m.licensing_type()), Some(m));
            assert_eq!(Metric::from_name(m.name()), Some(m));
        }
        for (code, m) in [("C", Metric::Processes), ("P", Metric::Cores), ("U", Metric::Users), ("S", Metric::Machines)]
        {
            assert_eq!(Metric::from_licensing_type(code), Some(m));
        }
        assert_eq!(Metric::from_licensing_type("x"), None);
        assert_eq!(Metric::from_licensing_type("nominaluser"), None);
    }
}
