//! Entitlements, and their attachment to policies and licenses.

use uuid::Uuid;

use crate::db::{BeginWrite, Db};
use crate::db_run;
use crate::error::Result;
use crate::events::Raised;
use crate::model::{Entitlement, Listing, Page};

const FIND: &str = "SELECT id, account_id, name, code, metadata, created_at, updated_at FROM entitlements WHERE account_id = $1 AND (id = $2 OR code = $3)";

/// Finds by UUID or by code.
pub async fn find(db: &Db, account: Uuid, id: &str) -> Result<Option<Entitlement>> {
    let uuid = Uuid::parse_str(id).ok();
    Ok(db_run!(db, |pool| sqlx::query_as::<_, Entitlement>(FIND)
        .bind(account)
        .bind(uuid)
        .bind(id)
        .fetch_optional(pool)
        .await?))
}

/// Which entitlements to list: all of the account's, a policy's, or a license's effective set
/// (its own plus its policy's).
#[derive(Debug, Clone, Copy)]
pub enum Scope {
    Account,
    Policy(Uuid),
    License(Uuid),
}

const LIST: &str = "SELECT id, account_id, name, code, metadata, created_at, updated_at FROM entitlements e WHERE account_id = $1 \
    AND ($2 IS NULL OR id IN (SELECT entitlement_id FROM policy_entitlements WHERE policy_id = $2)) \
    AND ($3 IS NULL OR id IN (SELECT entitlement_id FROM license_entitlements WHERE license_id = $3) \
         OR id IN (SELECT pe.entitlement_id FROM policy_entitlements pe JOIN licenses l ON l.policy_id = pe.policy_id WHERE l.id = $3)) \
    ORDER BY created_at DESC, id DESC LIMIT $4 OFFSET $5";
const COUNT: &str = "SELECT COUNT(*) FROM entitlements e WHERE account_id = $1 \
    AND ($2 IS NULL OR id IN (SELECT entitlement_id FROM policy_entitlements WHERE policy_id = $2)) \
    AND ($3 IS NULL OR id IN (SELECT entitlement_id FROM license_entitlements WHERE license_id = $3) \
         OR id IN (SELECT pe.entitlement_id FROM policy_entitlements pe JOIN licenses l ON l.policy_id = pe.policy_id WHERE l.id = $3))";

pub async fn list(db: &Db, account: Uuid, scope: Scope, page: Page) -> Result<Listing<Entitlement>> {
    let (policy, license) = match scope {
        Scope::Account => (None, None),
        Scope::Policy(p) => (Some(p), None),
        Scope::License(l) => (None, Some(l)),
    };
    db_run!(db, |pool| {
        let rows = sqlx::query_as::<_, Entitlement>(LIST)
            .bind(account)
            .bind(policy)
            .bind(license)
            .bind(page.limit())
            .bind(page.offset())
            .fetch_all(pool)
            .await?;
        let total =
            sqlx::query_scalar::<_, i64>(COUNT).bind(account).bind(policy).bind(license).fetch_one(pool).await?;
        Ok(Listing { rows, total })
    })
}

const CODES_FOR_LICENSE: &str = "SELECT code FROM entitlements WHERE account_id = $1 AND (\
    id IN (SELECT entitlement_id FROM license_entitlements WHERE license_id = $2) OR \
    id IN (SELECT entitlement_id FROM policy_entitlements WHERE policy_id = $3))";

/// The codes of a license's effective entitlements (its own and its policy's).
pub async fn codes_for_license(db: &Db, account: Uuid, license: Uuid, policy: Uuid) -> Result<Vec<String>> {
    Ok(db_run!(db, |pool| sqlx::query_scalar::<_, String>(CODES_FOR_LICENSE)
        .bind(account)
        .bind(license)
        .bind(policy)
        .fetch_all(pool)
        .await?))
}

const INSERT: &str = "INSERT INTO entitlements (id, account_id, name, code, metadata, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7)";

