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
            timeout: Duration::from_secs(15),
            retries: 15,
            backoff_unit: Duration::from_secs(1),
            retention: Duration::from_secs(30 * 24 * 3600),
            log_validations: false,
        }
    }
}

/// Deliveries in flight on one node, and to one endpoint: a receiver that hangs holds at most
/// [`PER_ENDPOINT`] of the node's slots, so the others keep flowing.
const IN_FLIGHT: usize = 64;
const PER_ENDPOINT: usize = 8;
/// How long a claim lasts: twice an attempt's timeout and a second. A claimed delivery is
/// sent at once (or handed back), so a claim outlives its attempt unless the node died; then
/// another node sends it again this soon.
fn claim_for(config: &Config) -> Duration {
    config.timeout * 2 + Duration::from_secs(1)
}
const POLL_EVERY: Duration = Duration::from_millis(250);

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

/// Sends one claimed delivery; what came of it is recorded by the batch writer.
async fn deliver(state: &AppState, d: WebhookDelivery) -> crate::error::Result<Option<(Uuid, Outcome)>> {
    let config = &state.webhooks;
    let now = time::now_ms();
    let attempts = d.attempts + 1;
    let endpoint = store::find_endpoint(&state.db, d.account_id, d.endpoint_id).await?;
    let account = state.account(&d.account_id.to_string()).await?;
    let (Some(endpoint), Some(account)) = (endpoint, account) else {
        // Deleted since: the cascade removes the delivery too; nothing to send.
        return Ok(None);
    };
    let result = match target::check_url(&d.endpoint_url, config.allow_insecure) {
        Err(_) => Err(send::Failure::AddressNotAllowed),
        Ok(url) => {
            let alg = SigAlg::parse(&endpoint.signature_algorithm).unwrap_or(SigAlg::Ed25519);
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
        let (answers, pending) = tokio::sync::mpsc::unbounded_channel();
        let recorder = tokio::spawn(record_answers(state.clone(), pending));
        let slots = Arc::new(Semaphore::new(IN_FLIGHT));
        let in_flight = InFlight::default();
        // A finished delivery wakes the loop: a backlog drains at the receivers' pace, not
        // the poll's.
        let wake = Arc::new(tokio::sync::Notify::new());
        let mut poll = tokio::time::interval(POLL_EVERY);
        poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = poll.tick() => {}
                _ = wake.notified() => {}
                _ = stop.changed() => break,
            }
            if let Err(e) = claim_and_send(&state, &slots, &in_flight, &wake, &answers).await {
                tracing::warn!(error = %e, "could not claim webhook deliveries; will retry");
            }
        }
        // Let the deliveries in flight finish and their answers be recorded.
        let wait = state.webhooks.timeout.min(deadline);
        let finished = tokio::time::timeout(wait, slots.acquire_many(IN_FLIGHT as u32)).await.is_ok();
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

/// What this node is sending: deliveries by id, and how many per endpoint.
#[derive(Clone, Default)]
struct InFlight(Arc<Mutex<Sending>>);

#[derive(Default)]
struct Sending {
    ids: std::collections::HashSet<Uuid>,
    per_endpoint: HashMap<Uuid, usize>,
}

impl InFlight {
    fn lock(&self) -> std::sync::MutexGuard<'_, Sending> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn start(&self, delivery: Uuid, endpoint: Uuid) {
        let mut s = self.lock();
        s.ids.insert(delivery);
        *s.per_endpoint.entry(endpoint).or_default() += 1;
    }

    fn end(&self, delivery: Uuid, endpoint: Uuid) {
        let mut s = self.lock();
        s.ids.remove(&delivery);
        if let Some(n) = s.per_endpoint.get_mut(&endpoint) {
            *n -= 1;
            if *n == 0 {
                s.per_endpoint.remove(&endpoint);
            }
        }
    }
}

/// Claims what this node has room for (free slots, and at most [`PER_ENDPOINT`] in flight per
/// endpoint) and starts sending it.
async fn claim_and_send(
    state: &AppState,
    slots: &Arc<Semaphore>,
    in_flight: &InFlight,
    wake: &Arc<tokio::sync::Notify>,
    answers: &tokio::sync::mpsc::UnboundedSender<(Uuid, Outcome)>,
) -> crate::error::Result<()> {
    let free = slots.available_permits();
    if free == 0 {
        return Ok(());
    }
    let now = time::now_ms();
    // Endpoints sending their most already are left out of the query; the rest are capped
    // here, as a batch may hold several of one endpoint's deliveries.
    let busy: HashMap<Uuid, usize> = in_flight.lock().per_endpoint.clone();
    let full: Vec<Uuid> = busy.iter().filter(|(_, n)| **n >= PER_ENDPOINT).map(|(e, _)| *e).collect();
    let mut taken: HashMap<Uuid, usize> = HashMap::new();
    let mut picked = Vec::new();
    for (id, endpoint) in store::due(&state.db, now, &full, free as i64).await? {
        let n = busy.get(&endpoint).copied().unwrap_or(0) + taken.get(&endpoint).copied().unwrap_or(0);
        if n < PER_ENDPOINT {
            *taken.entry(endpoint).or_default() += 1;
            picked.push(id);
        }
    }
    if picked.is_empty() {
        return Ok(());
    }
    let until = now + claim_for(&state.webhooks).as_millis() as i64;
    let mut claimed = store::claim(&state.db, &picked, now, until).await?.into_iter();
    for d in claimed.by_ref() {
        let Ok(permit) = slots.clone().try_acquire_owned() else {
            let mut unsent = vec![d.id];
            unsent.extend(claimed.map(|d| d.id));
            store::release(&state.db, &unsent).await?;
            break;
        };
        in_flight.start(d.id, d.endpoint_id);
        let (state, in_flight, wake, answers) = (state.clone(), in_flight.clone(), wake.clone(), answers.clone());
        tokio::spawn(async move {
            let (id, endpoint) = (d.id, d.endpoint_id);
            match deliver(&state, d).await {
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
