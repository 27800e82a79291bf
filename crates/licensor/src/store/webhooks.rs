//! Webhook endpoints and deliveries. Deliveries are claimed with a lease (`claimed_until`): a
//! worker that dies mid-delivery leaves a claim that expires, and another worker sends again,
//! so delivery is at least once.

use uuid::Uuid;

use crate::db::{BeginWrite, Db};
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

/// Deliveries due at `now` that no live worker holds, soonest first, leaving out those of
/// the `full` endpoints (already sending as many as they may): (id, endpoint). Reading only
/// what can be sent keeps the cost per delivery flat however long one endpoint's backlog is.
/// A read only: [`claim`] takes them.
pub async fn due(db: &Db, now: i64, full: &[Uuid], limit: i64) -> Result<Vec<(Uuid, Uuid)>> {
    const DUE: &str = "SELECT id, endpoint_id FROM webhook_events WHERE status IN ('DELIVERING', 'FAILING') \
        AND next_attempt_at <= $1 AND (claimed_until IS NULL OR claimed_until < $1)";
    Ok(match db {
        Db::Sqlite(sqlite) => {
            let sql = format!(
                "{DUE} AND endpoint_id NOT IN (SELECT unhex(value) FROM json_each($3)) ORDER BY next_attempt_at LIMIT $2"
            );
            let hex: Vec<String> = full.iter().map(|id| hex::encode(id.as_bytes())).collect();
            let json = serde_json::to_string(&hex).map_err(anyhow::Error::from)?;
            sqlx::query_as(&sql).bind(now).bind(limit).bind(json).fetch_all(&sqlite.pool).await?
        }
        Db::Postgres(pool) => {
            let sql = format!("{DUE} AND NOT (endpoint_id = ANY($3)) ORDER BY next_attempt_at LIMIT $2");
            sqlx::query_as(&sql).bind(now).bind(limit).bind(full).fetch_all(pool).await?
        }
    })
}

/// Claims `ids` until `until`, those still due and unclaimed: the condition is checked again
/// by the update itself, so when nodes race for a delivery exactly one gets it.
pub async fn claim(db: &Db, ids: &[Uuid], now: i64, until: i64) -> Result<Vec<WebhookDelivery>> {
    let free = "status IN ('DELIVERING', 'FAILING') AND (claimed_until IS NULL OR claimed_until < $2)";
    let _turn = db.write_turn().await?;
    Ok(match db {
        Db::Sqlite(sqlite) => {
            let sql = format!(
                "UPDATE webhook_events SET claimed_until = $1 WHERE id IN (SELECT unhex(value) FROM json_each($3)) \
                 AND {free} RETURNING {DELIVERY_COLUMNS}"
            );
            let hex: Vec<String> = ids.iter().map(|id| hex::encode(id.as_bytes())).collect();
            let json = serde_json::to_string(&hex).map_err(anyhow::Error::from)?;
            sqlx::query_as::<_, WebhookDelivery>(&sql).bind(until).bind(now).bind(json).fetch_all(&sqlite.pool).await?
        }
        Db::Postgres(pool) => {
            let sql = format!(
                "UPDATE webhook_events SET claimed_until = $1 WHERE id = ANY($3) AND {free} RETURNING {DELIVERY_COLUMNS}"
            );
            sqlx::query_as::<_, WebhookDelivery>(&sql).bind(until).bind(now).bind(ids).fetch_all(pool).await?
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
            let hex: Vec<String> = ids.iter().map(|id| hex::encode(id.as_bytes())).collect();
            let json = serde_json::to_string(&hex).map_err(anyhow::Error::from)?;
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

/// Records attempts and releases their claims, all in one transaction: on SQLite every write
/// waits for the one writer, so a batch of answers costs one wait, not one each.
pub async fn finish_many(db: &Db, done: &[(Uuid, Outcome)], now: i64) -> Result<()> {
    const SQL: &str = "UPDATE webhook_events SET status = $2, attempts = attempts + 1, last_response_code = $3, \
        last_response_body = $4, next_attempt_at = $5, claimed_until = NULL, updated_at = $6 WHERE id = $1";
    if done.is_empty() {
        return Ok(());
    }
    db_run!(db, |pool| {
        let mut tx = pool.begin_write().await?;
        for (id, o) in done {
            sqlx::query(SQL)
                .bind(id)
                .bind(o.status)
                .bind(o.code)
                .bind(&o.body)
                .bind(o.next_attempt_at)
                .bind(now)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
    });
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
