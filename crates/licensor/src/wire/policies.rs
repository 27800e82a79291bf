//! Keygen's `policies` resource object.

use serde::Serialize;
use serde_json::Value;
use uuid::Uuid;

use super::document::Resource;
use crate::domain::metadata;
use crate::model::{Policy, PolicyRules};
use crate::time;

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PolicyAttributes {
    name: String,
    #[serde(flatten)]
    rules: PolicyRules,
    metadata: Value,
    created: String,
    updated: String,
}

pub fn render(account: Uuid, p: &Policy) -> Resource<PolicyAttributes> {
    Resource::new(
        account,
        "policies",
        p.id,
        PolicyAttributes {
            name: p.name.clone(),
            rules: p.rules.0.clone(),
            metadata: metadata::render(&p.metadata.0),
            created: time::iso(p.created_at),
            updated: time::iso(p.updated_at),
        },
    )
    .account(account)
    .one("product", "products", Some(p.product_id))
    .many("pool", None)
    .many("licenses", None)
    .many("entitlements", None)
}
