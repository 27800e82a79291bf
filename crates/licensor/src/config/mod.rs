//! Server settings: every one a CLI flag and a `LICENSOR_` environment variable.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Args;

pub mod file;

#[derive(Clone, Args)]
pub struct DatabaseArgs {
    /// Database URL: `sqlite:PATH` (default: an SQLite file in the data folder) or
    /// `postgres://USER@HOST/DB` for several nodes sharing one database.
    #[arg(long, env = "LICENSOR_DATABASE_URL")]
    pub database_url: Option<String>,

    /// PostgreSQL schema to use (created if missing). Lets several deployments share a database.
    #[arg(long, env = "LICENSOR_DATABASE_SCHEMA")]
    pub database_schema: Option<String>,

    /// Folder for the SQLite database, the generated master key and first-run credentials.
    #[arg(long, env = "LICENSOR_DATA_DIR", default_value = "licensor-data")]
    pub data_dir: PathBuf,

    /// 64 hex characters sealing account private keys at rest. Every node sharing a database
    /// must use the same key. When unset, one is generated into `<data-dir>/master.key`.
    #[arg(long, env = "LICENSOR_MASTER_KEY", hide_env_values = true)]
    pub master_key: Option<String>,
}

impl DatabaseArgs {
    pub fn database_url(&self) -> String {
        self.database_url.clone().unwrap_or_else(|| format!("sqlite:{}", self.data_dir.join("licensor.db").display()))
    }

    /// The SQLite database file, when the database is SQLite.
    pub fn sqlite_path(&self) -> Option<PathBuf> {
        crate::db::sqlite_path(&self.database_url())
    }

    /// The master key without opening the database: the one given, else `<data-dir>/master.key`
    /// if it exists.
    pub fn known_master_key(&self) -> anyhow::Result<Option<crate::crypto::MasterKey>> {
        let path = self.master_key_path();
        Ok(match &self.master_key {
            Some(hex) => Some(crate::crypto::MasterKey::from_hex(hex)?),
            None if path.exists() => Some(crate::crypto::MasterKey::load(&path)?),
            None => None,
        })
    }

    /// Where the generated master key lives when none is given.
    pub fn master_key_path(&self) -> PathBuf {
        self.data_dir.join("master.key")
    }

    /// The master key for `db`: the one given, else `<data-dir>/master.key`, created only for a
    /// database that holds no account yet (a lost key is an error, never silently replaced),
    /// and checked to open the database's keys.
    pub async fn master_key(&self, db: &crate::db::Db) -> anyhow::Result<crate::crypto::MasterKey> {
        let path = self.master_key_path();
        let key = match &self.master_key {
            Some(hex) => crate::crypto::MasterKey::from_hex(hex)?,
            None if path.exists() => crate::crypto::MasterKey::load(&path)?,
            None if crate::store::accounts::count(db).await? > 0 => anyhow::bail!(
                "{} is missing, and this database holds accounts sealed with it: restore the file or set \
                 LICENSOR_MASTER_KEY; a new key could not open them",
                path.display()
            ),
            None => crate::crypto::MasterKey::load_or_create(&path)?,
        };
        crate::bootstrap::check_master_key(db, &key).await?;
        Ok(key)
    }

    pub async fn connect(&self) -> anyhow::Result<crate::db::Db> {
        let db = self.open().await?;
        db.migrate().await?;
        Ok(db)
    }

    /// The database as it is, unmigrated: for commands that must not change the schema under
    /// a running server of another release (`licensor backup`).
    pub async fn open(&self) -> anyhow::Result<crate::db::Db> {
        // The data folder holds the master key, first-run credentials and (by default) the
        // database: the server's user alone may read it. A missing one is created private
        // when something is first written there.
        if self.data_dir.exists() {
            crate::fsutil::private_dir(&self.data_dir)?;
        }
        crate::db::Db::connect(&self.database_url(), self.database_schema.as_deref()).await
    }
}

/// How `licensor serve` listens and what it lets clients hold.
#[derive(Clone, Args)]
pub struct ServeArgs {
    /// Address to listen on.
    #[arg(long, env = "LICENSOR_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,

    /// Account (id or slug) served at `/v1/…` without the `accounts/{account}` segment, as
    /// self-hosted Keygen does. Defaults to the only account, when there is one.
    #[arg(long, env = "LICENSOR_ACCOUNT")]
    pub account: Option<String>,

