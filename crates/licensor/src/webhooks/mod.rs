//! Webhook delivery: every node runs a worker that claims due deliveries from the outbox
//! (`webhook_events`), POSTs each to its endpoint signed as Keygen signs its webhooks, and
//! records the answer. Failures are retried with Keygen's back-off (attempt⁴ seconds plus
//! jitter) until the retries run out; a 410 Gone unsubscribes the endpoint; a refused or reset
//! connection is given up on at once. Delivery is at least once: a claim is a lease, and a
//! node that dies mid-POST leaves it to expire and be sent again.

pub mod send;
pub mod target;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use bytes::Bytes;
use rand::Rng;
use sha2::{Digest, Sha256};
use tokio::sync::{watch, Semaphore};
use tokio::task::JoinHandle;
use uuid::Uuid;

use crate::crypto::sign::{self, SigAlg};
use crate::model::{delivery_status, WebhookDelivery};
use crate::state::AppState;
use crate::store::webhooks::{self as store, Outcome};
use crate::time;

/// Webhook settings (`licensor serve --webhook-*`).
#[derive(Debug, Clone)]
pub struct Config {
    /// Plain http, IP literals and private addresses allowed as targets.
    pub allow_insecure: bool,
    /// This node sends deliveries (`--no-webhook-delivery` leaves them to other nodes).
    pub deliver: bool,
    /// The whole exchange with a receiver, connect to last byte (Keygen: 15 s).
    pub timeout: Duration,
    /// Retries after the first attempt before a delivery is FAILED (Keygen: 15).
    pub retries: i64,
    /// The back-off's unit: attempt n waits n⁴ units plus jitter (Keygen: one second).
    pub backoff_unit: Duration,
    /// How long the event log and finished deliveries are kept.
    pub retention: Duration,
    /// Validations are logged even when no endpoint subscribes to them.
    pub log_validations: bool,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            allow_insecure: false,
            deliver: true,
            timeout: Duration::from_secs(15),
            retries: 15,
            backoff_unit: Duration::from_secs(1),
            retention: Duration::from_secs(30 * 24 * 3600),
            log_validations: false,
        }
    }
}

/// Deliveries one node holds at once (claimed, waiting for their endpoint's turn, or being
/// sent), how many of them may be one endpoint's, and how many of those are sent at once: a
/// receiver that hangs holds at most [`HELD_PER_ENDPOINT`] of the node's deliveries and
/// [`PER_ENDPOINT`] connections, so the others keep flowing, while a fast receiver gets a
/// batch of its deliveries per claim rather than one round trip to the database each.
const HELD: usize = 256;
const HELD_PER_ENDPOINT: usize = 32;
const PER_ENDPOINT: usize = 8;
/// How long a claim lasts: long enough for a delivery to wait behind its endpoint's other
/// held deliveries (each wave of [`PER_ENDPOINT`] at most one attempt's timeout), be sent, and
/// a second more. A claimed delivery is sent at once when its turn comes (or handed back), so
/// a claim outlives its attempt unless the node died; then another node sends it again this
/// soon.
fn claim_for(config: &Config) -> Duration {
    config.timeout * (HELD_PER_ENDPOINT / PER_ENDPOINT + 1) as u32 + Duration::from_secs(1)
}
const POLL_EVERY: Duration = Duration::from_millis(250);
/// The least time between two claiming rounds: at most this much latency added to a delivery,
/// and each round claims what gathered since the last rather than an event or two.
const ROUND_GAP: Duration = Duration::from_millis(20);

/// When attempt number `attempts` (1-based, the one that just failed) is followed by the next.
pub fn next_attempt(config: &Config, attempts: i64, now: i64) -> i64 {
    let unit = config.backoff_unit.as_millis() as i64;
    let base = attempts.saturating_pow(4).saturating_mul(unit);
    let jitter = rand::thread_rng().gen_range(0..=unit.max(1) * attempts.max(1));
    now.saturating_add(base).saturating_add(jitter)
}

/// What an answer (or its absence) means for a delivery that has now been tried `attempts`
/// times, and whether the endpoint must be unsubscribed.
pub fn outcome(
    config: &Config,
    result: &Result<send::Answer, send::Failure>,
    attempts: i64,
    now: i64,
) -> (Outcome, bool) {
    let failing = |code: Option<i64>, body: String| {
        let give_up = attempts > config.retries;
        Outcome {
            status: if give_up { delivery_status::FAILED } else { delivery_status::FAILING },
            code,
            body: Some(body),
            next_attempt_at: if give_up { now } else { next_attempt(config, attempts, now) },
        }
    };
    match result {
        Ok(a) if (200..300).contains(&a.status) => (
            Outcome {
                status: delivery_status::DELIVERED,
                code: Some(a.status.into()),
                body: Some(a.body.clone()),
                next_attempt_at: now,
            },
            false,
        ),
        Ok(a) if a.status == 410 => (
            Outcome {
                status: delivery_status::FAILED,
                code: Some(410),
                body: Some(a.body.clone()),
                next_attempt_at: now,
            },
            true,
        ),
        Ok(a) => (failing(Some(a.status.into()), a.body.clone()), false),
        Err(f) if f.retryable() => (failing(None, f.as_str().into()), false),
        Err(f) => (
            Outcome {
                status: delivery_status::FAILED,
                code: None,
                body: Some(f.as_str().into()),
                next_attempt_at: now,
            },
            false,
        ),
    }
}

