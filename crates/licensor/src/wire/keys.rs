//! Keygen's `keys` resource object (a pooled key).

use serde::Serialize;
use uuid::Uuid;

use super::document::Resource;
use crate::model::Key;
use crate::time;

#[derive(Serialize)]
pub struct KeyAttributes {
    key: String,
    created: String,
    updated: String,
}

pub fn render(account: Uuid, k: &Key) -> Resource<KeyAttributes> {
    Resource::new(
        account,
        "keys",
        k.id,
        KeyAttributes { key: k.key.clone(), created: time::iso(k.created_at), updated: time::iso(k.updated_at) },
    )
    .account(account)
    .one("product", "products", Some(k.product_id))
    .one("policy", "policies", Some(k.policy_id))
}
