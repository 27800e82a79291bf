//! A policy and its rules: every knob Keygen's policies have, with Keygen's defaults. The
//! rules are stored as one JSON document per policy (read whole, never queried field by field).

use serde::{Deserialize, Serialize};
use sqlx::types::Json;
use sqlx::FromRow;
use uuid::Uuid;

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

fn s(v: &str) -> String {
    v.to_string()
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
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
    pub machine_uniqueness_strategy: String,
    pub machine_matching_strategy: String,
    pub component_uniqueness_strategy: String,
    pub component_matching_strategy: String,
    pub expiration_strategy: String,
    pub expiration_basis: String,
    pub renewal_basis: String,
    pub transfer_strategy: String,
    pub authentication_strategy: String,
    pub machine_leasing_strategy: String,
    pub process_leasing_strategy: String,
    pub overage_strategy: String,
    pub scheme: Option<String>,
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
    pub check_in_interval: Option<String>,
    pub check_in_interval_count: Option<i64>,
    pub require_heartbeat: bool,
    pub heartbeat_duration: Option<i64>,
    pub heartbeat_cull_strategy: String,
    pub heartbeat_resurrection_strategy: String,
    pub heartbeat_basis: String,
}

impl Default for PolicyRules {
    fn default() -> Self {
        PolicyRules {
            duration: None,
            strict: false,
            floating: false,
            use_pool: false,
            max_machines: None,
            max_processes: None,
            max_users: None,
            max_cores: None,
            max_memory: None,
            max_disk: None,
            max_uses: None,
            machine_uniqueness_strategy: s("UNIQUE_PER_LICENSE"),
            machine_matching_strategy: s("MATCH_ANY"),
            component_uniqueness_strategy: s("UNIQUE_PER_MACHINE"),
            component_matching_strategy: s("MATCH_ANY"),
            expiration_strategy: s("RESTRICT_ACCESS"),
            expiration_basis: s("FROM_CREATION"),
            renewal_basis: s("FROM_EXPIRY"),
            transfer_strategy: s("KEEP_EXPIRY"),
            authentication_strategy: s("TOKEN"),
            machine_leasing_strategy: s("PER_LICENSE"),
            process_leasing_strategy: s("PER_MACHINE"),
            overage_strategy: s("NO_OVERAGE"),
            scheme: None,
            encrypted: false,
            protected: false,
            require_product_scope: false,
            require_policy_scope: false,
            require_machine_scope: false,
            require_fingerprint_scope: false,
            require_components_scope: false,
            require_user_scope: false,
            require_checksum_scope: false,
            require_version_scope: false,
            require_check_in: false,
            check_in_interval: None,
            check_in_interval_count: None,
            require_heartbeat: false,
            heartbeat_duration: None,
            heartbeat_cull_strategy: s("DEACTIVATE_DEAD"),
            heartbeat_resurrection_strategy: s("NO_REVIVE"),
            heartbeat_basis: s("FROM_FIRST_PING"),
        }
    }
}
