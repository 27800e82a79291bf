//! Repositories: every SQL statement Licensor runs lives in this module, next to the one function
//! that runs it. Every function that touches account data takes the account id first and
//! filters on it, so tenant isolation is structural.

pub mod accounts;
pub mod astra;
pub mod components;
pub mod console;
pub mod entitlements;
pub mod events;
pub mod groups;
pub mod keys;
pub mod leases;
pub mod license_notices;
pub mod licenses;
pub mod machines;
pub mod policies;
pub mod processes;
pub mod products;
pub mod rate_limits;
pub mod search;
pub mod second_factors;
pub mod sessions;
pub mod settings;
pub mod tokens;
pub mod users;
pub mod webhooks;

/// What any list can be narrowed and ordered by, besides its own filters: Keygen's
/// `metadata[key]=value` (keys as stored) and `order=asc` (oldest first).
#[derive(Debug, Default, Clone)]
pub struct Narrow {
    pub metadata: Vec<(String, String)>,
    pub ascending: bool,
}

impl Narrow {
    /// ` ORDER BY` newest first, or oldest first, by `created` then `id`.
    pub fn order_by(&self, created: &str, id: &str) -> String {
        let dir = if self.ascending { "" } else { " DESC" };
        format!(" ORDER BY {created}{dir}, {id}{dir}")
    }
}

/// Pushes ` AND …` for each `metadata[key]=value` filter on the JSON column `$column`: the
/// stored value read as text (JSON `true`/`false` as those words, as PostgreSQL's `->>` reads
/// them) equal to the filter's.
#[macro_export]
macro_rules! push_metadata {
    ($qb:expr, $column:literal, $filters:expr, $sqlite:expr) => {{
        for (key, value) in $filters {
            if $sqlite {
                $qb.push(concat!(" AND EXISTS (SELECT 1 FROM json_each(", $column, ") j WHERE j.key = "))
                    .push_bind(key.clone());
                $qb.push(" AND (CASE j.type WHEN 'true' THEN 'true' WHEN 'false' THEN 'false' ELSE CAST(j.value AS TEXT) END) = ")
                    .push_bind(value.clone())
                    .push(")");
            } else {
                $qb.push(concat!(" AND ", $column, " ->> ")).push_bind(key.clone()).push(" = ").push_bind(value.clone());
            }
        }
    }};
}

/// Locks an account's row for the rest of a write transaction: what per-account limits and
/// uniqueness checks serialise on when several nodes write at once.
pub(crate) const LOCK_ACCOUNT: &str = "UPDATE accounts SET updated_at = updated_at WHERE id = $1";

/// In `$tx`, a write transaction: locks the account row and tells whether any row of `$table`
/// in it has an id in `$range` (a chosen licensing key, `domain::projection::id_with_legacy_key`),
/// so two creations racing for one key cannot both find it free.
#[macro_export]
macro_rules! key_range_taken {
    ($tx:expr, $table:literal, $account:expr, $range:expr) => {{
        let (lo, hi) = $range;
        sqlx::query($crate::store::LOCK_ACCOUNT).bind($account).execute(&mut *$tx).await?;
        let n: i64 = sqlx::query_scalar(concat!(
            "SELECT COUNT(*) FROM ",
            $table,
            " WHERE account_id = $1 AND id BETWEEN $2 AND $3"
        ))
        .bind($account)
        .bind(lo)
        .bind(hi)
        .fetch_one(&mut *$tx)
        .await?;
        n > 0
    }};
}

use std::cell::RefCell;
use std::collections::HashMap;

use uuid::Uuid;

use crate::model::{PolicyRules, Rules};

pub use sqlx::types::Json;

thread_local! {
    /// Per thread, the last rules text seen for each policy and what it parsed to.
    static PARSED_RULES: RefCell<HashMap<Uuid, (Box<str>, Rules)>> = RefCell::new(HashMap::new());
}

/// Parses a policy's rules column, reusing the previous parse while the text is unchanged (an
/// edited policy has new text, so nothing stale is ever returned).
pub(crate) fn parse_rules(policy: Uuid, text: &str) -> serde_json::Result<Rules> {
    PARSED_RULES.with(|cache| {
        let mut cache = cache.borrow_mut();
        if let Some((seen, rules)) = cache.get(&policy) {
            if **seen == *text {
                return Ok(rules.clone());
            }
        }
        let rules = Rules::from(serde_json::from_str::<PolicyRules>(text)?);
        if cache.len() >= 1024 {
            cache.clear();
        }
        cache.insert(policy, (text.into(), rules.clone()));
        Ok(rules)
    })
}

