//! Server-wide settings, one value per name.

use crate::db::Db;
use crate::db_run;
use crate::error::Result;

pub async fn get(db: &Db, name: &str) -> Result<Option<Vec<u8>>> {
    const SQL: &str = "SELECT value FROM settings WHERE name = $1";
    Ok(db_run!(db, |pool| sqlx::query_scalar::<_, Vec<u8>>(SQL).bind(name).fetch_optional(pool).await?))
}

/// Sets `name` unless it is set already (several nodes starting at once agree on the first).
pub async fn insert(db: &Db, name: &str, value: &[u8]) -> Result<()> {
    const SQL: &str = "INSERT INTO settings (name, value) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING";
    db_run!(db, |pool| sqlx::query(SQL).bind(name).bind(value).execute(pool).await?.rows_affected());
    Ok(())
}
