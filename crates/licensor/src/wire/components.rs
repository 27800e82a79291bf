//! Keygen's `components` resource object.

use serde::Serialize;
use serde_json::Value;
use uuid::Uuid;

use super::document::Resource;
use crate::domain::metadata;
use crate::model::Component;
use crate::time;

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ComponentAttributes {
    fingerprint: String,
    name: String,
    metadata: Value,
    created: String,
    updated: String,
}

pub fn render(account: Uuid, c: &Component) -> Resource<ComponentAttributes> {
    Resource::new(
        account,
        "components",
        c.id,
        ComponentAttributes {
            fingerprint: c.fingerprint.clone(),
            name: c.name.clone(),
            metadata: metadata::render(&c.metadata.0),
            created: time::iso(c.created_at),
            updated: time::iso(c.updated_at),
        },
    )
    .account(account)
    .one("machine", "machines", Some(c.machine_id))
}
