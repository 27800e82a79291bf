//! License rules that need no database: key generation, status, expiry, renewal, check-in.

use rand::rngs::OsRng;
use rand::RngCore;

use super::policy::PolicyRules;
use crate::time::{Millis, DAY, SECOND};

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

/// The status exactly as seed 002 defines it, highest priority first: BANNED (owner banned),
/// SUSPENDED, EXPIRED, EXPIRING (within 3 days), INACTIVE (no activity in 90 days), ACTIVE.
pub fn status(s: &StatusInput, now: Millis) -> &'static str {
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
        if expiry < now + 3 * DAY {
            return "EXPIRING";
        }
    }
    let last_activity = [Some(s.created_at), s.last_validated_at, s.last_check_out_at, s.last_check_in_at]
        .into_iter()
        .flatten()
        .max()
        .unwrap_or(s.created_at);
    if last_activity < now - 90 * DAY {
        "INACTIVE"
    } else {
        "ACTIVE"
    }
}

/// The expiry a new license gets from its policy, when its basis is creation.
pub fn initial_expiry(policy: &PolicyRules, now: Millis) -> Option<Millis> {
    match (policy.duration, policy.expiration_basis.as_str()) {
        (Some(d), "FROM_CREATION") => Some(now + d * SECOND),
        _ => None,
    }
}

/// The expiry after a renewal, per the policy's renewal basis. `None` when the policy has no
/// duration (a renewal is then an error).
pub fn renewed_expiry(policy: &PolicyRules, expiry: Option<Millis>, now: Millis) -> Option<Millis> {
    let duration = policy.duration? * SECOND;
    let base = match (policy.renewal_basis.as_str(), expiry) {
        ("FROM_NOW", _) | (_, None) => now,
        ("FROM_NOW_IF_EXPIRED", Some(e)) if e < now => now,
        (_, Some(e)) => e,
    };
    Some(base + duration)
}

/// The check-in interval of a policy, in milliseconds.
pub fn check_in_interval(policy: &PolicyRules) -> Option<Millis> {
    if !policy.require_check_in {
        return None;
    }
    let unit = match policy.check_in_interval.as_deref()? {
        "day" => DAY,
        "week" => 7 * DAY,
        "month" => 2_629_746 * SECOND,
        "year" => 31_556_952 * SECOND,
        _ => return None,
    };
    Some(unit * policy.check_in_interval_count.unwrap_or(1))
}

pub fn next_check_in(policy: &PolicyRules, last_check_in: Option<Millis>) -> Option<Millis> {
    Some(last_check_in? + check_in_interval(policy)?)
}

pub fn is_overdue(policy: &PolicyRules, last_check_in: Option<Millis>, created_at: Millis, now: Millis) -> bool {
    match check_in_interval(policy) {
        Some(interval) => last_check_in.unwrap_or(created_at) + interval < now,
        None => false,
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
    fn renewal_bases() {
        let now = 1_000 * DAY;
        let mut p = PolicyRules { duration: Some(30 * 86_400), ..Default::default() };
        assert_eq!(renewed_expiry(&p, Some(now - DAY), now), Some(now + 29 * DAY));
        p.renewal_basis = "FROM_NOW".into();
        assert_eq!(renewed_expiry(&p, Some(now + DAY), now), Some(now + 30 * DAY));
        p.renewal_basis = "FROM_NOW_IF_EXPIRED".into();
        assert_eq!(renewed_expiry(&p, Some(now - DAY), now), Some(now + 30 * DAY));
        assert_eq!(renewed_expiry(&p, Some(now + DAY), now), Some(now + 31 * DAY));
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
        assert!(!is_overdue(&p, Some(0), 0, 13 * DAY));
        assert!(is_overdue(&p, Some(0), 0, 15 * DAY));
    }
}
