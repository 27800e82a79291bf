//! Webhook endpoints and deliveries. Deliveries are claimed with a lease (`claimed_until`): a
//! worker that dies mid-delivery leaves a claim that expires, and another worker sends again,
//! so delivery is at least once.

use uuid::Uuid;

use super::sqlite_ids;
use crate::db::Db;
use crate::db_run;
use crate::error::Result;
use crate::model::{Json, Listing, Page, WebhookDelivery, WebhookEndpoint};

const ENDPOINT_COLUMNS: &str =
    "id, account_id, product_id, url, subscriptions, signature_algorithm, api_version, created_at, updated_at";

pub async fn find_endpoint(db: &Db, account: Uuid, id: Uuid) -> Result<Option<WebhookEndpoint>> {
    let sql = format!("SELECT {ENDPOINT_COLUMNS} FROM webhook_endpoints WHERE account_id = $1 AND id = $2");
    Ok(db_run!(db, |pool| sqlx::query_as::<_, WebhookEndpoint>(&sql)
        .bind(account)
        .bind(id)
        .fetch_optional(pool)
        .await?))
}

/// The account's endpoints, newest first; `product` limits them to one product's.
pub async fn list_endpoints(
    db: &Db,
    account: Uuid,
    product: Option<Uuid>,
    page: Page,
) -> Result<Listing<WebhookEndpoint>> {
    let filter = "account_id = $1 AND ($2 IS NULL OR product_id = $2)";
    let list = format!(
        "SELECT {ENDPOINT_COLUMNS} FROM webhook_endpoints WHERE {filter} ORDER BY created_at DESC, id DESC LIMIT $3 OFFSET $4"
    );
    let count = format!("SELECT COUNT(*) FROM webhook_endpoints WHERE {filter}");
    db_run!(db, |pool| {
        let rows = sqlx::query_as::<_, WebhookEndpoint>(&list)
            .bind(account)
            .bind(product)
            .bind(page.limit())
            .bind(page.offset())
            .fetch_all(pool)
            .await?;
        let total = sqlx::query_scalar::<_, i64>(&count).bind(account).bind(product).fetch_one(pool).await?;
        Ok(Listing { rows, total })
    })
}

pub async fn insert_endpoint(db: &Db, e: &WebhookEndpoint) -> Result<()> {
    let sql = format!("INSERT INTO webhook_endpoints ({ENDPOINT_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)");
    db_run!(db, |pool| sqlx::query(&sql)
        .bind(e.id)
        .bind(e.account_id)
        .bind(e.product_id)
        .bind(&e.url)
        .bind(&e.subscriptions)
        .bind(&e.signature_algorithm)
        .bind(&e.api_version)
        .bind(e.created_at)
        .bind(e.updated_at)
        .execute(pool)
        .await?
        .rows_affected());
    Ok(())
}

pub async fn update_endpoint(db: &Db, e: &WebhookEndpoint) -> Result<()> {
    const SQL: &str = "UPDATE webhook_endpoints SET product_id = $3, url = $4, subscriptions = $5, \
        signature_algorithm = $6, api_version = $7, updated_at = $8 WHERE account_id = $1 AND id = $2";
    db_run!(db, |pool| sqlx::query(SQL)
        .bind(e.account_id)
        .bind(e.id)
        .bind(e.product_id)
        .bind(&e.url)
        .bind(&e.subscriptions)
        .bind(&e.signature_algorithm)
        .bind(&e.api_version)
        .bind(e.updated_at)
        .execute(pool)
        .await?
        .rows_affected());
    Ok(())
}

pub async fn delete_endpoint(db: &Db, account: Uuid, id: Uuid) -> Result<()> {
    const SQL: &str = "DELETE FROM webhook_endpoints WHERE account_id = $1 AND id = $2";
    db_run!(db, |pool| sqlx::query(SQL).bind(account).bind(id).execute(pool).await?.rows_affected());
    Ok(())
}

