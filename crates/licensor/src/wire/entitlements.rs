//! Keygen's `entitlements` resource object.

use serde::Serialize;
use serde_json::Value;
use uuid::Uuid;

use super::document::Resource;
use crate::domain::metadata;
use crate::model::Entitlement;
use crate::time;

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct EntitlementAttributes {
    name: String,
    code: String,
    metadata: Value,
    created: String,
    updated: String,
}

pub fn render(account: Uuid, e: &Entitlement) -> Resource<EntitlementAttributes> {
    Resource::new(
        account,
        "entitlements",
        e.id,
        EntitlementAttributes {
            name: e.name.clone(),
            code: e.code.clone(),
            metadata: metadata::render(&e.metadata.0),
            created: time::iso(e.created_at),
            updated: time::iso(e.updated_at),
        },
    )
    .account(account)
}
