//! The state every request shares: the database, the master key, and the caches a node keeps
//! (accounts, unsealed signing keys, validation timestamps waiting to be written).

use std::collections::HashMap;
use std::ops::Deref;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use uuid::Uuid;

use crate::crypto::MasterKey;
use crate::db::Db;
use crate::error::Result;
use crate::model::Account;
use crate::store::accounts;

/// How long a node trusts its cached copy of an account row. Accounts change rarely (name,
/// slug); keys never do.
const ACCOUNT_TTL: Duration = Duration::from_secs(30);

#[derive(Clone)]
pub struct AppState(Arc<Inner>);

pub struct Inner {
    pub db: Db,
    pub master: MasterKey,
    /// The account served under `/v1/…` without an account segment.
    default_account: Option<String>,
    accounts: RwLock<HashMap<String, (Arc<Account>, Instant)>>,
    /// Unsealed signing keys by account: keys never change, and unsealing costs a decryption
    /// and an RSA key parse.
    signing_keys: RwLock<HashMap<Uuid, Arc<crate::crypto::AccountKeys>>>,
    /// Validation timestamps waiting to be written (see [`AppState::flush_touches`]).
    touches: Mutex<HashMap<Uuid, i64>>,
    pub metrics: Arc<crate::metrics::Metrics>,
    /// This node's rate-limit counters and what they limit (none unless configured).
    pub limiter: crate::ratelimit::Limiter,
    pub webhooks: crate::webhooks::Config,
    /// Whether clients reach this node over TLS (console cookies are then `Secure`).
    pub tls: bool,
    /// Whether `/admin` and `/portal` are served (`--no-console` turns them off).
    pub console: bool,
    /// Per account, whether an endpoint subscribes to validation events, and since when known.
    validation_hooks: RwLock<HashMap<Uuid, (bool, Instant)>>,
    /// Validation events waiting to be written (see [`AppState::flush_events`]).
    pending_events: Mutex<Vec<(Uuid, crate::events::Raised)>>,
    /// Licenses validated lately (unless `LICENSOR_LICENSE_CACHE=0`).
    pub license_cache: Option<Arc<crate::license_cache::LicenseCache>>,
}

/// How long a node trusts what it knows of an account's validation subscriptions.
const HOOKS_TTL: Duration = Duration::from_secs(5);
/// Validation events a node holds at most between flushes; beyond, they are dropped (counted).
const MAX_PENDING_EVENTS: usize = 100_000;

impl Deref for AppState {
    type Target = Inner;
    fn deref(&self) -> &Inner {
        &self.0
    }
}

impl AppState {
    pub fn new(db: Db, master: MasterKey) -> Self {
        Self::with_default_account(db, master, None)
    }

    /// `default_account` (id or slug) is the account `/v1/…` routes without an account segment
    /// address; when `None`, they address the only account if there is exactly one.
    pub fn with_default_account(db: Db, master: MasterKey, default_account: Option<String>) -> Self {
        let license_cache = crate::license_cache::capacity_from_env()
            .map(|n| Arc::new(crate::license_cache::LicenseCache::with_capacity(n)));
        AppState(Arc::new(Inner {
            db,
            master,
            default_account,
            accounts: RwLock::default(),
            signing_keys: RwLock::default(),
            touches: Mutex::default(),
            metrics: Arc::default(),
            limiter: crate::ratelimit::Limiter::new(crate::ratelimit::Config::default()),
            webhooks: crate::webhooks::Config::default(),
            tls: false,
            console: true,
            validation_hooks: RwLock::default(),
            pending_events: Mutex::default(),
            license_cache,
        }))
    }

    /// The same state without request metrics (`--metrics false`); only before it is shared.
    pub fn without_request_metrics(mut self) -> Self {
        match Arc::get_mut(&mut self.0) {
            Some(inner) => {
                inner.metrics = Arc::new(crate::metrics::Metrics { record_requests: false, ..Default::default() })
            }
            None => tracing::error!("metrics switched off after the state was shared: ignored"),
        }
        self
    }

    /// The same state with these rate limits; only before the state is shared.
    pub fn with_rate_limits(mut self, config: crate::ratelimit::Config) -> Self {
        match Arc::get_mut(&mut self.0) {
            Some(inner) => inner.limiter = crate::ratelimit::Limiter::new(config),
            None => tracing::error!("rate limits set after the state was shared: ignored"),
        }
        self
    }

    /// The same state with these webhook settings; only before the state is shared.
    pub fn with_webhooks(mut self, config: crate::webhooks::Config) -> Self {
        match Arc::get_mut(&mut self.0) {
            Some(inner) => inner.webhooks = config,
            None => tracing::error!("webhook settings set after the state was shared: ignored"),
        }
        self
    }

    /// The same state, marked as served over TLS; only before the state is shared.
    pub fn with_tls(mut self, tls: bool) -> Self {
        match Arc::get_mut(&mut self.0) {
            Some(inner) => inner.tls = tls,
            None => tracing::error!("TLS marked after the state was shared: ignored"),
        }
        self
    }

    /// The same state without the console and portal; only before the state is shared.
    pub fn without_console(mut self) -> Self {
        match Arc::get_mut(&mut self.0) {
            Some(inner) => inner.console = false,
            None => tracing::error!("console switched off after the state was shared: ignored"),
        }
        self
    }

    /// The account for single-account routes.
    pub async fn default_account(&self) -> Result<Option<Arc<Account>>> {
        if let Some(id) = &self.default_account {
            return self.account(id).await;
        }
        const KEY: &str = "\0only";
        if let Ok(cache) = self.accounts.read() {
            if let Some((row, at)) = cache.get(KEY) {
                if at.elapsed() < ACCOUNT_TTL {
                    return Ok(Some(row.clone()));
                }
            }
        }
        let Some(row) = accounts::find_only(&self.db).await? else { return Ok(None) };
        let row = Arc::new(row);
        if let Ok(mut cache) = self.accounts.write() {
            cache.insert(KEY.to_string(), (row.clone(), Instant::now()));
        }
        Ok(Some(row))
    }