    /// PEM certificate chain: serve HTTPS (with --tls-key). Re-read on SIGHUP and when the
    /// file changes.
    #[arg(long, env = "LICENSOR_TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,

    /// PEM private key of --tls-cert.
    #[arg(long, env = "LICENSOR_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,

    /// Record request metrics (latency histograms by route); `false` leaves `/metrics` with
    /// the other counters only. For measuring what metrics cost (BENCHMARKS.md).
    #[arg(long, env = "LICENSOR_METRICS", default_value_t = true, action = clap::ArgAction::Set)]
    pub metrics: bool,

    /// A second address answering `/metrics`, `/healthz` and `/readyz` without credentials
    /// (keep it private). On the main listener `/metrics` wants an admin token.
    #[arg(long, env = "LICENSOR_METRICS_LISTEN")]
    pub metrics_listen: Option<SocketAddr>,

    /// Open client connections, all clients together; kept below the open-file limit.
    #[arg(long, env = "LICENSOR_MAX_CONNECTIONS", default_value_t = 4096)]
    pub max_connections: usize,

    /// Open connections from one client address; 0 for none (a reverse proxy in front makes
    /// every client one address).
    #[arg(long, env = "LICENSOR_MAX_CONNECTIONS_PER_IP", default_value_t = 256)]
    pub max_connections_per_ip: usize,

    /// Time a client has to send a request's headers, counted from connecting or from the end
    /// of its previous response: idle keep-alive connections close after it too.
    #[arg(long, env = "LICENSOR_IDLE_TIMEOUT", default_value = "20s", value_parser = parse_duration)]
    pub idle_timeout: Duration,

    /// On SIGTERM or Ctrl-C, how long in-flight requests may take to finish.
    #[arg(long, env = "LICENSOR_SHUTDOWN_TIMEOUT", default_value = "30s", value_parser = parse_duration)]
    pub shutdown_timeout: Duration,

    /// Requests per account, client address and credential: comma-separated LIMIT/PERIOD
    /// windows, or `off`.
    #[arg(long, env = "LICENSOR_RATE_LIMITS", default_value = "100/1s,3000/1m", value_parser = Rates::parse)]
    pub rate_limits: Rates,

    /// Requests per account and client address whatever the credential (an IPv6 client by its
    /// /64): comma-separated LIMIT/PERIOD windows, or `off`.
    #[arg(long, env = "LICENSOR_ADDRESS_RATE_LIMITS", default_value = "1000/1s,30000/1m", value_parser = Rates::parse)]
    pub address_rate_limits: Rates,

    /// Password-authenticated requests (`POST /tokens`, and `/api/licensing/v1` with an email
    /// and password) per account, client address and email, or `off`.
    #[arg(long, env = "LICENSOR_LOGIN_RATE_LIMIT", default_value = "10/1m", value_parser = MaybeRate::parse)]
    pub login_rate_limit: MaybeRate,

    /// Password updates and resets per account, client address and user, or `off`.
    #[arg(long, env = "LICENSOR_PASSWORD_CHANGE_RATE_LIMIT", default_value = "5/10m", value_parser = MaybeRate::parse)]
    pub password_change_rate_limit: MaybeRate,

    /// Machine activations and deactivations per license, on every surface, or `off`.
    #[arg(long, env = "LICENSOR_LICENSE_CHANGE_RATE_LIMIT", default_value = "100/1h", value_parser = MaybeRate::parse)]
    pub license_change_rate_limit: MaybeRate,

    /// Reverse proxies (addresses or CIDR blocks, comma-separated) whose `X-Forwarded-For`
    /// names the client for rate limits.
    #[arg(long, env = "LICENSOR_TRUSTED_PROXIES", value_delimiter = ',')]
    pub trusted_proxies: Vec<crate::ratelimit::IpNet>,

    /// Serve neither the admin console (`/admin`) nor the customer portal (`/portal`).
    #[arg(long, env = "LICENSOR_NO_CONSOLE", default_value_t = false, action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true")]
    pub no_console: bool,

    /// Let webhook endpoints use plain http, IP literals, loopback and private networks (tests,
    /// intranet receivers). Without it only https URLs with public host names are accepted,
    /// and addresses are checked again after DNS resolution when delivering.
    #[arg(long, env = "LICENSOR_ALLOW_INSECURE_WEBHOOKS", default_value_t = false, action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true")]
    pub allow_insecure_webhooks: bool,

