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

    /// What decides an activation and whether this license's key or token may act: its
    /// standing, its owner and protection, its policy's rules and its limits. What only moves
    /// with use (counters, last check-in, name, metadata) is left out: activations count usage
    /// in their own transaction.
    pub fn terms(&self) -> LicenseTerms {
        LicenseTerms {
            policy_id: self.policy_id,
            product_id: self.product_id,
            owner_id: self.owner_id,
            owner_banned: self.owner_banned,
            key: self.key.clone(),
            expiry: self.expiry,
            suspended: self.suspended,
            protected: self.protected,
            max_machines: self.max_machines,
            max_cores: self.max_cores,
            max_memory: self.max_memory,
            max_disk: self.max_disk,
            max_processes: self.max_processes,
            policy_rules: self.policy_rules.clone(),
        }
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

/// A license's [`License::terms`], as an activation reads them again under its lock
/// (`store::machines::activate`), in the columns' order there.
#[derive(Debug, Clone, PartialEq, FromRow)]
pub struct LicenseTerms {
    pub policy_id: Uuid,
    pub product_id: Uuid,
    pub owner_id: Option<Uuid>,
    pub owner_banned: bool,
    pub key: String,
    pub expiry: Option<i64>,
    pub suspended: bool,
    pub protected: Option<bool>,
    pub max_machines: Option<i64>,
    pub max_cores: Option<i64>,
    pub max_memory: Option<i64>,
    pub max_disk: Option<i64>,
    pub max_processes: Option<i64>,
    pub policy_rules: super::Rules,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn terms_change_with_what_decides_an_activation_only() {
        let l = License::for_tests(PolicyRules::default());
        let base = l.terms();
        // What moves with use leaves the terms alone.
        let used = License {
            machines_count: 3,
            machines_cores: 8,
            users_count: 2,
            uses: 5,
            name: Some("renamed".into()),
            updated_at: 9,
            last_check_in_at: Some(7),
            ..l.clone()
        };
        assert_eq!(used.terms(), base);
        // The same rules parsed twice are the same terms.
        let reparsed = License { policy_rules: super::super::Rules::from(PolicyRules::default()), ..l.clone() };
        assert_eq!(reparsed.terms(), base);
        let changed = [
            License { suspended: true, ..l.clone() },
            License { expiry: Some(1), ..l.clone() },
            License { owner_banned: true, ..l.clone() },
            License { owner_id: Some(Uuid::from_u128(1)), ..l.clone() },
            License { protected: Some(true), ..l.clone() },
            License { policy_id: Uuid::from_u128(2), ..l.clone() },
            License { product_id: Uuid::from_u128(3), ..l.clone() },
            License { key: "other".into(), ..l.clone() },
            License { max_machines: Some(1), ..l.clone() },
            License { max_cores: Some(1), ..l.clone() },
            License { max_memory: Some(1), ..l.clone() },
            License { max_disk: Some(1), ..l.clone() },
            License { max_processes: Some(1), ..l.clone() },
            License {
                policy_rules: super::super::Rules::from(PolicyRules { floating: true, ..Default::default() }),
                ..l
            },
        ];
        for (i, c) in changed.iter().enumerate() {
            assert_ne!(c.terms(), base, "change {i} went unnoticed");
        }
    }
}
