//! Prometheus metrics: a small registry of counters and histograms with labels, rendered in the
//! text exposition format at `/metrics`.
//!
//! Why not the `metrics` crates: they bring a global recorder (every test server in one process
//! would share it) and a dozen dependencies for what is here a few atomics per request. Each
//! series is an `Arc` of atomics found through a read-locked map, so recording costs one
//! uncontended read lock and a few relaxed increments.

use std::collections::HashMap;
use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

/// Upper bounds of the request-latency buckets, in seconds.
const LATENCY_BUCKETS: [f64; 14] =
    [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];

#[derive(Default)]
pub struct Counter(AtomicU64);

impl Counter {
    pub fn inc(&self) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

#[derive(Default)]
pub struct Histogram {
    buckets: [AtomicU64; LATENCY_BUCKETS.len()],
    count: AtomicU64,
    sum_micros: AtomicU64,
}

impl Histogram {
    pub fn observe(&self, d: Duration) {
        let secs = d.as_secs_f64();
        if let Some(i) = LATENCY_BUCKETS.iter().position(|b| secs <= *b) {
            self.buckets[i].fetch_add(1, Ordering::Relaxed);
        }
        self.count.fetch_add(1, Ordering::Relaxed);
        self.sum_micros.fetch_add(u64::try_from(d.as_micros()).unwrap_or(u64::MAX), Ordering::Relaxed);
    }
}

/// One metric with labels: a series per distinct label values.
pub struct Family<T> {
    name: &'static str,
    help: &'static str,
    labels: &'static [&'static str],
    series: RwLock<HashMap<Box<str>, Arc<T>>>,
}

impl<T: Default> Family<T> {
    fn new(name: &'static str, help: &'static str, labels: &'static [&'static str]) -> Self {
        Family { name, help, labels, series: RwLock::new(HashMap::new()) }
    }

    /// The series for `values` (one per label, in order), created on first use.
    pub fn with(&self, values: &[&str]) -> Arc<T> {
        debug_assert_eq!(values.len(), self.labels.len());
        let key = values.join("\u{1}");
        if let Some(s) = self.series.read().unwrap_or_else(|e| e.into_inner()).get(key.as_str()) {
            return s.clone();
        }
        self.series.write().unwrap_or_else(|e| e.into_inner()).entry(key.into()).or_default().clone()
    }

    fn each(&self, mut f: impl FnMut(String, &T)) {
        let series = self.series.read().unwrap_or_else(|e| e.into_inner());
        let mut keys: Vec<&Box<str>> = series.keys().collect();
        keys.sort();
        for key in keys {
            let labels = self
                .labels
                .iter()
                .zip(key.split('\u{1}'))
                .map(|(name, value)| format!("{name}=\"{}\"", escape(value)))
                .collect::<Vec<_>>()
                .join(",");
            f(labels, &series[key]);
        }
    }
}

impl Family<Counter> {
    pub fn inc(&self, values: &[&str]) {
        self.with(values).inc();
    }

    /// The current value of one series (0 when it was never recorded).
    pub fn get(&self, values: &[&str]) -> u64 {
        let key = values.join("\u{1}");
        self.series.read().unwrap_or_else(|e| e.into_inner()).get(key.as_str()).map_or(0, |c| c.get())
    }

    fn render(&self, out: &mut String) {
        let _ = writeln!(out, "# HELP {} {}\n# TYPE {} counter", self.name, self.help, self.name);
        self.each(|labels, c| {
            let _ = writeln!(out, "{}{{{labels}}} {}", self.name, c.get());
        });
    }
}

impl Family<Histogram> {
    fn render(&self, out: &mut String) {
        let name = self.name;
        let _ = writeln!(out, "# HELP {name} {}\n# TYPE {name} histogram", self.help);
        self.each(|labels, h| {
            let mut cumulative = 0;
            for (bound, n) in LATENCY_BUCKETS.iter().zip(&h.buckets) {
                cumulative += n.load(Ordering::Relaxed);
                let _ = writeln!(out, "{name}_bucket{{{labels},le=\"{bound}\"}} {cumulative}");
            }
            let count = h.count.load(Ordering::Relaxed);
            let sum = h.sum_micros.load(Ordering::Relaxed) as f64 / 1e6;
            let _ = writeln!(out, "{name}_bucket{{{labels},le=\"+Inf\"}} {count}");
            let _ = writeln!(out, "{name}_sum{{{labels}}} {sum}");
            let _ = writeln!(out, "{name}_count{{{labels}}} {count}");
        });
    }
}

