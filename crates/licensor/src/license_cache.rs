//! The licenses this node validated lately, by (account, key), and their machines, so a
//! validation by key (scoped to a fingerprint or not) costs no database read.
//!
//! Why: on PostgreSQL a validation's one statement cost the database about as much CPU as the
//! whole validation cost Licensor, and the two share the machine. On SQLite the read is in
//! process, but its read transaction, B-tree descents and row decoding were still a sixth of a
//! validation's CPU. Invalidation must be exact for anything that changes a validation's
//! outcome, across every node (several processes may share one SQLite file too):
//! - Triggers record every change to what is cached, in the changing transaction: a license
//!   row (its counters included: machines and users change it through their own triggers),
//!   one of its machines, a policy's rules, an owner's ban. On PostgreSQL (migration 0021) they
//!   `NOTIFY` on [`CHANNEL`], and each node listens ([`spawn`]); on SQLite (migration 0022) they
//!   append to a table that each node reads after its own writes and every [`PING_EVERY`]
//!   ([`spawn_sqlite`]). Either way a node learns of changes in commit order, after the commit,
//!   and drops what changed.
//! - Staleness is bounded, not just usually small: every [`PING_EVERY`] a node notifies
//!   itself with the time it sent the ping (on SQLite: each read of the table is the ping).
//!   Once that ping comes back, every change committed before it was sent has been heard. The
//!   cache answers only while the newest ping heard was sent less than [`BOUND`] ago, so a node
//!   that stops hearing (a lost connection, a stalled listener) falls back to the database
//!   within [`BOUND`], and a change is seen by every node within [`BOUND`] of its commit (in
//!   practice within milliseconds).
//! - A node reads its own writes. On PostgreSQL any request but a validation (whatever its
//!   method) pings when it ends, and its response leaves only once that ping has come back,
//!   so every change it made has been heard before its client can ask again: one `NOTIFY`
//!   round trip, reads and refusals included (a millisecond or two while PostgreSQL is idle,
//!   more under load). The cache stays open meanwhile, so a node taking writes without pause still
//!   answers from it; a ping not back within [`HEAR_OWN_WRITES`] fences the cache until it is.
//!   On SQLite every write turn of the process fences the cache as it ends
//!   (`db::watch_writes`) and reads the notices right there, before the write is answered: the
//!   fence lasts one read, so a node that writes without pause still answers from its cache.
//! - A row read while its license was being dropped is not kept: each read takes a ticket (the
//!   generation) first and stores its row only if that license, or everything, was not dropped
//!   after it (the change may have committed after the read's snapshot).
//! - A refusal is never answered from the cache: `service::validation` reads the license again
//!   first, so what the bound allows is a VALID answer lagging a change that ends it.
//! - Losing the listening connection empties the cache: what changed meanwhile was not heard.
//!   On SQLite, so does a hole in the table's numbers (notices pruned before this node read
//!   them: it fell more than `store::license_notices::KEPT` behind).
//!
//! License keys authenticate from this copy too (`auth::authenticate`), within the same bound
//! (a key the copy would refuse is read again, as a validation is).
//! Limits are not enforced from it: activations and every other limited write count under row
//! locks in their own transactions, and an activation reads the license's terms again there
//! (`store::machines::activate`).

use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sqlx::postgres::PgListener;
use sqlx::PgPool;
use uuid::Uuid;

use crate::model::License;
use crate::store::machines::Activation;

/// The channel the triggers of migration 0021 notify.
pub const CHANNEL: &str = "licensor_licenses";
/// How often a node pings itself through the channel.
pub const PING_EVERY: Duration = Duration::from_millis(200);
/// The most a cached answer can lag a committed change.
pub const BOUND: Duration = Duration::from_secs(1);
/// How long a request that may have written waits to hear its own writes on PostgreSQL before it
/// fences the cache instead ([`LicenseCache::request_ended`]).
const HEAR_OWN_WRITES: Duration = Duration::from_millis(100);
/// How long a listening connection may go without bringing back one of the node's own pings
/// before it is replaced.
const DEAF_LIMIT_MS: i64 = 5_000;
/// Licenses kept at most; past it, the cache starts again empty (cheaper than tracking use,
/// and a working set larger than this is served by the database as before).
const DEFAULT_CAPACITY: usize = 50_000;

