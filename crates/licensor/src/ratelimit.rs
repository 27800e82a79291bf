//! Rate limits in the style of Keygen's: fixed windows counted per account, client address and
//! credential, stricter buckets for password logins and password changes, and a per-license
//! limit on activations and deactivations.
//!
//! Two kinds of counting:
//! - **Approximate** (every request): counted in this node's memory, so a request costs a hash
//!   and a short lock. On PostgreSQL each node adds its counts of minute-or-longer windows to a
//!   shared table every second and learns the others' totals, so several nodes together admit
//!   at most about one second's worth of requests per node beyond the limit. Second-long
//!   windows are per node.
//! - **Exact** (password logins and changes, activations): one atomic upsert in the database per
//!   request, so the limit holds across nodes. These requests already cost far more (argon2, a
//!   write transaction).
//!
//! Buckets are named by a SHA-256 of what they limit: no credential or email is kept in memory
//! or written to the database.

use std::collections::HashMap;
use std::net::IpAddr;
use std::str::FromStr;
use std::sync::Mutex;
use std::time::Duration;

use sha2::{Digest, Sha256};

use crate::db::Db;
use crate::error::{Error, Result};
use crate::store::rate_limits;

/// `limit` requests per `period`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    pub limit: u32,
    pub period: Duration,
}

impl FromStr for Rate {
    type Err = String;
    /// `100/1s`, `3000/1m`, `5/10m`.
    fn from_str(s: &str) -> std::result::Result<Rate, String> {
        let (n, period) = s.split_once('/').ok_or_else(|| format!("{s:?}: expected LIMIT/PERIOD, like 100/1s"))?;
        let limit = n.trim().parse::<u32>().map_err(|_| format!("{s:?}: the limit must be a whole number"))?;
        let period = crate::config::parse_duration(period)?;
        if limit == 0 || period < Duration::from_secs(1) {
            return Err(format!("{s:?}: the limit must be at least 1 and the period at least 1s"));
        }
        Ok(Rate { limit, period })
    }
}

impl std::fmt::Display for Rate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.limit, window_name(self.period))
    }
}

/// `1s`, `1m`, `10m`, `1h`: Keygen's `X-RateLimit-Window` spelling.
fn window_name(period: Duration) -> String {
    let s = period.as_secs();
    if s.is_multiple_of(3600) {
        format!("{}h", s / 3600)
    } else if s.is_multiple_of(60) {
        format!("{}m", s / 60)
    } else {
        format!("{s}s")
    }
}

/// Parses `off` (or an empty list) as no limits, else a comma-separated list of rates.
pub fn parse_rates(s: &str) -> std::result::Result<Vec<Rate>, String> {
    let s = s.trim();
    if s.is_empty() || s.eq_ignore_ascii_case("off") {
        return Ok(Vec::new());
    }
    s.split(',').map(|r| r.trim().parse()).collect()
}

/// `off` as none, else one rate.
pub fn parse_rate(s: &str) -> std::result::Result<Option<Rate>, String> {
    if s.trim().eq_ignore_ascii_case("off") {
        return Ok(None);
    }
    s.parse().map(Some)
}

/// What is limited, and the proxies whose `X-Forwarded-For` is believed.
#[derive(Debug, Clone, Default)]
pub struct Config {
    /// Every request, per account, client address and credential.
    pub requests: Vec<Rate>,
    /// Every request, per account and client address whatever its credential, so a client that
    /// changes its `Authorization` header on every request still meets a limit.
    pub addresses: Vec<Rate>,
    /// Requests authenticated by email and password, per account, address and email.
    pub logins: Option<Rate>,
    /// Password updates and resets, per account, address and user.
    pub password_changes: Option<Rate>,
    /// Activations and deactivations, per license.
    pub license_changes: Option<Rate>,
    /// Peers that are reverse proxies: for them the client is the last address in
    /// `X-Forwarded-For` that is not itself a trusted proxy.
    pub trusted_proxies: Vec<IpNet>,
}

/// An address block: `10.0.0.0/8`, `::1/128`, or one address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IpNet {
    addr: IpAddr,
    prefix: u8,
}

