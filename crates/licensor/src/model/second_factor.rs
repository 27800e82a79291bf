use sqlx::FromRow;
use uuid::Uuid;

/// A user's second factor (TOTP). Until it is enabled (with a first code) it is only set up:
/// logins do not ask for it.
#[derive(Debug, Clone, FromRow)]
pub struct SecondFactor {
    pub id: Uuid,
    pub account_id: Uuid,
    pub user_id: Uuid,
    /// The TOTP secret, sealed with the master key (`crypto::MasterKey::seal`, the factor's id
    /// as associated data).
    pub secret: Vec<u8>,
    pub enabled: bool,
    /// The last 30-second step a code was taken for.
    pub last_verified_step: Option<i64>,
    pub created_at: i64,
    pub updated_at: i64,
}