/// How many licenses a node keeps: `LICENSOR_LICENSE_CACHE` (0 turns the cache off), else
/// 50,000.
pub fn capacity_from_env() -> Option<usize> {
    match std::env::var("LICENSOR_LICENSE_CACHE").ok().and_then(|v| v.trim().parse::<usize>().ok()) {
        Some(0) => None,
        Some(n) => Some(n),
        None => Some(DEFAULT_CAPACITY),
    }
}

/// One node's copy of recently validated licenses.
pub struct LicenseCache {
    entries: Mutex<Entries>,
    /// Bumped by every invalidation (under the entries' lock): tickets are taken from it.
    generation: AtomicU64,
    /// When (ms on [`clock_ms`]) the newest ping this node heard back was sent; 0 while not
    /// listening.
    heard_up_to: AtomicI64,
    /// The number of the last ping sent, of the newest heard back, and of the last sent
    /// before a write this node has not heard yet ended ([`LicenseCache::fence`]).
    sent_seq: AtomicU64,
    heard_seq: AtomicU64,
    fence_seq: AtomicU64,
    /// `heard_seq` again, for requests waiting to hear their own writes (the atomic is what
    /// validations read).
    heard_watch: tokio::sync::watch::Sender<u64>,
    /// Wakes the pinger at once (after a write).
    ping_now: tokio::sync::Notify,
    /// Set while this node hears its own writes as each write turn ends (SQLite): a request's
    /// end then waits for nothing.
    hears_own_writes: std::sync::atomic::AtomicBool,
    /// While set, notifications wait here instead of being applied (tests: a stalled listener,
    /// or changes not heard yet).
    held: Mutex<Option<Held>>,
    /// Validations answered from the cache, and those that read the database (`/metrics`).
    pub hits: AtomicU64,
    pub misses: AtomicU64,
    /// Tells this node's pings from other nodes'.
    nonce: u64,
    capacity: usize,
    hasher: std::hash::RandomState,
}

#[derive(Default)]
struct Entries {
    by_key: HashMap<(Uuid, Box<str>), Arc<License>>,
    /// The key each cached license is stored under (notifications name licenses by id).
    keys: HashMap<Uuid, (Uuid, Box<str>)>,
    /// The machines of cached licenses, as scoped validations read them (a machine's change
    /// notifies its license: migration 0021).
    activations: HashMap<Uuid, Arc<Vec<Activation>>>,
    /// Licenses dropped lately, with the generation that dropped them: a read that began before
    /// may not store them. Bounded: past [`DROPPED_KEPT`], `all_from` takes their place.
    dropped: HashMap<Uuid, u64>,
    /// Reads that began before this generation may store nothing.
    all_from: u64,
    /// Licenses read once lately and not stored yet (hashes of their account and key); see
    /// [`LicenseCache::put`]. As large as the cache at most.
    seen_once: std::collections::HashSet<u64>,
}

/// Dropped licenses remembered one by one (a read takes milliseconds; beyond this many drops
/// in flight, every read in flight is refused instead).
const DROPPED_KEPT: usize = 4096;

/// Notifications held back ([`LicenseCache::hold`], [`LicenseCache::hold_changes`]).
struct Held {
    /// Whether this node's pings are held too (a stalled listener), or only changes.
    pings: bool,
    waiting: Vec<String>,
}

/// A request's writes, until this node hears a ping sent after them: dropped unheard, it fences
/// the cache ([`LicenseCache::request_ended`]).
struct Unheard<'a> {
    cache: &'a LicenseCache,
    after: u64,
    heard: bool,
}

impl Drop for Unheard<'_> {
    fn drop(&mut self) {
        if !self.heard {
            self.cache.fence_after(self.after);
            self.cache.ping_now.notify_one();
        }
    }
}

/// A read's claim to store what it reads: the generation when it began.
#[derive(Debug, Clone, Copy)]
pub struct Ticket(u64);

impl Default for LicenseCache {
    fn default() -> Self {
        LicenseCache::with_capacity(DEFAULT_CAPACITY)
    }
}

