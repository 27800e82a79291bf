//! Background work each node runs: flushing buffered validation timestamps every second, and
//! culling dead machines and processes (under a lease, so only one node culls at a time; each
//! delete is also conditional on the heartbeat it judged, so a racing ping always wins).

use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinHandle;
use uuid::Uuid;

use crate::db::Db;
use crate::domain::heartbeat;
use crate::error::Result;
use crate::events::Raised;
use crate::model::HeartbeatStatus;
use crate::state::AppState;
use crate::store::{events, leases, licenses, machines, policies, processes, rate_limits};
use crate::time::{self, SECOND};

/// How often the culler looks; Keygen's own runs every two minutes.
const CULL_EVERY: Duration = Duration::from_secs(60);
/// The shortest heartbeat duration a policy may have: nothing younger can be dead.
const MIN_HEARTBEAT: i64 = 60 * SECOND;
const BATCH: i64 = 500;

/// What one cull pass removed.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Culled {
    pub machines: u64,
    pub processes: u64,
}

/// One cull pass: deletes machines whose policy deactivates the dead and whose resurrection
/// window has passed, and dead processes that can no longer be revived.
pub async fn cull_once(db: &Db, now: i64) -> Result<Culled> {
    let mut culled = Culled::default();
    for (id, account, last, created, rules) in machines::stale(db, now - MIN_HEARTBEAT, BATCH).await? {
        if !heartbeat::should_cull(&rules.0, last, created, now) {
            continue;
        }
        let Some(machine) = machines::find(db, account, id).await? else { continue };
        let events =
            [Raised::machine("machine.heartbeat.dead", &machine), Raised::machine("machine.deleted", &machine)];
        if machines::delete_if_unchanged(db, account, id, last, &events).await? {
            tracing::info!(machine = %id, "deactivated dead machine");
            culled.machines += 1;
        }
    }
    for (id, account, last, rules) in processes::stale(db, now - MIN_HEARTBEAT, BATCH).await? {
        let interval = rules.0.heartbeat_duration_secs();
        let dead = heartbeat::process_status(interval, last, now) == HeartbeatStatus::Dead;
        if !dead || heartbeat::can_resurrect(&rules.0, Some(last), last, now) {
            continue;
        }
        let Some(process) = processes::find(db, account, id).await? else { continue };
        let Some(license) = licenses::find(db, account, process.license_id).await? else { continue };
        let events = [
            Raised::process("process.heartbeat.dead", &process, interval, license.product_id),
            Raised::process("process.deleted", &process, interval, license.product_id),
        ];
        if processes::delete_if_unchanged(db, account, id, last, &events).await? {
            culled.processes += 1;
        }
    }
    Ok(culled)
}

/// How far ahead `license.expiring-soon` is raised, and how long after expiring a license
/// still gets its `license.expired` (Keygen: three days each way).
const EXPIRY_WINDOW: i64 = 3 * 24 * 3600 * SECOND;

/// Raises the time-driven license events that are due: `license.expiring-soon` and
/// `license.expired`, each once per license and expiry (a renewal is a new occurrence), however
/// many nodes look. Returns how many were raised.
pub async fn raise_expiry_events(db: &Db, now: i64) -> Result<u64> {
    let mut raised = 0;
    for (event, from, until) in
        [("license.expiring-soon", now, now + EXPIRY_WINDOW), ("license.expired", now - EXPIRY_WINDOW, now)]
    {
        for _ in 0..20 {
            let due = licenses::expiring_between(db, event, from, until, BATCH).await?;
            for (account, id, expiry) in &due {
                let Some(l) = licenses::find(db, *account, *id).await? else { continue };
                if events::record_once(db, *account, *expiry, &Raised::license(event, &l)).await? {
                    raised += 1;
                }
            }
            if (due.len() as i64) < BATCH {
                break;
            }
        }
    }
    Ok(raised)
}

/// Raises `license.check-in-overdue` once per license and missed check-in (a check-in starts a
/// new occurrence). Returns how many were raised.
pub async fn raise_check_in_events(db: &Db, now: i64) -> Result<u64> {
    const EVENT: &str = "license.check-in-overdue";
    let mut raised = 0;
    for (policy, rules) in policies::requiring_check_in(db).await? {
        let Some(deadline) = crate::domain::license::check_in_deadline(&rules.0, now) else { continue };
        for (account, id, last) in licenses::checked_in_before(db, policy, deadline, EVENT, BATCH).await? {
            let Some(l) = licenses::find(db, account, id).await? else { continue };
            if events::record_once(db, account, last, &Raised::license(EVENT, &l)).await? {
                raised += 1;
            }
        }
    }
    Ok(raised)
}

