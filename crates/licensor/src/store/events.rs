//! The event log and the webhook outbox. [`write_events!`] runs inside the transaction of the
//! change an event describes; [`record`] writes events that describe no change of their own
//! (validations, time-driven events).

use uuid::Uuid;

use crate::db::{BeginWrite, Db};
use crate::db_run;
use crate::error::Result;
use crate::events::Raised;
use crate::model::{EventLog, Json, Listing, Page};

pub(crate) const ENDPOINTS_OF: &str =
    "SELECT id, url, subscriptions, api_version, product_id FROM webhook_endpoints WHERE account_id = $1";
pub(crate) const INSERT_LOG: &str = "INSERT INTO event_logs (id, account_id, event, resource_type, resource_id, \
    whodunnit_type, whodunnit_id, request_id, metadata, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)";
pub(crate) const INSERT_DELIVERY: &str =
    "INSERT INTO webhook_events (id, account_id, endpoint_id, event_log_id, event, \
    api_version, endpoint_url, payload, status, attempts, next_attempt_at, created_at, updated_at) \
    VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 'DELIVERING', 0, $9, $9, $9)";

/// An endpoint as the outbox needs it: (id, url, subscriptions, api version, product).
pub(crate) type EndpointRow = (Uuid, String, Json<Vec<String>>, String, Option<Uuid>);

/// Whether an endpoint receives `r`: subscribed to it, and, when limited to a product, about
/// that product's resource.
pub(crate) fn receives(endpoint: &EndpointRow, r: &Raised) -> bool {
    crate::events::subscribed(&endpoint.2 .0, r.event) && (endpoint.4.is_none() || endpoint.4 == r.product_id)
}

/// Writes `$raised` (a `&[Raised]` of account `$account`) on `$tx`, an open transaction: one
/// event-log row each, and one delivery per endpoint that receives it. Expands in a store
/// function's `db_run!` body, where the transaction's engine is known.
#[macro_export]
macro_rules! write_events {
    ($tx:expr, $account:expr, $raised:expr) => {{
        let raised: &[$crate::events::Raised] = $raised;
        if !raised.is_empty() {
            let now = $crate::time::now_ms();
            let who = $crate::events::caller();
            let request = $crate::telemetry::request_id();
            let endpoints: Vec<$crate::store::events::EndpointRow> =
                sqlx::query_as($crate::store::events::ENDPOINTS_OF).bind($account).fetch_all(&mut *$tx).await?;
            for r in raised {
                // Time-ordered: the log's primary key is its order (see migration 0013).
                let log = uuid::Uuid::now_v7();
                sqlx::query($crate::store::events::INSERT_LOG)
                    .bind(log)
                    .bind($account)
                    .bind(r.event)
                    .bind(r.resource_type)
                    .bind(r.resource_id)
                    .bind(who.map(|w| w.kind))
                    .bind(who.map(|w| w.id))
                    .bind(request.as_deref())
                    .bind(sqlx::types::Json(&r.metadata))
                    .bind(now)
                    .execute(&mut *$tx)
                    .await?;
                for endpoint in endpoints.iter().filter(|e| $crate::store::events::receives(e, r)) {
                    // Time-ordered too: a delivery's id lands at the end of its index, not on a
                    // random page the activation's transaction would have to write as well.
                    sqlx::query($crate::store::events::INSERT_DELIVERY)
                        .bind(uuid::Uuid::now_v7())
                        .bind($account)
                        .bind(endpoint.0)
                        .bind(log)
                        .bind(r.event)
                        .bind(&endpoint.3)
                        .bind(&endpoint.1)
                        .bind(&r.payload)
                        .bind(now)
                        .execute(&mut *$tx)
                        .await?;
                }
            }
        }
    }};
}

