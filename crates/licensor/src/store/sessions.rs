//! Console and portal sessions, by the digest of their cookie token.

use uuid::Uuid;

use crate::db::Db;
use crate::db_run;
use crate::error::Result;

/// A signed-in session.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Session {
    pub digest: String,
    pub account_id: Uuid,
    pub user_id: Uuid,
    pub kind: String,
    pub csrf: String,
    pub expires_at: i64,
    pub created_at: i64,
}

pub async fn insert(db: &Db, s: &Session) -> Result<()> {
    const SQL: &str = "INSERT INTO console_sessions (digest, account_id, user_id, kind, csrf, expires_at, created_at) \
        VALUES ($1, $2, $3, $4, $5, $6, $7)";
    db_run!(db, |pool| sqlx::query(SQL)
        .bind(&s.digest)
        .bind(s.account_id)
        .bind(s.user_id)
        .bind(&s.kind)
        .bind(&s.csrf)
        .bind(s.expires_at)
        .bind(s.created_at)
        .execute(pool)
        .await?
        .rows_affected());
    Ok(())
}

/// The live session of `kind` with this digest.
pub async fn find(db: &Db, digest: &str, kind: &str, now: i64) -> Result<Option<Session>> {
    const SQL: &str = "SELECT digest, account_id, user_id, kind, csrf, expires_at, created_at FROM console_sessions \
        WHERE digest = $1 AND kind = $2 AND expires_at > $3";
    Ok(db_run!(db, |pool| sqlx::query_as::<_, Session>(SQL)
        .bind(digest)
        .bind(kind)
        .bind(now)
        .fetch_optional(pool)
        .await?))
}

pub async fn delete(db: &Db, digest: &str) -> Result<()> {
    const SQL: &str = "DELETE FROM console_sessions WHERE digest = $1";
    db_run!(db, |pool| sqlx::query(SQL).bind(digest).execute(pool).await?.rows_affected());
    Ok(())
}

/// Removes expired sessions.
pub async fn purge(db: &Db, now: i64) -> Result<u64> {
    const SQL: &str = "DELETE FROM console_sessions WHERE expires_at <= $1";
    Ok(db_run!(db, |pool| sqlx::query(SQL).bind(now).execute(pool).await?.rows_affected()))
}
