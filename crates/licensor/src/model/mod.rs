//! The core model: what Licensor knows about accounts, products, policies, licenses, machines
//! and the rest, as plain types. Every other layer depends on this one, and it depends on
//! nothing else in the crate: `domain` decides with these types, `store` reads and writes them,
//! the API surfaces render them.

mod account;
mod activation;
mod component;
mod entitlement;
mod group;
mod key;
mod license;
mod machine;
mod policy;
mod process;
mod product;
mod second_factor;
pub mod strategy;
mod token;
mod user;
mod webhook;

use std::ops::Deref;
use std::sync::Arc;

use serde_json::Value;

pub use account::Account;
pub use activation::{ActivationLimits, ActivationRefusal, Decide, Uniqueness, Usage};
pub use component::Component;
pub use entitlement::Entitlement;
pub use group::Group;
pub use key::Key;
pub use license::{License, LicenseTerms};
pub use machine::Machine;
pub use policy::{Policy, PolicyRules};
pub use process::Process;
pub use product::Product;
pub use second_factor::SecondFactor;
pub use sqlx::types::Json;
pub use strategy::{
    AuthenticationStrategy, CheckInInterval, ComponentUniqueness, CullStrategy, ExpirationBasis, ExpirationStrategy,
    HeartbeatBasis, HeartbeatStatus, MachineLeasing, MachineUniqueness, Matching, OverageStrategy, ProcessLeasing,
    RenewalBasis, ResurrectionStrategy, Scheme, TransferStrategy,
};
pub use token::Token;
pub use user::User;
pub use webhook::{delivery_status, EventLog, WebhookDelivery, WebhookEndpoint};

/// A new id for a row that machines write in bulk: a machine, a component, a process.
///
/// UUIDv7, time-ordered: each insert lands on the last page of the table's id index instead of a
/// random one, which a commit would otherwise write out whole (on SQLite a page of the WAL per
/// machine, and its checkpoint). Clients see a UUID as before (Keygen's are v4; no SDK reads the
/// version). The time it carries is the resource's `created`, which its readers see anyway. It
/// has fewer random bits than a v4 (a 42-bit counter reseeded at random each millisecond, then
/// 32 random bits), which costs nothing: an id is never a credential, every read is authorised.
/// Never for products, entitlements or groups: `/api/licensing/v1` derives their integer keys
/// from an id's first four bytes (`domain::projection::legacy_key`), a v7 id's timestamp.
pub fn fleet_id() -> uuid::Uuid {
    uuid::Uuid::now_v7()
}

/// Free-form metadata, an object stored as JSON.
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
        // A page number is any positive i64 a client sends: far past the end reads nothing.
        (self.number - 1).saturating_mul(self.size)
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

/// A policy's rules as read alongside a license or machine: shared, because every validation
/// reads them and parsing the same JSON for each row was a measurable share of its cost.
#[derive(Debug, Clone)]
pub struct Rules(pub Arc<PolicyRules>);

impl Deref for Rules {
    type Target = PolicyRules;
    fn deref(&self) -> &PolicyRules {
        &self.0
    }
}

impl PartialEq for Rules {
    fn eq(&self, other: &Rules) -> bool {
        // Parses are shared while a policy's text is unchanged: mostly the same allocation.
        Arc::ptr_eq(&self.0, &other.0) || *self.0 == *other.0
    }
}

impl From<PolicyRules> for Rules {
    fn from(rules: PolicyRules) -> Self {
        Rules(Arc::new(rules))
    }
}

impl<DB: sqlx::Database> sqlx::Type<DB> for Rules
where
    Json<PolicyRules>: sqlx::Type<DB>,
{
    fn type_info() -> DB::TypeInfo {
        <Json<PolicyRules> as sqlx::Type<DB>>::type_info()
    }
    fn compatible(ty: &DB::TypeInfo) -> bool {
        <Json<PolicyRules> as sqlx::Type<DB>>::compatible(ty)
    }
}

impl<'r, DB: sqlx::Database> sqlx::Decode<'r, DB> for Rules
where
    Json<PolicyRules>: sqlx::Decode<'r, DB>,
{
    fn decode(value: DB::ValueRef<'r>) -> Result<Self, sqlx::error::BoxDynError> {
        Ok(<Json<PolicyRules> as sqlx::Decode<'r, DB>>::decode(value)?.0.into())
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn fleet_ids_are_time_ordered_uuids() {
        let ids: Vec<_> = (0..1000).map(|_| super::fleet_id()).collect();
        assert!(ids.iter().all(|id| id.get_version_num() == 7));
        assert!(ids.windows(2).all(|w| w[0] < w[1]), "each id sorts after the one before it");
    }
}