impl FromStr for IpNet {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<IpNet, String> {
        let (a, p) = s.trim().split_once('/').map_or((s.trim(), None), |(a, p)| (a, Some(p)));
        let addr: IpAddr = a.parse().map_err(|_| format!("{s:?} is not an address or CIDR block"))?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match p {
            None => max,
            Some(p) => p.parse::<u8>().ok().filter(|p| *p <= max).ok_or_else(|| format!("{s:?}: bad prefix length"))?,
        };
        Ok(IpNet { addr, prefix })
    }
}

impl IpNet {
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = canonical(ip);
        match (self.addr, ip) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = u32::MAX.checked_shl(32 - u32::from(self.prefix)).unwrap_or(0);
                u32::from(net) & mask == u32::from(ip) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = u128::MAX.checked_shl(128 - u32::from(self.prefix)).unwrap_or(0);
                u128::from(net) & mask == u128::from(ip) & mask
            }
            _ => false,
        }
    }
}

/// An IPv4 client seen through an IPv6 socket (`::ffff:a.b.c.d`) is that IPv4 client.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

/// The client's address: the peer's, unless the peer is a trusted proxy; then the last address
/// in `X-Forwarded-For` that is not a trusted proxy (earlier entries are the client's own say).
pub fn client_ip(peer: IpAddr, forwarded_for: Option<&str>, trusted: &[IpNet]) -> IpAddr {
    let peer = canonical(peer);
    if !trusted.iter().any(|n| n.contains(peer)) {
        return peer;
    }
    let Some(header) = forwarded_for else { return peer };
    let mut client = peer;
    for hop in header.rsplit(',') {
        match hop.trim().parse::<IpAddr>() {
            Ok(ip) => {
                client = canonical(ip);
                if !trusted.iter().any(|n| n.contains(client)) {
                    break;
                }
            }
            Err(_) => break,
        }
    }
    client
}

/// The name of a bucket: a digest of its parts, never the parts themselves.
pub fn bucket(kind: &str, parts: &[&[u8]]) -> String {
    let mut h = Sha256::new();
    h.update(kind.as_bytes());
    for p in parts {
        h.update((p.len() as u64).to_le_bytes());
        h.update(p);
    }
    let digest = h.finalize();
    format!("{kind}:{}", hex::encode(&digest[..16]))
}

/// How a bucket stands after a request was counted: what `X-RateLimit-*` report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    pub allowed: bool,
    /// `1s`, `1m`, …
    pub window: String,
    pub count: u64,
    pub limit: u32,
    /// When the window ends, Unix seconds.
    pub reset: i64,
    /// Seconds until then (at least 1).
    pub retry_after: i64,
}

/// An exact hit to count in another write's transaction ([`Limiter::exact_hit`]).
#[derive(Debug, Clone)]
pub struct ExactHit {
    pub bucket: String,
    pub window_start: i64,
    pub expires_at: i64,
    rate: Rate,
    now: i64,
}

impl ExactHit {
    /// The verdict once the window holds `count` hits (this one included).
    pub fn verdict(&self, count: i64) -> Verdict {
        Verdict::of(self.rate, u64::try_from(count).unwrap_or(0), self.window_start, self.now)
    }
}

impl Verdict {
    fn of(rate: Rate, count: u64, window_start: i64, now: i64) -> Verdict {
        let end = window_start + period_ms(rate);
        Verdict {
            allowed: count <= u64::from(rate.limit),
            window: window_name(rate.period),
            count,
            limit: rate.limit,
            reset: end.div_euclid(1000),
            retry_after: ((end - now) as f64 / 1000.0).ceil().max(1.0) as i64,
        }
    }

    pub fn remaining(&self) -> u64 {
        u64::from(self.limit).saturating_sub(self.count)
    }

    /// How full the bucket is, to pick the one worth reporting.
    fn usage(&self) -> f64 {
        self.count as f64 / f64::from(self.limit)
    }

    /// The 429 for this bucket, in words for the client.
    pub fn error(&self) -> Error {
        Error::TooManyRequests {
            detail: format!(
                "Throttle limit has been reached ({} requests per {}). Please slow down and retry after {} seconds.",
                self.limit, self.window, self.retry_after
            )
            .into(),
            retry_after: self.retry_after,
        }
    }
}

fn period_ms(rate: Rate) -> i64 {
    i64::try_from(rate.period.as_millis()).unwrap_or(i64::MAX)
}