    /// Send no webhooks from this node: it still writes events and deliveries to the outbox,
    /// and another node (one with delivery on) sends them. For deployments that keep API
    /// nodes and delivery nodes apart.
    #[arg(long, env = "LICENSOR_NO_WEBHOOK_DELIVERY", default_value_t = false, action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true")]
    pub no_webhook_delivery: bool,

    /// How long one webhook delivery may take, connect to last byte.
    #[arg(long, env = "LICENSOR_WEBHOOK_TIMEOUT", default_value = "15s", value_parser = parse_duration)]
    pub webhook_timeout: Duration,

    /// Retries of a failing webhook delivery before it is FAILED.
    #[arg(long, env = "LICENSOR_WEBHOOK_RETRIES", default_value_t = 15)]
    pub webhook_retries: u32,

    /// The unit of the webhook back-off: retry n waits n⁴ units, plus jitter.
    #[arg(long, env = "LICENSOR_WEBHOOK_BACKOFF", default_value = "1s", value_parser = parse_duration)]
    pub webhook_backoff: Duration,

    /// Record every validation in the event log (the console's validation history), not only
    /// when a webhook endpoint subscribes to validation events. Costs one batched insert per
    /// validation.
    #[arg(long, env = "LICENSOR_LOG_VALIDATIONS", default_value_t = false, action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true")]
    pub log_validations: bool,

    /// How long the event log and finished webhook deliveries are kept.
    #[arg(long, env = "LICENSOR_EVENT_RETENTION", default_value = "30d", value_parser = parse_duration)]
    pub event_retention: Duration,
}

/// A list of request rates (`100/1s,3000/1m`), or none (`off`).
#[derive(Clone, Debug)]
pub struct Rates(pub Vec<crate::ratelimit::Rate>);

impl Rates {
    fn parse(s: &str) -> Result<Rates, String> {
        crate::ratelimit::parse_rates(s).map(Rates)
    }
}

/// One rate (`10/1m`), or none (`off`).
#[derive(Clone, Debug)]
pub struct MaybeRate(pub Option<crate::ratelimit::Rate>);

impl MaybeRate {
    fn parse(s: &str) -> Result<MaybeRate, String> {
        crate::ratelimit::parse_rate(s).map(MaybeRate)
    }
}

impl ServeArgs {
    pub fn rate_limits(&self) -> crate::ratelimit::Config {
        crate::ratelimit::Config {
            requests: self.rate_limits.0.clone(),
            addresses: self.address_rate_limits.0.clone(),
            logins: self.login_rate_limit.0,
            password_changes: self.password_change_rate_limit.0,
            license_changes: self.license_change_rate_limit.0,
            trusted_proxies: self.trusted_proxies.clone(),
        }
    }

    pub fn webhooks(&self) -> crate::webhooks::Config {
        crate::webhooks::Config {
            allow_insecure: self.allow_insecure_webhooks,
            deliver: !self.no_webhook_delivery,
            timeout: self.webhook_timeout,
            retries: i64::from(self.webhook_retries),
            backoff_unit: self.webhook_backoff,
            retention: self.event_retention,
            log_validations: self.log_validations,
        }
    }

    pub fn limits(&self) -> crate::server::Limits {
        crate::server::Limits {
            max: self.max_connections.max(1),
            per_ip: self.max_connections_per_ip,
            header_timeout: self.idle_timeout,
            shutdown_timeout: self.shutdown_timeout,
        }
    }
}

/// `30s`, `5m`, `1h`, `250ms`, or a number of seconds.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (n, unit) = s.split_at(split);
    let n: u64 = n.parse().map_err(|_| format!("{s:?} is not a duration (like 30s, 5m, 250ms, 30d)"))?;
    match unit.trim() {
        "" | "s" => Ok(Duration::from_secs(n)),
        "ms" => Ok(Duration::from_millis(n)),
        "m" => Ok(Duration::from_secs(n * 60)),
        "h" => Ok(Duration::from_secs(n * 3600)),
        "d" => Ok(Duration::from_secs(n * 86_400)),
        _ => Err(format!("{s:?}: the unit must be ms, s, m, h or d")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("5m"), Ok(Duration::from_secs(300)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("7"), Ok(Duration::from_secs(7)));
        assert_eq!(parse_duration("7d"), Ok(Duration::from_secs(7 * 86_400)));
        assert!(parse_duration("7w").is_err());
        assert!(parse_duration("s").is_err());
    }
}