impl LicenseCache {
    pub fn with_capacity(capacity: usize) -> Self {
        LicenseCache {
            entries: Mutex::default(),
            generation: AtomicU64::new(0),
            heard_up_to: AtomicI64::new(0),
            sent_seq: AtomicU64::new(0),
            heard_seq: AtomicU64::new(0),
            fence_seq: AtomicU64::new(0),
            heard_watch: tokio::sync::watch::channel(0).0,
            ping_now: tokio::sync::Notify::new(),
            hears_own_writes: std::sync::atomic::AtomicBool::new(false),
            held: Mutex::new(None),
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
            nonce: rand::random(),
            capacity,
            hasher: std::hash::RandomState::new(),
        }
    }

    /// The cached license, if the cache is current (see the module's notes), or a ticket to
    /// store the row about to be read; neither while the cache cannot be trusted.
    /// Counted in [`LicenseCache::hits`] or [`LicenseCache::misses`]: validations call it.
    pub fn get(&self, account: Uuid, key: &str) -> Result<Arc<License>, Option<Ticket>> {
        let found = self.lookup(account, key);
        let counter = if found.is_ok() { &self.hits } else { &self.misses };
        counter.fetch_add(1, Ordering::Relaxed);
        found
    }

    /// [`LicenseCache::get`], uncounted: authentication by license key looks here too.
    pub fn lookup(&self, account: Uuid, key: &str) -> Result<Arc<License>, Option<Ticket>> {
        // Taken before the check: a ticket from after a lost connection's invalidation is
        // taken after `heard_up_to` was cleared, so the check below refuses it.
        let ticket = Ticket(self.generation.load(Ordering::SeqCst));
        if !self.is_current() {
            return Err(None);
        }
        self.lock().by_key.get(&(account, Box::from(key))).cloned().ok_or(Some(ticket))
    }

    /// Stores `license`, read after `ticket` was taken, unless it (or everything) was dropped
    /// since. Once the cache is half full, a license is kept only from its second read lately:
    /// a working set much larger than the cache (a million licenses validated at random) does
    /// not fill and empty it over and over with licenses read once, while one that fits (or a
    /// node just started, on PostgreSQL where a miss is a round trip) is cached at once.
    pub fn put(&self, ticket: Ticket, license: &License) {
        use std::hash::BuildHasher;
        let mut entries = self.lock();
        // Checked under the lock that invalidations take too.
        if entries.all_from > ticket.0
            || entries.dropped.get(&license.id).is_some_and(|at| *at > ticket.0)
            || !self.is_current()
        {
            return;
        }
        let seen = self.hasher.hash_one((license.account_id, license.key.as_str()));
        if entries.by_key.len() >= self.capacity / 2 && !entries.seen_once.remove(&seen) {
            if entries.seen_once.len() >= self.capacity {
                entries.seen_once.clear();
            }
            entries.seen_once.insert(seen);
            return;
        }
        if entries.by_key.len() >= self.capacity {
            entries.by_key.clear();
            entries.keys.clear();
            entries.activations.clear();
        }
        let key = (license.account_id, Box::from(license.key.as_str()));
        if let Some(old) = entries.keys.insert(license.id, key.clone()) {
            entries.by_key.remove(&old);
        }
        entries.by_key.insert(key, Arc::new(license.clone()));
    }

    /// The machines of cached license `id`, if the cache is current and holds them, or a
    /// ticket to store them once read; neither while the cache cannot be trusted.
    pub fn activations(&self, id: Uuid) -> Result<Arc<Vec<Activation>>, Option<Ticket>> {
        let ticket = Ticket(self.generation.load(Ordering::SeqCst));
        if !self.is_current() {
            return Err(None);
        }
        self.lock().activations.get(&id).cloned().ok_or(Some(ticket))
    }

    /// Stores the machines of license `id`, read after `ticket` was taken, if the license is
    /// cached and was not dropped since.
    pub fn put_activations(&self, ticket: Ticket, id: Uuid, rows: &[Activation]) {
        let mut entries = self.lock();
        if entries.all_from > ticket.0
            || entries.dropped.get(&id).is_some_and(|at| *at > ticket.0)
            || !entries.keys.contains_key(&id)
            || !self.is_current()
        {
            return;
        }
        entries.activations.insert(id, Arc::new(rows.to_vec()));
    }

