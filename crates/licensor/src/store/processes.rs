//! Machine processes, with the process limit enforced under the license's lock.

use uuid::Uuid;

use crate::db::{BeginWrite, Db};
use crate::db_run;
use crate::error::Result;
use crate::events::Raised;
use crate::model::{Listing, Page, Process};

macro_rules! select {
    ($where:literal) => {
        concat!("SELECT id, account_id, machine_id, license_id, pid, last_heartbeat_at, metadata, created_at, updated_at FROM processes ", $where)
    };
}

const FIND: &str = select!("WHERE account_id = $1 AND id = $2");

pub async fn find(db: &Db, account: Uuid, id: Uuid) -> Result<Option<Process>> {
    Ok(db_run!(db, |pool| sqlx::query_as::<_, Process>(FIND).bind(account).bind(id).fetch_optional(pool).await?))
}

const LIST: &str = select!(
    "WHERE account_id = $1 AND ($2 IS NULL OR machine_id = $2) AND ($3 IS NULL OR license_id = $3) \
     AND ($4 IS NULL OR license_id IN (SELECT id FROM licenses WHERE product_id = $4)) \
     AND ($5 IS NULL OR license_id IN (SELECT id FROM licenses WHERE owner_id = $5) OR license_id IN (SELECT license_id FROM license_users WHERE user_id = $5)) \
     ORDER BY created_at DESC, id DESC LIMIT $6 OFFSET $7"
);
const COUNT: &str = "SELECT COUNT(*) FROM processes WHERE account_id = $1 AND ($2 IS NULL OR machine_id = $2) AND ($3 IS NULL OR license_id = $3) \
     AND ($4 IS NULL OR license_id IN (SELECT id FROM licenses WHERE product_id = $4)) \
     AND ($5 IS NULL OR license_id IN (SELECT id FROM licenses WHERE owner_id = $5) OR license_id IN (SELECT license_id FROM license_users WHERE user_id = $5))";

#[derive(Debug, Default)]
pub struct ProcessFilter {
    pub machine: Option<Uuid>,
    pub license: Option<Uuid>,
    pub product: Option<Uuid>,
    pub user: Option<Uuid>,
}

pub async fn list(db: &Db, account: Uuid, f: &ProcessFilter, page: Page) -> Result<Listing<Process>> {
    db_run!(db, |pool| {
        let rows = sqlx::query_as::<_, Process>(LIST)
            .bind(account)
            .bind(f.machine)
            .bind(f.license)
            .bind(f.product)
            .bind(f.user)
            .bind(page.limit())
            .bind(page.offset())
            .fetch_all(pool)
            .await?;
        let total = sqlx::query_scalar::<_, i64>(COUNT)
            .bind(account)
            .bind(f.machine)
            .bind(f.license)
            .bind(f.product)
            .bind(f.user)
            .fetch_one(pool)
            .await?;
        Ok(Listing { rows, total })
    })
}

/// Process counts per machine of a license: (machine id, count).
pub async fn counts_for_license(db: &Db, license: Uuid) -> Result<Vec<(Uuid, i64)>> {
    const SQL: &str = "SELECT machine_id, COUNT(*) FROM processes WHERE license_id = $1 GROUP BY machine_id";
    Ok(db_run!(db, |pool| sqlx::query_as::<_, (Uuid, i64)>(SQL).bind(license).fetch_all(pool).await?))
}

/// What bounds a new process.
#[derive(Debug, Clone, Copy)]
pub enum ProcessScope {
    Machine,
    License,
    /// Processes of machines with this owner (or ownerless ones) under the license.
    User(Option<Uuid>),
}

#[derive(Debug, PartialEq, Eq)]
pub enum SpawnRefusal {
    Limit,
    PidTaken,
}

/// Whether any process, in any account, has this id (ids are global keys).
pub async fn id_taken(db: &Db, id: Uuid) -> Result<bool> {
    const SQL: &str = "SELECT COUNT(*) FROM processes WHERE id = $1";
    let n = db_run!(db, |pool| sqlx::query_scalar::<_, i64>(SQL).bind(id).fetch_one(pool).await?);
    Ok(n > 0)
}

