//! A hardware component of a machine.

use sqlx::FromRow;
use uuid::Uuid;

use super::Metadata;

#[derive(Debug, Clone, FromRow)]
pub struct Component {
    pub id: Uuid,
    pub account_id: Uuid,
    pub machine_id: Uuid,
    pub fingerprint: String,
    pub name: String,
    pub metadata: Metadata,
    pub created_at: i64,
    pub updated_at: i64,
}
