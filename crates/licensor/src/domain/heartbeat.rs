//! Heartbeats of machines and processes: status, and when a dead one may be revived.

use crate::model::{CullStrategy, HeartbeatStatus, PolicyRules, ResurrectionStrategy};
use crate::time::{Millis, SECOND};

/// A machine's heartbeat status (Keygen's `heartbeatStatus`).
pub fn machine_status(
    policy: &PolicyRules,
    last_heartbeat: Option<Millis>,
    created_at: Millis,
    now: Millis,
) -> HeartbeatStatus {
    let duration = policy.heartbeat_duration_secs() * SECOND;
    match last_heartbeat {
        Some(at) if at + duration >= now => HeartbeatStatus::Alive,
        Some(_) => HeartbeatStatus::Dead,
        None if !policy.require_heartbeat || created_at + duration >= now => HeartbeatStatus::NotStarted,
        None => HeartbeatStatus::Dead,
    }
}

/// When the next heartbeat is due, if heartbeats have started.
pub fn next_heartbeat(policy: &PolicyRules, last_heartbeat: Option<Millis>) -> Option<Millis> {
    last_heartbeat.map(|at| at + policy.heartbeat_duration_secs() * SECOND)
}

/// A machine is monitored (and so can die and be culled) when its policy requires heartbeats
/// or it has ever sent one.
pub fn is_monitored(policy: &PolicyRules, last_heartbeat: Option<Millis>) -> bool {
    policy.require_heartbeat || last_heartbeat.is_some()
}

/// How long after death a ping may still revive it; `None` = forever.
pub fn resurrection_window(policy: &PolicyRules) -> Option<Option<Millis>> {
    let minutes = match policy.heartbeat_resurrection_strategy {
        ResurrectionStrategy::AlwaysRevive => return Some(None),
        ResurrectionStrategy::Revive15Minutes => 15,
        ResurrectionStrategy::Revive10Minutes => 10,
        ResurrectionStrategy::Revive5Minutes => 5,
        ResurrectionStrategy::Revive2Minutes => 2,
        ResurrectionStrategy::Revive1Minute => 1,
        ResurrectionStrategy::NoRevive => return None,
    };
    Some(Some(minutes * 60 * SECOND))
}

/// The instant a machine died: its missed heartbeat (or, never having pinged, creation plus the
/// heartbeat duration).
pub fn died_at(policy: &PolicyRules, last_heartbeat: Option<Millis>, created_at: Millis) -> Millis {
    last_heartbeat.unwrap_or(created_at) + policy.heartbeat_duration_secs() * SECOND
}

/// Whether a dead machine may be revived by a ping at `now`.
pub fn can_resurrect(policy: &PolicyRules, last_heartbeat: Option<Millis>, created_at: Millis, now: Millis) -> bool {
    match resurrection_window(policy) {
        None => false,
        Some(None) => true,
        Some(Some(window)) => now < died_at(policy, last_heartbeat, created_at) + window,
    }
}

/// Whether the culler should delete a dead machine now: its policy deactivates the dead and any
/// resurrection window has passed.
pub fn should_cull(policy: &PolicyRules, last_heartbeat: Option<Millis>, created_at: Millis, now: Millis) -> bool {
    policy.heartbeat_cull_strategy == CullStrategy::DeactivateDead
        && is_monitored(policy, last_heartbeat)
        && machine_status(policy, last_heartbeat, created_at, now) == HeartbeatStatus::Dead
        && !can_resurrect(policy, last_heartbeat, created_at, now)
}

/// A process's status: alive while its last heartbeat is within the interval.
pub fn process_status(interval_secs: i64, last_heartbeat: Millis, now: Millis) -> HeartbeatStatus {
    if last_heartbeat + interval_secs * SECOND >= now {
        HeartbeatStatus::Alive
    } else {
        HeartbeatStatus::Dead
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(require: bool) -> PolicyRules {
        PolicyRules { require_heartbeat: require, heartbeat_duration: Some(600), ..Default::default() }
    }

    #[test]
    fn statuses() {
        let p = policy(true);
        let now = 10_000_000;
        assert_eq!(machine_status(&p, None, now - 1000, now), HeartbeatStatus::NotStarted);
        assert_eq!(machine_status(&p, None, now - 601 * SECOND, now), HeartbeatStatus::Dead);
        assert_eq!(machine_status(&policy(false), None, now - 6000 * SECOND, now), HeartbeatStatus::NotStarted);
        assert_eq!(machine_status(&p, Some(now - 599 * SECOND), 0, now), HeartbeatStatus::Alive);
        assert_eq!(machine_status(&p, Some(now - 601 * SECOND), 0, now), HeartbeatStatus::Dead);
    }

    #[test]
    fn resurrection_and_culling() {
        let now = 100_000_000;
        let mut p = policy(true);
        let dead_since_1m = Some(now - 660 * SECOND);
        assert!(!can_resurrect(&p, dead_since_1m, 0, now));
        assert!(should_cull(&p, dead_since_1m, 0, now));
        p.heartbeat_resurrection_strategy = ResurrectionStrategy::Revive5Minutes;
        assert!(can_resurrect(&p, dead_since_1m, 0, now));
        assert!(!should_cull(&p, dead_since_1m, 0, now), "still inside the revive window");
        assert!(should_cull(&p, Some(now - 1000 * SECOND), 0, now));
        p.heartbeat_cull_strategy = CullStrategy::KeepDead;
        assert!(!should_cull(&p, Some(now - 1000 * SECOND), 0, now));
        // A machine that pinged once is monitored even when the policy does not require it.
        let p = policy(false);
        assert!(should_cull(&p, Some(now - 1000 * SECOND), 0, now));
        assert!(!should_cull(&p, None, 0, now));
    }
}
