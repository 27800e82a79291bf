//! An API token, stored as the digest of its secret.

use sqlx::FromRow;
use uuid::Uuid;

#[derive(Debug, Clone, FromRow)]
pub struct Token {
    pub id: Uuid,
    pub account_id: Uuid,
    /// `user`, `product` or `license`.
    pub bearer_type: String,
    pub bearer_id: Uuid,
    pub digest: String,
    pub kind: String,
    pub name: Option<String>,
    pub expiry: Option<i64>,
    pub max_activations: Option<i64>,
    pub activations: i64,
    pub max_deactivations: Option<i64>,
    pub deactivations: i64,
    pub created_at: i64,
    pub updated_at: i64,
}
