//! Keygen's `machines` resource object.

use serde::Serialize;
use serde_json::Value;
use uuid::Uuid;

use super::document::Resource;
use crate::domain::{heartbeat, metadata};
use crate::model::{HeartbeatStatus, Machine};
use crate::time;

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct MachineAttributes {
    fingerprint: String,
    cores: Option<i64>,
    memory: Option<i64>,
    disk: Option<i64>,
    ip: Option<String>,
    hostname: Option<String>,
    platform: Option<String>,
    name: Option<String>,
    require_heartbeat: bool,
    heartbeat_status: HeartbeatStatus,
    heartbeat_duration: Option<i64>,
    max_processes: Option<i64>,
    last_check_out: Option<String>,
    last_heartbeat: Option<String>,
    next_heartbeat: Option<String>,
    metadata: Value,
    created: String,
    updated: String,
}

pub fn render(account: Uuid, m: &Machine) -> Resource<MachineAttributes> {
    render_with_status(account, m, None)
}

pub fn render_with_status(account: Uuid, m: &Machine, status: Option<HeartbeatStatus>) -> Resource<MachineAttributes> {
    let rules = &m.policy_rules.0;
    let now = time::now_ms();
    Resource::new(
        account,
        "machines",
        m.id,
        MachineAttributes {
            fingerprint: m.fingerprint.clone(),
            cores: m.cores,
            memory: m.memory,
            disk: m.disk,
            ip: m.ip.clone(),
            hostname: m.hostname.clone(),
            platform: m.platform.clone(),
            name: m.name.clone(),
            require_heartbeat: rules.require_heartbeat,
            heartbeat_status: status
                .unwrap_or_else(|| heartbeat::machine_status(rules, m.last_heartbeat_at, m.created_at, now)),
            heartbeat_duration: Some(rules.heartbeat_duration_secs()),
            max_processes: m.max_processes,
            last_check_out: time::iso_opt(m.last_check_out_at),
            last_heartbeat: time::iso_opt(m.last_heartbeat_at),
            next_heartbeat: time::iso_opt(heartbeat::next_heartbeat(rules, m.last_heartbeat_at)),
            metadata: metadata::render(&m.metadata.0),
            created: time::iso(m.created_at),
            updated: time::iso(m.updated_at),
        },
    )
    .account(account)
    .one("product", "products", Some(m.product_id))
    .one("license", "licenses", Some(m.license_id))
    .one("group", "groups", m.group_id)
    .one("owner", "users", m.owner_id)
    .many("components", None)
    .many("processes", None)
}
