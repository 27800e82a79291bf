//! A product: what licenses are sold for.

use sqlx::FromRow;
use uuid::Uuid;

use super::{Json, Metadata};

#[derive(Debug, Clone, FromRow)]
pub struct Product {
    pub id: Uuid,
    pub account_id: Uuid,
    pub name: String,
    pub code: Option<String>,
    pub distribution_strategy: Option<String>,
    pub url: Option<String>,
    pub platforms: Option<Json<Vec<String>>>,
    pub metadata: Metadata,
    pub created_at: i64,
    pub updated_at: i64,
}

impl Product {
    /// A new product with Keygen's defaults (LICENSED distribution, no metadata).
    pub fn new(account_id: Uuid, name: String, now: i64) -> Product {
        Product {
            id: Uuid::new_v4(),
            account_id,
            name,
            code: None,
            distribution_strategy: Some("LICENSED".into()),
            url: None,
            platforms: None,
            metadata: super::empty_metadata(),
            created_at: now,
            updated_at: now,
        }
    }
}
