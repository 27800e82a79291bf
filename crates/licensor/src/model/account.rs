//! An account: a tenant, with its signing keys (private halves sealed).

use sqlx::FromRow;
use uuid::Uuid;

#[derive(Debug, Clone, FromRow)]
pub struct Account {
    pub id: Uuid,
    pub slug: String,
    pub name: String,
    pub protected: bool,
    pub ed25519_public: String,
    pub ed25519_secret: Vec<u8>,
    pub rsa_public: String,
    pub rsa_secret: Vec<u8>,
    pub ecdsa_public: Option<String>,
    pub ecdsa_secret: Option<Vec<u8>>,
    pub created_at: i64,
    pub updated_at: i64,
}