/// Inserts `e`; with `key_range`, only when no other entitlement of the account has an id in it
/// (its legacy key chosen, as an extension's), checked under the account's lock. Returns
/// whether it inserted.
pub async fn insert_keyed(
    db: &Db,
    e: &Entitlement,
    key_range: Option<(Uuid, Uuid)>,
    events: &[Raised],
) -> Result<bool, sqlx::Error> {
    db_run!(db, |pool| {
        let mut tx = pool.begin_write().await?;
        if let Some(range) = key_range {
            if crate::key_range_taken!(tx, "entitlements", e.account_id, range) {
                tx.rollback().await?;
                return Ok(false);
            }
        }
        sqlx::query(INSERT)
            .bind(e.id)
            .bind(e.account_id)
            .bind(&e.name)
            .bind(&e.code)
            .bind(&e.metadata)
            .bind(e.created_at)
            .bind(e.updated_at)
            .execute(&mut *tx)
            .await?;
        crate::write_events!(tx, e.account_id, events);
        tx.commit().await?;
    });
    Ok(true)
}

const UPDATE: &str =
    "UPDATE entitlements SET name = $3, code = $4, metadata = $5, updated_at = $6 WHERE account_id = $1 AND id = $2";

pub async fn update(db: &Db, e: &Entitlement, events: &[Raised]) -> Result<(), sqlx::Error> {
    db_run!(db, |pool| {
        let mut tx = pool.begin_write().await?;
        sqlx::query(UPDATE)
            .bind(e.account_id)
            .bind(e.id)
            .bind(&e.name)
            .bind(&e.code)
            .bind(&e.metadata)
            .bind(e.updated_at)
            .execute(&mut *tx)
            .await?;
        crate::write_events!(tx, e.account_id, events);
        tx.commit().await?;
    });
    Ok(())
}

pub async fn delete(db: &Db, account: Uuid, id: Uuid, events: &[Raised]) -> Result<()> {
    db_run!(db, |pool| {
        let mut tx = pool.begin_write().await?;
        sqlx::query("DELETE FROM entitlements WHERE account_id = $1 AND id = $2")
            .bind(account)
            .bind(id)
            .execute(&mut *tx)
            .await?;
        crate::write_events!(tx, account, events);
        tx.commit().await?;
    });
    Ok(())
}

const FOR_PRODUCT: &str = "SELECT id, account_id, name, code, metadata, created_at, updated_at FROM entitlements WHERE account_id = $1 \
    AND id IN (SELECT pe.entitlement_id FROM policy_entitlements pe JOIN policies p ON p.id = pe.policy_id WHERE p.product_id = $2) \
    ORDER BY created_at, id";

/// The entitlements a product offers: those attached to any of its policies.
pub async fn for_product(db: &Db, account: Uuid, product: Uuid) -> Result<Vec<Entitlement>> {
    Ok(db_run!(db, |pool| sqlx::query_as::<_, Entitlement>(FOR_PRODUCT)
        .bind(account)
        .bind(product)
        .fetch_all(pool)
        .await?))
}

const EFFECTIVE: &str =
    "SELECT id, account_id, name, code, metadata, created_at, updated_at FROM entitlements WHERE account_id = $1 \
    AND (id IN (SELECT entitlement_id FROM license_entitlements WHERE license_id = $2) \
         OR id IN (SELECT entitlement_id FROM policy_entitlements WHERE policy_id = $3)) \
    ORDER BY created_at, id";

/// A license's effective entitlements: its own and its policy's.
pub async fn for_license(db: &Db, account: Uuid, license: Uuid, policy: Uuid) -> Result<Vec<Entitlement>> {
    Ok(db_run!(db, |pool| sqlx::query_as::<_, Entitlement>(EFFECTIVE)
        .bind(account)
        .bind(license)
        .bind(policy)
        .fetch_all(pool)
        .await?))
}

