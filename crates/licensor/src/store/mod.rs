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

use std::cell::RefCell;
use std::collections::HashMap;
use std::ops::Deref;
use std::sync::Arc;

use serde_json::Value;
use uuid::Uuid;

use crate::domain::policy::PolicyRules;

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

thread_local! {
    /// Per thread, the last rules text seen for each policy and what it parsed to.
    static PARSED_RULES: RefCell<HashMap<Uuid, (Box<str>, Rules)>> = RefCell::new(HashMap::new());
}

/// Parses a policy's rules column, reusing the previous parse while the text is unchanged (an
/// edited policy has new text, so nothing stale is ever returned).
pub(crate) fn parse_rules(policy: Uuid, text: &str) -> serde_json::Result<Rules> {
    PARSED_RULES.with(|cache| {
        let mut cache = cache.borrow_mut();
        if let Some((seen, rules)) = cache.get(&policy) {
            if **seen == *text {
                return Ok(rules.clone());
            }
        }
        let rules = Rules::from(serde_json::from_str::<PolicyRules>(text)?);
        if cache.len() >= 1024 {
            cache.clear();
        }
        cache.insert(policy, (text.into(), rules.clone()));
        Ok(rules)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parsed_rules_follow_the_text() {
        let policy = Uuid::new_v4();
        let first = parse_rules(policy, r#"{"maxMachines": 1}"#).unwrap();
        let again = parse_rules(policy, r#"{"maxMachines": 1}"#).unwrap();
        assert!(Arc::ptr_eq(&first.0, &again.0), "unchanged text reuses the parse");
        let edited = parse_rules(policy, r#"{"maxMachines": 2}"#).unwrap();
        assert_eq!(edited.max_machines, Some(2));
        assert!(parse_rules(policy, "{").is_err());
    }
}
