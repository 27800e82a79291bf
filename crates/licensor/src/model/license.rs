//! A license, read with what rendering and validation need (its policy's rules, machine and
//! user counts, whether the owner is banned).

use sqlx::FromRow;
use uuid::Uuid;

use super::{Metadata, PolicyRules};

#[derive(Debug, Clone, FromRow)]
pub struct License {
    pub id: Uuid,
    pub account_id: Uuid,
    pub product_id: Uuid,
    pub policy_id: Uuid,
    pub owner_id: Option<Uuid>,
    pub group_id: Option<Uuid>,
    pub key: String,
    pub name: Option<String>,
    pub expiry: Option<i64>,
    pub suspended: bool,
    pub protected: Option<bool>,
    pub uses: i64,
    pub max_machines: Option<i64>,
    pub max_processes: Option<i64>,
    pub max_users: Option<i64>,
    pub max_cores: Option<i64>,
    pub max_uses: Option<i64>,
    pub max_memory: Option<i64>,
    pub max_disk: Option<i64>,
    pub last_validated_at: Option<i64>,
    pub last_check_out_at: Option<i64>,
    pub last_check_in_at: Option<i64>,
    pub metadata: Metadata,
    pub created_at: i64,
    pub updated_at: i64,
    // Read-only here: policy rules from the join; counts kept by triggers (migration 0006).
    pub policy_rules: super::Rules,
    pub machines_count: i64,
    pub machines_cores: i64,
    pub users_count: i64,
    pub owner_banned: bool,
    pub machines_memory: i64,
    pub machines_disk: i64,
}

impl License {
    pub fn rules(&self) -> &PolicyRules {
        &self.policy_rules.0
    }
    /// The license's users as Keygen counts them: the attached ones plus the owner.
    pub fn users_total(&self) -> i64 {
        self.users_count + i64::from(self.owner_id.is_some())
    }
    pub fn max_machines(&self) -> Option<i64> {
        self.max_machines.or(self.rules().max_machines)
    }
    pub fn max_processes(&self) -> Option<i64> {
        self.max_processes.or(self.rules().max_processes)
    }
    pub fn max_users(&self) -> Option<i64> {
        self.max_users.or(self.rules().max_users)
    }
    pub fn max_cores(&self) -> Option<i64> {
        self.max_cores.or(self.rules().max_cores)
    }
    pub fn max_uses(&self) -> Option<i64> {
        self.max_uses.or(self.rules().max_uses)
    }
    pub fn max_memory(&self) -> Option<i64> {
        self.max_memory.or(self.rules().max_memory)
    }
    pub fn max_disk(&self) -> Option<i64> {
        self.max_disk.or(self.rules().max_disk)
    }
    pub fn is_protected(&self) -> bool {
        self.protected.unwrap_or(self.rules().protected)
    }

    /// Whether `other`, a later read of this license, holds the same terms for deciding an
    /// activation and whether its key or token may act: its standing, its owner and protection,
    /// its policy's rules and its limits. What only moves with use (counters, last check-in,
    /// name, metadata) is left out: activations count usage in their own transaction.
    pub fn same_terms(&self, other: &License) -> bool {
        self.id == other.id
            && self.policy_id == other.policy_id
            && self.product_id == other.product_id
            && self.owner_id == other.owner_id
            && self.owner_banned == other.owner_banned
            && self.key == other.key
            && self.expiry == other.expiry
            && self.suspended == other.suspended
            && self.protected == other.protected
            && (self.max_machines, self.max_cores, self.max_memory, self.max_disk, self.max_processes)
                == (other.max_machines, other.max_cores, other.max_memory, other.max_disk, other.max_processes)
            && (std::sync::Arc::ptr_eq(&self.policy_rules.0, &other.policy_rules.0) || self.rules() == other.rules())
    }

    /// A license of nil ids under `rules`, for unit tests of the rules.
    #[cfg(test)]
    pub(crate) fn for_tests(rules: PolicyRules) -> License {
        License {
            id: Uuid::nil(),
            account_id: Uuid::nil(),
            product_id: Uuid::nil(),
            policy_id: Uuid::nil(),
            owner_id: None,
            group_id: None,
            key: "K".into(),
            name: None,
            expiry: None,
            suspended: false,
            protected: None,
            uses: 0,
            max_machines: None,
            max_processes: None,
            max_users: None,
            max_cores: None,
            max_uses: None,
            max_memory: None,
            max_disk: None,
            last_validated_at: None,
            last_check_out_at: None,
            last_check_in_at: None,
            metadata: sqlx::types::Json(serde_json::json!({})),
            created_at: 0,
            updated_at: 0,
            policy_rules: super::Rules(std::sync::Arc::new(rules)),
            machines_count: 0,
            machines_cores: 0,
            machines_memory: 0,
            machines_disk: 0,
            users_count: 0,
            owner_banned: false,
        }
    }
}
