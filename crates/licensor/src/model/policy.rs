//! A policy and its rules: every knob Keygen's policies have, with Keygen's defaults. The
//! rules are stored as one JSON document per policy (read whole, never queried field by field).

use serde::{Deserialize, Serialize};
use sqlx::types::Json;
use sqlx::FromRow;
use uuid::Uuid;

use super::strategy::*;
use super::Metadata;

#[derive(Debug, Clone, FromRow)]
pub struct Policy {
    pub id: Uuid,
    pub account_id: Uuid,
    pub product_id: Uuid,
    pub name: String,
    pub rules: Json<PolicyRules>,
    pub metadata: Metadata,
    pub created_at: i64,
    pub updated_at: i64,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct PolicyRules {
    pub duration: Option<i64>,
    pub strict: bool,
    pub floating: bool,
    pub use_pool: bool,
    pub max_machines: Option<i64>,
    pub max_processes: Option<i64>,
    pub max_users: Option<i64>,
    pub max_cores: Option<i64>,
    pub max_memory: Option<i64>,
    pub max_disk: Option<i64>,
    pub max_uses: Option<i64>,
    pub machine_uniqueness_strategy: MachineUniqueness,
    pub machine_matching_strategy: Matching,
    pub component_uniqueness_strategy: ComponentUniqueness,
    pub component_matching_strategy: Matching,
    pub expiration_strategy: ExpirationStrategy,
    pub expiration_basis: ExpirationBasis,
    pub renewal_basis: RenewalBasis,
    pub transfer_strategy: TransferStrategy,
    pub authentication_strategy: AuthenticationStrategy,
    pub machine_leasing_strategy: MachineLeasing,
    pub process_leasing_strategy: ProcessLeasing,
    pub overage_strategy: OverageStrategy,
    pub scheme: Option<Scheme>,
    pub encrypted: bool,
    pub protected: bool,
    pub require_product_scope: bool,
    pub require_policy_scope: bool,
    pub require_machine_scope: bool,
    pub require_fingerprint_scope: bool,
    pub require_components_scope: bool,
    pub require_user_scope: bool,
    pub require_checksum_scope: bool,
    pub require_version_scope: bool,
    pub require_check_in: bool,
    /// Text, not `CheckInInterval`: Keygen checks it only when check-in is required, so stored
    /// policies may hold any string here. Read it through `check_in_unit`.
    pub check_in_interval: Option<String>,
    pub check_in_interval_count: Option<i64>,
    pub require_heartbeat: bool,
    pub heartbeat_duration: Option<i64>,
    pub heartbeat_cull_strategy: CullStrategy,
    pub heartbeat_resurrection_strategy: ResurrectionStrategy,
    pub heartbeat_basis: HeartbeatBasis,
}

impl PolicyRules {
    /// The check-in interval's unit, when it is one Keygen knows.
    pub fn check_in_unit(&self) -> Option<CheckInInterval> {
        self.check_in_interval.as_deref().and_then(CheckInInterval::parse)
    }
}

impl Policy {
    /// A new policy of `product` with Keygen's default rules; `protected` follows the account's
    /// setting, as Keygen's policies do.
    pub fn new(account_id: Uuid, product_id: Uuid, name: String, protected: bool, now: i64) -> Policy {
        Policy {
            id: Uuid::new_v4(),
            account_id,
            product_id,
            name,
            rules: Json(PolicyRules { protected, ..PolicyRules::default() }),
            metadata: super::empty_metadata(),
            created_at: now,
            updated_at: now,
        }
    }
}