    /// Licenses cached now.
    pub fn len(&self) -> usize {
        self.lock().by_key.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Called when a request that may have written ends (its transactions committed), before
    /// its response leaves: this node must hear what it wrote before that client can ask
    /// again. On SQLite every write turn has done that already (see [`spawn_sqlite`]).
    ///
    /// On PostgreSQL the request waits, at most [`HEAR_OWN_WRITES`], for a ping sent after it
    /// to come back. Fencing the whole cache instead would close it to every validation until
    /// then, which on a node taking writes without pause is nearly always. Requests answered
    /// meanwhile are concurrent with the write and may see either side of it, as a read on
    /// another node may. A ping not back in time fences the cache, as before.
    pub async fn request_ended(&self) {
        if self.hears_own_writes.load(Ordering::SeqCst) {
            return;
        }
        // Pings numbered above this one are sent after the request's writes committed.
        let after = self.sent_seq.load(Ordering::SeqCst);
        // Fences unless the ping is heard in time, also when the request is dropped while it
        // waits (its client gone, the server shutting down): its writes committed all the same.
        let mut unheard = Unheard { cache: self, after, heard: false };
        if self.hears() {
            let mut heard = self.heard_watch.subscribe();
            self.ping_now.notify_one();
            let back = tokio::time::timeout(HEAR_OWN_WRITES, heard.wait_for(|&seq| seq > after)).await;
            unheard.heard = matches!(back, Ok(Ok(_)));
        }
    }

    /// The cache is not used until this node has heard what it wrote, and the pinger pings.
    pub fn fence(&self) {
        self.raise_fence();
        self.ping_now.notify_one();
    }

    fn raise_fence(&self) {
        // Pings numbered above this one are sent after the write committed.
        self.fence_after(self.sent_seq.load(Ordering::SeqCst));
    }

    /// The cache is not used until a ping numbered above `seq` comes back.
    fn fence_after(&self, seq: u64) {
        self.fence_seq.fetch_max(seq, Ordering::SeqCst);
    }

    /// Holds every notification back (as a stalled listener would) until released, then
    /// applies them in order. For tests of the bound and of the fence.
    #[doc(hidden)]
    pub fn hold(&self, on: bool) {
        self.hold_back(on, true);
    }

    /// Holds back the changes only, as a change another node made and this one has not heard
    /// yet: this node's pings still come back, so its own writes lift the fences they raise.
    /// For tests of what a stale copy may and may not decide.
    #[doc(hidden)]
    pub fn hold_changes(&self, on: bool) {
        self.hold_back(on, false);
    }

    fn hold_back(&self, on: bool, pings: bool) {
        let waiting = {
            let mut held = self.held.lock().unwrap_or_else(|e| e.into_inner());
            let waiting = held.take().map(|h| h.waiting).unwrap_or_default();
            if !on {
                waiting
            } else {
                *held = Some(Held { pings, waiting });
                Vec::new()
            }
        };
        for payload in waiting {
            self.apply(&payload);
        }
    }

    fn is_current(&self) -> bool {
        self.hears() && self.heard_seq.load(Ordering::SeqCst) > self.fence_seq.load(Ordering::SeqCst)
    }

    /// Whether this node is listening and heard one of its pings within the bound.
    fn hears(&self) -> bool {
        let heard = self.heard_up_to.load(Ordering::SeqCst);
        heard > 0 && clock_ms() - heard < bound_ms()
    }

    /// The payload of the next ping.
    fn next_ping(&self) -> String {
        let seq = self.sent_seq.fetch_add(1, Ordering::SeqCst) + 1;
        format!("ping {} {seq} {}", self.nonce, clock_ms())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Entries> {
        self.entries.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Applies one notification's payload, unless notifications are held.
    fn heard(&self, payload: &str) {
        {
            let mut held = self.held.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(held) = held.as_mut().filter(|h| h.pings || !payload.starts_with("ping ")) {
                held.waiting.push(payload.to_owned());
                return;
            }
        }
        self.apply(payload);
    }

    fn apply(&self, payload: &str) {
        let mut words = payload.split(' ');
        match (words.next(), words.next(), words.next(), words.next()) {
            (Some("license"), Some(id), None, None) => match Uuid::parse_str(id) {
                Ok(id) => {
                    let mut entries = self.lock();
                    let at = self.generation.fetch_add(1, Ordering::SeqCst) + 1;
                    if entries.dropped.len() >= DROPPED_KEPT {
                        entries.dropped.clear();
                        entries.all_from = at;
                    }
                    entries.dropped.insert(id, at);
                    if let Some(key) = entries.keys.remove(&id) {
                        entries.by_key.remove(&key);
                    }
                    entries.activations.remove(&id);
                }
                Err(_) => self.forget_all(),
            },
            (Some("ping"), Some(nonce), Some(seq), Some(sent)) => {
                if nonce.parse() == Ok(self.nonce) {
                    if let (Ok(seq), Ok(sent)) = (seq.parse::<u64>(), sent.parse::<i64>()) {
                        self.heard_seq.fetch_max(seq, Ordering::SeqCst);
                        self.heard_up_to.fetch_max(sent, Ordering::SeqCst);
                        self.heard_watch.send_if_modified(|heard| {
                            let newer = seq > *heard;
                            *heard = (*heard).max(seq);
                            newer
                        });
                    }
                }
            }
            // "all" (a policy's rules or an owner's ban changed), or anything not understood.
            _ => self.forget_all(),
        }
    }

    fn forget_all(&self) {
        let mut entries = self.lock();
        let at = self.generation.fetch_add(1, Ordering::SeqCst) + 1;
        *entries = Entries { all_from: at, ..Entries::default() };
    }

    /// The listening connection was lost: nothing cached can be trusted, nor served until a
    /// ping comes back on the new one.
    fn lost(&self) {
        self.heard_up_to.store(0, Ordering::SeqCst);
        self.forget_all();
    }

    /// Whether this node has heard none of its own pings for `for_ms` (while listening).
    fn deaf_for(&self, for_ms: i64) -> bool {
        clock_ms() - self.heard_up_to.load(Ordering::SeqCst) > for_ms
    }
}

/// Milliseconds on a clock that only moves forward (the bound must not stretch when the wall
/// clock is set back), from 1 at the first use.
fn clock_ms() -> i64 {
    static START: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();
    let start = *START.get_or_init(std::time::Instant::now);
    i64::try_from(start.elapsed().as_millis()).unwrap_or(i64::MAX - 1) + 1
}

fn bound_ms() -> i64 {
    i64::try_from(BOUND.as_millis()).unwrap_or(i64::MAX)
}

/// Listens for invalidations and pings this node until `stop` turns true.
pub fn spawn(
    cache: Arc<LicenseCache>,
    pool: PgPool,
    mut stop: tokio::sync::watch::Receiver<bool>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let pinger = {
            let (cache, pool, mut stop) = (cache.clone(), pool.clone(), stop.clone());
            tokio::spawn(async move {
                let mut every = tokio::time::interval(PING_EVERY);
                every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                loop {
                    tokio::select! {
                        _ = stop.changed() => return,
                        _ = every.tick() => {}
                        _ = cache.ping_now.notified() => {}
                    }
                    let payload = cache.next_ping();
                    let sent = sqlx::query("SELECT pg_notify($1, $2)").bind(CHANNEL).bind(payload).execute(&pool);
                    if let Err(e) = sent.await {
                        tracing::debug!(error = %e, "license cache: ping not sent");
                    }
                }
            })
        };
        loop {
            let listening = async {
                let mut listener = PgListener::connect_with(&pool).await?;
                listener.listen(CHANNEL).await?;
                Ok::<_, sqlx::Error>(listener)
            };
            let mut listener = tokio::select! {
                _ = stop.changed() => break,
                l = listening => match l {
                    Ok(l) => l,
                    Err(e) => {
                        tracing::warn!(error = %e, "license cache: cannot listen; validations read the database");
                        tokio::select! {
                            _ = stop.changed() => break,
                            _ = tokio::time::sleep(Duration::from_secs(1)) => continue,
                        }
                    }
                },
            };
            let connected = clock_ms();
            let mut watch = tokio::time::interval(Duration::from_secs(1));
            loop {
                // (`try_recv` is cancel-safe: it keeps a partly read message buffered.)
                let next = tokio::select! {
                    _ = stop.changed() => { cache.lost(); return pinger.abort(); }
                    _ = watch.tick() => {
                        // A connection that stopped delivering (half-open, stalled) would also
                        // keep PostgreSQL from trimming its notification queue: start afresh.
                        if clock_ms() - connected > DEAF_LIMIT_MS && cache.deaf_for(DEAF_LIMIT_MS) {
                            tracing::warn!("license cache: no ping came back for 5 s; listening again");
                            cache.lost();
                            break;
                        }
                        continue;
                    }
                    n = listener.try_recv() => n,
                };
                match next {
                    Ok(Some(n)) => cache.heard(n.payload()),
                    // Reconnected on the next call; what was sent meanwhile is lost.
                    Ok(None) => cache.lost(),
                    Err(e) => {
                        cache.lost();
                        tracing::warn!(error = %e, "license cache: listening failed; validations read the database");
                        break;
                    }
                }
            }
        }
        cache.lost();
        pinger.abort();
    })
}

/// SQLite: a node's reads of the notices the triggers of migration 0022 write (other
/// processes on the same file write them too), applied in order. Each read is this node's
/// ping: once it is applied, every change committed before it began has been heard.
struct NoticeReader {
    cache: Arc<LicenseCache>,
    sqlite: crate::db::SqliteDb,
    /// The number of the last notice read (held through a read, so reads apply in order).
    last: Mutex<i64>,
    /// Set (under `last`) when the node stops listening: a write turn ending later must not
    /// make the cache current again.
    closed: std::sync::atomic::AtomicBool,
}

impl NoticeReader {
    fn read(&self) {
        use crate::store::license_notices;
        let mut last = self.last.lock().unwrap_or_else(|e| e.into_inner());
        if self.closed.load(Ordering::SeqCst) {
            return;
        }
        let ping = self.cache.next_ping();
        match license_notices::since(&self.sqlite, *last) {
            Ok(since) => {
                if since.complete(*last) {
                    for (_, payload) in &since.notices {
                        self.cache.heard(payload);
                    }
                } else {
                    tracing::warn!("license cache: notices were pruned before this node read them; emptied");
                    self.cache.lost();
                }
                *last = since.high;
                self.cache.heard(&ping);
            }
            Err(e) => tracing::debug!(error = %e, "license cache: notices not read"),
        }
    }
}

/// SQLite: reads the notices every [`PING_EVERY`] (what other processes wrote), and right
/// after each of this process's write turns, in the writer, before the write is answered: the
/// fence that turn raises is lifted at once, so a node that writes without pause still answers
/// validations from its cache (a fence left for the poller would keep it fenced most of the
/// time), for one read of the notices per commit. Until `stop` turns true.
pub fn spawn_sqlite(
    cache: Arc<LicenseCache>,
    sqlite: crate::db::SqliteDb,
    mut stop: tokio::sync::watch::Receiver<bool>,
) -> tokio::task::JoinHandle<()> {
    use crate::store::license_notices;
    let last = match license_notices::since(&sqlite, i64::MAX) {
        Ok(s) => s.high,
        Err(e) => {
            tracing::warn!(error = %e, "license cache: cannot read the notices; validations read the database");
            0
        }
    };
    let reader = Arc::new(NoticeReader {
        cache: cache.clone(),
        sqlite: sqlite.clone(),
        last: Mutex::new(last),
        closed: Default::default(),
    });
    // Writes outside requests (jobs, tools, tests in the same process) too.
    let after_write: Arc<dyn Fn() + Send + Sync> = {
        let reader = Arc::downgrade(&reader);
        Arc::new(move || {
            if let Some(reader) = reader.upgrade() {
                reader.cache.raise_fence();
                reader.read();
            }
        })
    };
    crate::db::watch_writes(&sqlite.pool, &after_write);
    cache.hears_own_writes.store(true, Ordering::SeqCst);
    tokio::spawn(async move {
        let _watching = after_write;
        let mut every = tokio::time::interval(PING_EVERY);
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = stop.changed() => break,
                _ = every.tick() => {}
                _ = cache.ping_now.notified() => {}
            }
            reader.read();
        }
        {
            let _last = reader.last.lock().unwrap_or_else(|e| e.into_inner());
            reader.closed.store(true, Ordering::SeqCst);
        }
        cache.hears_own_writes.store(false, Ordering::SeqCst);
        cache.lost();
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn license(account: Uuid, key: &str) -> License {
        License { id: Uuid::new_v4(), account_id: account, key: key.into(), ..License::for_tests(Default::default()) }
    }

    /// Stores `l` as a license read a second time would be (past half full, the first read is
    /// only noted).
    fn store(cache: &LicenseCache, ticket: Ticket, l: &License) {
        cache.put(ticket, l);
        cache.put(ticket, l);
    }

    /// A ping of this node's, sent now and heard back.
    fn pong(cache: &LicenseCache) {
        let ping = cache.next_ping();
        cache.heard(&ping);
    }

    /// A request that may have written answers once this node has heard a ping sent after it,
    /// leaving the cache open; one that hears nothing in time, or is dropped while it waits,
    /// closes the cache until such a ping comes back.
    #[tokio::test]
    async fn a_write_hears_itself_or_fences_the_cache() {
        let cache = LicenseCache::with_capacity(2);
        pong(&cache);
        assert!(cache.is_current());

        // Heard in time: the cache stays open (the pinger's part played by hand).
        let ended = cache.request_ended();
        let pinger = async {
            tokio::task::yield_now().await;
            pong(&cache);
        };
        tokio::join!(ended, pinger);
        assert!(cache.is_current());

        // Dropped while it waits (its client gone): the write committed, so the cache closes.
        let dropped = tokio::time::timeout(Duration::from_millis(10), cache.request_ended()).await;
        assert!(dropped.is_err(), "no ping came back");
        assert!(!cache.is_current());
        pong(&cache);
        assert!(cache.is_current());

        // Nothing heard within the wait: the same.
        cache.request_ended().await;
        assert!(!cache.is_current());
        pong(&cache);
        assert!(cache.is_current());
    }

    #[test]
    fn serves_only_while_pings_come_back_and_drops_what_changed() {
        let cache = LicenseCache::with_capacity(2);
        let account = Uuid::new_v4();
        let l = license(account, "K1");
        // Not listening yet: no answer, no ticket.
        assert!(matches!(cache.get(account, "K1"), Err(None)));

        pong(&cache);
        let Err(Some(ticket)) = cache.get(account, "K1") else { panic!("a ticket expected") };
        store(&cache, ticket, &l);
        assert_eq!(cache.get(account, "K1").unwrap().id, l.id);

        // After this node writes, nothing is served until a later ping comes back.
        cache.fence();
        assert!(matches!(cache.get(account, "K1"), Err(None)));
        pong(&cache);
        assert_eq!(cache.get(account, "K1").unwrap().id, l.id);
        assert!(cache.get(Uuid::new_v4(), "K1").is_err(), "another account's key");

        // A change to the license drops it.
        cache.heard(&format!("license {}", l.id));
        assert!(cache.is_empty());

        // A read that overlapped a change to its license does not store what it read; a
        // change to another license does not stop it.
        let Err(Some(ticket)) = cache.get(account, "K1") else { panic!("a ticket expected") };
        cache.heard(&format!("license {}", l.id));
        store(&cache, ticket, &l);
        assert!(cache.is_empty());
        let Err(Some(ticket)) = cache.get(account, "K1") else { panic!("a ticket expected") };
        cache.heard(&format!("license {}", Uuid::new_v4()));
        store(&cache, ticket, &l);
        assert_eq!(cache.len(), 1);
        cache.heard(&format!("license {}", l.id));

        // A read in flight when the connection is lost stores nothing, even once the node
        // hears again (what changed meanwhile was not heard).
        let Err(Some(ticket)) = cache.get(account, "K1") else { panic!("a ticket expected") };
        cache.lost();
        pong(&cache);
        store(&cache, ticket, &l);
        assert!(cache.is_empty());

        // Held notifications (a stalled listener) are applied when released, in order.
        let Err(Some(ticket)) = cache.get(account, "K1") else { panic!("a ticket expected") };
        store(&cache, ticket, &l);
        cache.hold(true);
        cache.heard(&format!("license {}", l.id));
        assert_eq!(cache.get(account, "K1").unwrap().id, l.id, "not heard yet");
        cache.hold(false);
        assert!(cache.is_empty());

        // Another node's ping proves nothing about this node's listening.
        let stale = clock_ms() - bound_ms() - 1;
        let fresh = LicenseCache::with_capacity(2);
        fresh.heard(&format!("ping {} 1 {stale}", fresh.nonce));
        fresh.heard(&format!("ping {} 2 {}", fresh.nonce.wrapping_add(1), clock_ms()));
        assert!(matches!(fresh.get(account, "K1"), Err(None)), "the newest own ping is older than the bound");

        // Policy or owner changes, or a lost connection, drop everything.
        let Err(Some(ticket)) = cache.get(account, "K1") else { panic!("a ticket expected") };
        store(&cache, ticket, &l);
        cache.heard("all");
        assert!(cache.is_empty());
        let Err(Some(ticket)) = cache.get(account, "K1") else { panic!("a ticket expected") };
        store(&cache, ticket, &l);
        cache.lost();
        assert!(cache.is_empty());
        assert!(matches!(cache.get(account, "K1"), Err(None)));
    }

    #[test]
    fn a_cached_licenses_machines_go_with_it() {
        let cache = LicenseCache::with_capacity(2);
        pong(&cache);
        let account = Uuid::new_v4();
        let l = license(account, "K1");
        let machine = Activation {
            id: Uuid::new_v4(),
            fingerprint: "fp".into(),
            owner_id: None,
            cores: None,
            memory: None,
            disk: None,
            max_processes: None,
            last_heartbeat_at: None,
            created_at: 0,
        };
        // Only a cached license's machines are kept.
        let Err(Some(ticket)) = cache.activations(l.id) else { panic!("a ticket expected") };
        cache.put_activations(ticket, l.id, std::slice::from_ref(&machine));
        assert!(cache.activations(l.id).is_err());
        let Err(Some(ticket)) = cache.get(account, "K1") else { panic!("a ticket expected") };
        store(&cache, ticket, &l);
        let Err(Some(ticket)) = cache.activations(l.id) else { panic!("a ticket expected") };
        cache.put_activations(ticket, l.id, std::slice::from_ref(&machine));
        assert_eq!(cache.activations(l.id).unwrap()[0].fingerprint, "fp");

        // A change to the license (one of its machines notifies it) drops them with it; a read
        // that overlapped the change stores nothing.
        let Ok(_) = cache.activations(l.id) else { panic!("cached") };
        let ticket = Ticket(cache.generation.load(Ordering::SeqCst));
        cache.heard(&format!("license {}", l.id));
        assert!(matches!(cache.activations(l.id), Err(Some(_))));
        let Err(Some(fresh)) = cache.get(account, "K1") else { panic!("a ticket expected") };
        store(&cache, fresh, &l);
        cache.put_activations(ticket, l.id, std::slice::from_ref(&machine));
        assert!(cache.activations(l.id).is_err(), "read before the change");
    }

    #[test]
    fn past_half_full_a_license_is_kept_from_its_second_read_on() {
        let cache = LicenseCache::with_capacity(4);
        pong(&cache);
        let account = Uuid::new_v4();
        let Err(Some(ticket)) = cache.get(account, "K1") else { panic!("a ticket expected") };
        for key in ["K1", "K2"] {
            cache.put(ticket, &license(account, key));
        }
        assert_eq!(cache.len(), 2, "kept from their first read while under half full");
        let l = license(account, "K3");
        cache.put(ticket, &l);
        assert!(cache.get(account, "K3").is_err(), "read once");
        cache.put(ticket, &l);
        assert_eq!(cache.get(account, "K3").unwrap().id, l.id);
        // Licenses read once are forgotten past the cache's size: K4, four others, K4 again.
        cache.put(ticket, &license(account, "K4"));
        for key in ["K5", "K6", "K7", "K8"] {
            cache.put(ticket, &license(account, key));
        }
        cache.put(ticket, &license(account, "K4"));
        assert!(cache.get(account, "K4").is_err(), "K4's first read was forgotten");
    }

    #[test]
    fn a_full_cache_starts_again() {
        let cache = LicenseCache::with_capacity(2);
        pong(&cache);
        let account = Uuid::new_v4();
        for key in ["A", "B", "C"] {
            let Err(Some(ticket)) = cache.get(account, key) else { panic!("a ticket expected") };
            store(&cache, ticket, &license(account, key));
        }
        assert_eq!(cache.len(), 1);
        assert!(cache.get(account, "C").is_ok());
    }
}