/// [`write_events!`] for a transaction of SQLite's inline writer (`SqliteDb::write_inline`):
/// the same rows.
pub(crate) fn write_inline(tx: &rusqlite::Transaction<'_>, account: Uuid, raised: &[Raised]) -> rusqlite::Result<()> {
    use rusqlite::ToSql;
    if raised.is_empty() {
        return Ok(());
    }
    let now = crate::time::now_ms();
    let who = crate::events::caller();
    let request = crate::telemetry::request_id();
    let endpoints = tx
        .prepare_cached(ENDPOINTS_OF)?
        .query_map([account], |row| {
            Ok((row.get(0)?, row.get(1)?, Json(super::sqlite_json(row, 2)?), row.get(3)?, row.get(4)?))
        })?
        .collect::<rusqlite::Result<Vec<EndpointRow>>>()?;
    let (who_kind, who_id) = (who.map(|w| w.kind), who.map(|w| w.id));
    for r in raised {
        let log = Uuid::now_v7();
        let metadata = r.metadata.to_string();
        let values: [&dyn ToSql; 10] =
            [&log, &account, &r.event, &r.resource_type, &r.resource_id, &who_kind, &who_id, &request, &metadata, &now];
        super::sqlite_execute(tx, INSERT_LOG, &values)?;
        for endpoint in endpoints.iter().filter(|e| receives(e, r)) {
            let id = Uuid::now_v7();
            let values: [&dyn ToSql; 9] =
                [&id, &account, &endpoint.0, &log, &r.event, &endpoint.3, &endpoint.1, &r.payload, &now];
            super::sqlite_execute(tx, INSERT_DELIVERY, &values)?;
        }
    }
    Ok(())
}

/// Writes events that go with no change of their own, in one transaction.
pub async fn record(db: &Db, account: Uuid, raised: &[Raised]) -> Result<()> {
    if raised.is_empty() {
        return Ok(());
    }
    db_run!(db, |pool| {
        let mut tx = pool.begin_write().await?;
        crate::write_events!(tx, account, raised);
        tx.commit().await?;
    });
    Ok(())
}

/// Writes a time-driven event unless this occurrence was raised already (by this node or
/// another): the mark and the event commit together. Returns whether it was raised now.
pub async fn record_once(db: &Db, account: Uuid, occurrence: i64, raised: &Raised) -> Result<bool> {
    const MARK: &str = "INSERT INTO event_marks (resource_id, event, occurrence, created_at) VALUES ($1, $2, $3, $4) \
        ON CONFLICT DO NOTHING";
    let now = crate::time::now_ms();
    let fresh = db_run!(db, |pool| {
        let mut tx = pool.begin_write().await?;
        let n = sqlx::query(MARK)
            .bind(raised.resource_id)
            .bind(raised.event)
            .bind(occurrence)
            .bind(now)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        if n == 1 {
            crate::write_events!(tx, account, std::slice::from_ref(raised));
            tx.commit().await?;
        } else {
            tx.rollback().await?;
        }
        n == 1
    });
    Ok(fresh)
}

/// Filters of the event log's index.
#[derive(Debug, Default, Clone)]
pub struct LogFilter {
    pub events: Vec<String>,
    pub resource_type: Option<String>,
    pub resource_id: Option<Uuid>,
    pub whodunnit_type: Option<String>,
    pub whodunnit_id: Option<Uuid>,
    pub request_id: Option<String>,
    /// Milliseconds, inclusive start and exclusive end.
    pub from: Option<i64>,
    pub until: Option<i64>,
}

const LOG_COLUMNS: &str =
    "id, account_id, event, resource_type, resource_id, whodunnit_type, whodunnit_id, request_id, metadata, created_at";

pub async fn find_log(db: &Db, account: Uuid, id: Uuid) -> Result<Option<EventLog>> {
    let sql = format!("SELECT {LOG_COLUMNS} FROM event_logs WHERE account_id = $1 AND id = $2");
    Ok(db_run!(db, |pool| sqlx::query_as::<_, EventLog>(&sql).bind(account).bind(id).fetch_optional(pool).await?))
}