fn escape(v: &str) -> String {
    v.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

/// Everything one server process measures.
pub struct Metrics {
    /// Whether requests are recorded (`--metrics`).
    pub record_requests: bool,
    pub requests: Family<Histogram>,
    pub validations: Family<Counter>,
    pub activations: Family<Counter>,
    pub deactivations: Family<Counter>,
    pub rate_limited: Family<Counter>,
    pub jobs: Family<Counter>,
    pub webhook_deliveries: Family<Counter>,
    pub connections_refused: Counter,
    pub connections_open: AtomicU64,
}

/// Values read when metrics are scraped.
pub struct Gauges {
    /// Database connections: (open, idle, maximum).
    pub pool: (u32, u32, u32),
    pub password_checks_waiting: u64,
    /// Webhook deliveries waiting to be sent (all nodes).
    pub webhook_queue: u64,
    /// SQLite only: the inline writer's commits and the transactions they carried.
    pub sqlite_commits: Option<(u64, u64)>,
    /// Unless the cache is off: validations answered from the license cache, those that read the
    /// database, and the licenses cached now.
    pub license_cache: Option<(u64, u64, u64)>,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics {
            record_requests: true,
            requests: Family::new(
                "licensor_http_request_duration_seconds",
                "HTTP requests by surface, route template, method and status, with their latency.",
                &["surface", "route", "method", "status"],
            ),
            validations: Family::new(
                "licensor_validations_total",
                "License validations by validation code.",
                &["code"],
            ),
            activations: Family::new(
                "licensor_machine_activations_total",
                "Machines activated, by surface.",
                &["surface"],
            ),
            deactivations: Family::new(
                "licensor_machine_deactivations_total",
                "Machines deactivated, by surface.",
                &["surface"],
            ),
            rate_limited: Family::new(
                "licensor_rate_limited_total",
                "Requests refused with 429, by surface and limit.",
                &["surface", "limit"],
            ),
            jobs: Family::new(
                "licensor_background_job_runs_total",
                "Background job runs by job and outcome.",
                &["job", "outcome"],
            ),
            webhook_deliveries: Family::new(
                "licensor_webhook_delivery_attempts_total",
                "Webhook delivery attempts by the status they left the delivery in.",
                &["status"],
            ),
            connections_refused: Counter::default(),
            connections_open: AtomicU64::new(0),
        }
    }
}

impl Metrics {
    /// The text exposition of every metric.
    pub fn render(&self, gauges: Gauges) -> String {
        let (pool, sqlite_commits, license_cache) = (gauges.pool, gauges.sqlite_commits, gauges.license_cache);
        let mut out = String::with_capacity(16 * 1024);
        self.requests.render(&mut out);
        self.validations.render(&mut out);
        self.activations.render(&mut out);
        self.deactivations.render(&mut out);
        self.rate_limited.render(&mut out);
        self.jobs.render(&mut out);
        self.webhook_deliveries.render(&mut out);
        let gauges: [(&str, &str, &str, u64); 7] = [
            (
                "licensor_webhook_queue",
                "gauge",
                "Webhook deliveries waiting to be sent or retried.",
                gauges.webhook_queue,
            ),
            (
                "licensor_connections_open",
                "gauge",
                "Client connections open now.",
                self.connections_open.load(Ordering::Relaxed),
            ),
            (
                "licensor_connections_refused_total",
                "counter",
                "Client connections closed at once because a connection cap was reached.",
                self.connections_refused.get(),
            ),
            (
                "licensor_password_checks_waiting",
                "gauge",
                "Password checks waiting for a slot (their concurrency is capped).",
                gauges.password_checks_waiting,
            ),
            ("licensor_db_connections_open", "gauge", "Database connections in the pool.", u64::from(pool.0)),
            ("licensor_db_connections_idle", "gauge", "Idle database connections in the pool.", u64::from(pool.1)),
            ("licensor_db_connections_max", "gauge", "The pool's connection cap.", u64::from(pool.2)),
        ];
        let commits = sqlite_commits.map(|(commits, transactions)| {
            [
                ("licensor_sqlite_commits_total", "counter", "Commits of SQLite's inline writer.", commits),
                (
                    "licensor_sqlite_transactions_total",
                    "counter",
                    "Write transactions those commits carried (several requests' share a commit under load).",
                    transactions,
                ),
            ]
        });
        let cache = license_cache.map(|(hits, misses, cached)| {
            [
                (
                    "licensor_license_cache_hits_total",
                    "counter",
                    "Validations by key answered from this node's license cache.",
                    hits,
                ),
                (
                    "licensor_license_cache_misses_total",
                    "counter",
                    "Validations by key that read the database (not cached, or the cache not current).",
                    misses,
                ),
                ("licensor_license_cache_entries", "gauge", "Licenses in this node's cache.", cached),
            ]
        });
        let optional = commits.into_iter().flatten().chain(cache.into_iter().flatten());
        for (name, kind, help, value) in gauges.into_iter().chain(optional) {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}");
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_the_text_format() {
        let m = Metrics::default();
        m.validations.inc(&["VALID"]);
        m.validations.inc(&["VALID"]);
        m.validations.inc(&["EXPIRED"]);
        m.activations.inc(&["opswat"]);
        m.requests.with(&["keygen", "/v1/ping", "GET", "200"]).observe(Duration::from_micros(700));
        let text = m.render(Gauges {
            pool: (3, 1, 16),
            password_checks_waiting: 0,
            webhook_queue: 0,
            sqlite_commits: None,
            license_cache: None,
        });
        assert!(text.contains("licensor_validations_total{code=\"VALID\"} 2\n"), "{text}");
        assert!(text.contains("licensor_validations_total{code=\"EXPIRED\"} 1\n"));
        assert!(text.contains("licensor_machine_activations_total{surface=\"opswat\"} 1\n"));
        let labels = "surface=\"keygen\",route=\"/v1/ping\",method=\"GET\",status=\"200\"";
        assert!(text.contains(&format!("licensor_http_request_duration_seconds_bucket{{{labels},le=\"0.0005\"}} 0\n")));
        assert!(text.contains(&format!("licensor_http_request_duration_seconds_bucket{{{labels},le=\"0.001\"}} 1\n")));
        assert!(text.contains(&format!("licensor_http_request_duration_seconds_count{{{labels}}} 1\n")));
        assert!(text.contains("licensor_db_connections_open 3\n"));
        assert_eq!(m.validations.get(&["VALID"]), 2);
    }

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(escape("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    }
}
