//! A user of an account (an admin, or a customer).

use sqlx::FromRow;
use uuid::Uuid;

use super::Metadata;

#[derive(Debug, Clone, FromRow)]
pub struct User {
    pub id: Uuid,
    pub account_id: Uuid,
    pub email: String,
    pub password_hash: Option<String>,
    pub first_name: Option<String>,
    pub last_name: Option<String>,
    pub role: String,
    pub group_id: Option<Uuid>,
    pub banned_at: Option<i64>,
    pub metadata: Metadata,
    pub created_at: i64,
    pub updated_at: i64,
}

impl User {
    /// A new customer (role `user`) with no password yet.
    pub fn new(account_id: Uuid, email: String, now: i64) -> User {
        User {
            id: Uuid::new_v4(),
            account_id,
            email,
            password_hash: None,
            first_name: None,
            last_name: None,
            role: "user".into(),
            group_id: None,
            banned_at: None,
            metadata: super::empty_metadata(),
            created_at: now,
            updated_at: now,
        }
    }
}
