//! Groups of users, licenses and machines.

use uuid::Uuid;

use crate::db::{BeginWrite, Db};
use crate::db_run;
use crate::error::Result;
use crate::events::Raised;
use crate::model::{Group, Listing, Page};

const FIND: &str = "SELECT id, account_id, name, max_users, max_licenses, max_machines, metadata, created_at, updated_at FROM groups WHERE account_id = $1 AND id = $2";

pub async fn find(db: &Db, account: Uuid, id: Uuid) -> Result<Option<Group>> {
    Ok(db_run!(db, |pool| sqlx::query_as::<_, Group>(FIND).bind(account).bind(id).fetch_optional(pool).await?))
}

const LIST: &str = "SELECT id, account_id, name, max_users, max_licenses, max_machines, metadata, created_at, updated_at FROM groups WHERE account_id = $1 AND ($2 IS NULL OR id = $2) ORDER BY created_at DESC, id DESC LIMIT $3 OFFSET $4";
const COUNT: &str = "SELECT COUNT(*) FROM groups WHERE account_id = $1 AND ($2 IS NULL OR id = $2)";

pub async fn list(db: &Db, account: Uuid, only: Option<Uuid>, page: Page) -> Result<Listing<Group>> {
    db_run!(db, |pool| {
        let rows = sqlx::query_as::<_, Group>(LIST)
            .bind(account)
            .bind(only)
            .bind(page.limit())
            .bind(page.offset())
            .fetch_all(pool)
            .await?;
        let total = sqlx::query_scalar::<_, i64>(COUNT).bind(account).bind(only).fetch_one(pool).await?;
        Ok(Listing { rows, total })
    })
}

const INSERT: &str = "INSERT INTO groups (id, account_id, name, max_users, max_licenses, max_machines, metadata, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)";

const IN_RANGE: &str =
    "SELECT id, account_id, name, max_users, max_licenses, max_machines, metadata, created_at, updated_at FROM groups \
    WHERE account_id = $1 AND id BETWEEN $2 AND $3 ORDER BY created_at DESC, id DESC LIMIT 1";

/// The account's group whose id lies in `lo..=hi`: the lookup by a legacy key.
pub async fn find_in_range(db: &Db, account: Uuid, (lo, hi): (Uuid, Uuid)) -> Result<Option<Group>> {
    Ok(db_run!(db, |pool| sqlx::query_as::<_, Group>(IN_RANGE)
        .bind(account)
        .bind(lo)
        .bind(hi)
        .fetch_optional(pool)
        .await?))
}

pub async fn insert(db: &Db, g: &Group, events: &[Raised]) -> Result<()> {
    db_run!(db, |pool| {
        let mut tx = pool.begin_write().await?;
        sqlx::query(INSERT)
            .bind(g.id)
            .bind(g.account_id)
            .bind(&g.name)
            .bind(g.max_users)
            .bind(g.max_licenses)
            .bind(g.max_machines)
            .bind(&g.metadata)
            .bind(g.created_at)
            .bind(g.updated_at)
            .execute(&mut *tx)
            .await?;
        crate::write_events!(tx, g.account_id, events);
        tx.commit().await?;
    });
    Ok(())
}

const UPDATE: &str = "UPDATE groups SET name = $3, max_users = $4, max_licenses = $5, max_machines = $6, metadata = $7, updated_at = $8 WHERE account_id = $1 AND id = $2";

pub async fn update(db: &Db, g: &Group, events: &[Raised]) -> Result<()> {
    db_run!(db, |pool| {
        let mut tx = pool.begin_write().await?;
        sqlx::query(UPDATE)
            .bind(g.account_id)
            .bind(g.id)
            .bind(&g.name)
            .bind(g.max_users)
            .bind(g.max_licenses)
            .bind(g.max_machines)
            .bind(&g.metadata)
            .bind(g.updated_at)
            .execute(&mut *tx)
            .await?;
        crate::write_events!(tx, g.account_id, events);
        tx.commit().await?;
    });
    Ok(())
}

pub async fn delete(db: &Db, account: Uuid, id: Uuid, events: &[Raised]) -> Result<()> {
    db_run!(db, |pool| {
        let mut tx = pool.begin_write().await?;
        sqlx::query("DELETE FROM groups WHERE account_id = $1 AND id = $2")
            .bind(account)
            .bind(id)
            .execute(&mut *tx)
            .await?;
        crate::write_events!(tx, account, events);
        tx.commit().await?;
    });
    Ok(())
}
