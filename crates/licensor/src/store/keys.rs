//! Pooled keys: made ahead for a policy that uses a pool, taken newest first.

use uuid::Uuid;

use crate::db::{BeginWrite, Db};
use crate::db_run;
use crate::error::Result;
use crate::events::Raised;
use crate::model::{Key, Listing, Page};

const COLUMNS: &str = "id, account_id, product_id, policy_id, key, created_at, updated_at";

pub async fn find(db: &Db, account: Uuid, id: Uuid) -> Result<Option<Key>> {
    let sql = format!("SELECT {COLUMNS} FROM keys WHERE account_id = $1 AND id = $2");
    Ok(db_run!(db, |pool| sqlx::query_as::<_, Key>(&sql).bind(account).bind(id).fetch_optional(pool).await?))
}

/// The account's keys, newest first; only a policy's or a product's when given (each filter
/// becomes SQL only when given, so the policy's index serves a pool).
pub async fn list(
    db: &Db,
    account: Uuid,
    policy: Option<Uuid>,
    product: Option<Uuid>,
    page: Page,
) -> Result<Listing<Key>> {
    macro_rules! push_filters {
        ($qb:expr) => {{
            $qb.push_bind(account);
            if let Some(p) = policy {
                $qb.push(" AND policy_id = ").push_bind(p);
            }
            if let Some(p) = product {
                $qb.push(" AND product_id = ").push_bind(p);
            }
        }};
    }
    let select = format!("SELECT {COLUMNS} FROM keys WHERE account_id = ");
    db_run!(db, |pool| {
        let mut qb = sqlx::QueryBuilder::new(&select);
        push_filters!(qb);
        qb.push(" ORDER BY created_at DESC, id DESC LIMIT ").push_bind(page.limit());
        qb.push(" OFFSET ").push_bind(page.offset());
        let rows = qb.build_query_as::<Key>().fetch_all(pool).await?;
        let mut qb = sqlx::QueryBuilder::new("SELECT COUNT(*) FROM keys WHERE account_id = ");
        push_filters!(qb);
        let total: i64 = qb.build_query_scalar().fetch_one(pool).await?;
        Ok(Listing { rows, total })
    })
}

pub async fn insert(db: &Db, k: &Key, events: &[Raised]) -> Result<(), sqlx::Error> {
    const SQL: &str = "INSERT INTO keys (id, account_id, product_id, policy_id, key, created_at, updated_at) \
        VALUES ($1, $2, $3, $4, $5, $6, $7)";
    db_run!(db, |pool| {
        let mut tx = pool.begin_write().await?;
        sqlx::query(SQL)
            .bind(k.id)
            .bind(k.account_id)
            .bind(k.product_id)
            .bind(k.policy_id)
            .bind(&k.key)
            .bind(k.created_at)
            .bind(k.updated_at)
            .execute(&mut *tx)
            .await?;
        crate::write_events!(tx, k.account_id, events);
        tx.commit().await?;
    });
    Ok(())
}

pub async fn update(db: &Db, k: &Key, events: &[Raised]) -> Result<(), sqlx::Error> {
    const SQL: &str = "UPDATE keys SET key = $3, updated_at = $4 WHERE account_id = $1 AND id = $2";
    db_run!(db, |pool| {
        let mut tx = pool.begin_write().await?;
        sqlx::query(SQL).bind(k.account_id).bind(k.id).bind(&k.key).bind(k.updated_at).execute(&mut *tx).await?;
        crate::write_events!(tx, k.account_id, events);
        tx.commit().await?;
    });
    Ok(())
}

/// Takes the newest key out of `policy`'s pool and returns it; `None` when the pool is empty.
/// On PostgreSQL racing pops each take a different key (locked ones are skipped).
pub async fn pop(db: &Db, policy: Uuid, events: impl Fn(&Key) -> Vec<Raised>) -> Result<Option<Key>> {
    let newest = match db {
        Db::Sqlite(_) => format!("SELECT {COLUMNS} FROM keys WHERE policy_id = $1 ORDER BY created_at DESC, id DESC LIMIT 1"),
        Db::Postgres(_) => format!(
            "SELECT {COLUMNS} FROM keys WHERE policy_id = $1 ORDER BY created_at DESC, id DESC LIMIT 1 FOR UPDATE SKIP LOCKED"
        ),
    };
    Ok(db_run!(db, |pool| {
        let mut tx = pool.begin_write().await?;
        let Some(k) = sqlx::query_as::<_, Key>(&newest).bind(policy).fetch_optional(&mut *tx).await? else {
            tx.rollback().await?;
            return Ok(None);
        };
        sqlx::query("DELETE FROM keys WHERE id = $1").bind(k.id).execute(&mut *tx).await?;
        crate::write_events!(tx, k.account_id, &events(&k));
        tx.commit().await?;
        Some(k)
    }))
}

/// Deletes the key; false when it was already gone (taken by a license, or popped, meanwhile).
pub async fn delete(db: &Db, k: &Key, events: &[Raised]) -> Result<bool> {
    const SQL: &str = "DELETE FROM keys WHERE account_id = $1 AND id = $2";
    Ok(db_run!(db, |pool| {
        let mut tx = pool.begin_write().await?;
        let n = sqlx::query(SQL).bind(k.account_id).bind(k.id).execute(&mut *tx).await?.rows_affected();
        if n == 1 {
            crate::write_events!(tx, k.account_id, events);
        }
        tx.commit().await?;
        n == 1
    }))
}