/// Makes `ids` exactly the license's own entitlements.
pub async fn replace_for_license(db: &Db, account: Uuid, license: Uuid, ids: &[Uuid], now: i64) -> Result<()> {
    const CLEAR: &str = "DELETE FROM license_entitlements WHERE account_id = $1 AND license_id = $2";
    const INSERT: &str = "INSERT INTO license_entitlements (account_id, license_id, entitlement_id, created_at) VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING";
    db_run!(db, |pool| {
        let mut tx = pool.begin_write().await?;
        sqlx::query(CLEAR).bind(account).bind(license).execute(&mut *tx).await?;
        for id in ids {
            sqlx::query(INSERT).bind(account).bind(license).bind(id).bind(now).execute(&mut *tx).await?;
        }
        tx.commit().await?;
    });
    Ok(())
}

/// The entitlements attached to a policy or a license itself, with when each was attached.
pub async fn attached(db: &Db, account: Uuid, target: Scope) -> Result<Vec<Uuid>> {
    const POLICY: &str = "SELECT entitlement_id FROM policy_entitlements WHERE account_id = $1 AND policy_id = $2";
    const LICENSE: &str = "SELECT entitlement_id FROM license_entitlements WHERE account_id = $1 AND license_id = $2";
    let (sql, owner) = match target {
        Scope::Policy(p) => (POLICY, p),
        Scope::License(l) => (LICENSE, l),
        Scope::Account => return Ok(Vec::new()),
    };
    Ok(db_run!(db, |pool| sqlx::query_scalar::<_, Uuid>(sql).bind(account).bind(owner).fetch_all(pool).await?))
}

/// Attaches entitlements to a policy or license (`target` picks which), all or none: one
/// attached already is a unique violation (the join's primary key), for the caller to word.
pub async fn attach(db: &Db, account: Uuid, target: Scope, ids: &[Uuid], now: i64, events: &[Raised]) -> Result<()> {
    const POLICY: &str =
        "INSERT INTO policy_entitlements (account_id, policy_id, entitlement_id, created_at) VALUES ($1, $2, $3, $4)";
    const LICENSE: &str =
        "INSERT INTO license_entitlements (account_id, license_id, entitlement_id, created_at) VALUES ($1, $2, $3, $4)";
    let (sql, owner) = match target {
        Scope::Policy(p) => (POLICY, p),
        Scope::License(l) => (LICENSE, l),
        Scope::Account => return Ok(()),
    };
    db_run!(db, |pool| {
        let mut tx = pool.begin_write().await?;
        for id in ids {
            sqlx::query(sql).bind(account).bind(owner).bind(id).bind(now).execute(&mut *tx).await?;
        }
        crate::write_events!(tx, account, events);
        tx.commit().await?;
    });
    Ok(())
}

/// Detaches entitlements, all or nothing: returns false (and changes nothing) when any of them
/// is not directly attached (e.g. inherited from the policy).
pub async fn detach(db: &Db, account: Uuid, target: Scope, ids: &[Uuid], events: &[Raised]) -> Result<bool> {
    const POLICY: &str =
        "DELETE FROM policy_entitlements WHERE account_id = $1 AND policy_id = $2 AND entitlement_id = $3";
    const LICENSE: &str =
        "DELETE FROM license_entitlements WHERE account_id = $1 AND license_id = $2 AND entitlement_id = $3";
    let (sql, owner) = match target {
        Scope::Policy(p) => (POLICY, p),
        Scope::License(l) => (LICENSE, l),
        Scope::Account => return Ok(false),
    };
    db_run!(db, |pool| {
        let mut tx = pool.begin_write().await?;
        for id in ids {
            if sqlx::query(sql).bind(account).bind(owner).bind(id).execute(&mut *tx).await?.rows_affected() == 0 {
                tx.rollback().await?;
                return Ok(false);
            }
        }
        crate::write_events!(tx, account, events);
        tx.commit().await?;
    });
    Ok(true)
}