fn window_start(rate: Rate, now: i64) -> i64 {
    now - now.rem_euclid(period_ms(rate))
}

/// One bucket's window in this node's memory.
#[derive(Debug, Clone, Copy, Default)]
struct Window {
    start: i64,
    /// Hits counted here and not yet added to the shared table.
    unsynced: u64,
    /// The shared table's total for this window when last synced (this node's synced hits
    /// included).
    shared: u64,
    /// First hits of the window on their way to the shared table (see [`Limiter::hit`]); the
    /// sync leaves them alone, so a hit is never added twice.
    seeding: u64,
}

/// The approximate counters of one node.
pub struct Limiter {
    pub config: Config,
    /// Per bucket, what it counts against and one window per rate of that kind (in the
    /// config's order).
    windows: Mutex<HashMap<Box<str>, Counted>>,
    /// When a full map was last swept (ms): a map full of current windows is swept at most
    /// once a second, not once per newcomer (each sweep reads every bucket).
    swept_at: std::sync::atomic::AtomicI64,
}

/// The two approximate kinds of bucket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Per account, address and credential: `Config::requests`.
    Requests,
    /// Per account and address: `Config::addresses`.
    Addresses,
}

#[derive(Debug)]
struct Counted {
    kind: Kind,
    windows: Vec<Window>,
}

/// Buckets held in memory. Ended windows are forgotten first; when every bucket held is still
/// current, a new bucket is counted only for its first request (fail open for newcomers rather
/// than forgetting the counts of clients already being limited, or growing without bound).
const MAX_BUCKETS: usize = 200_000;

/// Windows at least this long are shared between nodes; shorter ones end before a sync would
/// tell anything.
const SHARED_FROM: Duration = Duration::from_secs(60);

impl Limiter {
    pub fn new(config: Config) -> Limiter {
        Limiter { config, windows: Mutex::default(), swept_at: std::sync::atomic::AtomicI64::new(0) }
    }

    fn rates(&self, kind: Kind) -> &[Rate] {
        match kind {
            Kind::Requests => &self.config.requests,
            Kind::Addresses => &self.config.addresses,
        }
    }

    /// Counts a request in `bucket` against every request rate; returns the fullest window's
    /// verdict (a refused one if any refuses), or `None` when no rate applies.
    ///
    /// On PostgreSQL the first hit of a bucket's minute-or-longer window on this node is added
    /// to the shared table at once, which tells the node what the others counted so far; the
    /// next hits are shared by [`Limiter::sync`].
    pub async fn hit(&self, db: &Db, kind: Kind, bucket: &str, now: i64) -> Option<Verdict> {
        let rates = self.rates(kind);
        if rates.is_empty() {
            return None;
        }
        let shared = matches!(db, Db::Postgres(_));
        let mut fresh = Vec::new();
        {
            let mut windows = self.windows.lock().unwrap_or_else(|e| e.into_inner());
            let count = |ws: &mut Vec<Window>, fresh: &mut Vec<(usize, i64)>| {
                for (i, rate) in rates.iter().enumerate() {
                    let start = window_start(*rate, now);
                    let w = &mut ws[i];
                    if w.start != start {
                        *w = Window { start, ..Window::default() };
                        if rate.period >= SHARED_FROM && shared {
                            fresh.push((i, start));
                            w.seeding += 1;
                            continue;
                        }
                    }
                    w.unsynced += 1;
                }
            };
            // Looked up by `&str`: a known bucket costs no allocation.
            match windows.get_mut(bucket) {
                Some(c) => count(&mut c.windows, &mut fresh),
                None => {
                    use std::sync::atomic::Ordering::Relaxed;
                    if windows.len() >= MAX_BUCKETS && now - self.swept_at.load(Relaxed) >= 1000 {
                        self.swept_at.store(now, Relaxed);
                        windows.retain(|_, c| self.is_current(c, now));
                    }
                    let mut ws = vec![Window::default(); rates.len()];
                    count(&mut ws, &mut fresh);
                    if windows.len() >= MAX_BUCKETS {
                        return self.fullest(kind, &ws, now);
                    }
                    windows.insert(bucket.into(), Counted { kind, windows: ws });
                }
            }
            if fresh.is_empty() {
                return windows.get(bucket).and_then(|c| self.fullest(kind, &c.windows, now));
            }
        }
        for (i, start) in fresh {
            let rate = rates[i];
            let key = format!("{bucket}/{}", window_name(rate.period));
            let added = rate_limits::add(db, &key, start, start + period_ms(rate), 1).await;
            let mut windows = self.windows.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(w) = windows.get_mut(bucket).and_then(|c| c.windows.get_mut(i)) {
                if w.start == start && w.seeding > 0 {
                    w.seeding -= 1;
                    match &added {
                        Ok(total) => w.shared = w.shared.max(u64::try_from(*total).unwrap_or(0)),
                        // Counted locally all the same; the next sync shares it.
                        Err(_) => w.unsynced += 1,
                    }
                }
            }
            if let Err(e) = added {
                e.log("rate limit counter");
            }
        }
        let windows = self.windows.lock().unwrap_or_else(|e| e.into_inner());
        windows.get(bucket).and_then(|c| self.fullest(kind, &c.windows, now))
    }

