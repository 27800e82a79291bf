//! License rules that need no database: key generation, status, expiry, renewal, check-in.

use rand::rngs::OsRng;
use rand::RngCore;

use crate::model::{CheckInInterval, ExpirationBasis, PolicyRules, RenewalBasis};
use crate::time::{add_duration, add_months, Millis, DAY};

/// A license key in Keygen's default format: 16 random bytes as 32 hex characters whose last
/// two are replaced by `v3`, upper-cased and split in groups of six
/// (`XXXXXX-XXXXXX-XXXXXX-XXXXXX-XXXXXX-V3`).
pub fn generate_key() -> String {
    let mut bytes = [0u8; 16];
    OsRng.fill_bytes(&mut bytes);
    let mut hex = hex::encode(bytes);
    hex.truncate(30);
    hex.push_str("v3");
    let upper = hex.to_ascii_uppercase();
    upper.as_bytes().chunks(6).map(|c| std::str::from_utf8(c).unwrap_or_default()).collect::<Vec<_>>().join("-")
}

/// Checks a per-license limit override (`maxMachines` …) as Keygen bounds them: counts of
/// machines, uses, processes and users from 0, cores, memory and disk from 1, the 32-bit
/// counts up to 2,147,483,647; a floating policy's license needs a machine, a node-locked
/// one exactly one.
pub fn check_limit(attr: &str, value: i64, floating: bool) -> crate::error::Result<()> {
    let machines = |detail: &'static str| Err(crate::error::Error::invalid_attr(attr, detail, "MAX_MACHINES_INVALID"));
    match attr {
        "maxMachines" if !floating && value != 1 => machines("must be equal to 1 for non-floating policy"),
        "maxMachines" if floating && value < 1 => machines("must be greater than or equal to 1 for floating policy"),
        "maxCores" | "maxMemory" | "maxDisk" => super::policy::check_range(attr, value, 1),
        _ => super::policy::check_range(attr, value, 0),
    }
}

/// What a license needs to compute its at-a-glance status.
pub struct StatusInput {
    pub owner_banned: bool,
    pub suspended: bool,
    pub expiry: Option<Millis>,
    pub created_at: Millis,
    pub last_validated_at: Option<Millis>,
    pub last_check_out_at: Option<Millis>,
    pub last_check_in_at: Option<Millis>,
}

/// Before `soon` an expiry is EXPIRING; activity before `stale` leaves a license INACTIVE.
/// (The store filters lists by status in SQL with the same instants.)
pub fn status_thresholds(now: Millis) -> (Millis, Millis) {
    (now + 3 * DAY, now - 90 * DAY)
}

/// The status as docs/api.md defines it, highest priority first: BANNED (owner banned),
/// SUSPENDED, EXPIRED, EXPIRING (within 3 days), INACTIVE (no activity in 90 days), ACTIVE.
pub fn status(s: &StatusInput, now: Millis) -> &'static str {
    let (soon, stale) = status_thresholds(now);
    if s.owner_banned {
        return "BANNED";
    }
    if s.suspended {
        return "SUSPENDED";
    }
    if let Some(expiry) = s.expiry {
        if expiry < now {
            return "EXPIRED";
        }
        if expiry < soon {
            return "EXPIRING";
        }
    }
    let last_activity = [Some(s.created_at), s.last_validated_at, s.last_check_out_at, s.last_check_in_at]
        .into_iter()
        .flatten()
        .max()
        .unwrap_or(s.created_at);
    if last_activity < stale {
        "INACTIVE"
    } else {
        "ACTIVE"
    }
}

/// The expiry a new license gets from its policy, when its basis is creation.
pub fn initial_expiry(policy: &PolicyRules, now: Millis) -> Option<Millis> {
    match (policy.duration, policy.expiration_basis) {
        // Policy durations are at most 2^31 - 1 s (68 years): always representable.
        (Some(d), ExpirationBasis::FromCreation) => add_duration(now, d),
        _ => None,
    }
}

/// The expiry a license gets when a FROM_FIRST_* clock starts, or on a transfer that resets it.
pub fn expiry_from(policy: &PolicyRules, now: Millis) -> Option<Millis> {
    policy.duration.and_then(|d| add_duration(now, d))
}

/// The expiry after a renewal, per the policy's renewal basis. `None` when the policy has no
/// duration or the license no expiry (both refused, as Keygen refuses them), or past the year
/// 9999.
pub fn renewed_expiry(policy: &PolicyRules, expiry: Option<Millis>, now: Millis) -> Option<Millis> {
    let (duration, expiry) = (policy.duration?, expiry?);
    let base = match policy.renewal_basis {
        RenewalBasis::FromNow => now,
        RenewalBasis::FromNowIfExpired if expiry < now => now,
        RenewalBasis::FromNowIfExpired | RenewalBasis::FromExpiry => expiry,
    };
    add_duration(base, duration)
}

/// `at` moved by the policy's check-in interval (calendar months and years, as Keygen counts
/// them), backwards when `sign` is -1. `None` when the policy requires no check-in.
fn shift_by_check_in_interval(policy: &PolicyRules, at: Millis, sign: i64) -> Option<Millis> {
    if !policy.require_check_in {
        return None;
    }
    let count = sign * policy.check_in_interval_count.unwrap_or(1);
    match policy.check_in_unit()? {
        CheckInInterval::Day => at.checked_add(count * DAY),
        CheckInInterval::Week => at.checked_add(count * 7 * DAY),
        CheckInInterval::Month => add_months(at, count),
        CheckInInterval::Year => add_months(at, 12 * count),
    }
}

pub fn next_check_in(policy: &PolicyRules, last_check_in: Option<Millis>) -> Option<Millis> {
    shift_by_check_in_interval(policy, last_check_in?, 1)
}