/// Pushes `f`'s conditions (after `WHERE account_id = …`): only the filters given, so an
/// indexed one (the resource) is used.
macro_rules! push_log_conditions {
    ($qb:expr, $f:expr) => {{
        let (qb, f): (_, &LogFilter) = (&mut $qb, $f);
        if !f.events.is_empty() {
            qb.push(" AND event IN (");
            let mut names = qb.separated(", ");
            for e in &f.events {
                names.push_bind(e.clone());
            }
            qb.push(")");
        }
        if let Some(v) = &f.resource_type {
            qb.push(" AND resource_type = ").push_bind(v.clone());
        }
        if let Some(v) = f.resource_id {
            qb.push(" AND resource_id = ").push_bind(v);
        }
        if let Some(v) = &f.whodunnit_type {
            qb.push(" AND whodunnit_type = ").push_bind(v.clone());
        }
        if let Some(v) = f.whodunnit_id {
            qb.push(" AND whodunnit_id = ").push_bind(v);
        }
        if let Some(v) = &f.request_id {
            qb.push(" AND request_id = ").push_bind(v.clone());
        }
        if let Some(v) = f.from {
            qb.push(" AND created_at >= ").push_bind(v);
        }
        if let Some(v) = f.until {
            qb.push(" AND created_at < ").push_bind(v);
        }
    }};
}

pub async fn list_logs(db: &Db, account: Uuid, f: &LogFilter, page: Page) -> Result<Listing<EventLog>> {
    let list = format!("SELECT {LOG_COLUMNS} FROM event_logs WHERE account_id = ");
    db_run!(db, |pool| {
        let mut qb = sqlx::QueryBuilder::new(&list);
        qb.push_bind(account);
        push_log_conditions!(qb, f);
        qb.push(" ORDER BY id DESC LIMIT ").push_bind(page.limit()).push(" OFFSET ").push_bind(page.offset());
        let rows = qb.build_query_as::<EventLog>().fetch_all(pool).await?;
        let mut qb = sqlx::QueryBuilder::new("SELECT COUNT(*) FROM event_logs WHERE account_id = ");
        qb.push_bind(account);
        push_log_conditions!(qb, f);
        let total: i64 = qb.build_query_scalar().fetch_one(pool).await?;
        Ok(Listing { rows, total })
    })
}

/// Deletes event-log rows, finished deliveries and marks older than `before`; returns how
/// many log rows went. (The log is pruned by its time-ordered key: no index on the time.)
pub async fn prune(db: &Db, before: i64) -> Result<u64> {
    const LOGS: &str = "DELETE FROM event_logs WHERE id < $1";
    const DELIVERIES: &str = "DELETE FROM webhook_events WHERE created_at < $1 AND status IN ('DELIVERED', 'FAILED')";
    const MARKS: &str = "DELETE FROM event_marks WHERE created_at < $1";
    Ok(db_run!(db, |pool| {
        let n = sqlx::query(LOGS).bind(v7_floor(before)).execute(pool).await?.rows_affected();
        sqlx::query(DELIVERIES).bind(before).execute(pool).await?;
        sqlx::query(MARKS).bind(before).execute(pool).await?;
        n
    }))
}

/// The smallest UUIDv7 of millisecond `ms`: every id of an event logged before `ms` is below it.
fn v7_floor(ms: i64) -> Uuid {
    let ms = u64::try_from(ms.max(0)).unwrap_or(0);
    let mut bytes = [0u8; 16];
    bytes[..6].copy_from_slice(&ms.to_be_bytes()[2..]);
    Uuid::from_bytes(bytes)
}

#[cfg(test)]
mod tests {
    #[test]
    fn v7_ids_sort_after_the_floor_of_their_millisecond() {
        let now = crate::time::now_ms();
        let id = uuid::Uuid::now_v7();
        assert!(super::v7_floor(now - 1) < id && id < super::v7_floor(now + 1000));
    }
}
