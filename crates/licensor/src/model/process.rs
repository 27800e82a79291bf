//! A process running on a machine.

use sqlx::FromRow;
use uuid::Uuid;

use super::Metadata;

#[derive(Debug, Clone, FromRow)]
pub struct Process {
    pub id: Uuid,
    pub account_id: Uuid,
    pub machine_id: Uuid,
    pub license_id: Uuid,
    pub pid: String,
    pub last_heartbeat_at: i64,
    pub metadata: Metadata,
    pub created_at: i64,
    pub updated_at: i64,
}