    /// Whether any of a bucket's windows is still the current one of its rate.
    fn is_current(&self, c: &Counted, now: i64) -> bool {
        c.windows.iter().zip(self.rates(c.kind)).any(|(w, r)| w.start == window_start(*r, now))
    }

    /// The verdict of a bucket's fullest window (a refusing one first).
    fn fullest(&self, kind: Kind, ws: &[Window], now: i64) -> Option<Verdict> {
        let mut worst: Option<Verdict> = None;
        for (rate, w) in self.rates(kind).iter().zip(ws) {
            let v = Verdict::of(*rate, w.shared + w.unsynced + w.seeding, w.start, now);
            worst = match worst {
                Some(cur) if cur.allowed && !v.allowed => Some(v),
                Some(cur) if cur.allowed == v.allowed && v.usage() > cur.usage() => Some(v),
                Some(cur) => Some(cur),
                None => Some(v),
            };
        }
        worst
    }

    /// One exact hit of `bucket` at `rate`, for a write that counts it in its own transaction
    /// (activation): the row to add to; [`ExactHit::verdict`] judges the total.
    pub fn exact_hit(bucket: String, rate: Rate, now: i64) -> ExactHit {
        let start = window_start(rate, now);
        ExactHit { bucket, window_start: start, expires_at: start + period_ms(rate), rate, now }
    }

    /// Counts one hit of `bucket` at `rate` in the database: exact across nodes.
    pub async fn hit_exact(db: &Db, bucket: &str, rate: Rate, now: i64) -> Result<Verdict> {
        let start = window_start(rate, now);
        let count = rate_limits::add(db, bucket, start, start + period_ms(rate), 1).await?;
        Ok(Verdict::of(rate, u64::try_from(count).unwrap_or(0), start, now))
    }

