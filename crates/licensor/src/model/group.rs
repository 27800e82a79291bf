//! A group of users, licenses and machines, with optional caps.

use sqlx::FromRow;
use uuid::Uuid;

use super::Metadata;

#[derive(Debug, Clone, FromRow)]
pub struct Group {
    pub id: Uuid,
    pub account_id: Uuid,
    pub name: String,
    pub max_users: Option<i64>,
    pub max_licenses: Option<i64>,
    pub max_machines: Option<i64>,
    pub metadata: Metadata,
    pub created_at: i64,
    pub updated_at: i64,
}
