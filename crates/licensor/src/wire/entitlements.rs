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

/// What an entitlement is attached to.
#[derive(Debug, Clone, Copy)]
pub enum JoinOwner {
    License(Uuid),
    Policy(Uuid),
}

/// The join record of an entitlement attached to a license or a policy, as Keygen answers an
/// attachment: type `license-entitlements` or `policy-entitlements`, its own id (derived from
/// the pair, as the join has no other), and `links.related` to the entitlement under its owner.
pub fn render_join(account: Uuid, owner: JoinOwner, entitlement: Uuid, created_at: i64) -> Value {
    let (kind, join_type, owner_type, owner_id) = match owner {
        JoinOwner::License(id) => ("license", "license-entitlements", "licenses", id),
        JoinOwner::Policy(id) => ("policy", "policy-entitlements", "policies", id),
    };
    let id = Uuid::new_v5(&owner_id, entitlement.as_bytes());
    let at = time::iso(created_at);
    serde_json::json!({
        "id": id,
        "type": join_type,
        "attributes": {"created": at, "updated": at},
        "relationships": {
            "account": {"links": {"related": format!("/v1/accounts/{account}")}, "data": {"type": "accounts", "id": account}},
            "entitlement": {
                "links": {"related": format!("/v1/accounts/{account}/entitlements/{entitlement}")},
                "data": {"type": "entitlements", "id": entitlement}
            },
            kind: {
                "links": {"related": format!("/v1/accounts/{account}/{owner_type}/{owner_id}")},
                "data": {"type": owner_type, "id": owner_id}
            }
        },
        "links": {"related": format!("/v1/accounts/{account}/{owner_type}/{owner_id}/entitlements/{entitlement}")}
    })
}
