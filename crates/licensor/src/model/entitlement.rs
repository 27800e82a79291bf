//! An entitlement: a named feature a license or policy grants.

use sqlx::FromRow;
use uuid::Uuid;

use super::Metadata;

#[derive(Debug, Clone, FromRow)]
pub struct Entitlement {
    pub id: Uuid,
    pub account_id: Uuid,
    pub name: String,
    pub code: String,
    pub metadata: Metadata,
    pub created_at: i64,
    pub updated_at: i64,
}

impl Entitlement {
    pub fn new(account_id: Uuid, code: String, name: String, now: i64) -> Entitlement {
        Entitlement {
            id: Uuid::new_v4(),
            account_id,
            name,
            code,
            metadata: super::empty_metadata(),
            created_at: now,
            updated_at: now,
        }
    }
}