/// Every row a paged listing holds, read a page at a time (for surfaces whose collections
/// have no paging of their own): no cap, and no page larger than the database round trip needs.
pub async fn collect_pages<T, F, Fut>(mut list: F) -> crate::error::Result<Vec<T>>
where
    F: FnMut(crate::model::Page) -> Fut,
    Fut: std::future::Future<Output = crate::error::Result<crate::model::Listing<T>>>,
{
    const SIZE: i64 = 1000;
    let mut out = Vec::new();
    for number in 1.. {
        let rows = list(crate::model::Page { size: SIZE, number }).await?.rows;
        let last = (rows.len() as i64) < SIZE;
        out.extend(rows);
        if last {
            break;
        }
    }
    Ok(out)
}

/// `ids` as SQLite takes a list: a JSON array of hex strings, read with
/// `SELECT unhex(value) FROM json_each(…)` (the id columns are BLOBs).
pub(crate) fn sqlite_ids(ids: &[uuid::Uuid]) -> String {
    let hex: Vec<String> = ids.iter().map(|id| hex::encode(id.as_bytes())).collect();
    serde_json::Value::from(hex).to_string()
}

/// Runs `sql` on a `rusqlite` connection with its `$1`, `$2`, … bound to `values` in order, as
/// the sqlx branch binds the same text. SQLite numbers named parameters by first appearance,
/// not by their digits, so each is bound by its name; a parameter with no value is an error
/// rather than a NULL.
pub(crate) fn sqlite_execute(
    conn: &rusqlite::Connection,
    sql: &str,
    values: &[&dyn rusqlite::ToSql],
) -> rusqlite::Result<usize> {
    let mut stmt = conn.prepare_cached(sql)?;
    bind_numbered(&mut stmt, values)?;
    stmt.raw_execute()
}

/// [`sqlite_execute`] for a statement that answers one row, read by `f`.
pub(crate) fn sqlite_query_row<T>(
    conn: &rusqlite::Connection,
    sql: &str,
    values: &[&dyn rusqlite::ToSql],
    f: impl FnOnce(&rusqlite::Row<'_>) -> rusqlite::Result<T>,
) -> rusqlite::Result<T> {
    let mut stmt = conn.prepare_cached(sql)?;
    bind_numbered(&mut stmt, values)?;
    let mut rows = stmt.raw_query();
    match rows.next()? {
        Some(row) => f(row),
        None => Err(rusqlite::Error::QueryReturnedNoRows),
    }
}

fn bind_numbered(stmt: &mut rusqlite::Statement<'_>, values: &[&dyn rusqlite::ToSql]) -> rusqlite::Result<()> {
    for index in 1..=stmt.parameter_count() {
        let number = stmt.parameter_name(index).and_then(|n| n.strip_prefix('$')?.parse::<usize>().ok());
        let value = number
            .and_then(|n| values.get(n.checked_sub(1)?))
            .ok_or(rusqlite::Error::InvalidParameterCount(index, values.len()))?;
        stmt.raw_bind_parameter(index, *value)?;
    }
    Ok(())
}

/// Column `i` of a row read through `rusqlite`, JSON text decoded (SQLite keeps JSON as text,
/// as sqlx's `Json` writes it).
pub(crate) fn sqlite_json<T: serde::de::DeserializeOwned>(r: &rusqlite::Row<'_>, i: usize) -> rusqlite::Result<T> {
    let text: String = r.get(i)?;
    serde_json::from_str(&text)
        .map_err(|e| rusqlite::Error::FromSqlConversionFailure(i, rusqlite::types::Type::Text, Box::new(e)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbered_parameters_bind_by_their_digits_and_none_is_left_null() {
        let conn = rusqlite::Connection::open_in_memory().unwrap();
        // SQLite numbers these 1, 2, 3, 4 in the order they appear ($1, $4, $2, $3): bound by
        // position, the answer would be "a-b-c-d".
        let sql = "SELECT $1 || '-' || $4 || '-' || $2 || '-' || $3";
        let got: String = sqlite_query_row(&conn, sql, &[&"a", &"b", &"c", &"d"], |r| r.get(0)).unwrap();
        assert_eq!(got, "a-d-b-c");
        let missing = sqlite_query_row(&conn, sql, &[&"a", &"b", &"c"], |r| r.get::<_, String>(0));
        assert!(matches!(missing, Err(rusqlite::Error::InvalidParameterCount(..))), "{missing:?}");
    }

    #[test]
    fn parsed_rules_follow_the_text() {
        let policy = Uuid::new_v4();
        let first = parse_rules(policy, r#"{"maxMachines": 1}"#).unwrap();
        let again = parse_rules(policy, r#"{"maxMachines": 1}"#).unwrap();
        assert!(std::sync::Arc::ptr_eq(&first.0, &again.0), "unchanged text reuses the parse");
        let edited = parse_rules(policy, r#"{"maxMachines": 2}"#).unwrap();
        assert_eq!(edited.max_machines, Some(2));
        assert!(parse_rules(policy, "{").is_err());
    }
}