/// The body Keygen POSTs: the delivery as a `webhook-events` document.
pub fn body(d: &WebhookDelivery) -> String {
    serde_json::json!({ "data": crate::api::keygen::webhooks::render_delivery(d) }).to_string()
}

/// The signed headers of a POST of `body` to `url`: `Date`, `Digest`, `Keygen-Signature` over
/// `(request-target) host date digest` with the endpoint's host name, as a response is signed.
pub fn signed_headers(
    keys: &crate::crypto::AccountKeys,
    account: Uuid,
    alg: SigAlg,
    url: &axum::http::Uri,
    api_version: &str,
    body: &[u8],
) -> anyhow::Result<Vec<(&'static str, String)>> {
    let date = httpdate::fmt_http_date(std::time::SystemTime::now());
    let digest = format!("sha-256={}", STANDARD.encode(Sha256::digest(body)));
    let target = format!("post {}", url.path_and_query().map(|p| p.as_str()).unwrap_or("/"));
    let host = url.host().unwrap_or("");
    let signing_data = format!("(request-target): {target}\nhost: {host}\ndate: {date}\ndigest: {digest}");
    let signature = STANDARD.encode(sign::sign(keys, alg, signing_data.as_bytes())?);
    let header = format!(
        "keyid=\"{account}\", algorithm=\"{}\", signature=\"{signature}\", headers=\"(request-target) host date digest\"",
        alg.as_str()
    );
    Ok(vec![
        ("content-type", "application/vnd.api+json; charset=utf-8".into()),
        ("user-agent", format!("Licensor/{} (Keygen/{api_version})", env!("CARGO_PKG_VERSION"))),
        ("date", date.clone()),
        ("digest", digest.clone()),
        ("keygen-date", date),
        ("keygen-digest", digest),
        ("keygen-signature", header),
        ("keygen-version", api_version.to_string()),
    ])
}

/// Sends one claimed delivery, signed with `alg` (its endpoint's algorithm when claimed); what
/// came of it is recorded by the batch writer.
async fn deliver(state: &AppState, d: WebhookDelivery, alg: SigAlg) -> crate::error::Result<Option<(Uuid, Outcome)>> {
    let config = &state.webhooks;
    let now = time::now_ms();
    let attempts = d.attempts + 1;
    let Some(account) = state.account(&d.account_id.to_string()).await? else {
        // Deleted since: the cascade removes the delivery too; nothing to send.
        return Ok(None);
    };
    let result = match target::check_url(&d.endpoint_url, config.allow_insecure) {
        Err(_) => Err(send::Failure::AddressNotAllowed),
        Ok(url) => {
            let keys = state.signing_keys(&account).map_err(crate::error::Error::Internal)?;
            let body = body(&d);
            let headers = signed_headers(&keys, account.id, alg, &url, &d.api_version, body.as_bytes())
                .map_err(crate::error::Error::Internal)?;
            send::post(&url, &headers, Bytes::from(body), config.allow_insecure, config.timeout).await
        }
    };
    let (outcome, disable) = outcome(config, &result, attempts, time::now_ms().max(now));
    match &result {
        Ok(a) => {
            tracing::info!(delivery = %d.id, event = %d.event, endpoint = %d.endpoint_id, status = a.status, outcome = outcome.status, "webhook delivery")
        }
        Err(f) => {
            tracing::warn!(delivery = %d.id, event = %d.event, endpoint = %d.endpoint_id, failure = f.as_str(), outcome = outcome.status, "webhook delivery")
        }
    }
    state.metrics.webhook_deliveries.inc(&[outcome.status]);
    if disable {
        tracing::warn!(endpoint = %d.endpoint_id, "the receiver answered 410 Gone: endpoint unsubscribed from every event");
        store::disable_endpoint(&state.db, d.endpoint_id).await?;
    }
    Ok(Some((d.id, outcome)))
}

