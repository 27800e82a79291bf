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

impl Group {
    /// A new group with no caps.
    pub fn new(account_id: Uuid, name: String, now: i64) -> Group {
        Group {
            id: Uuid::new_v4(),
            account_id,
            name,
            max_users: None,
            max_licenses: None,
            max_machines: None,
            metadata: super::empty_metadata(),
            created_at: now,
            updated_at: now,
        }
    }
}
