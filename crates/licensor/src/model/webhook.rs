//! Webhook endpoints, their deliveries (Keygen's "webhook events"), and the event log.

use sqlx::FromRow;
use uuid::Uuid;

use super::Metadata;

#[derive(Debug, Clone, FromRow)]
pub struct WebhookEndpoint {
    pub id: Uuid,
    pub account_id: Uuid,
    /// When set, the endpoint receives only events about this product's resources.
    pub product_id: Option<Uuid>,
    pub url: String,
    /// Event names, or `["*"]`; empty once a receiver answered 410 Gone (disabled).
    pub subscriptions: sqlx::types::Json<Vec<String>>,
    pub signature_algorithm: String,
    pub api_version: String,
    pub created_at: i64,
    pub updated_at: i64,
}

/// Where a delivery stands, as Keygen names it.
pub mod delivery_status {
    pub const DELIVERING: &str = "DELIVERING";
    pub const DELIVERED: &str = "DELIVERED";
    pub const FAILING: &str = "FAILING";
    pub const FAILED: &str = "FAILED";
}

/// One event on its way to one endpoint.
#[derive(Debug, Clone, FromRow)]
pub struct WebhookDelivery {
    pub id: Uuid,
    pub account_id: Uuid,
    pub endpoint_id: Uuid,
    /// The event this delivers; the same for every endpoint and every retry, so receivers
    /// de-duplicate on it (`meta.idempotencyToken`).
    pub event_log_id: Uuid,
    pub event: String,
    pub api_version: String,
    pub endpoint_url: String,
    pub payload: String,
    pub status: String,
    pub attempts: i64,
    pub next_attempt_at: i64,
    pub last_response_code: Option<i64>,
    pub last_response_body: Option<String>,
    pub created_at: i64,
    pub updated_at: i64,
}

#[derive(Debug, Clone, FromRow)]
pub struct EventLog {
    pub id: Uuid,
    pub account_id: Uuid,
    pub event: String,
    pub resource_type: String,
    pub resource_id: Uuid,
    pub whodunnit_type: Option<String>,
    pub whodunnit_id: Option<Uuid>,
    pub request_id: Option<String>,
    pub metadata: Metadata,
    pub created_at: i64,
}