    /// PostgreSQL: adds this node's new hits of minute-or-longer windows to the shared table and
    /// learns every node's totals; forgets windows that have ended. On SQLite (one node) it
    /// only forgets.
    pub async fn sync(&self, db: &Db, now: i64) -> Result<()> {
        let current = |rate: Option<&Rate>, w: &Window| rate.is_some_and(|r| w.start == window_start(*r, now));
        let batch: Vec<(String, i64, i64, i64)> = {
            let mut windows = self.windows.lock().unwrap_or_else(|e| e.into_inner());
            windows.retain(|_, c| self.is_current(c, now));
            if !matches!(db, Db::Postgres(_)) {
                return Ok(());
            }
            let mut batch = Vec::new();
            for (bucket, c) in windows.iter_mut() {
                let rates = self.rates(c.kind);
                for (i, w) in c.windows.iter_mut().enumerate() {
                    if w.unsynced > 0 && rates[i].period >= SHARED_FROM && current(rates.get(i), w) {
                        let n = std::mem::take(&mut w.unsynced);
                        w.shared += n;
                        let key = format!("{bucket}/{}", window_name(rates[i].period));
                        batch.push((key, w.start, n as i64, w.start + period_ms(rates[i])));
                    }
                }
            }
            batch
        };
        let totals = rate_limits::add_many(db, &batch).await?;
        let mut windows = self.windows.lock().unwrap_or_else(|e| e.into_inner());
        for (key, start, total) in totals {
            let Some((bucket, window)) = key.rsplit_once('/') else { continue };
            let Some(c) = windows.get_mut(bucket) else { continue };
            let Some(i) = self.rates(c.kind).iter().position(|r| window_name(r.period) == window) else { continue };
            if let Some(w) = c.windows.get_mut(i) {
                if w.start == start {
                    w.shared = w.shared.max(u64::try_from(total).unwrap_or(0));
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_parse() {
        assert_eq!("100/1s".parse::<Rate>(), Ok(Rate { limit: 100, period: Duration::from_secs(1) }));
        assert_eq!("5/10m".parse::<Rate>().unwrap().to_string(), "5/10m");
        assert!("0/1s".parse::<Rate>().is_err());
        assert!("5".parse::<Rate>().is_err());
        assert_eq!(parse_rates("off").unwrap(), vec![]);
        assert_eq!(parse_rates("10/1s, 100/1m").unwrap().len(), 2);
        assert_eq!(parse_rate("off").unwrap(), None);
    }

    fn local_db() -> Db {
        // The SQLite arm is never touched by `hit` (only PostgreSQL shares counts); a pool that
        // never connects stands in for it.
        Db::Sqlite(crate::db::SqliteDb::lazy_for_tests())
    }

    #[tokio::test]
    async fn fixed_windows_count_and_reset() {
        let l = Limiter::new(Config {
            requests: vec!["2/1s".parse().unwrap(), "3/1m".parse().unwrap()],
            ..Config::default()
        });
        let t = 1_700_000_000_000;
        let db = local_db();
        assert!(l.hit(&db, Kind::Requests, "a", t).await.unwrap().allowed);
        let v = l.hit(&db, Kind::Requests, "a", t + 10).await.unwrap();
        assert!(v.allowed);
        assert_eq!((v.window.as_str(), v.count, v.remaining()), ("1s", 2, 0), "the fuller window is reported");
        let v = l.hit(&db, Kind::Requests, "a", t + 20).await.unwrap();
        assert!(!v.allowed);
        assert_eq!(v.window, "1s");
        assert_eq!(v.retry_after, 1);
        assert!(l.hit(&db, Kind::Requests, "b", t + 20).await.unwrap().allowed, "buckets are separate");
        // The next second: the per-second window is fresh, the minute one is spent.
        let v = l.hit(&db, Kind::Requests, "a", t + 1000).await.unwrap();
        assert!(!v.allowed);
        assert_eq!((v.window.as_str(), v.count, v.limit), ("1m", 4, 3));
        assert_eq!(v.reset, (t - t % 60_000 + 60_000) / 1000);
    }

    #[test]
    fn forwarded_for_is_believed_only_from_trusted_proxies() {
        let trusted: Vec<IpNet> = vec!["10.0.0.0/8".parse().unwrap(), "::1".parse().unwrap()];
        let proxy: IpAddr = "10.1.2.3".parse().unwrap();
        let stranger: IpAddr = "203.0.113.9".parse().unwrap();
        assert_eq!(client_ip(stranger, Some("1.2.3.4"), &trusted), stranger);
        assert_eq!(
            client_ip(proxy, Some("1.2.3.4, 198.51.100.7"), &trusted),
            "198.51.100.7".parse::<IpAddr>().unwrap()
        );
        assert_eq!(client_ip(proxy, Some("1.2.3.4, 10.9.9.9"), &trusted), "1.2.3.4".parse::<IpAddr>().unwrap());
        assert_eq!(client_ip(proxy, None, &trusted), proxy);
        assert_eq!(client_ip(proxy, Some("garbage"), &trusted), proxy);
        assert!(IpNet::from_str("::ffff:10.0.0.1").is_ok());
        assert!("10.0.0.0/33".parse::<IpNet>().is_err());
        let v4_in_v6: IpAddr = "::ffff:10.0.0.1".parse().unwrap();
        assert_eq!(client_ip(v4_in_v6, Some("1.2.3.4"), &trusted), "1.2.3.4".parse::<IpAddr>().unwrap());
    }

    #[test]
    fn buckets_hide_what_they_limit() {
        let b = bucket("req", &[b"acct", b"127.0.0.1", b"secret-token"]);
        assert!(b.starts_with("req:") && !b.contains("secret"));
        assert_ne!(b, bucket("req", &[b"acct1", b"27.0.0.1", b"secret-token"]), "parts are length-prefixed");
    }
}
