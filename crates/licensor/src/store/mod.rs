//! Repositories: every SQL statement Licensor runs lives in this module, next to the one function
//! that runs it. Every function that touches account data takes the account id first and
//! filters on it, so tenant isolation is structural.

pub mod accounts;
pub mod astra;
pub mod components;
pub mod entitlements;
pub mod groups;
pub mod leases;
pub mod licenses;
pub mod machines;
pub mod policies;
pub mod processes;
pub mod products;
pub mod tokens;
pub mod users;

use serde_json::Value;

pub use sqlx::types::Json;

pub type Metadata = Json<Value>;

/// Offset pagination as the API asks for it: a page size and a 1-based page number.
#[derive(Debug, Clone, Copy)]
pub struct Page {
    pub size: i64,
    pub number: i64,
}

impl Page {
    pub fn limit(&self) -> i64 {
        self.size
    }
    pub fn offset(&self) -> i64 {
        (self.number - 1) * self.size
    }
}

/// One page of rows and the total count behind it.
#[derive(Debug)]
pub struct Listing<T> {
    pub rows: Vec<T>,
    pub total: i64,
}

pub fn empty_metadata() -> Metadata {
    Json(Value::Object(Default::default()))
}
