//! What the `/core/v1` surface keeps beyond the core license: a client-submitted
//! `licenseText` (byte for byte) and the resource's labels.

use sqlx::FromRow;
use uuid::Uuid;

use crate::db::Db;
use crate::db_run;
use crate::error::Result;

#[derive(Debug, Clone, FromRow)]
pub struct AstraRow {
    pub license_id: Uuid,
    pub account_id: Uuid,
    pub license_text: Option<String>,
    /// JSON array of `{name, value}`.
    pub labels: String,
    pub created_by: Option<String>,
    pub modified_by: Option<String>,
    pub created_at: i64,
    pub updated_at: i64,
    /// The `deviceCredentialID` the license was created or replaced with.
    pub device_credential_id: Option<String>,
}

const COLUMNS: &str =
    "license_id, account_id, license_text, labels, created_by, modified_by, created_at, updated_at, device_credential_id";

pub async fn find(db: &Db, account: Uuid, license: Uuid) -> Result<Option<AstraRow>> {
    let sql = format!("SELECT {COLUMNS} FROM astra_licenses WHERE account_id = $1 AND license_id = $2");
    Ok(db_run!(db, |pool| sqlx::query_as::<_, AstraRow>(&sql).bind(account).bind(license).fetch_optional(pool).await?))
}

pub async fn for_account(db: &Db, account: Uuid) -> Result<Vec<AstraRow>> {
    let sql = format!("SELECT {COLUMNS} FROM astra_licenses WHERE account_id = $1");
    Ok(db_run!(db, |pool| sqlx::query_as::<_, AstraRow>(&sql).bind(account).fetch_all(pool).await?))
}

pub async fn upsert(db: &Db, r: &AstraRow) -> Result<()> {
    const SQL: &str = "INSERT INTO astra_licenses (license_id, account_id, license_text, labels, created_by, modified_by, created_at, updated_at, device_credential_id) \
        VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) ON CONFLICT (license_id) DO UPDATE SET license_text = excluded.license_text, \
        labels = excluded.labels, modified_by = excluded.modified_by, updated_at = excluded.updated_at, \
        device_credential_id = excluded.device_credential_id";
    db_run!(db, |pool| sqlx::query(SQL)
        .bind(r.license_id)
        .bind(r.account_id)
        .bind(&r.license_text)
        .bind(&r.labels)
        .bind(&r.created_by)
        .bind(&r.modified_by)
        .bind(r.created_at)
        .bind(r.updated_at)
        .bind(&r.device_credential_id)
        .execute(pool)
        .await?
        .rows_affected());
    Ok(())
}