/// Unsubscribes an endpoint from everything, as Keygen disables one that answered 410 Gone.
pub async fn disable_endpoint(db: &Db, id: Uuid) -> Result<()> {
    const SQL: &str = "UPDATE webhook_endpoints SET subscriptions = $2 WHERE id = $1";
    db_run!(db, |pool| sqlx::query(SQL).bind(id).bind(Json(Vec::<String>::new())).execute(pool).await?.rows_affected());
    Ok(())
}

const DELIVERY_COLUMNS: &str = "id, account_id, endpoint_id, event_log_id, event, api_version, endpoint_url, payload, \
    status, attempts, next_attempt_at, last_response_code, last_response_body, created_at, updated_at";

pub async fn find_delivery(db: &Db, account: Uuid, id: Uuid) -> Result<Option<WebhookDelivery>> {
    let sql = format!("SELECT {DELIVERY_COLUMNS} FROM webhook_events WHERE account_id = $1 AND id = $2");
    Ok(db_run!(db, |pool| sqlx::query_as::<_, WebhookDelivery>(&sql)
        .bind(account)
        .bind(id)
        .fetch_optional(pool)
        .await?))
}

/// Deliveries, newest first, optionally of some events only and of one product's endpoints.
pub async fn list_deliveries(
    db: &Db,
    account: Uuid,
    events: &[String],
    product: Option<Uuid>,
    page: Page,
) -> Result<Listing<WebhookDelivery>> {
    let names = serde_json::to_string(events).unwrap_or_else(|_| "[]".into());
    let in_events = match db {
        Db::Sqlite(_) => "event IN (SELECT value FROM json_each($2))",
        Db::Postgres(_) => "event IN (SELECT jsonb_array_elements_text($2::jsonb))",
    };
    let filter = format!(
        "account_id = $1 AND ($3 OR {in_events}) AND ($4 IS NULL OR endpoint_id IN \
         (SELECT id FROM webhook_endpoints WHERE account_id = $1 AND product_id = $4))"
    );
    let list = format!(
        "SELECT {DELIVERY_COLUMNS} FROM webhook_events WHERE {filter} ORDER BY created_at DESC, id DESC LIMIT $5 OFFSET $6"
    );
    let count = format!("SELECT COUNT(*) FROM webhook_events WHERE {filter}");
    db_run!(db, |pool| {
        let rows = sqlx::query_as::<_, WebhookDelivery>(&list)
            .bind(account)
            .bind(&names)
            .bind(events.is_empty())
            .bind(product)
            .bind(page.limit())
            .bind(page.offset())
            .fetch_all(pool)
            .await?;
        let total = sqlx::query_scalar::<_, i64>(&count)
            .bind(account)
            .bind(&names)
            .bind(events.is_empty())
            .bind(product)
            .fetch_one(pool)
            .await?;
        Ok(Listing { rows, total })
    })
}

/// A new delivery of the same event to the same endpoint, due now (Keygen's retry action).
pub async fn insert_retry(db: &Db, of: &WebhookDelivery, id: Uuid, now: i64) -> Result<()> {
    db_run!(db, |pool| sqlx::query(crate::store::events::INSERT_DELIVERY)
        .bind(id)
        .bind(of.account_id)
        .bind(of.endpoint_id)
        .bind(of.event_log_id)
        .bind(&of.event)
        .bind(&of.api_version)
        .bind(&of.endpoint_url)
        .bind(&of.payload)
        .bind(now)
        .execute(pool)
        .await?
        .rows_affected());
    Ok(())
}

pub async fn delete_delivery(db: &Db, account: Uuid, id: Uuid) -> Result<()> {
    const SQL: &str = "DELETE FROM webhook_events WHERE account_id = $1 AND id = $2";
    db_run!(db, |pool| sqlx::query(SQL).bind(account).bind(id).execute(pool).await?.rows_affected());
    Ok(())
}

