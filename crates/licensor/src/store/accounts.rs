//! Accounts: the tenants.

use uuid::Uuid;

use crate::db::{BeginWrite, Db};
use crate::db_run;
use crate::error::Result;
use crate::model::Account;

const FIND_BY_ID: &str = "SELECT id, slug, name, protected, ed25519_public, ed25519_secret, rsa_public, rsa_secret, ecdsa_public, ecdsa_secret, created_at, updated_at FROM accounts WHERE id = $1";
const FIND_BY_SLUG: &str = "SELECT id, slug, name, protected, ed25519_public, ed25519_secret, rsa_public, rsa_secret, ecdsa_public, ecdsa_secret, created_at, updated_at FROM accounts WHERE slug = $1";

/// Finds an account by UUID or by slug.
pub async fn find(db: &Db, id_or_slug: &str) -> Result<Option<Account>> {
    let row = if let Ok(id) = Uuid::parse_str(id_or_slug) {
        db_run!(db, |pool| sqlx::query_as::<_, Account>(FIND_BY_ID).bind(id).fetch_optional(pool).await?)
    } else {
        db_run!(db, |pool| sqlx::query_as::<_, Account>(FIND_BY_SLUG)
            .bind(id_or_slug.to_ascii_lowercase())
            .fetch_optional(pool)
            .await?)
    };
    Ok(row)
}

/// The account, when the database holds exactly one.
pub async fn find_only(db: &Db) -> Result<Option<Account>> {
    const SQL: &str = "SELECT id, slug, name, protected, ed25519_public, ed25519_secret, rsa_public, rsa_secret, ecdsa_public, ecdsa_secret, created_at, updated_at FROM accounts LIMIT 2";
    let mut rows = db_run!(db, |pool| sqlx::query_as::<_, Account>(SQL).fetch_all(pool).await?);
    Ok(if rows.len() == 1 { rows.pop() } else { None })
}

pub async fn count(db: &Db) -> Result<i64> {
    Ok(db_run!(db, |pool| sqlx::query_scalar::<_, i64>("SELECT COUNT(*) FROM accounts").fetch_one(pool).await?))
}

const INSERT: &str = "INSERT INTO accounts (id, slug, name, protected, ed25519_public, ed25519_secret, rsa_public, rsa_secret, ecdsa_public, ecdsa_secret, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $11)";

pub async fn insert(db: &Db, a: &Account) -> Result<()> {
    db_run!(db, |pool| sqlx::query(INSERT)
        .bind(a.id)
        .bind(&a.slug)
        .bind(&a.name)
        .bind(a.protected)
        .bind(&a.ed25519_public)
        .bind(&a.ed25519_secret)
        .bind(&a.rsa_public)
        .bind(&a.rsa_secret)
        .bind(&a.ecdsa_public)
        .bind(&a.ecdsa_secret)
        .bind(a.created_at)
        .execute(pool)
        .await?
        .rows_affected());
    Ok(())
}

/// Accounts created before ECDSA keys existed.
pub async fn without_ecdsa(db: &Db) -> Result<Vec<Uuid>> {
    const SQL: &str = "SELECT id FROM accounts WHERE ecdsa_secret IS NULL";
    Ok(db_run!(db, |pool| sqlx::query_scalar::<_, Uuid>(SQL).fetch_all(pool).await?))
}

/// Sets the ECDSA pair unless another node did first.
pub async fn set_ecdsa(db: &Db, id: Uuid, public: &str, sealed: &[u8]) -> Result<()> {
    const SQL: &str = "UPDATE accounts SET ecdsa_public = $2, ecdsa_secret = $3 WHERE id = $1 AND ecdsa_secret IS NULL";
    db_run!(db, |pool| sqlx::query(SQL).bind(id).bind(public).bind(sealed).execute(pool).await?.rows_affected());
    Ok(())
}

const UPDATE: &str = "UPDATE accounts SET name = $2, slug = $3, protected = $4, updated_at = $5 WHERE id = $1";

pub async fn update(db: &Db, a: &Account) -> Result<()> {
    db_run!(db, |pool| sqlx::query(UPDATE)
        .bind(a.id)
        .bind(&a.name)
        .bind(&a.slug)
        .bind(a.protected)
        .bind(a.updated_at)
        .execute(pool)
        .await?
        .rows_affected());
    Ok(())
}

/// An account's sealed private keys, for re-sealing under a new master key.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct SealedKeys {
    pub id: Uuid,
    pub ed25519: Vec<u8>,
    pub rsa: Vec<u8>,
    pub ecdsa: Option<Vec<u8>>,
}

/// Every account's sealed keys.
pub async fn sealed_keys(db: &Db) -> Result<Vec<SealedKeys>> {
    const SQL: &str =
        "SELECT id, ed25519_secret AS ed25519, rsa_secret AS rsa, ecdsa_secret AS ecdsa FROM accounts ORDER BY id";
    Ok(db_run!(db, |pool| sqlx::query_as::<_, SealedKeys>(SQL).fetch_all(pool).await?))
}

/// Replaces every account's sealed keys and the master-key check, in one transaction: a
/// rotation applies whole or not at all. `Ok(false)` when the accounts changed meanwhile (an
/// account was created during the rotation).
pub async fn reseal_all(
    db: &Db,
    keys: &[SealedKeys],
    factors: &[(Uuid, Vec<u8>)],
    check_name: &str,
    check: &[u8],
) -> Result<bool> {
    const COUNT: &str = "SELECT COUNT(*) FROM accounts";
    const UPDATE: &str = "UPDATE accounts SET ed25519_secret = $2, rsa_secret = $3, ecdsa_secret = $4 WHERE id = $1";
    const COUNT_FACTORS: &str = "SELECT COUNT(*) FROM second_factors";
    const UPDATE_FACTOR: &str = "UPDATE second_factors SET secret = $2 WHERE id = $1";
    const CHECK: &str =
        "INSERT INTO settings (name, value) VALUES ($1, $2) ON CONFLICT (name) DO UPDATE SET value = excluded.value";
    db_run!(db, |pool| {
        let mut tx = pool.begin_write().await?;
        for k in keys {
            sqlx::query(UPDATE).bind(k.id).bind(&k.ed25519).bind(&k.rsa).bind(&k.ecdsa).execute(&mut *tx).await?;
        }
        for (id, secret) in factors {
            sqlx::query(UPDATE_FACTOR).bind(id).bind(secret).execute(&mut *tx).await?;
        }
        if sqlx::query_scalar::<_, i64>(COUNT).fetch_one(&mut *tx).await? != keys.len() as i64
            || sqlx::query_scalar::<_, i64>(COUNT_FACTORS).fetch_one(&mut *tx).await? != factors.len() as i64
        {
            tx.rollback().await?;
            return Ok(false);
        }
        sqlx::query(CHECK).bind(check_name).bind(check).execute(&mut *tx).await?;
        tx.commit().await?;
        Ok(true)
    })
}