/// The instant a last check-in must be after for a license not to be overdue at `now`.
pub fn check_in_deadline(policy: &PolicyRules, now: Millis) -> Option<Millis> {
    shift_by_check_in_interval(policy, now, -1)
}

/// Overdue when the last check-in is older than the interval. A license never checked in
/// (its policy began requiring check-ins after it was created) is not overdue, as in Keygen.
pub fn is_overdue(policy: &PolicyRules, last_check_in: Option<Millis>, now: Millis) -> bool {
    match (last_check_in, shift_by_check_in_interval(policy, now, -1)) {
        (Some(last), Some(deadline)) => last < deadline,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input(now: Millis) -> StatusInput {
        StatusInput {
            owner_banned: false,
            suspended: false,
            expiry: None,
            created_at: now - DAY,
            last_validated_at: None,
            last_check_out_at: None,
            last_check_in_at: None,
        }
    }

    #[test]
    fn key_format() {
        let k = generate_key();
        assert_eq!(k.len(), 32 + 5);
        assert!(k.ends_with("V3"));
        assert_eq!(k.split('-').count(), 6);
        assert!(k.chars().all(|c| c == '-' || c.is_ascii_hexdigit() || c == 'V'));
        assert_eq!(k, k.to_ascii_uppercase());
    }

    #[test]
    fn status_priority() {
        let now = 1_000 * DAY;
        assert_eq!(status(&input(now), now), "ACTIVE");
        assert_eq!(status(&StatusInput { expiry: Some(now + DAY), ..input(now) }, now), "EXPIRING");
        assert_eq!(status(&StatusInput { expiry: Some(now - 1), ..input(now) }, now), "EXPIRED");
        assert_eq!(status(&StatusInput { expiry: Some(now - 1), suspended: true, ..input(now) }, now), "SUSPENDED");
        assert_eq!(status(&StatusInput { suspended: true, owner_banned: true, ..input(now) }, now), "BANNED");
        assert_eq!(status(&StatusInput { created_at: now - 91 * DAY, ..input(now) }, now), "INACTIVE");
        let revived = StatusInput { created_at: now - 91 * DAY, last_validated_at: Some(now - DAY), ..input(now) };
        assert_eq!(status(&revived, now), "ACTIVE");
    }

    #[test]
    fn limit_overrides_are_bounded_as_keygen_bounds_them() {
        let detail = |attr: &str, v: i64, floating: bool| match check_limit(attr, v, floating) {
            Ok(()) => String::new(),
            Err(crate::error::Error::Invalid { detail, .. }) => detail.into_owned(),
            Err(e) => panic!("{e:?}"),
        };
        assert_eq!(detail("maxUsers", 0, true), "");
        assert_eq!(detail("maxProcesses", 0, true), "");
        assert_eq!(detail("maxUses", -1, true), "must be greater than or equal to 0");
        assert_eq!(detail("maxCores", 0, true), "must be greater than or equal to 1");
        assert_eq!(detail("maxMachines", 0, true), "must be greater than or equal to 1 for floating policy");
        assert_eq!(detail("maxMachines", 2, false), "must be equal to 1 for non-floating policy");
        assert_eq!(detail("maxMachines", 1, false), "");
        assert_eq!(detail("maxUsers", 2_147_483_648, true), "must be less than or equal to 2147483647");
        assert_eq!(detail("maxMemory", 2_147_483_648, true), "");
    }

    #[test]
    fn renewal_bases() {
        let now = 1_000 * DAY;
        let mut p = PolicyRules { duration: Some(30 * 86_400), ..Default::default() };
        assert_eq!(renewed_expiry(&p, Some(now - DAY), now), Some(now + 29 * DAY));
        p.renewal_basis = RenewalBasis::FromNow;
        assert_eq!(renewed_expiry(&p, Some(now + DAY), now), Some(now + 30 * DAY));
        p.renewal_basis = RenewalBasis::FromNowIfExpired;
        assert_eq!(renewed_expiry(&p, Some(now - DAY), now), Some(now + 30 * DAY));
        assert_eq!(renewed_expiry(&p, Some(now + DAY), now), Some(now + 31 * DAY));
        // Nothing to renew: no expiry yet (a FROM_FIRST_* clock not started), or no duration.
        assert_eq!(renewed_expiry(&p, None, now), None);
        p.duration = None;
        assert_eq!(renewed_expiry(&p, Some(now), now), None);
    }

    #[test]
    fn check_in() {
        let p = PolicyRules {
            require_check_in: true,
            check_in_interval: Some("week".into()),
            check_in_interval_count: Some(2),
            ..Default::default()
        };
        assert_eq!(next_check_in(&p, Some(0)), Some(14 * DAY));
        assert!(!is_overdue(&p, Some(0), 13 * DAY));
        assert!(is_overdue(&p, Some(0), 15 * DAY));
        assert!(!is_overdue(&p, None, 100 * DAY), "never checked in is not overdue");
    }

    #[test]
    fn monthly_check_ins_follow_the_calendar() {
        let p = PolicyRules {
            require_check_in: true,
            check_in_interval: Some("month".into()),
            check_in_interval_count: Some(1),
            ..Default::default()
        };
        let jan31 = crate::time::parse_iso("2021-01-31T00:00:00Z").unwrap();
        let feb28 = crate::time::parse_iso("2021-02-28T00:00:00Z").unwrap();
        assert_eq!(next_check_in(&p, Some(jan31)), Some(feb28));
        let mar31 = crate::time::parse_iso("2021-03-31T00:00:00Z").unwrap();
        // A month before 31 March is 28 February: checked in on the 28th is not yet overdue.
        assert!(!is_overdue(&p, Some(feb28), mar31));
        assert!(is_overdue(&p, Some(feb28 - 1), mar31));
    }
}