/// Claims until `until` at most `limit` deliveries due at `now` that no live worker holds, at
/// most `per_endpoint` of each endpoint, each endpoint's soonest first, leaving out the
/// `full` endpoints (already holding as many as they may). One statement whatever the batch's
/// size: a busy hour of events costs one write per batch, not one per delivery. Endpoints are
/// visited one by one through their own index, so a full endpoint's backlog is never walked.
/// On PostgreSQL a row another node is claiming at that moment is skipped rather than waited
/// for (`SKIP LOCKED`) and the condition is checked again once the row is locked, so when
/// nodes race for a delivery exactly one gets it; on SQLite the one writer makes the statement
/// atomic.
pub async fn claim_due(
    db: &Db,
    now: i64,
    until: i64,
    full: &[Uuid],
    per_endpoint: i64,
    limit: i64,
) -> Result<Vec<WebhookDelivery>> {
    const DUE: &str = "SELECT y.id FROM webhook_events y WHERE y.endpoint_id = e.id \
        AND y.status IN ('DELIVERING', 'FAILING') AND y.next_attempt_at <= $2 \
        AND (y.claimed_until IS NULL OR y.claimed_until < $2) ORDER BY y.next_attempt_at LIMIT $5";
    let _turn = db.write_turn().await?;
    Ok(match db {
        Db::Sqlite(sqlite) => {
            let sql = format!(
                "UPDATE webhook_events SET claimed_until = $1 WHERE id IN (SELECT x.id FROM webhook_endpoints e \
                 JOIN webhook_events x ON x.id IN ({DUE}) \
                 WHERE e.id NOT IN (SELECT unhex(value) FROM json_each($3)) LIMIT $4) RETURNING {DELIVERY_COLUMNS}"
            );
            let json = sqlite_ids(full);
            sqlx::query_as::<_, WebhookDelivery>(&sql)
                .bind(until)
                .bind(now)
                .bind(json)
                .bind(limit)
                .bind(per_endpoint)
                .fetch_all(&sqlite.pool)
                .await?
        }
        Db::Postgres(pool) => {
            let sql = format!(
                "UPDATE webhook_events SET claimed_until = $1 WHERE id IN (SELECT x.id FROM webhook_endpoints e \
                 CROSS JOIN LATERAL ({DUE} FOR UPDATE SKIP LOCKED) x WHERE NOT (e.id = ANY($3)) LIMIT $4) \
                 RETURNING {DELIVERY_COLUMNS}"
            );
            sqlx::query_as::<_, WebhookDelivery>(&sql)
                .bind(until)
                .bind(now)
                .bind(full)
                .bind(limit)
                .bind(per_endpoint)
                .fetch_all(pool)
                .await?
        }
    })
}

/// The signature algorithm of each of `endpoints` that still exists: one read per claimed
/// batch, not one per delivery.
pub async fn signature_algorithms(db: &Db, endpoints: &[Uuid]) -> Result<Vec<(Uuid, String)>> {
    Ok(match db {
        Db::Sqlite(sqlite) => {
            const SQL: &str = "SELECT id, signature_algorithm FROM webhook_endpoints \
                WHERE id IN (SELECT unhex(value) FROM json_each($1))";
            let json = sqlite_ids(endpoints);
            sqlx::query_as(SQL).bind(json).fetch_all(&sqlite.pool).await?
        }
        Db::Postgres(pool) => {
            const SQL: &str = "SELECT id, signature_algorithm FROM webhook_endpoints WHERE id = ANY($1)";
            sqlx::query_as(SQL).bind(endpoints).fetch_all(pool).await?
        }
    })
}

/// Hands back the claims on `ids` whose answer was never recorded (a stopping node's
/// deliveries cut off or never started): due again at once for any node, rather than after
/// the claim's lease runs out.
pub async fn release(db: &Db, ids: &[Uuid]) -> Result<u64> {
    if ids.is_empty() {
        return Ok(0);
    }
    let unfinished = "status IN ('DELIVERING', 'FAILING') AND claimed_until IS NOT NULL";
    let _turn = db.write_turn().await?;
    Ok(match db {
        Db::Sqlite(sqlite) => {
            let sql = format!(
                "UPDATE webhook_events SET claimed_until = NULL WHERE id IN (SELECT unhex(value) FROM json_each($1)) AND {unfinished}"
            );
            let json = sqlite_ids(ids);
            sqlx::query(&sql).bind(json).execute(&sqlite.pool).await?.rows_affected()
        }
        Db::Postgres(pool) => {
            let sql = format!("UPDATE webhook_events SET claimed_until = NULL WHERE id = ANY($1) AND {unfinished}");
            sqlx::query(&sql).bind(ids).execute(pool).await?.rows_affected()
        }
    })
}