/// Answers waiting to be recorded: whatever finished within a few milliseconds of the first
/// goes in one transaction. A crash before it is written leaves the claim to expire, and the
/// delivery is sent again: at least once.
async fn record_answers(state: AppState, mut answers: tokio::sync::mpsc::UnboundedReceiver<(Uuid, Outcome)>) {
    const GATHER: Duration = Duration::from_millis(20);
    const MOST: usize = 256;
    while let Some(first) = answers.recv().await {
        let mut batch = vec![first];
        let until = tokio::time::Instant::now() + GATHER;
        while batch.len() < MOST {
            match tokio::time::timeout_at(until, answers.recv()).await {
                Ok(Some(a)) => batch.push(a),
                _ => break,
            }
        }
        if let Err(e) = store::finish_many(&state.db, &batch, time::now_ms()).await {
            tracing::warn!(error = %e, deliveries = batch.len(), "could not record webhook answers; they will be sent again");
        }
    }
}

/// Starts this node's delivery worker. When `stop` turns true it claims no more and lets the
/// deliveries in flight finish within `deadline` (and one attempt's timeout); the claims of
/// those still unanswered then are handed back, so another node (or this one, restarted) sends
/// them at once. If the process is killed first, their claims expire instead.
pub fn spawn(state: AppState, mut stop: watch::Receiver<bool>, deadline: Duration) -> JoinHandle<()> {
    tokio::spawn(async move {
        if !state.webhooks.deliver {
            return;
        }
        let (answers, pending) = tokio::sync::mpsc::unbounded_channel();
        let recorder = tokio::spawn(record_answers(state.clone(), pending));
        let slots = Arc::new(Semaphore::new(HELD));
        let in_flight = InFlight::default();
        // A finished delivery wakes the loop: a backlog drains at the receivers' pace, not
        // the poll's.
        let wake = Arc::new(tokio::sync::Notify::new());
        let mut poll = tokio::time::interval(POLL_EVERY);
        poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut last_round = tokio::time::Instant::now();
        loop {
            tokio::select! {
                _ = poll.tick() => {}
                _ = wake.notified() => {}
                _ = stop.changed() => break,
            }
            // Deliveries finishing one by one would each start a round that claims the one or
            // two events raised since: rounds are spaced so each claims what gathered.
            let next_round = last_round + ROUND_GAP;
            if next_round > tokio::time::Instant::now() {
                tokio::select! {
                    _ = tokio::time::sleep_until(next_round) => {}
                    _ = stop.changed() => break,
                }
            }
            last_round = tokio::time::Instant::now();
            if let Err(e) = claim_and_send(&state, &slots, &in_flight, &wake, &answers, &stop).await {
                tracing::warn!(error = %e, "could not claim webhook deliveries; will retry");
            }
        }
        // Let the deliveries in flight finish and their answers be recorded.
        let wait = state.webhooks.timeout.min(deadline);
        let finished = tokio::time::timeout(wait, slots.acquire_many(HELD as u32)).await.is_ok();
        drop(answers);
        // The recorder ends when the last sender goes; a delivery still hanging keeps its
        // sender, so then only give the recorder time to write what it gathered.
        let grace = if finished { Duration::from_secs(5) } else { Duration::from_millis(200) };
        let _ = tokio::time::timeout(grace, recorder).await;
        let cut_off: Vec<Uuid> = in_flight.lock().ids.iter().copied().collect();
        match store::release(&state.db, &cut_off).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(deliveries = n, "webhook deliveries cut off by shutdown handed back"),
            Err(e) => tracing::warn!(error = %e, "could not hand back webhook deliveries; their claims will expire"),
        }
    })
}

/// What this node holds: deliveries by id, and per endpoint how many and the turns to send.
#[derive(Clone, Default)]
struct InFlight(Arc<Mutex<Sending>>);

#[derive(Default)]
struct Sending {
    ids: std::collections::HashSet<Uuid>,
    per_endpoint: HashMap<Uuid, (usize, Arc<Semaphore>)>,
}

impl InFlight {
    fn lock(&self) -> std::sync::MutexGuard<'_, Sending> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Holds `delivery`; returns its endpoint's turns ([`PER_ENDPOINT`] at a time).
    fn start(&self, delivery: Uuid, endpoint: Uuid) -> Arc<Semaphore> {
        let mut s = self.lock();
        s.ids.insert(delivery);
        let (n, turns) = s.per_endpoint.entry(endpoint).or_insert_with(|| (0, Arc::new(Semaphore::new(PER_ENDPOINT))));
        *n += 1;
        turns.clone()
    }

    fn end(&self, delivery: Uuid, endpoint: Uuid) {
        let mut s = self.lock();
        s.ids.remove(&delivery);
        if let Some((n, _)) = s.per_endpoint.get_mut(&endpoint) {
            *n -= 1;
            if *n == 0 {
                s.per_endpoint.remove(&endpoint);
            }
        }
    }
}