/// Inserts a process unless that takes its scope past `max` (overage already applied),
/// in one transaction holding the license's lock.
pub async fn spawn(
    db: &Db,
    p: &Process,
    scope: ProcessScope,
    max: Option<i64>,
    events: &[Raised],
) -> Result<Result<(), SpawnRefusal>> {
    const LOCK: &str = "UPDATE licenses SET updated_at = updated_at WHERE account_id = $1 AND id = $2";
    const TAKEN: &str = "SELECT COUNT(*) FROM processes WHERE machine_id = $1 AND pid = $2";
    const PER_MACHINE: &str = "SELECT COUNT(*) FROM processes WHERE machine_id = $1";
    const PER_LICENSE: &str = "SELECT COUNT(*) FROM processes WHERE license_id = $1";
    const PER_USER: &str = "SELECT COUNT(*) FROM processes p JOIN machines m ON m.id = p.machine_id WHERE p.license_id = $1 AND (m.owner_id = $2 OR (m.owner_id IS NULL AND $2 IS NULL))";
    const INSERT: &str = "INSERT INTO processes (id, account_id, machine_id, license_id, pid, last_heartbeat_at, metadata, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)";
    db_run!(db, |pool| {
        let mut tx = pool.begin_write().await?;
        sqlx::query(LOCK).bind(p.account_id).bind(p.license_id).execute(&mut *tx).await?;
        if sqlx::query_scalar::<_, i64>(TAKEN).bind(p.machine_id).bind(&p.pid).fetch_one(&mut *tx).await? > 0 {
            tx.rollback().await?;
            return Ok(Err(SpawnRefusal::PidTaken));
        }
        if let Some(max) = max {
            let count = match scope {
                ProcessScope::Machine => {
                    sqlx::query_scalar::<_, i64>(PER_MACHINE).bind(p.machine_id).fetch_one(&mut *tx).await?
                }
                ProcessScope::License => {
                    sqlx::query_scalar::<_, i64>(PER_LICENSE).bind(p.license_id).fetch_one(&mut *tx).await?
                }
                ProcessScope::User(owner) => {
                    sqlx::query_scalar::<_, i64>(PER_USER).bind(p.license_id).bind(owner).fetch_one(&mut *tx).await?
                }
            };
            if count + 1 > max {
                tx.rollback().await?;
                return Ok(Err(SpawnRefusal::Limit));
            }
        }
        sqlx::query(INSERT)
            .bind(p.id)
            .bind(p.account_id)
            .bind(p.machine_id)
            .bind(p.license_id)
            .bind(&p.pid)
            .bind(p.last_heartbeat_at)
            .bind(&p.metadata)
            .bind(p.created_at)
            .bind(p.updated_at)
            .execute(&mut *tx)
            .await?;
        crate::write_events!(tx, p.account_id, events);
        tx.commit().await?;
    });
    Ok(Ok(()))
}

pub async fn update_metadata(db: &Db, p: &Process, events: &[Raised]) -> Result<()> {
    const SQL: &str = "UPDATE processes SET metadata = $3, updated_at = $4 WHERE account_id = $1 AND id = $2";
    db_run!(db, |pool| {
        let mut tx = pool.begin_write().await?;
        sqlx::query(SQL).bind(p.account_id).bind(p.id).bind(&p.metadata).bind(p.updated_at).execute(&mut *tx).await?;
        crate::write_events!(tx, p.account_id, events);
        tx.commit().await?;
    });
    Ok(())
}

pub async fn ping(db: &Db, account: Uuid, id: Uuid, now: i64, events: &[Raised]) -> Result<()> {
    const SQL: &str = "UPDATE processes SET last_heartbeat_at = $3, updated_at = $3 WHERE account_id = $1 AND id = $2";
    db_run!(db, |pool| {
        let mut tx = pool.begin_write().await?;
        sqlx::query(SQL).bind(account).bind(id).bind(now).execute(&mut *tx).await?;
        crate::write_events!(tx, account, events);
        tx.commit().await?;
    });
    Ok(())
}

pub async fn delete(db: &Db, account: Uuid, id: Uuid, events: &[Raised]) -> Result<bool> {
    const SQL: &str = "DELETE FROM processes WHERE account_id = $1 AND id = $2";
    Ok(db_run!(db, |pool| {
        let mut tx = pool.begin_write().await?;
        let n = sqlx::query(SQL).bind(account).bind(id).execute(&mut *tx).await?.rows_affected();
        if n == 1 {
            crate::write_events!(tx, account, events);
        }
        tx.commit().await?;
        n
    }) == 1)
}

/// Processes whose last heartbeat is older than `before`, with their policy's rules, for the
/// culler to judge.
pub async fn stale(
    db: &Db,
    before: i64,
    limit: i64,
) -> Result<Vec<(Uuid, Uuid, i64, sqlx::types::Json<crate::model::PolicyRules>)>> {
    const SQL: &str = "SELECT p.id, p.account_id, p.last_heartbeat_at, pol.rules FROM processes p JOIN licenses l ON l.id = p.license_id \
        JOIN policies pol ON pol.id = l.policy_id WHERE p.last_heartbeat_at < $1 ORDER BY p.last_heartbeat_at LIMIT $2";
    Ok(db_run!(db, |pool| sqlx::query_as(SQL).bind(before).bind(limit).fetch_all(pool).await?))
}

/// Deletes a process only if it has not been pinged since `seen`: a racing ping, or another
/// node's culler, wins cleanly.
pub async fn delete_if_unchanged(db: &Db, account: Uuid, id: Uuid, seen: i64, events: &[Raised]) -> Result<bool> {
    const SQL: &str = "DELETE FROM processes WHERE account_id = $1 AND id = $2 AND last_heartbeat_at = $3";
    Ok(db_run!(db, |pool| {
        let mut tx = pool.begin_write().await?;
        let n = sqlx::query(SQL).bind(account).bind(id).bind(seen).execute(&mut *tx).await?.rows_affected();
        if n == 1 {
            crate::write_events!(tx, account, events);
        }
        tx.commit().await?;
        n
    }) == 1)
}