/// What an attempt came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    pub status: &'static str,
    pub code: Option<i64>,
    pub body: Option<String>,
    /// When to try again (FAILING only).
    pub next_attempt_at: i64,
}

/// Records attempts and releases their claims, all in one statement: on SQLite every write
/// waits for the one writer, so a batch of answers costs one wait and one statement, not one
/// each.
pub async fn finish_many(db: &Db, done: &[(Uuid, Outcome)], now: i64) -> Result<()> {
    const SET: &str = "SET status = o.status, attempts = w.attempts + 1, last_response_code = o.code, \
        last_response_body = o.body, next_attempt_at = o.next, claimed_until = NULL, updated_at = $2";
    if done.is_empty() {
        return Ok(());
    }
    let _turn = db.write_turn().await?;
    match db {
        Db::Sqlite(sqlite) => {
            let rows: Vec<serde_json::Value> = done
                .iter()
                .map(|(id, o)| {
                    serde_json::json!({"id": hex::encode(id.as_bytes()), "status": o.status, "code": o.code,
                        "body": o.body, "next": o.next_attempt_at})
                })
                .collect();
            let json = serde_json::to_string(&rows).map_err(anyhow::Error::from)?;
            let sql = format!(
                "UPDATE webhook_events AS w {SET} FROM (SELECT unhex(value->>'id') AS id, value->>'status' AS status, \
                 value->>'code' AS code, value->>'body' AS body, value->>'next' AS next FROM json_each($1)) AS o \
                 WHERE w.id = o.id"
            );
            sqlx::query(&sql).bind(json).bind(now).execute(&sqlite.pool).await?;
        }
        Db::Postgres(pool) => {
            let sql = format!(
                "UPDATE webhook_events AS w {SET} FROM UNNEST($1::uuid[], $3::text[], $4::bigint[], $5::text[], \
                 $6::bigint[]) AS o(id, status, code, body, next) WHERE w.id = o.id"
            );
            let ids: Vec<Uuid> = done.iter().map(|(id, _)| *id).collect();
            let statuses: Vec<&str> = done.iter().map(|(_, o)| o.status).collect();
            let codes: Vec<Option<i64>> = done.iter().map(|(_, o)| o.code).collect();
            let bodies: Vec<Option<&str>> = done.iter().map(|(_, o)| o.body.as_deref()).collect();
            let next: Vec<i64> = done.iter().map(|(_, o)| o.next_attempt_at).collect();
            sqlx::query(&sql)
                .bind(ids)
                .bind(now)
                .bind(statuses)
                .bind(codes)
                .bind(bodies)
                .bind(next)
                .execute(pool)
                .await?;
        }
    }
    Ok(())
}

/// Deliveries waiting to be sent (the webhook queue's depth, for the metrics).
pub async fn queue_depth(db: &Db) -> Result<i64> {
    const SQL: &str = "SELECT COUNT(*) FROM webhook_events WHERE status IN ('DELIVERING', 'FAILING')";
    Ok(db_run!(db, |pool| sqlx::query_scalar::<_, i64>(SQL).fetch_one(pool).await?))
}

/// Whether any endpoint of the account subscribes to a validation event.
pub async fn subscribes_to_validations(db: &Db, account: Uuid) -> Result<bool> {
    const SQL: &str = "SELECT subscriptions FROM webhook_endpoints WHERE account_id = $1";
    let all: Vec<Json<Vec<String>>> = db_run!(db, |pool| sqlx::query_scalar(SQL).bind(account).fetch_all(pool).await?);
    Ok(all.iter().any(|s| {
        crate::events::subscribed(&s.0, "license.validation.succeeded")
            || crate::events::subscribed(&s.0, "license.validation.failed")
    }))
}
