//! A machine (an activation) of a license.

use sqlx::FromRow;
use uuid::Uuid;

use super::Metadata;

#[derive(Debug, Clone, FromRow)]
pub struct Machine {
    pub id: Uuid,
    pub account_id: Uuid,
    pub license_id: Uuid,
    pub fingerprint: String,
    pub name: Option<String>,
    pub ip: Option<String>,
    pub hostname: Option<String>,
    pub platform: Option<String>,
    pub cores: Option<i64>,
    pub memory: Option<i64>,
    pub disk: Option<i64>,
    pub owner_id: Option<Uuid>,
    pub group_id: Option<Uuid>,
    pub max_processes: Option<i64>,
    pub last_heartbeat_at: Option<i64>,
    pub last_check_out_at: Option<i64>,
    pub metadata: Metadata,
    pub created_at: i64,
    pub updated_at: i64,
    // Derived, read-only: from the machine's license and policy.
    pub product_id: Uuid,
    pub policy_id: Uuid,
    pub policy_rules: super::Rules,
}

impl Machine {
    /// A machine about to be activated on `license`, with nothing but its fingerprint set.
    /// Takes what a new machine holds of its license from `license`, a later read of it.
    pub fn follow(&mut self, license: &crate::model::License) {
        let fresh = Machine::new(license, self.id, String::new(), self.created_at);
        (self.product_id, self.policy_id, self.policy_rules) = (fresh.product_id, fresh.policy_id, fresh.policy_rules);
        self.last_heartbeat_at = fresh.last_heartbeat_at;
    }

    pub fn new(license: &crate::model::License, id: Uuid, fingerprint: String, now: i64) -> Machine {
        Machine {
            id,
            account_id: license.account_id,
            license_id: license.id,
            fingerprint,
            name: None,
            ip: None,
            hostname: None,
            platform: None,
            cores: None,
            memory: None,
            disk: None,
            owner_id: None,
            group_id: None,
            max_processes: None,
            last_heartbeat_at: (license.rules().heartbeat_basis == super::HeartbeatBasis::FromCreation).then_some(now),
            last_check_out_at: None,
            metadata: super::empty_metadata(),
            created_at: now,
            updated_at: now,
            product_id: license.product_id,
            policy_id: license.policy_id,
            policy_rules: license.policy_rules.clone(),
        }
    }
}
