//! Keygen's `users` resource object.

use serde::Serialize;
use serde_json::Value;
use uuid::Uuid;

use super::document::Resource;
use crate::domain::metadata;
use crate::model::User;
use crate::time;

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct UserAttributes {
    full_name: Option<String>,
    first_name: Option<String>,
    last_name: Option<String>,
    email: String,
    status: &'static str,
    role: String,
    permissions: Vec<&'static str>,
    metadata: Value,
    created: String,
    updated: String,
}

pub fn render(account: Uuid, u: &User) -> Resource<UserAttributes> {
    let full_name = match (&u.first_name, &u.last_name) {
        (None, None) => None,
        (f, l) => Some([f.as_deref(), l.as_deref()].into_iter().flatten().collect::<Vec<_>>().join(" ")),
    };
    Resource::new(
        account,
        "users",
        u.id,
        UserAttributes {
            full_name,
            first_name: u.first_name.clone(),
            last_name: u.last_name.clone(),
            email: u.email.clone(),
            status: if u.banned_at.is_some() { "BANNED" } else { "ACTIVE" },
            role: u.role.clone(),
            permissions: vec!["*"],
            metadata: metadata::render(&u.metadata.0),
            created: time::iso(u.created_at),
            updated: time::iso(u.updated_at),
        },
    )
    .account(account)
    .one("group", "groups", u.group_id)
    .many("licenses", None)
    .many("machines", None)
    .many("tokens", None)
}
