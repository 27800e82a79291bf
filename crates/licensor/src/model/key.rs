//! A pooled key (Keygen's `keys`): made ahead of time for a policy that uses a pool, and
//! handed to the next license created under it.

use sqlx::FromRow;
use uuid::Uuid;

#[derive(Debug, Clone, FromRow)]
pub struct Key {
    pub id: Uuid,
    pub account_id: Uuid,
    pub product_id: Uuid,
    pub policy_id: Uuid,
    pub key: String,
    pub created_at: i64,
    pub updated_at: i64,
}
