//! Keygen's `licenses` resource object.

use serde::Serialize;
use serde_json::{json, Value};
use uuid::Uuid;

use super::document::Resource;
use crate::domain::{license as rules, metadata};
use crate::model::License;
use crate::time;

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct LicenseAttributes {
    name: Option<String>,
    key: String,
    expiry: Option<String>,
    status: &'static str,
    uses: i64,
    suspended: bool,
    scheme: Option<crate::model::Scheme>,
    encrypted: bool,
    strict: bool,
    floating: bool,
    protected: bool,
    version: Option<String>,
    max_machines: Option<i64>,
    max_processes: Option<i64>,
    max_users: Option<i64>,
    max_cores: Option<i64>,
    max_memory: Option<i64>,
    max_disk: Option<i64>,
    max_uses: Option<i64>,
    require_heartbeat: bool,
    require_check_in: bool,
    last_validated: Option<String>,
    last_check_in: Option<String>,
    next_check_in: Option<String>,
    last_check_out: Option<String>,
    permissions: Vec<&'static str>,
    metadata: Value,
    created: String,
    updated: String,
}

pub fn status(l: &License, now: i64) -> &'static str {
    rules::status(
        &rules::StatusInput {
            owner_banned: l.owner_banned,
            suspended: l.suspended,
            expiry: l.expiry,
            created_at: l.created_at,
            last_validated_at: l.last_validated_at,
            last_check_out_at: l.last_check_out_at,
            last_check_in_at: l.last_check_in_at,
        },
        now,
    )
}

pub fn render(account: Uuid, l: &License) -> Resource<LicenseAttributes> {
    let r = l.rules();
    Resource::new(
        account,
        "licenses",
        l.id,
        LicenseAttributes {
            name: l.name.clone(),
            key: l.key.clone(),
            expiry: time::iso_opt(l.expiry),
            status: status(l, time::now_ms()),
            uses: l.uses,
            suspended: l.suspended,
            scheme: r.scheme,
            encrypted: r.encrypted,
            strict: r.strict,
            floating: r.floating,
            protected: l.is_protected(),
            version: None,
            max_machines: l.max_machines(),
            max_processes: l.max_processes(),
            max_users: l.max_users(),
            max_cores: l.max_cores(),
            max_memory: l.max_memory(),
            max_disk: l.max_disk(),
            max_uses: l.max_uses(),
            require_heartbeat: r.require_heartbeat,
            require_check_in: r.require_check_in,
            last_validated: time::iso_opt(l.last_validated_at),
            last_check_in: time::iso_opt(l.last_check_in_at),
            next_check_in: time::iso_opt(rules::next_check_in(r, l.last_check_in_at)),
            last_check_out: time::iso_opt(l.last_check_out_at),
            permissions: vec!["*"],
            metadata: metadata::render(&l.metadata.0),
            created: time::iso(l.created_at),
            updated: time::iso(l.updated_at),
        },
    )
    .account(account)
    .one("product", "products", Some(l.product_id))
    .one("policy", "policies", Some(l.policy_id))
    .one("group", "groups", l.group_id)
    .one("owner", "users", l.owner_id)
    .many("users", Some(json!({ "count": l.users_total() })))
    .many("machines", Some(json!({ "cores": l.machines_cores, "memory": l.machines_memory, "disk": l.machines_disk, "count": l.machines_count })))
    .many("tokens", None)
    .many("entitlements", None)
}
