//! Activation, deactivation, heartbeats, processes and components.

use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::helpers::*;

fn machine_body(license: &str, fingerprint: &str, extra: Value) -> Value {
    let mut attrs = json!({"fingerprint": fingerprint});
    attrs.as_object_mut().unwrap().extend(extra.as_object().cloned().unwrap_or_default());
    json!({"data": {"type": "machines", "attributes": attrs, "relationships": {"license": {"data": {"type": "licenses", "id": license}}}}})
}

#[tokio::test]
async fn license_key_activates_only_when_policy_allows() {
    let app = spawn_app().await;
    let (_, _, id, key) =
        app.license_fixture(json!({"authenticationStrategy": "LICENSE", "floating": true, "maxMachines": 2})).await;
    let r = app
        .post(
            &app.acct("/machines"),
            &As::License(key.clone()),
            machine_body(&id, "laptop", json!({"name": "Laptop", "platform": "linux", "cores": 4})),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    assert_eq!(r.attr("fingerprint"), "laptop");
    assert_eq!(r.attr("cores"), 4);
    assert_eq!(r.body["data"]["relationships"]["license"]["data"]["id"], json!(id));
    // The license named by its key (Keygen's id alias) is the one that authenticated too.
    let r = app.post(&app.acct("/machines"), &As::License(key.clone()), machine_body(&key, "desktop", json!({}))).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    assert_eq!(r.body["data"]["relationships"]["license"]["data"]["id"], json!(id));
    let (_, _, id2, key2) = app.license_fixture(json!({})).await;
    let r = app.post(&app.acct("/machines"), &As::License(key2.clone()), machine_body(&id2, "laptop", json!({}))).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert_eq!(r.code(), "LICENSE_NOT_ALLOWED");
    // A license cannot activate machines on another license, named by id or by key.
    let r = app.post(&app.acct("/machines"), &As::License(key.clone()), machine_body(&id2, "x", json!({}))).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    let r = app.post(&app.acct("/machines"), &As::License(key), machine_body(&key2, "x", json!({}))).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn expired_license_with_revoke_access_cannot_activate() {
    let app = spawn_app().await;
    let product = app.create_product("App").await;
    let policy = app
        .create_policy(&product, json!({"authenticationStrategy": "LICENSE", "expirationStrategy": "REVOKE_ACCESS"}))
        .await;
    let (id, key) = app.create_license(&policy, json!({"expiry": "2020-01-01T00:00:00Z"})).await;
    let r = app.post(&app.acct("/machines"), &As::License(key), machine_body(&id, "x", json!({}))).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert_eq!(r.code(), "LICENSE_EXPIRED");
}

#[tokio::test]
async fn node_locked_limit_and_duplicate_fingerprints() {
    let app = spawn_app().await;
    let (_, _, id, _) = app.license_fixture(json!({})).await;
    assert_eq!(
        app.post(&app.acct("/machines"), &app.admin(), machine_body(&id, "one", json!({}))).await.status,
        StatusCode::CREATED
    );
    let r = app.post(&app.acct("/machines"), &app.admin(), machine_body(&id, "one", json!({}))).await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(r.code(), "FINGERPRINT_TAKEN");
    assert_eq!(r.pointer(), "/data/attributes/fingerprint");
    let r = app.post(&app.acct("/machines"), &app.admin(), machine_body(&id, "two", json!({}))).await;
    assert_eq!(r.code(), "MACHINE_LIMIT_EXCEEDED");
    assert_eq!(r.body["errors"][0]["detail"], "machine count has exceeded maximum allowed for license (1)");
    assert_eq!(r.pointer(), "/data");
}

#[tokio::test]
async fn uniqueness_per_policy_spans_licenses() {
    let app = spawn_app().await;
    let product = app.create_product("App").await;
    let policy = app.create_policy(&product, json!({"machineUniquenessStrategy": "UNIQUE_PER_POLICY"})).await;
    let other = app.create_policy(&product, json!({"machineUniquenessStrategy": "UNIQUE_PER_POLICY"})).await;
    let (a, _) = app.create_license(&policy, json!({})).await;
    let (b, _) = app.create_license(&policy, json!({})).await;
    let (c, _) = app.create_license(&other, json!({})).await;
    assert_eq!(
        app.post(&app.acct("/machines"), &app.admin(), machine_body(&a, "shared", json!({}))).await.status,
        StatusCode::CREATED
    );
    let r = app.post(&app.acct("/machines"), &app.admin(), machine_body(&b, "shared", json!({}))).await;
    assert_eq!(r.code(), "FINGERPRINT_TAKEN");
    assert_eq!(r.body["errors"][0]["detail"], "has already been taken for this policy");
    assert_eq!(
        app.post(&app.acct("/machines"), &app.admin(), machine_body(&c, "shared", json!({}))).await.status,
        StatusCode::CREATED
    );
}

#[tokio::test]
async fn deactivate_update_and_activation_tokens() {
    let app = spawn_app().await;
    let (_, _, id, _) = app.license_fixture(json!({"floating": true, "maxMachines": 10})).await;
    let t = app
        .post(
            &app.acct(&format!("/licenses/{id}/tokens")),
            &app.admin(),
            json!({"data": {"type": "tokens", "attributes": {"maxActivations": 1, "maxDeactivations": 1}}}),
        )
        .await;
    let token = As::Bearer(t.attr("token").as_str().unwrap().to_string());
    let m = app.post(&app.acct("/machines"), &token, machine_body(&id, "m1", json!({}))).await;
    assert_eq!(m.status, StatusCode::CREATED, "{}", m.text);
    let r = app.post(&app.acct("/machines"), &token, machine_body(&id, "m2", json!({}))).await;
    assert_eq!(r.code(), "ACTIVATIONS_LIMIT_EXCEEDED");
    assert_eq!(r.body["errors"][0]["detail"], "exceeds maximum allowed (1)");
    assert_eq!(
        app.get(&app.acct(&format!("/licenses/{id}/machines")), &app.admin()).await.body["data"]
            .as_array()
            .unwrap()
            .len(),
        1,
        "refused activation left nothing"
    );
    let r = app
        .patch(
            &app.acct(&format!("/machines/{}", m.id())),
            &token,
            json!({"data": {"type": "machines", "attributes": {"name": "Renamed", "metadata": {"rack": 4}}}}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.attr("name"), "Renamed");
    let r = app
        .patch(
            &app.acct(&format!("/machines/{}", m.id())),
            &token,
            json!({"data": {"type": "machines", "attributes": {"fingerprint": "new"}}}),
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(
        app.delete(&app.acct("/machines/m1"), &token).await.status,
        StatusCode::NO_CONTENT,
        "machines are addressable by fingerprint"
    );
    let m2 = app.post(&app.acct("/machines"), &app.admin(), machine_body(&id, "m3", json!({}))).await;
    let r = app.delete(&app.acct(&format!("/machines/{}", m2.id())), &token).await;
    assert_eq!(r.code(), "DEACTIVATIONS_LIMIT_EXCEEDED");
    assert_eq!(r.body["errors"][0]["detail"], "exceeds maximum allowed (1)");
    assert_eq!(app.get(&app.acct(&format!("/machines/{}", m2.id())), &app.admin()).await.status, StatusCode::OK);
}

#[tokio::test]
async fn nested_components_and_components_scope() {
    let app = spawn_app().await;
    let (_, _, id, key) = app.license_fixture(json!({"componentMatchingStrategy": "MATCH_TWO"})).await;
    let mut body = machine_body(&id, "host", json!({}));
    body["data"]["relationships"]["components"] = json!({"data": [
        {"type": "components", "attributes": {"fingerprint": "cpu-1", "name": "CPU"}},
        {"type": "components", "attributes": {"fingerprint": "disk-1", "name": "Disk"}},
        {"type": "components", "attributes": {"fingerprint": "nic-1", "name": "NIC"}}
    ]});
    let m = app.post(&app.acct("/machines"), &app.admin(), body).await;
    assert_eq!(m.status, StatusCode::CREATED, "{}", m.text);
    let list = app.get(&app.acct(&format!("/components?machine={}", m.id())), &app.admin()).await;
    assert_eq!(list.body["data"].as_array().unwrap().len(), 3);
    let v = |scope: Value| {
        let app = &app;
        let key = key.clone();
        async move {
            app.post(
                &app.acct("/licenses/actions/validate-key"),
                &As::Anonymous,
                json!({"meta": {"key": key, "scope": scope}}),
            )
            .await
        }
    };
    assert_eq!(
        v(json!({"fingerprint": "host", "components": ["cpu-1", "disk-1"]})).await.body["meta"]["code"],
        "VALID"
    );
    assert_eq!(
        v(json!({"fingerprint": "host", "components": ["cpu-1", "gpu-9"]})).await.body["meta"]["code"],
        "COMPONENTS_SCOPE_MISMATCH"
    );
    assert_eq!(v(json!({"components": ["cpu-1"]})).await.body["meta"]["code"], "FINGERPRINT_SCOPE_REQUIRED");
    // Standalone component CRUD.
    let c = app.post(&app.acct("/components"), &app.admin(), json!({"data": {"type": "components", "attributes": {"fingerprint": "ram-1", "name": "RAM"}, "relationships": {"machine": {"data": {"type": "machines", "id": m.id()}}}}})).await;
    assert_eq!(c.status, StatusCode::CREATED, "{}", c.text);
    let dup = app.post(&app.acct("/components"), &app.admin(), json!({"data": {"type": "components", "attributes": {"fingerprint": "ram-1", "name": "RAM"}, "relationships": {"machine": {"data": {"type": "machines", "id": m.id()}}}}})).await;
    assert_eq!(dup.code(), "FINGERPRINT_TAKEN");
    assert_eq!(
        app.delete(&app.acct(&format!("/components/{}", c.id())), &app.admin()).await.status,
        StatusCode::NO_CONTENT
    );
}

#[tokio::test]
async fn dead_machines_cannot_ping_unless_revivable() {
    let app = spawn_app().await;
    let product = app.create_product("App").await;
    // Kept when dead: the background culler, running meanwhile, must not take the machine away.
    let no_revive = app
        .create_policy(
            &product,
            json!({"requireHeartbeat": true, "heartbeatDuration": 60, "heartbeatCullStrategy": "KEEP_DEAD"}),
        )
        .await;
    let revive = app.create_policy(&product, json!({"requireHeartbeat": true, "heartbeatDuration": 60, "heartbeatResurrectionStrategy": "5_MINUTE_REVIVE"})).await;
    for (policy, expect) in [(no_revive, None), (revive, Some("RESURRECTED"))] {
        let (lid, _) = app.create_license(&policy, json!({})).await;
        let m = app.post(&app.acct("/machines"), &app.admin(), machine_body(&lid, "hb", json!({}))).await;
        assert_eq!(m.attr("heartbeatStatus"), "ALIVE", "FROM_CREATION basis starts the heartbeat at activation");
        set_heartbeat(&app, &m.id(), licensor::time::now_ms() - 90_000).await;
        let shown = app.get(&app.acct(&format!("/machines/{}", m.id())), &app.admin()).await;
        assert_eq!(shown.attr("heartbeatStatus"), "DEAD");
        let r = app.post(&app.acct(&format!("/machines/{}/actions/ping", m.id())), &app.admin(), json!(null)).await;
        match expect {
            None => {
                assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
                assert_eq!(r.code(), "MACHINE_HEARTBEAT_DEAD");
            }
            Some(status) => {
                assert_eq!(r.status, StatusCode::OK, "{}", r.text);
                assert_eq!(r.attr("heartbeatStatus"), status);
            }
        }
        let r = app.post(&app.acct(&format!("/machines/{}/actions/reset", m.id())), &app.admin(), json!(null)).await;
        assert!(r.attr("lastHeartbeat").is_null());
    }
}

async fn set_heartbeat(app: &TestApp, machine: &str, at: i64) {
    let account: uuid::Uuid = app.account_id.parse().unwrap();
    licensor::store::machines::set_heartbeat(&app.db, account, machine.parse().unwrap(), Some(at), at, &[])
        .await
        .unwrap();
}

#[tokio::test]
async fn culler_removes_only_dead_machines_per_strategy() {
    let app = spawn_app().await;
    let product = app.create_product("App").await;
    let deactivate = app.create_policy(&product, json!({"requireHeartbeat": true, "heartbeatDuration": 60})).await;
    let keep = app
        .create_policy(
            &product,
            json!({"requireHeartbeat": true, "heartbeatDuration": 60, "heartbeatCullStrategy": "KEEP_DEAD"}),
        )
        .await;
    let (l1, _) = app.create_license(&deactivate, json!({})).await;
    let (l2, _) = app.create_license(&keep, json!({})).await;
    let (l3, _) = app.create_license(&deactivate, json!({})).await;
    let dead = app.post(&app.acct("/machines"), &app.admin(), machine_body(&l1, "dead", json!({}))).await.id();
    let kept = app.post(&app.acct("/machines"), &app.admin(), machine_body(&l2, "kept", json!({}))).await.id();
    let alive = app.post(&app.acct("/machines"), &app.admin(), machine_body(&l3, "alive", json!({}))).await.id();
    let now = licensor::time::now_ms();
    set_heartbeat(&app, &dead, now - 120_000).await;
    set_heartbeat(&app, &kept, now - 120_000).await;
    let culled = licensor::jobs::cull_once(&app.db, now).await.unwrap();
    assert_eq!(culled.machines, 1);
    assert_eq!(app.get(&app.acct(&format!("/machines/{dead}")), &app.admin()).await.status, StatusCode::NOT_FOUND);
    assert_eq!(app.get(&app.acct(&format!("/machines/{kept}")), &app.admin()).await.status, StatusCode::OK);
    assert_eq!(app.get(&app.acct(&format!("/machines/{alive}")), &app.admin()).await.status, StatusCode::OK);
    // A second pass (another node, say) finds nothing more to do.
    assert_eq!(licensor::jobs::cull_once(&app.db, now).await.unwrap().machines, 0);
}

#[tokio::test]
async fn processes_limits_pids_and_heartbeats() {
    let app = spawn_app().await;
    let (_, _, lid, _) = app.license_fixture(json!({"maxProcesses": 2, "heartbeatDuration": 60})).await;
    let m = app.post(&app.acct("/machines"), &app.admin(), machine_body(&lid, "box", json!({}))).await.id();
    let spawn = |pid: &'static str| {
        let app = &app;
        let m = m.clone();
        async move {
            app.post(&app.acct("/processes"), &app.admin(), json!({"data": {"type": "processes", "attributes": {"pid": pid}, "relationships": {"machine": {"data": {"type": "machines", "id": m}}}}})).await
        }
    };
    let p1 = spawn("100").await;
    assert_eq!(p1.status, StatusCode::CREATED, "{}", p1.text);
    assert_eq!(p1.attr("status"), "ALIVE");
    assert_eq!(spawn("100").await.code(), "PID_TAKEN");
    assert_eq!(spawn("101").await.status, StatusCode::CREATED);
    let r = spawn("102").await;
    assert_eq!(r.code(), "MACHINE_PROCESS_LIMIT_EXCEEDED");
    let r = app.post(&app.acct(&format!("/processes/{}/actions/ping", p1.id())), &app.admin(), json!(null)).await;
    assert_eq!(r.status, StatusCode::OK);
    // Kill it after death: the ping is refused.
    let account: uuid::Uuid = app.account_id.parse().unwrap();
    let long_ago = licensor::time::now_ms() - 120_000;
    licensor::store::processes::ping(&app.db, account, p1.id().parse().unwrap(), long_ago, &[]).await.unwrap();
    let r = app.post(&app.acct(&format!("/processes/{}/actions/ping", p1.id())), &app.admin(), json!(null)).await;
    assert_eq!(r.code(), "PROCESS_HEARTBEAT_DEAD");
    assert_eq!(licensor::jobs::cull_once(&app.db, licensor::time::now_ms()).await.unwrap().processes, 1);
    assert_eq!(app.get(&app.acct("/processes"), &app.admin()).await.body["data"].as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn one_node_holds_the_cull_lease_at_a_time() {
    let app = spawn_app().await;
    let acquire = |holder: &'static str, now: i64| {
        let db = app.db.clone();
        async move { licensor::store::leases::acquire(&db, "cull", holder, now, now + 120_000).await.unwrap() }
    };
    // Far enough ahead that the test server's own culler, which takes this lease at start, has
    // long let it lapse.
    let now = licensor::time::now_ms() + 10 * 86_400_000;
    assert!(acquire("node-a", now).await);
    assert!(!acquire("node-b", now + 1_000).await, "held by node-a");
    assert!(acquire("node-a", now + 60_000).await, "the holder renews");
    assert!(!acquire("node-b", now + 150_000).await, "renewed until now + 180 s");
    assert!(acquire("node-b", now + 181_000).await, "expired: another node takes over");
    assert!(!acquire("node-a", now + 182_000).await);
    // Two nodes racing for a free lease: exactly one wins.
    let later = now + 400_000;
    let (a, b) = tokio::join!(acquire("node-c", later), acquire("node-d", later));
    assert!(a ^ b, "one winner, got {a} {b}");
}

#[tokio::test]
async fn concurrent_cull_passes_delete_each_dead_machine_once() {
    let app = spawn_app().await;
    let product = app.create_product("App").await;
    let policy =
        app.create_policy(&product, json!({"floating": true, "requireHeartbeat": true, "heartbeatDuration": 60})).await;
    let (license, _) = app.create_license(&policy, json!({})).await;
    let now = licensor::time::now_ms();
    for i in 0..12 {
        let m =
            app.post(&app.acct("/machines"), &app.admin(), machine_body(&license, &format!("d{i}"), json!({}))).await;
        set_heartbeat(&app, &m.id(), now).await;
    }
    // Culled two minutes on, when every heartbeat is dead: alive for the server's own culler,
    // which runs on the real clock and so cannot take one first.
    let later = now + 120_000;
    let (a, b) = tokio::join!(licensor::jobs::cull_once(&app.db, later), licensor::jobs::cull_once(&app.db, later));
    assert_eq!(a.unwrap().machines + b.unwrap().machines, 12, "each machine deleted by exactly one pass");
    let r = app.get(&app.acct(&format!("/licenses/{license}")), &app.admin()).await;
    assert_eq!(r.body["data"]["relationships"]["machines"]["meta"]["count"], 0);
}

#[tokio::test]
async fn activation_checks_owner_id_and_components_as_keygen() {
    let app = spawn_app().await;
    let (_, _, license, _) = app.license_fixture(json!({"floating": true})).await;
    // The owner must be one of the license's users.
    let stranger = app.create_user("stranger@example.com").await;
    let mut body = machine_body(&license, "owned", json!({}));
    body["data"]["relationships"]["owner"] = json!({"data": {"type": "users", "id": stranger}});
    let r = app.post(&app.acct("/machines"), &app.admin(), body.clone()).await;
    assert_eq!(
        (r.status, r.code(), r.pointer()),
        (StatusCode::UNPROCESSABLE_ENTITY, "OWNER_INVALID", "/data/relationships/owner")
    );
    assert_eq!(r.body["errors"][0]["detail"], "must be a valid license user");
    app.attach_users(&license, &[&stranger]).await;
    assert_eq!(app.post(&app.acct("/machines"), &app.admin(), body).await.status, StatusCode::CREATED);

    // A client may choose the id; a taken one conflicts, a malformed one is a type mismatch.
    let id = uuid::Uuid::new_v4().to_string();
    let mut body = machine_body(&license, "chosen", json!({}));
    body["data"]["id"] = json!(id);
    let r = app.post(&app.acct("/machines"), &app.admin(), body.clone()).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    assert_eq!(r.id(), id);
    body["data"]["attributes"]["fingerprint"] = json!("chosen-again");
    let r = app.post(&app.acct("/machines"), &app.admin(), body.clone()).await;
    assert_eq!((r.code(), r.pointer()), ("ID_CONFLICT", "/data/id"));
    assert_eq!(r.body["errors"][0]["detail"], "must not conflict with another machine");
    body["data"]["id"] = json!("not-a-uuid");
    let r = app.post(&app.acct("/machines"), &app.admin(), body).await;
    assert_eq!((r.status, r.pointer()), (StatusCode::BAD_REQUEST, "/data/id"));

    // Duplicated component fingerprints point at the first of them.
    let mut body = machine_body(&license, "parts", json!({}));
    body["data"]["relationships"]["components"] = json!({"data": [
        {"type": "components", "attributes": {"fingerprint": "cpu", "name": "CPU"}},
        {"type": "components", "attributes": {"fingerprint": "gpu", "name": "GPU"}},
        {"type": "components", "attributes": {"fingerprint": "cpu", "name": "CPU again"}}]});
    let r = app.post(&app.acct("/machines"), &app.admin(), body).await;
    assert_eq!(r.code(), "COMPONENTS_FINGERPRINT_CONFLICT");
    assert_eq!(r.body["errors"][0]["detail"], "is duplicated");
    assert_eq!(r.pointer(), "/data/relationships/components/data/0/attributes/fingerprint");
}

#[tokio::test]
async fn per_user_resource_limits_name_the_user() {
    let app = spawn_app().await;
    let (_, _, license, _) =
        app.license_fixture(json!({"floating": true, "maxCores": 8, "machineLeasingStrategy": "PER_USER"})).await;
    let ann = app.create_user("ann@example.com").await;
    app.attach_users(&license, &[&ann]).await;
    let mut body = machine_body(&license, "big", json!({"cores": 16}));
    body["data"]["relationships"]["owner"] = json!({"data": {"type": "users", "id": ann}});
    let r = app.post(&app.acct("/machines"), &app.admin(), body).await;
    assert_eq!(r.code(), "MACHINE_CORE_LIMIT_EXCEEDED");
    assert_eq!(r.body["errors"][0]["detail"], "machine core count has exceeded maximum allowed for user (8)");
}

#[tokio::test]
async fn who_may_touch_a_machine() {
    let app = spawn_app().await;
    let (_, _, license, key) = app.license_fixture(json!({"floating": true, "authenticationStrategy": "MIXED"})).await;
    let (owner, member) = (app.create_user("owner@example.com").await, app.create_user("member@example.com").await);
    app.put(
        &app.acct(&format!("/licenses/{license}/owner")),
        &app.admin(),
        json!({"data": {"type": "users", "id": owner}}),
    )
    .await;
    app.attach_users(&license, &[&member]).await;
    let token = |email: &'static str| {
        let app = &app;
        async move {
            let t = app.post(&app.acct("/tokens"), &As::Basic(email.into(), PASSWORD.into()), json!(null)).await;
            As::Bearer(t.attr("token").as_str().unwrap().to_string())
        }
    };
    let (as_owner, as_member) = (token("owner@example.com").await, token("member@example.com").await);
    let unowned =
        app.post(&app.acct("/machines"), &app.admin(), machine_body(&license, "shared", json!({}))).await.id();
    let act = |m: &str, action: &str| app.acct(&format!("/machines/{m}/actions/{action}"));

    // An attached user sees the license's machines but touches only their own.
    assert_eq!(app.get(&app.acct(&format!("/machines/{unowned}")), &as_member).await.status, StatusCode::OK);
    assert_eq!(app.post(&act(&unowned, "ping"), &as_member, json!(null)).await.status, StatusCode::FORBIDDEN);
    assert_eq!(app.delete(&app.acct(&format!("/machines/{unowned}")), &as_member).await.status, StatusCode::FORBIDDEN);
    let r = app.post(&app.acct("/machines"), &as_member, machine_body(&license, "no-owner", json!({}))).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "an attached user activates only machines they own");
    // Who may not activate learns that before anything about the attributes it sent.
    let bad = machine_body(&license, "no-owner", json!({"cores": -1, "maxProcesses": null}));
    assert_eq!(app.post(&app.acct("/machines"), &as_member, bad).await.status, StatusCode::FORBIDDEN);
    // Only operators choose a machine's process limit, even to null.
    let mut limited = machine_body(&license, "limited", json!({"maxProcesses": null}));
    limited["data"]["relationships"]["owner"] = json!({"data": {"type": "users", "id": member}});
    let r = app.post(&app.acct("/machines"), &as_member, limited).await;
    assert_eq!((r.status, r.pointer()), (StatusCode::BAD_REQUEST, "/data/attributes/maxProcesses"), "{}", r.text);
    let mut mine = machine_body(&license, "members", json!({}));
    mine["data"]["relationships"]["owner"] = json!({"data": {"type": "users", "id": member}});
    let r = app.post(&app.acct("/machines"), &as_member, mine).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    let members = r.id();
    assert_eq!(app.post(&act(&members, "ping"), &as_member, json!(null)).await.status, StatusCode::OK);
    // The license's owner may ping any of its machines; nobody but the admin or product resets.
    assert_eq!(app.post(&act(&unowned, "ping"), &as_owner, json!(null)).await.status, StatusCode::OK);
    assert_eq!(app.post(&act(&unowned, "reset"), &as_owner, json!(null)).await.status, StatusCode::FORBIDDEN);
    let as_license = As::License(key);
    assert_eq!(app.post(&act(&unowned, "ping"), &as_license, json!(null)).await.status, StatusCode::OK);
    assert_eq!(app.post(&act(&unowned, "reset"), &as_license, json!(null)).await.status, StatusCode::FORBIDDEN);
    assert_eq!(app.post(&act(&unowned, "reset"), &app.admin(), json!(null)).await.status, StatusCode::OK);
    // Another product's token does not see the machine at all.
    let other_product = app.create_product("Other").await;
    let t = app.post(&app.acct(&format!("/products/{other_product}/tokens")), &app.admin(), json!(null)).await;
    let as_other = As::Bearer(t.attr("token").as_str().unwrap().to_string());
    assert_eq!(app.post(&act(&unowned, "ping"), &as_other, json!(null)).await.status, StatusCode::NOT_FOUND);
    // A protected license may not update its machines, and its users may not ping them.
    let r = app
        .patch(
            &app.acct(&format!("/licenses/{license}")),
            &app.admin(),
            json!({"data": {"type": "licenses", "attributes": {"protected": true}}}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let rename = json!({"data": {"type": "machines", "attributes": {"name": "renamed"}}});
    assert_eq!(
        app.patch(&app.acct(&format!("/machines/{unowned}")), &as_license, rename.clone()).await.status,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        app.patch(&app.acct(&format!("/machines/{unowned}")), &app.admin(), rename).await.status,
        StatusCode::OK
    );
    assert_eq!(app.post(&act(&members, "ping"), &as_member, json!(null)).await.status, StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn process_parameters_as_keygen_types_them() {
    let app = spawn_app().await;
    let (_, _, license, _) = app.license_fixture(json!({"floating": true})).await;
    let machine = app.post(&app.acct("/machines"), &app.admin(), machine_body(&license, "host", json!({}))).await.id();
    let body = |pid: Value| {
        json!({"data": {"type": "processes", "attributes": {"pid": pid},
            "relationships": {"machine": {"data": {"type": "machines", "id": machine}}}}})
    };
    for (pid, detail) in [
        (json!(""), "cannot be blank"),
        (json!(null), "cannot be null"),
        (json!(42), "type mismatch (received integer expected string)"),
    ] {
        let r = app.post(&app.acct("/processes"), &app.admin(), body(pid.clone())).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{pid}: {}", r.text);
        assert_eq!(r.body["errors"][0]["detail"], detail);
        assert_eq!(r.pointer(), "/data/attributes/pid");
    }
    let id = uuid::Uuid::new_v4().to_string();
    let mut chosen = body(json!("1"));
    chosen["data"]["id"] = json!(id);
    let r = app.post(&app.acct("/processes"), &app.admin(), chosen.clone()).await;
    assert_eq!((r.status, r.id()), (StatusCode::CREATED, id));
    chosen["data"]["attributes"]["pid"] = json!("2");
    let r = app.post(&app.acct("/processes"), &app.admin(), chosen.clone()).await;
    assert_eq!((r.code(), r.pointer()), ("ID_CONFLICT", "/data/id"));
    assert_eq!(r.body["errors"][0]["detail"], "must not conflict with another process");
    chosen["data"]["id"] = json!("1");
    let r = app.post(&app.acct("/processes"), &app.admin(), chosen).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(r.body["errors"][0]["detail"], "type mismatch (received string expected UUID string)");
}

#[tokio::test]
async fn resizing_a_machine_respects_the_license_limits() {
    let app = spawn_app().await;
    let product = app.create_product("App").await;
    let strict = app
        .create_policy(&product, json!({"floating": true, "maxMachines": 2, "maxCores": 12, "maxMemory": 1000}))
        .await;
    let (license, _) = app.create_license(&strict, json!({})).await;
    let a = app.post(&app.acct("/machines"), &app.admin(), machine_body(&license, "a", json!({"cores": 8}))).await.id();
    app.post(&app.acct("/machines"), &app.admin(), machine_body(&license, "b", json!({"cores": 2}))).await;
    let patch = |m: &str, attrs: Value| {
        let app = &app;
        let path = app.acct(&format!("/machines/{m}"));
        async move { app.patch(&path, &app.admin(), json!({"data": {"type": "machines", "attributes": attrs}})).await }
    };
    let r = patch(&a, json!({"cores": 32})).await;
    assert_eq!(
        (r.status, r.code(), r.pointer()),
        (StatusCode::UNPROCESSABLE_ENTITY, "MACHINE_CORE_LIMIT_EXCEEDED", "/data")
    );
    assert_eq!(r.body["errors"][0]["detail"], "machine core count has exceeded maximum allowed for license (12)");
    let r = patch(&a, json!({"memory": 2000})).await;
    assert_eq!(r.code(), "MACHINE_MEMORY_LIMIT_EXCEEDED");
    assert_eq!(patch(&a, json!({"cores": 10})).await.status, StatusCode::OK, "10 + 2 fits 12");
    let shown = app.get(&app.acct(&format!("/machines/{a}")), &app.admin()).await;
    assert_eq!(shown.attr("cores"), 10);
    // Lowering the limit afterwards does not block edits that leave the amounts alone.
    let r = app
        .patch(
            &app.acct(&format!("/licenses/{license}")),
            &app.admin(),
            json!({"data": {"type": "licenses", "attributes": {"maxCores": 4}}}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(patch(&a, json!({"name": "renamed"})).await.status, StatusCode::OK);
    // Overage allows what it allows.
    let lenient = app
        .create_policy(&product, json!({"floating": true, "maxCores": 12, "overageStrategy": "ALWAYS_ALLOW_OVERAGE"}))
        .await;
    let (license, _) = app.create_license(&lenient, json!({})).await;
    let m = app.post(&app.acct("/machines"), &app.admin(), machine_body(&license, "c", json!({"cores": 8}))).await.id();
    assert_eq!(patch(&m, json!({"cores": 32})).await.status, StatusCode::OK);
}

#[tokio::test]
async fn machine_relationships_read_and_change_with_their_limits() {
    let app = spawn_app().await;
    let (product, _, license, _) =
        app.license_fixture(json!({"floating": true, "maxMachines": 1, "machineLeasingStrategy": "PER_USER"})).await;
    let (ann, bob, stranger) = (
        app.create_user("ann@example.com").await,
        app.create_user("bob@example.com").await,
        app.create_user("stranger@example.com").await,
    );
    app.attach_users(&license, &[&ann, &bob]).await;
    let owned_by = |fp: &str, user: &str| {
        let mut body = machine_body(&license, fp, json!({}));
        body["data"]["relationships"]["owner"] = json!({"data": {"type": "users", "id": user}});
        body
    };
    let a = app.post(&app.acct("/machines"), &app.admin(), owned_by("ann-1", &ann)).await.id();
    let b = app.post(&app.acct("/machines"), &app.admin(), owned_by("bob-1", &bob)).await.id();
    let path = |m: &str, rel: &str| app.acct(&format!("/machines/{m}/{rel}"));

    assert_eq!(app.get(&path(&a, "product"), &app.admin()).await.id(), product);
    assert_eq!(app.get(&path(&a, "owner"), &app.admin()).await.id(), ann);
    assert!(app.get(&path(&a, "group"), &app.admin()).await.body["data"].is_null());

    // Owners: must exist, must be a license user, and (PER_USER) must have room.
    let to = |user: Value| json!({"data": user});
    let r = app.put(&path(&a, "owner"), &app.admin(), to(json!({"type": "users", "id": uuid::Uuid::new_v4()}))).await;
    assert_eq!((r.code(), r.pointer()), ("OWNER_NOT_FOUND", "/data/relationships/owner"));
    let r = app.put(&path(&a, "owner"), &app.admin(), to(json!({"type": "users", "id": stranger}))).await;
    assert_eq!(r.code(), "OWNER_INVALID");
    let r = app.put(&path(&a, "owner"), &app.admin(), to(json!({"type": "users", "id": bob}))).await;
    assert_eq!(r.code(), "MACHINE_LIMIT_EXCEEDED", "Bob already holds his one machine");
    assert_eq!(r.body["errors"][0]["detail"], "machine count has exceeded maximum allowed for user (1)");
    app.delete(&app.acct(&format!("/machines/{b}")), &app.admin()).await;
    let r = app.put(&path(&a, "owner"), &app.admin(), to(json!({"type": "users", "id": bob}))).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(app.get(&path(&a, "owner"), &app.admin()).await.id(), bob);
    // Only admins and the product change relationships.
    let t = app.post(&app.acct("/tokens"), &As::Basic("bob@example.com".into(), PASSWORD.into()), json!(null)).await;
    let as_bob = As::Bearer(t.attr("token").as_str().unwrap().to_string());
    assert_eq!(app.put(&path(&a, "owner"), &as_bob, to(Value::Null)).await.status, StatusCode::FORBIDDEN);
    assert_eq!(app.put(&path(&a, "owner"), &app.admin(), to(Value::Null)).await.status, StatusCode::OK);
    assert!(app.get(&path(&a, "owner"), &app.admin()).await.body["data"].is_null());

    // Groups: must exist and have room.
    let g = app
        .post(
            &app.acct("/groups"),
            &app.admin(),
            json!({"data": {"type": "groups", "attributes": {"name": "Lab", "maxMachines": 1}}}),
        )
        .await
        .id();
    let r = app.put(&path(&a, "group"), &app.admin(), to(json!({"type": "groups", "id": uuid::Uuid::new_v4()}))).await;
    assert_eq!((r.code(), r.pointer()), ("GROUP_NOT_FOUND", "/data/relationships/group"));
    assert_eq!(
        app.put(&path(&a, "group"), &app.admin(), to(json!({"type": "groups", "id": g}))).await.status,
        StatusCode::OK
    );
    assert_eq!(app.get(&path(&a, "group"), &app.admin()).await.id(), g);
    let c = app.post(&app.acct("/machines"), &app.admin(), owned_by("spare", &ann)).await.id();
    let r = app.put(&path(&c, "group"), &app.admin(), to(json!({"type": "groups", "id": g}))).await;
    assert_eq!(r.code(), "GROUP_MACHINE_LIMIT_EXCEEDED");

    // Components and processes, listed and shown under their machine only.
    let comp = app
        .post(
            &app.acct("/components"),
            &app.admin(),
            json!({"data": {"type": "components", "attributes": {"fingerprint": "cpu", "name": "CPU"},
            "relationships": {"machine": {"data": {"type": "machines", "id": a}}}}}),
        )
        .await
        .id();
    let proc_ = app
        .post(
            &app.acct("/processes"),
            &app.admin(),
            json!({"data": {"type": "processes", "attributes": {"pid": "1"},
            "relationships": {"machine": {"data": {"type": "machines", "id": a}}}}}),
        )
        .await
        .id();
    for (rel, id) in [("components", &comp), ("processes", &proc_)] {
        let list = app.get(&path(&a, rel), &app.admin()).await;
        assert_eq!(list.body["data"].as_array().map(Vec::len), Some(1), "{rel}");
        assert_eq!(app.get(&path(&a, &format!("{rel}/{id}")), &app.admin()).await.id(), *id);
        assert!(app.get(&path(&c, rel), &app.admin()).await.body["data"].as_array().unwrap().is_empty());
        assert_eq!(app.get(&path(&c, &format!("{rel}/{id}")), &app.admin()).await.status, StatusCode::NOT_FOUND);
    }
}

/// Cores are 32-bit counts; memory and disk 64-bit sizes whose per-license sums saturate. An
/// activation with absurd values is refused or summed without harm: the license stays readable,
/// listable and valid on every path (an overflowing sum once made all of them fail).
#[tokio::test]
async fn absurd_machine_sizes_are_refused_or_summed_without_harm() {
    let app = spawn_app().await;
    let (_, _, license, key) = app.license_fixture(json!({"floating": true, "maxMachines": 5})).await;
    let activate = |fingerprint: &str, attrs: Value| machine_body(&license, fingerprint, attrs);
    for cores in [json!(2_147_483_648_i64), json!(i64::MAX)] {
        let r = app.post(&app.acct("/machines"), &app.admin(), activate("big-cores", json!({"cores": cores}))).await;
        assert_eq!((r.status, r.code()), (StatusCode::UNPROCESSABLE_ENTITY, "CORES_INVALID"), "{cores}");
    }
    let huge = json!({"memory": i64::MAX, "disk": i64::MAX, "cores": 2_147_483_647_i64});
    let a = app.post(&app.acct("/machines"), &app.admin(), activate("huge-a", huge.clone())).await;
    assert_eq!(a.status, StatusCode::CREATED, "{}", a.text);
    let b = app.post(&app.acct("/machines"), &app.admin(), activate("huge-b", huge)).await;
    assert_eq!(b.status, StatusCode::CREATED, "{}", b.text);
    let r = app.get(&app.acct(&format!("/licenses/{license}")), &app.admin()).await;
    let meta = &r.body["data"]["relationships"]["machines"]["meta"];
    assert_eq!((meta["memory"].as_i64(), meta["disk"].as_i64()), (Some(i64::MAX), Some(i64::MAX)), "{}", r.text);
    assert_eq!(meta["cores"].as_i64(), Some(2 * 2_147_483_647));
    assert_eq!(app.get(&app.acct("/licenses?limit=100"), &app.admin()).await.status, StatusCode::OK);
    let v = app.post(&app.acct("/licenses/actions/validate-key"), &As::Anonymous, json!({"meta": {"key": key}})).await;
    assert_eq!(v.body["meta"]["valid"], true, "{}", v.text);
    let r = app
        .patch(
            &app.acct(&format!("/machines/{}", a.id())),
            &app.admin(),
            json!({"data": {"type": "machines", "attributes": {"memory": 1}}}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(
        app.delete(&app.acct(&format!("/machines/{}", b.id())), &app.admin()).await.status,
        StatusCode::NO_CONTENT
    );
    let r = app.get(&app.acct(&format!("/licenses/{license}")), &app.admin()).await;
    assert_eq!(r.body["data"]["relationships"]["machines"]["meta"]["count"], 1);
}
