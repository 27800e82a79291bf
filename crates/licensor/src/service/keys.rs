//! Key pools, as Keygen's `keys`: a vendor loads keys ahead of time into a policy that uses a
//! pool (printed on boxes, say), and each license created under that policy takes the newest.
//! Keys are checked once, here, whichever way they come in.

use uuid::Uuid;

use super::licenses::MIN_CREDENTIAL_KEY_LEN;
use crate::db::Db;
use crate::error::{taken, Error, Result};
use crate::events::Raised;
use crate::model::{Key, Policy};
use crate::store::{keys, licenses};
use crate::time;

const MIN_LEN: usize = 8;
const MAX_LEN: usize = 1024;

/// What a pool key must be: 8 to 1024 characters (16 under a policy whose keys authenticate),
/// not a reserved word, not a UUID, and not a license key of the account already.
async fn check(db: &Db, account: Uuid, policy: &Policy, key: &str) -> Result<()> {
    if key.trim().is_empty() {
        return Err(Error::invalid_attr("key", "can't be blank", "KEY_MISSING"));
    }
    if key.len() < MIN_LEN {
        return Err(Error::invalid_attr(
            "key",
            format!("is too short (minimum is {MIN_LEN} characters)"),
            "KEY_TOO_SHORT",
        ));
    }
    if key.len() > MAX_LEN {
        return Err(Error::invalid_attr(
            "key",
            format!("is too long (maximum is {MAX_LEN} characters)"),
            "KEY_TOO_LONG",
        ));
    }
    crate::domain::keys::check_custom_key(key)?;
    if policy.rules.0.allows_license_auth() && key.len() < MIN_CREDENTIAL_KEY_LEN {
        return Err(Error::invalid_attr(
            "key",
            format!(
                "is too short for a policy whose keys authenticate (minimum is {MIN_CREDENTIAL_KEY_LEN} characters)"
            ),
            "KEY_TOO_SHORT",
        ));
    }
    if licenses::find_by_key(db, account, key).await?.is_some() {
        return Err(Error::invalid_attr("key", "is already being used as a license's key", "KEY_CONFLICT"));
    }
    Ok(())
}

/// Adds `key` to `policy`'s pool; the policy must use one (`POLICY_NOT_SUPPORTED`).
pub async fn create(db: &Db, policy: &Policy, key: String) -> Result<Key> {
    if !policy.rules.0.use_pool {
        return Err(Error::invalid_rel("policy", "cannot be added to an unpooled policy", "POLICY_NOT_SUPPORTED"));
    }
    check(db, policy.account_id, policy, &key).await?;
    let now = time::now_ms();
    let k = Key {
        id: Uuid::new_v4(),
        account_id: policy.account_id,
        product_id: policy.product_id,
        policy_id: policy.id,
        key,
        created_at: now,
        updated_at: now,
    };
    keys::insert(db, &k, &[Raised::key("key.created", &k)]).await.map_err(|e| taken(e, "key", "KEY_TAKEN"))?;
    Ok(k)
}

/// Changes a pooled key's text (`policy` is its policy).
pub async fn update(db: &Db, policy: &Policy, k: &Key, key: String) -> Result<Key> {
    if key != k.key {
        check(db, k.account_id, policy, &key).await?;
    }
    let after = Key { key, updated_at: time::now_ms(), ..k.clone() };
    keys::update(db, &after, &[Raised::key("key.updated", &after)]).await.map_err(|e| taken(e, "key", "KEY_TAKEN"))?;
    Ok(after)
}

pub async fn delete(db: &Db, k: &Key) -> Result<()> {
    if !keys::delete(db, k, &[Raised::key("key.deleted", k)]).await? {
        return Err(Error::not_found("key", k.id.to_string()));
    }
    Ok(())
}

/// Takes the newest key out of `policy`'s pool and returns it (Keygen's pop).
pub async fn pop(db: &Db, policy: &Policy) -> Result<Key> {
    if !policy.rules.0.use_pool {
        return Err(pool_error("pool is not supported"));
    }
    keys::pop(db, policy.id, |k| vec![Raised::key("policy.pool.popped", k)])
        .await?
        .ok_or_else(|| pool_error("pool is empty"))
}

/// Keygen answers a pool it cannot pop from with a 422 on the pool, without a code.
fn pool_error(detail: &'static str) -> Error {
    Error::Unprocessable {
        detail: detail.into(),
        location: crate::error::Source::Pointer("/data/relationships/pool".into()),
    }
}
