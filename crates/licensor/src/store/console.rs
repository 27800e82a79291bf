//! What the console's overview counts.

use uuid::Uuid;

use crate::db::Db;
use crate::db_run;
use crate::error::Result;
use crate::time::DAY;

/// The account's machines.
pub async fn machine_count(db: &Db, account: Uuid) -> Result<i64> {
    const SQL: &str = "SELECT COUNT(*) FROM machines WHERE account_id = $1";
    Ok(db_run!(db, |pool| sqlx::query_scalar::<_, i64>(SQL).bind(account).fetch_one(pool).await?))
}

/// For each of the last `days` days (UTC, newest first): the day, machines activated that day,
/// and licenses whose last validation fell on it. One grouped query per figure.
pub async fn activity(db: &Db, account: Uuid, now: i64, days: i64) -> Result<Vec<(String, i64, i64)>> {
    const MACHINES: &str = "SELECT (created_at - $2) / $3 AS d, COUNT(*) FROM machines \
        WHERE account_id = $1 AND created_at >= $2 GROUP BY d";
    const VALIDATED: &str = "SELECT (v.at - $2) / $3 AS d, COUNT(*) FROM license_validations v \
        JOIN licenses l ON l.id = v.license_id WHERE l.account_id = $1 AND v.at >= $2 GROUP BY d";
    let first = now - now.rem_euclid(DAY) - (days - 1) * DAY;
    let (machines, validated) = db_run!(db, |pool| {
        let m = sqlx::query_as::<_, (i64, i64)>(MACHINES).bind(account).bind(first).bind(DAY).fetch_all(pool).await?;
        let v = sqlx::query_as::<_, (i64, i64)>(VALIDATED).bind(account).bind(first).bind(DAY).fetch_all(pool).await?;
        (m, v)
    });
    let on = |rows: &[(i64, i64)], d: i64| rows.iter().find(|(day, _)| *day == d).map_or(0, |(_, n)| *n);
    Ok((0..days)
        .rev()
        .map(|d| (crate::time::iso(first + d * DAY)[..10].to_string(), on(&machines, d), on(&validated, d)))
        .collect())
}
