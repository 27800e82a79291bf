//! Keygen's `groups` resource object.

use serde::Serialize;
use serde_json::Value;
use uuid::Uuid;

use super::document::Resource;
use crate::domain::metadata;
use crate::model::Group;
use crate::time;

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct GroupAttributes {
    name: String,
    max_users: Option<i64>,
    max_licenses: Option<i64>,
    max_machines: Option<i64>,
    metadata: Value,
    created: String,
    updated: String,
}

pub fn render(account: Uuid, g: &Group) -> Resource<GroupAttributes> {
    Resource::new(
        account,
        "groups",
        g.id,
        GroupAttributes {
            name: g.name.clone(),
            max_users: g.max_users,
            max_licenses: g.max_licenses,
            max_machines: g.max_machines,
            metadata: metadata::render(&g.metadata.0),
            created: time::iso(g.created_at),
            updated: time::iso(g.updated_at),
        },
    )
    .account(account)
    .many("users", None)
    .many("licenses", None)
    .many("machines", None)
}