/// How often the query planner's statistics are refreshed (and once at start).
const OPTIMIZE_EVERY: Duration = Duration::from_secs(3600);

/// Starts the background loops; they stop when `stop` turns true.
pub fn spawn(state: AppState, mut stop: watch::Receiver<bool>) -> JoinHandle<()> {
    let node = Uuid::new_v4().to_string();
    tokio::spawn(async move {
        let mut flush = tokio::time::interval(Duration::from_secs(1));
        flush.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut cull = tokio::time::interval(CULL_EVERY);
        cull.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // Statistics refresh on a task of its own: a first ANALYZE of a large database must
        // not hold up the first cull and the first flush.
        let statistics = {
            let (db, mut stop) = (state.db.clone(), stop.clone());
            tokio::spawn(async move {
                let mut optimize = tokio::time::interval(OPTIMIZE_EVERY);
                optimize.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                loop {
                    tokio::select! {
                        _ = optimize.tick() => {
                            if let Err(e) = db.optimize().await {
                                tracing::warn!(error = %e, "could not refresh the query planner's statistics; will retry");
                            }
                        }
                        _ = stop.changed() => break,
                    }
                }
            })
        };
        loop {
            tokio::select! {
                _ = flush.tick() => {
                    match state.flush_touches().await {
                        Ok(()) => state.metrics.jobs.inc(&["flush_validations", "ok"]),
                        Err(e) => {
                            state.metrics.jobs.inc(&["flush_validations", "error"]);
                            tracing::warn!(error = %e, "could not record validation timestamps; will retry");
                        }
                    }
                    if let Err(e) = state.flush_events().await {
                        state.metrics.jobs.inc(&["flush_events", "error"]);
                        tracing::warn!(error = %e, "could not record validation events; will retry");
                    }
                    if let Err(e) = crate::store::license_notices::prune(&state.db).await {
                        tracing::warn!(error = %e, "could not prune the license notices; will retry");
                    }
                    if let Err(e) = state.limiter.sync(&state.db, time::now_ms()).await {
                        state.metrics.jobs.inc(&["sync_rate_limits", "error"]);
                        tracing::warn!(error = %e, "could not share rate-limit counts; will retry");
                    }
                }
                _ = cull.tick() => {
                    let now = time::now_ms();
                    if let Err(e) = rate_limits::purge(&state.db, now).await {
                        tracing::warn!(error = %e, "could not purge old rate-limit counters; will retry");
                    }
                    if let Err(e) = crate::store::sessions::purge(&state.db, now).await {
                        tracing::warn!(error = %e, "could not purge expired console sessions; will retry");
                    }
                    let lease_until = now + 2 * CULL_EVERY.as_millis() as i64;
                    match leases::acquire(&state.db, "cull", &node, now, lease_until).await {
                        Ok(true) => {
                            if let Err(e) = raise_check_in_events(&state.db, now).await {
                                tracing::warn!(error = %e, "raising check-in events failed; will retry");
                            }
                            match raise_expiry_events(&state.db, now).await {
                                Ok(_) => state.metrics.jobs.inc(&["expiry_events", "ok"]),
                                Err(e) => {
                                    state.metrics.jobs.inc(&["expiry_events", "error"]);
                                    tracing::warn!(error = %e, "raising expiry events failed; will retry");
                                }
                            }
                            let keep = state.webhooks.retention.as_millis() as i64;
                            // Marks must outlive the window they guard, whatever the retention.
                            if let Err(e) = events::prune(&state.db, now - keep.max(2 * EXPIRY_WINDOW)).await {
                                tracing::warn!(error = %e, "pruning the event log failed; will retry");
                            }
                            match cull_once(&state.db, now).await {
                                Ok(_) => state.metrics.jobs.inc(&["cull", "ok"]),
                                Err(e) => {
                                    state.metrics.jobs.inc(&["cull", "error"]);
                                    tracing::warn!(error = %e, "culling dead machines failed; will retry");
                                }
                            }
                        }
                        Ok(false) => {}
                        Err(e) => tracing::warn!(error = %e, "could not take the cull lease"),
                    }
                }
                _ = stop.changed() => break,
            }
        }
        statistics.abort();
        // Hand the cull lease back: another node takes over at its next tick.
        if let Err(e) = leases::release(&state.db, "cull", &node).await {
            tracing::warn!(error = %e, "could not release the cull lease; it expires by itself");
        }
    })
}