    /// The account addressed by `id_or_slug`, from a short-lived cache.
    pub async fn account(&self, id_or_slug: &str) -> Result<Option<Arc<Account>>> {
        // No id or slug holds a NUL; PostgreSQL would refuse to even look.
        if id_or_slug.contains('\0') {
            return Ok(None);
        }
        if let Ok(cache) = self.accounts.read() {
            if let Some((row, at)) = cache.get(id_or_slug) {
                if at.elapsed() < ACCOUNT_TTL {
                    return Ok(Some(row.clone()));
                }
            }
        }
        let Some(row) = accounts::find(&self.db, id_or_slug).await? else {
            return Ok(None);
        };
        let row = Arc::new(row);
        if let Ok(mut cache) = self.accounts.write() {
            if cache.len() > 10_000 {
                cache.clear();
            }
            cache.insert(id_or_slug.to_string(), (row.clone(), Instant::now()));
        }
        Ok(Some(row))
    }

    /// The account's unsealed signing keys.
    pub fn signing_keys(&self, account: &Account) -> anyhow::Result<Arc<crate::crypto::AccountKeys>> {
        if let Some(k) = self.signing_keys.read().ok().and_then(|m| m.get(&account.id).cloned()) {
            return Ok(k);
        }
        let keys = Arc::new(crate::crypto::AccountKeys::for_account(&self.master, account)?);
        if let Ok(mut m) = self.signing_keys.write() {
            m.insert(account.id, keys.clone());
        }
        Ok(keys)
    }

    pub fn forget_accounts(&self) {
        if let Ok(mut cache) = self.accounts.write() {
            cache.clear();
        }
    }

    /// Notes that a license was validated now. Validation stays read-only on its hot path; the
    /// timestamps are written in batches by [`flush_touches`](Self::flush_touches).
    pub fn touch_validated(&self, license: Uuid, at: i64) {
        if let Ok(mut t) = self.touches.lock() {
            let e = t.entry(license).or_insert(at);
            *e = (*e).max(at);
        }
    }

    /// Writes pending validation timestamps. Called every second and at shutdown.
    pub async fn flush_touches(&self) -> Result<()> {
        let pending: Vec<(Uuid, i64)> = match self.touches.lock() {
            Ok(mut t) => t.drain().collect(),
            Err(_) => return Ok(()),
        };
        if let Err(e) = crate::store::licenses::touch_validated(&self.db, &pending).await {
            // Put them back so the next flush retries.
            if let Ok(mut t) = self.touches.lock() {
                for (id, at) in pending {
                    let v = t.entry(id).or_insert(at);
                    *v = (*v).max(at);
                }
            }
            return Err(e);
        }
        Ok(())
    }

    /// Whether an endpoint of `account` subscribes to validation events (cached briefly: a
    /// validation must not query for it every time).
    async fn validations_hooked(&self, account: Uuid) -> Result<bool> {
        if let Some((hooked, at)) = self.validation_hooks.read().ok().and_then(|m| m.get(&account).copied()) {
            if at.elapsed() < HOOKS_TTL {
                return Ok(hooked);
            }
        }
        let hooked = crate::store::webhooks::subscribes_to_validations(&self.db, account).await?;
        if let Ok(mut m) = self.validation_hooks.write() {
            if m.len() > 10_000 {
                m.clear();
            }
            m.insert(account, (hooked, Instant::now()));
        }
        Ok(hooked)
    }

    /// Forgets what this node knows of an account's subscriptions (its endpoints changed).
    pub fn forget_hooks(&self, account: Uuid) {
        if let Ok(mut m) = self.validation_hooks.write() {
            m.remove(&account);
        }
    }

    /// Raises a validation's event when an endpoint wants it (or `--log-validations` is on). A validation writes nothing on
    /// its hot path: the event is written with the next batch (within a second), so a crash
    /// in that second loses it, unlike events of changes, which commit with the change.
    pub async fn note_validation(
        &self,
        l: &crate::model::License,
        valid: bool,
        meta: impl FnOnce() -> serde_json::Value,
    ) -> Result<()> {
        if !self.webhooks.log_validations && !self.validations_hooked(l.account_id).await? {
            return Ok(());
        }
        let raised = crate::events::Raised::validation(l, valid, meta());
        if let Ok(mut pending) = self.pending_events.lock() {
            if pending.len() < MAX_PENDING_EVENTS {
                pending.push((l.account_id, raised));
            } else {
                self.metrics.jobs.inc(&["validation_events", "dropped"]);
            }
        }
        Ok(())
    }

    /// Writes pending validation events, one transaction per account.
    pub async fn flush_events(&self) -> Result<()> {
        let pending: Vec<(Uuid, crate::events::Raised)> = match self.pending_events.lock() {
            Ok(mut p) => std::mem::take(&mut *p),
            Err(_) => return Ok(()),
        };
        let mut by_account: HashMap<Uuid, Vec<crate::events::Raised>> = HashMap::new();
        for (account, raised) in pending {
            by_account.entry(account).or_default().push(raised);
        }
        for (account, raised) in by_account {
            if let Err(e) = crate::store::events::record(&self.db, account, &raised).await {
                if let Ok(mut p) = self.pending_events.lock() {
                    p.extend(raised.into_iter().map(|r| (account, r)));
                }
                return Err(e);
            }
        }
        Ok(())
    }
}
