//! Keygen's `processes` resource object.

use serde::Serialize;
use serde_json::Value;
use uuid::Uuid;

use super::document::Resource;
use crate::domain::{heartbeat, metadata};
use crate::model::Process;
use crate::time::{self, SECOND};

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ProcessAttributes {
    pid: String,
    status: crate::model::HeartbeatStatus,
    interval: i64,
    last_heartbeat: String,
    next_heartbeat: String,
    metadata: Value,
    created: String,
    updated: String,
}

pub fn render(account: Uuid, p: &Process, interval: i64, product: Uuid) -> Resource<ProcessAttributes> {
    Resource::new(
        account,
        "processes",
        p.id,
        ProcessAttributes {
            pid: p.pid.clone(),
            status: heartbeat::process_status(interval, p.last_heartbeat_at, time::now_ms()),
            interval,
            last_heartbeat: time::iso(p.last_heartbeat_at),
            next_heartbeat: time::iso(p.last_heartbeat_at + interval * SECOND),
            metadata: metadata::render(&p.metadata.0),
            created: time::iso(p.created_at),
            updated: time::iso(p.updated_at),
        },
    )
    .account(account)
    .one("product", "products", Some(product))
    .one("license", "licenses", Some(p.license_id))
    .one("machine", "machines", Some(p.machine_id))
}
