//! Issuing licenses: the one path every surface uses to create a license, so keys, expiry,
//! uniqueness and signing follow the same rules wherever a license comes from.

use serde_json::Value;
use sqlx::types::Json;
use uuid::Uuid;

use super::license;
use crate::db::{is_unique_violation, Db};
use crate::error::{Error, Result};
use crate::model::{Account, License, Policy};
use crate::store::licenses;
use crate::time;

/// What a caller may choose for a new license; everything else comes from the policy.
#[derive(Debug, Default, Clone)]
pub struct NewLicense {
    pub id: Option<Uuid>,
    pub name: Option<String>,
    pub key: Option<String>,
    /// `Some(None)` asks for no expiry even when the policy has a duration.
    pub expiry: Option<Option<i64>>,
    pub owner: Option<Uuid>,
    pub group: Option<Uuid>,
    pub protected: Option<bool>,
    pub suspended: bool,
    pub max_machines: Option<i64>,
    pub max_processes: Option<i64>,
    pub max_users: Option<i64>,
    pub max_cores: Option<i64>,
    pub max_uses: Option<i64>,
    pub max_memory: Option<i64>,
    pub max_disk: Option<i64>,
    pub metadata: Option<Value>,
    /// The owner's email, for the seed of signed keys.
    pub owner_email: Option<String>,
}

/// The product's policy called `name`, created on first use as a floating policy with
/// `metadata`. Surfaces that sell by a single limit set on each license (the licensing API's
/// types, the core API's protocols) issue under such policies, so only that limit applies.
pub async fn floating_policy(
    db: &Db,
    account: uuid::Uuid,
    product: uuid::Uuid,
    name: &str,
    metadata: Value,
) -> Result<Policy> {
    let now = time::now_ms();
    let policy = Policy {
        id: Uuid::new_v4(),
        account_id: account,
        product_id: product,
        name: name.to_string(),
        rules: Json(crate::model::PolicyRules { floating: true, ..Default::default() }),
        metadata: Json(metadata),
        created_at: now,
        updated_at: now,
    };
    crate::store::policies::find_or_insert_named(db, &policy).await
}

impl NewLicense {
    /// The license-level limit of `metric`.
    pub fn limit_mut(&mut self, metric: super::projection::Metric) -> &mut Option<i64> {
        use super::projection::Metric;
        match metric {
            Metric::Machines => &mut self.max_machines,
            Metric::Cores => &mut self.max_cores,
            Metric::Users => &mut self.max_users,
            Metric::Processes => &mut self.max_processes,
            Metric::Uses => &mut self.max_uses,
        }
    }
}

/// The longest key, custom or signed. Keys are looked up through unique B-tree indexes, whose
/// entries PostgreSQL caps at about 2.7 kB; a longer key would fail there as a server error.
pub const MAX_KEY_LEN: usize = 2048;

fn key_too_long() -> Error {
    Error::invalid_attr("key", format!("is too long (maximum is {MAX_KEY_LEN} characters)"), "KEY_TOO_LONG")
}

/// Keys Keygen refuses because they would shadow routes.
const RESERVED_KEYS: &[&str] = &["actions", "action"];

pub fn check_custom_key(key: &str) -> Result<()> {
    if key.len() < 6 {
        return Err(Error::invalid_attr("key", "is too short (minimum is 6 characters)", "KEY_TOO_SHORT"));
    }
    if key.len() > MAX_KEY_LEN {
        return Err(key_too_long());
    }
    if RESERVED_KEYS.contains(&key.to_ascii_lowercase().as_str()) {
        return Err(Error::invalid_attr("key", "is reserved", "KEY_NOT_ALLOWED"));
    }
    if Uuid::parse_str(key).is_ok() {
        return Err(Error::invalid_attr(
            "key",
            "must not conflict with another license's identifier (UUID)",
            "KEY_CONFLICT",
        ));
    }
    Ok(())
}

/// Creates a license under `policy`. The key is generated (or signed, for signing schemes)
/// unless supplied; expiry follows the policy's duration and expiration basis.
pub async fn issue(
    db: &Db,
    account: &Account,
    master: &crate::crypto::MasterKey,
    policy: &Policy,
    new: NewLicense,
) -> Result<License> {
    let now = time::now_ms();
    let rules = &policy.rules.0;
    let id = new.id.unwrap_or_else(Uuid::new_v4);
    for (attr, v) in [
        ("maxMachines", new.max_machines),
        ("maxProcesses", new.max_processes),
        ("maxUsers", new.max_users),
        ("maxCores", new.max_cores),
        ("maxUses", new.max_uses),
        ("maxMemory", new.max_memory),
        ("maxDisk", new.max_disk),
    ] {
        if let Some(v) = v {
            license::check_limit(attr, v, rules.floating)?;
        }
    }
    let expiry = match new.expiry {
        Some(e) => e,
        None => license::initial_expiry(rules, now),
    };
    let mut row = License {
        id,
        account_id: account.id,
        product_id: policy.product_id,
        policy_id: policy.id,
        owner_id: new.owner,
        group_id: new.group,
        key: String::new(),
        name: new.name,
        expiry,
        suspended: new.suspended,
        // Copied from the policy at creation, as in Keygen: later changes to the policy's flag
        // leave existing licenses as they were.
        protected: Some(new.protected.unwrap_or(rules.protected)),
        uses: 0,
        max_machines: new.max_machines,
        max_processes: new.max_processes,
        max_users: new.max_users,
        max_cores: new.max_cores,
        max_uses: new.max_uses,
        max_memory: new.max_memory,
        max_disk: new.max_disk,
        last_validated_at: None,
        last_check_out_at: None,
        last_check_in_at: rules.require_check_in.then_some(now),
        metadata: Json(match new.metadata {
            Some(m) => super::metadata::accept(m)?,
            None => Value::Object(Default::default()),
        }),
        created_at: now,
        updated_at: now,
        policy_rules: policy.rules.0.clone().into(),
        machines_count: 0,
        machines_cores: 0,
        machines_memory: 0,
        machines_disk: 0,
        users_count: 0,
        owner_banned: false,
    };
    row.key = match (&rules.scheme, new.key) {
        (None, Some(k)) => {
            check_custom_key(&k)?;
            k
        }
        (None, None) => license::generate_key(),
        (Some(scheme), seed) => {
            super::keys::sign_key(*scheme, account, master, policy, &row, seed.as_deref(), new.owner_email.as_deref())?
        }
    };
    if row.key.len() > MAX_KEY_LEN {
        return Err(key_too_long());
    }
    let group_max = match row.group_id {
        Some(g) => crate::store::groups::find(db, account.id, g).await?.and_then(|g| g.max_licenses),
        None => None,
    };
    let inserted = licenses::insert_within_group(db, &row, group_max).await.map_err(|e| {
        if is_unique_violation(&e) {
            if new.id.is_some() && licenses_id_conflict(&e) {
                Error::invalid_attr("id", "has already been taken", "ID_TAKEN")
            } else {
                Error::invalid_attr("key", "has already been taken", "KEY_TAKEN")
            }
        } else {
            Error::Database(e)
        }
    })?;
    if !inserted {
        return Err(Error::invalid_rel(
            "group",
            format!("license count has exceeded maximum allowed by current group ({})", group_max.unwrap_or(0)),
            "GROUP_LICENSE_LIMIT_EXCEEDED",
        ));
    }
    Ok(row)
}

fn licenses_id_conflict(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Database(d) => {
            let msg = d.message();
            msg.contains("licenses_pkey") || msg.contains("licenses.id")
        }
        _ => false,
    }
}
