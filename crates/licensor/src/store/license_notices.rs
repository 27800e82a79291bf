//! SQLite only: the license changes its triggers write down (migration 0022), which each node
//! reads to keep its license cache exact (`license_cache::spawn_sqlite`).

use crate::db::{Db, SqliteDb};
use crate::error::Result;

/// Notices kept behind the newest one; older ones are pruned. A node that falls further behind
/// than this finds a hole in the numbers and empties its cache.
pub const KEPT: i64 = 10_000;

/// What a node read since its last look.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Since {
    /// The notices numbered above the last one seen, in commit order.
    pub notices: Vec<(i64, String)>,
    /// The highest number ever given (0 before the first).
    pub high: i64,
}

impl Since {
    /// Whether these are every notice after `last`, none pruned unread.
    pub fn complete(&self, last: i64) -> bool {
        let count = i64::try_from(self.notices.len()).unwrap_or(i64::MAX);
        self.notices.first().is_none_or(|(seq, _)| *seq == last + 1) && count == self.high - last
    }
}

/// The notices numbered above `last`, and the highest number given, from one snapshot.
pub fn since(sqlite: &SqliteDb, last: i64) -> Result<Since> {
    const NOTICES: &str = "SELECT seq, payload FROM license_notices WHERE seq > ?1 ORDER BY seq";
    const HIGH: &str = "SELECT seq FROM sqlite_sequence WHERE name = 'license_notices'";
    Ok(sqlite.read_inline(|conn| {
        use rusqlite::OptionalExtension;
        let tx = conn.unchecked_transaction()?;
        let notices = tx
            .prepare_cached(NOTICES)?
            .query_map([last], |r| Ok((r.get(0)?, r.get(1)?)))?
            .collect::<rusqlite::Result<Vec<(i64, String)>>>()?;
        let high = tx.prepare_cached(HIGH)?.query_row([], |r| r.get(0)).optional()?.unwrap_or(0);
        tx.finish()?;
        Ok(Since { notices, high })
    })?)
}

/// Deletes all but the newest [`KEPT`] notices (SQLite; PostgreSQL keeps none). Every node
/// runs it every second, whether or not it caches licenses: other processes may.
pub async fn prune(db: &Db) -> Result<()> {
    const SQL: &str = "DELETE FROM license_notices \
        WHERE seq <= (SELECT seq FROM sqlite_sequence WHERE name = 'license_notices') - $1";
    let Db::Sqlite(sqlite) = db else { return Ok(()) };
    let _turn = crate::db::write_turn(&sqlite.pool).await?;
    sqlx::query(SQL).bind(KEPT).execute(&sqlite.pool).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::Since;

    fn since(seqs: &[i64], high: i64) -> Since {
        Since { notices: seqs.iter().map(|s| (*s, "all".to_owned())).collect(), high }
    }

    #[test]
    fn a_hole_in_the_numbers_is_noticed() {
        assert!(since(&[], 0).complete(0));
        assert!(since(&[], 7).complete(7));
        assert!(since(&[8, 9], 9).complete(7));
        // Pruned before they were read: the first, or all of them.
        assert!(!since(&[9], 9).complete(7));
        assert!(!since(&[], 9).complete(7));
        // Committed after the numbers were read (cannot happen in one snapshot; refused anyway).
        assert!(!since(&[8, 9], 8).complete(7));
    }
}
