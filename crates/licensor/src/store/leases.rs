//! Job leases: one node at a time runs a periodic job.

use crate::db::Db;
use crate::db_run;
use crate::error::Result;

/// Takes or renews the lease on `name` for `holder` until `until`; false when another node
/// holds an unexpired lease. One conditional `UPDATE`, so it is atomic on both engines.
pub async fn acquire(db: &Db, name: &str, holder: &str, now: i64, until: i64) -> Result<bool> {
    const SQL: &str =
        "UPDATE job_leases SET holder = $2, expires_at = $3 WHERE name = $1 AND (expires_at < $4 OR holder = $2)";
    let n = db_run!(db, |pool| sqlx::query(SQL)
        .bind(name)
        .bind(holder)
        .bind(until)
        .bind(now)
        .execute(pool)
        .await?
        .rows_affected());
    Ok(n == 1)
}

/// Gives the lease on `name` back if `holder` has it, so another node need not wait for it to
/// expire (a node shutting down).
pub async fn release(db: &Db, name: &str, holder: &str) -> Result<()> {
    const SQL: &str = "UPDATE job_leases SET expires_at = 0 WHERE name = $1 AND holder = $2";
    db_run!(db, |pool| sqlx::query(SQL).bind(name).bind(holder).execute(pool).await.map(|_| ())?);
    Ok(())
}