/// Claims what this node has room for (free slots, and at most [`HELD_PER_ENDPOINT`] held per
/// endpoint) in one statement, and hands each delivery to a task that sends it when its
/// endpoint's turn comes ([`PER_ENDPOINT`] at a time).
async fn claim_and_send(
    state: &AppState,
    slots: &Arc<Semaphore>,
    in_flight: &InFlight,
    wake: &Arc<tokio::sync::Notify>,
    answers: &tokio::sync::mpsc::UnboundedSender<(Uuid, Outcome)>,
    stop: &watch::Receiver<bool>,
) -> crate::error::Result<()> {
    let free = slots.available_permits();
    if free == 0 {
        return Ok(());
    }
    let now = time::now_ms();
    // Endpoints holding their most already are left out of the claim; the rest are capped
    // here, as a batch may hold many of one endpoint's deliveries: those over the cap are
    // handed back, and their endpoint is left out of the next round.
    let busy: HashMap<Uuid, usize> = in_flight.lock().per_endpoint.iter().map(|(e, (n, _))| (*e, *n)).collect();
    let full: Vec<Uuid> = busy.iter().filter(|(_, n)| **n >= HELD_PER_ENDPOINT).map(|(e, _)| *e).collect();
    let until = now + claim_for(&state.webhooks).as_millis() as i64;
    let claimed = store::claim_due(&state.db, now, until, &full, HELD_PER_ENDPOINT as i64, free as i64).await?;
    if claimed.is_empty() {
        return Ok(());
    }
    let mut endpoints: Vec<Uuid> = claimed.iter().map(|d| d.endpoint_id).collect();
    endpoints.sort_unstable();
    endpoints.dedup();
    let algorithms: HashMap<Uuid, SigAlg> = store::signature_algorithms(&state.db, &endpoints)
        .await?
        .into_iter()
        .map(|(id, alg)| (id, SigAlg::parse(&alg).unwrap_or(SigAlg::Ed25519)))
        .collect();
    let mut taken: HashMap<Uuid, usize> = HashMap::new();
    let mut unsent = Vec::new();
    for d in claimed {
        // Gone since the claim: the cascade removes the delivery too; nothing to send.
        let Some(&alg) = algorithms.get(&d.endpoint_id) else { continue };
        let n = taken.entry(d.endpoint_id).or_default();
        if busy.get(&d.endpoint_id).copied().unwrap_or(0) + *n >= HELD_PER_ENDPOINT {
            unsent.push(d.id);
            continue;
        }
        let Ok(permit) = slots.clone().try_acquire_owned() else {
            unsent.push(d.id);
            continue;
        };
        *n += 1;
        let turns = in_flight.start(d.id, d.endpoint_id);
        let (state, in_flight, wake, answers) = (state.clone(), in_flight.clone(), wake.clone(), answers.clone());
        let mut stop = stop.clone();
        tokio::spawn(async move {
            let (id, endpoint) = (d.id, d.endpoint_id);
            let turn = tokio::select! {
                turn = turns.acquire_owned() => turn.ok(),
                _ = stop.wait_for(|stopping| *stopping) => None,
            };
            let Some(_turn) = turn else {
                // Shutdown came first: the delivery stays held, so its claim is handed back.
                return;
            };
            match deliver(&state, d, alg).await {
                Ok(Some(answer)) => {
                    let _ = answers.send(answer);
                }
                Ok(None) => {}
                Err(e) => tracing::warn!(error = %e, "webhook delivery failed before sending; it will be sent again"),
            }
            in_flight.end(id, endpoint);
            drop(permit);
            wake.notify_one();
        });
    }
    store::release(&state.db, &unsent).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(status: u16) -> Result<send::Answer, send::Failure> {
        Ok(send::Answer { status, body: String::new() })
    }

    #[test]
    fn outcomes_follow_keygen() {
        let c = Config::default();
        assert_eq!(outcome(&c, &answer(204), 1, 0).0.status, delivery_status::DELIVERED);
        let (o, disable) = outcome(&c, &answer(410), 1, 0);
        assert_eq!((o.status, disable), (delivery_status::FAILED, true));
        let (o, _) = outcome(&c, &answer(500), 1, 0);
        assert_eq!(o.status, delivery_status::FAILING);
        assert!(o.next_attempt_at >= 1000, "1⁴ s at least");
        assert_eq!(outcome(&c, &answer(500), 16, 0).0.status, delivery_status::FAILED, "15 retries, then FAILED");
        assert_eq!(outcome(&c, &Err(send::Failure::Refused), 1, 0).0.status, delivery_status::FAILED);
        assert_eq!(outcome(&c, &Err(send::Failure::Timeout), 1, 0).0.status, delivery_status::FAILING);
    }

    #[test]
    fn back_off_grows_with_the_fourth_power() {
        let c = Config::default();
        let at = |n| next_attempt(&c, n, 0);
        assert!((16_000..=16_000 + 2_000).contains(&at(2)));
        assert!((50_625_000..=50_625_000 + 15_000).contains(&at(15)));
    }
}
