//! What the console's overview counts.

use uuid::Uuid;

use crate::db::Db;
use crate::db_run;
use crate::error::Result;
use crate::time::DAY;

/// For each of the last `days` days (UTC, newest first): the day, machines activated that day,
/// and licenses whose last validation fell on it.
pub async fn activity(db: &Db, account: Uuid, now: i64, days: i64) -> Result<Vec<(String, i64, i64)>> {
    const MACHINES: &str =
        "SELECT COUNT(*) FROM machines WHERE account_id = $1 AND created_at >= $2 AND created_at < $3";
    const VALIDATED: &str = "SELECT COUNT(*) FROM license_validations v JOIN licenses l ON l.id = v.license_id \
        WHERE l.account_id = $1 AND v.at >= $2 AND v.at < $3";
    let today = now - now.rem_euclid(DAY);
    let mut out = Vec::new();
    for d in 0..days {
        let from = today - d * DAY;
        let until = from + DAY;
        let (machines, validated) = db_run!(db, |pool| {
            let m = sqlx::query_scalar::<_, i64>(MACHINES).bind(account).bind(from).bind(until).fetch_one(pool).await?;
            let v =
                sqlx::query_scalar::<_, i64>(VALIDATED).bind(account).bind(from).bind(until).fetch_one(pool).await?;
            (m, v)
        });
        out.push((crate::time::iso(from)[..10].to_string(), machines, validated));
    }
    Ok(out)
}
