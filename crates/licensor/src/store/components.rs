//! Machine components (hardware fingerprints below the machine).

use sqlx::FromRow;
use uuid::Uuid;

use super::{Listing, Metadata, Page};
use crate::db::Db;
use crate::db_run;
use crate::error::Result;

#[derive(Debug, Clone, FromRow)]
pub struct ComponentRow {
    pub id: Uuid,
    pub account_id: Uuid,
    pub machine_id: Uuid,
    pub fingerprint: String,
    pub name: String,
    pub metadata: Metadata,
    pub created_at: i64,
    pub updated_at: i64,
}

macro_rules! select {
    ($where:literal) => {
        concat!(
            "SELECT id, account_id, machine_id, fingerprint, name, metadata, created_at, updated_at FROM components ",
            $where
        )
    };
}

const FIND: &str = select!("WHERE account_id = $1 AND id = $2");

pub async fn find(db: &Db, account: Uuid, id: Uuid) -> Result<Option<ComponentRow>> {
    Ok(db_run!(db, |pool| sqlx::query_as::<_, ComponentRow>(FIND).bind(account).bind(id).fetch_optional(pool).await?))
}

pub async fn fingerprints_for_machine(db: &Db, machine: Uuid) -> Result<Vec<String>> {
    const SQL: &str = "SELECT fingerprint FROM components WHERE machine_id = $1";
    Ok(db_run!(db, |pool| sqlx::query_scalar::<_, String>(SQL).bind(machine).fetch_all(pool).await?))
}

const LIST: &str = select!(
    "WHERE account_id = $1 AND ($2 IS NULL OR machine_id = $2) AND ($3 IS NULL OR machine_id IN (SELECT id FROM machines WHERE license_id = $3)) \
     ORDER BY created_at DESC, id DESC LIMIT $4 OFFSET $5"
);
const COUNT: &str = "SELECT COUNT(*) FROM components WHERE account_id = $1 AND ($2 IS NULL OR machine_id = $2) AND ($3 IS NULL OR machine_id IN (SELECT id FROM machines WHERE license_id = $3))";

pub async fn list(
    db: &Db,
    account: Uuid,
    machine: Option<Uuid>,
    license: Option<Uuid>,
    page: Page,
) -> Result<Listing<ComponentRow>> {
    db_run!(db, |pool| {
        let rows = sqlx::query_as::<_, ComponentRow>(LIST)
            .bind(account)
            .bind(machine)
            .bind(license)
            .bind(page.limit())
            .bind(page.offset())
            .fetch_all(pool)
            .await?;
        let total =
            sqlx::query_scalar::<_, i64>(COUNT).bind(account).bind(machine).bind(license).fetch_one(pool).await?;
        Ok(Listing { rows, total })
    })
}

const INSERT: &str = "INSERT INTO components (id, account_id, machine_id, fingerprint, name, metadata, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)";

pub async fn insert(db: &Db, c: &ComponentRow) -> Result<(), sqlx::Error> {
    db_run!(db, |pool| sqlx::query(INSERT)
        .bind(c.id)
        .bind(c.account_id)
        .bind(c.machine_id)
        .bind(&c.fingerprint)
        .bind(&c.name)
        .bind(&c.metadata)
        .bind(c.created_at)
        .bind(c.updated_at)
        .execute(pool)
        .await?
        .rows_affected());
    Ok(())
}

pub async fn update(db: &Db, c: &ComponentRow) -> Result<()> {
    const SQL: &str =
        "UPDATE components SET name = $3, metadata = $4, updated_at = $5 WHERE account_id = $1 AND id = $2";
    db_run!(db, |pool| sqlx::query(SQL)
        .bind(c.account_id)
        .bind(c.id)
        .bind(&c.name)
        .bind(&c.metadata)
        .bind(c.updated_at)
        .execute(pool)
        .await?
        .rows_affected());
    Ok(())
}

pub async fn delete(db: &Db, account: Uuid, id: Uuid) -> Result<()> {
    const SQL: &str = "DELETE FROM components WHERE account_id = $1 AND id = $2";
    db_run!(db, |pool| sqlx::query(SQL).bind(account).bind(id).execute(pool).await?.rows_affected());
    Ok(())
}
