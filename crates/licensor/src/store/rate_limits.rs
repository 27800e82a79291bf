//! Rate-limit counters in the database: exact ones for rare, costly requests (password logins,
//! license activations), and the batch in which a PostgreSQL node shares its approximate counts.

use std::convert::Infallible;

use crate::db::Db;
use crate::db_run;
use crate::error::Result;

const ADD: &str = "INSERT INTO rate_limits (bucket, window_start, hits, expires_at) VALUES ($1, $2, $3, $4) \
     ON CONFLICT (bucket, window_start) DO UPDATE SET hits = rate_limits.hits + EXCLUDED.hits RETURNING hits";

/// Adds `n` hits to `bucket` in the window starting at `window_start` (ms) and returns the
/// window's total. One atomic upsert: exact across nodes.
pub async fn add(db: &Db, bucket: &str, window_start: i64, expires_at: i64, n: i64) -> Result<i64> {
    match db {
        // On SQLite's inline writer, as activations (which count in their own transaction).
        Db::Sqlite(sqlite) => {
            let bucket = bucket.to_owned();
            let Ok(hits) = sqlite
                .write_inline(move |tx| add_inline(tx, &bucket, window_start, expires_at, n).map(Ok::<_, Infallible>))
                .await?;
            Ok(hits)
        }
        Db::Postgres(pool) => Ok(sqlx::query_scalar::<_, i64>(ADD)
            .bind(bucket)
            .bind(window_start)
            .bind(n)
            .bind(expires_at)
            .fetch_one(pool)
            .await?),
    }
}

/// [`add`] on a transaction of SQLite's inline writer.
pub(crate) fn add_inline(
    tx: &rusqlite::Transaction<'_>,
    bucket: &str,
    window_start: i64,
    expires_at: i64,
    n: i64,
) -> rusqlite::Result<i64> {
    super::sqlite_query_row(tx, ADD, &[&bucket, &window_start, &n, &expires_at], |r| r.get(0))
}

/// [`add`] for many buckets in one statement (PostgreSQL): returns each bucket's new total, in
/// no particular order.
pub async fn add_many(db: &Db, rows: &[(String, i64, i64, i64)]) -> Result<Vec<(String, i64, i64)>> {
    let Db::Postgres(pool) = db else { return Ok(Vec::new()) };
    if rows.is_empty() {
        return Ok(Vec::new());
    }
    const SQL: &str = "INSERT INTO rate_limits (bucket, window_start, hits, expires_at) \
         SELECT * FROM UNNEST($1::text[], $2::bigint[], $3::bigint[], $4::bigint[]) \
         ON CONFLICT (bucket, window_start) DO UPDATE SET hits = rate_limits.hits + EXCLUDED.hits \
         RETURNING bucket, window_start, hits";
    let buckets: Vec<&str> = rows.iter().map(|r| r.0.as_str()).collect();
    let starts: Vec<i64> = rows.iter().map(|r| r.1).collect();
    let hits: Vec<i64> = rows.iter().map(|r| r.2).collect();
    let expiries: Vec<i64> = rows.iter().map(|r| r.3).collect();
    Ok(sqlx::query_as::<_, (String, i64, i64)>(SQL)
        .bind(&buckets)
        .bind(&starts)
        .bind(&hits)
        .bind(&expiries)
        .fetch_all(pool)
        .await?)
}

/// Deletes the counters of windows that ended before `now`.
pub async fn purge(db: &Db, now: i64) -> Result<u64> {
    const SQL: &str = "DELETE FROM rate_limits WHERE expires_at < $1";
    Ok(db_run!(db, |pool| sqlx::query(SQL).bind(now).execute(pool).await?.rows_affected()))
}
