//! The remaining validation codes: resource limits on strict policies, required scopes,
//! matching strategies, machine heartbeat death and the expiration strategies that keep access.

use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::helpers::*;

async fn validate(app: &TestApp, key: &str, scope: Value) -> (String, bool) {
    let mut meta = json!({"key": key});
    if !scope.is_null() {
        meta["scope"] = scope;
    }
    let r = app.post(&app.acct("/licenses/actions/validate-key"), &As::Anonymous, json!({"meta": meta})).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    (r.body["meta"]["code"].as_str().unwrap().to_string(), r.body["meta"]["valid"].as_bool().unwrap())
}

async fn machine(app: &TestApp, license: &str, fingerprint: &str, attrs: Value) -> String {
    let mut a = json!({"fingerprint": fingerprint});
    a.as_object_mut().unwrap().extend(attrs.as_object().cloned().unwrap_or_default());
    let r = app
        .post(
            &app.acct("/machines"),
            &app.admin(),
            json!({"data": {"type": "machines", "attributes": a,
            "relationships": {"license": {"data": {"type": "licenses", "id": license}}}}}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    r.id()
}

async fn patch_license(app: &TestApp, license: &str, attrs: Value) {
    let r = app.patch_attributes("licenses", license, attrs).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
}

#[tokio::test]
async fn strict_policies_report_cores_memory_disk_and_processes_over_their_limits() {
    let app = spawn_app().await;
    let (_, _, license, key) =
        app.license_fixture(json!({"strict": true, "floating": true, "overageStrategy": "NO_OVERAGE"})).await;
    let m = machine(&app, &license, "box", json!({"cores": 8, "memory": 4096, "disk": 10000})).await;
    let scope = json!({"fingerprint": "box"});
    assert_eq!(validate(&app, &key, scope.clone()).await, ("VALID".into(), true));
    for (attr, code) in [("maxCores", "TOO_MANY_CORES"), ("maxMemory", "TOO_MUCH_MEMORY"), ("maxDisk", "TOO_MUCH_DISK")]
    {
        patch_license(&app, &license, json!({attr: 2})).await;
        assert_eq!(validate(&app, &key, scope.clone()).await, (code.into(), false), "{attr}");
        patch_license(&app, &license, json!({attr: null})).await;
    }
    for pid in ["1", "2"] {
        let r = app
            .post(
                &app.acct("/processes"),
                &app.admin(),
                json!({"data": {"type": "processes", "attributes": {"pid": pid},
                "relationships": {"machine": {"data": {"type": "machines", "id": m}}}}}),
            )
            .await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    }
    patch_license(&app, &license, json!({"maxProcesses": 1})).await;
    assert_eq!(validate(&app, &key, scope.clone()).await, ("TOO_MANY_PROCESSES".into(), false));
    patch_license(&app, &license, json!({"maxProcesses": null})).await;
    assert_eq!(validate(&app, &key, scope).await, ("VALID".into(), true));
}

#[tokio::test]
async fn overage_allowances_keep_limits_valid_up_to_their_factor() {
    let app = spawn_app().await;
    let (_, _, license, key) = app
        .license_fixture(
            json!({"strict": true, "floating": true, "maxMachines": 2, "overageStrategy": "ALLOW_2X_OVERAGE"}),
        )
        .await;
    for fp in ["a", "b", "c"] {
        machine(&app, &license, fp, json!({})).await;
    }
    // Three machines on a limit of two, allowed twice over: reported, still valid.
    assert_eq!(validate(&app, &key, json!({"fingerprint": "a"})).await, ("TOO_MANY_MACHINES".into(), true));
    machine(&app, &license, "d", json!({})).await;
    let r = app
        .post(
            &app.acct("/machines"),
            &app.admin(),
            json!({"data": {"type": "machines", "attributes": {"fingerprint": "e"},
            "relationships": {"license": {"data": {"type": "licenses", "id": license}}}}}),
        )
        .await;
    assert_eq!(r.code(), "MACHINE_LIMIT_EXCEEDED", "2x of 2 is 4");
}

#[tokio::test]
async fn required_scopes_and_release_scopes() {
    let app = spawn_app().await;
    let product = app.create_product("App").await;
    for (flag, code) in [
        ("requireProductScope", "PRODUCT_SCOPE_REQUIRED"),
        ("requirePolicyScope", "POLICY_SCOPE_REQUIRED"),
        ("requireMachineScope", "MACHINE_SCOPE_REQUIRED"),
        ("requireFingerprintScope", "FINGERPRINT_SCOPE_REQUIRED"),
        ("requireComponentsScope", "COMPONENTS_SCOPE_REQUIRED"),
        ("requireUserScope", "USER_SCOPE_REQUIRED"),
        ("requireChecksumScope", "CHECKSUM_SCOPE_REQUIRED"),
        ("requireVersionScope", "VERSION_SCOPE_REQUIRED"),
    ] {
        let policy = app.create_policy(&product, json!({flag: true, "floating": true})).await;
        let (license, key) = app.create_license(&policy, json!({})).await;
        machine(&app, &license, "fp", json!({})).await;
        let scope = if flag == "requireComponentsScope" { json!({"fingerprint": "fp"}) } else { Value::Null };
        assert_eq!(validate(&app, &key, scope).await, (code.into(), false), "{flag}");
    }
    // Release distribution is not served, so checksum and version scopes never match.
    let policy = app.create_policy(&product, json!({})).await;
    let (_, key) = app.create_license(&policy, json!({})).await;
    assert_eq!(validate(&app, &key, json!({"checksum": "abc"})).await, ("CHECKSUM_SCOPE_MISMATCH".into(), false));
    assert_eq!(validate(&app, &key, json!({"version": "1.0.0"})).await, ("VERSION_SCOPE_MISMATCH".into(), false));
    // A machine scope naming another license's machine.
    let (other, _) = app.create_license(&policy, json!({})).await;
    let foreign = machine(&app, &other, "other-fp", json!({})).await;
    let (code, valid) = validate(&app, &key, json!({"machine": foreign})).await;
    assert!(!valid);
    assert!(code == "MACHINE_SCOPE_MISMATCH" || code == "NO_MACHINE", "{code}");
}

#[tokio::test]
async fn matching_strategies_over_several_fingerprints() {
    let app = spawn_app().await;
    let product = app.create_product("App").await;
    let cases = [
        ("MATCH_ANY", json!(["a", "x", "y"]), true),
        ("MATCH_TWO", json!(["a", "x", "y"]), false),
        ("MATCH_TWO", json!(["a", "b", "y"]), true),
        ("MATCH_MOST", json!(["a", "x", "y"]), false),
        ("MATCH_MOST", json!(["a", "b", "y"]), true),
        ("MATCH_ALL", json!(["a", "b", "y"]), false),
        ("MATCH_ALL", json!(["a", "b"]), true),
    ];
    for (strategy, fingerprints, ok) in cases {
        let policy = app.create_policy(&product, json!({"floating": true, "machineMatchingStrategy": strategy})).await;
        let (license, key) = app.create_license(&policy, json!({})).await;
        machine(&app, &license, "a", json!({})).await;
        machine(&app, &license, "b", json!({})).await;
        let (code, valid) = validate(&app, &key, json!({"fingerprints": fingerprints})).await;
        assert_eq!(valid, ok, "{strategy} {fingerprints}: {code}");
        if !ok {
            assert_eq!(code, "FINGERPRINT_SCOPE_MISMATCH");
        }
    }
}

#[tokio::test]
async fn dead_machine_heartbeats_fail_validation() {
    let app = spawn_app().await;
    let (_, _, license, key) = app
        .license_fixture(
            json!({"requireHeartbeat": true, "heartbeatDuration": 120, "heartbeatCullStrategy": "KEEP_DEAD"}),
        )
        .await;
    let m = machine(&app, &license, "fp", json!({})).await;
    let r = app.post(&app.acct(&format!("/machines/{m}/actions/ping")), &app.admin(), json!(null)).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(validate(&app, &key, json!({"fingerprint": "fp"})).await, ("VALID".into(), true));
    let account = app.account_id.parse().unwrap();
    let long_ago = licensor::time::now_ms() - 3_600_000;
    licensor::store::machines::set_heartbeat(&app.db, account, m.parse().unwrap(), Some(long_ago), long_ago, &[])
        .await
        .unwrap();
    assert_eq!(validate(&app, &key, json!({"fingerprint": "fp"})).await, ("HEARTBEAT_DEAD".into(), false));
    let r = app.get(&app.acct(&format!("/machines/{m}")), &app.admin()).await;
    assert_eq!(r.attr("heartbeatStatus"), "DEAD");
}

#[tokio::test]
async fn expired_licenses_under_access_keeping_strategies() {
    let app = spawn_app().await;
    let product = app.create_product("App").await;
    for (strategy, valid) in
        [("RESTRICT_ACCESS", false), ("REVOKE_ACCESS", false), ("MAINTAIN_ACCESS", true), ("ALLOW_ACCESS", true)]
    {
        let policy = app.create_policy(&product, json!({"expirationStrategy": strategy})).await;
        let (_, key) = app.create_license(&policy, json!({"expiry": "2020-01-01T00:00:00Z"})).await;
        assert_eq!(validate(&app, &key, Value::Null).await, ("EXPIRED".into(), valid), "{strategy}");
    }
}

#[tokio::test]
async fn environments_are_not_supported() {
    let app = spawn_app().await;
    let (_, _, _, key) = app.license_fixture(json!({})).await;
    // As in Keygen's Community Edition, an environment scope is not a parameter at all, even null.
    for env in [json!("production"), Value::Null] {
        let r = app
            .post(
                &app.acct("/licenses/actions/validate-key"),
                &As::Anonymous,
                json!({"meta": {"key": key, "scope": {"environment": env}}}),
            )
            .await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.text);
        assert_eq!(r.body["errors"][0]["detail"], "unpermitted parameter");
        assert_eq!(r.pointer(), "/meta/scope/environment");
    }
    // Nor may a request select one.
    let r = app
        .client
        .get(app.url(&app.acct("/licenses")))
        .bearer_auth(&app.admin_token)
        .header("Keygen-Environment", "production")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["errors"][0]["code"], "ENVIRONMENT_NOT_SUPPORTED");
    assert_eq!(body["errors"][0]["detail"], "is unsupported");
    assert_eq!(body["errors"][0]["source"]["header"], "Keygen-Environment");
    let r = app.get(&format!("{}?environment=staging", app.acct("/licenses")), &app.admin()).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(r.body["errors"][0]["source"]["parameter"], "environment");
}

#[tokio::test]
async fn machine_scope_paths() {
    let app = spawn_app().await;
    let product = app.create_product("App").await;
    // No machine at all: the code names the policy's kind.
    for (floating, code) in [(true, "NO_MACHINES"), (false, "NO_MACHINE")] {
        let policy = app.create_policy(&product, json!({"floating": floating})).await;
        let (_, key) = app.create_license(&policy, json!({})).await;
        let absent = uuid::Uuid::new_v4().to_string();
        assert_eq!(validate(&app, &key, json!({"machine": absent})).await, (code.into(), false));
    }
    // Heartbeats through the machine scope.
    let policy = app
        .create_policy(
            &product,
            json!({"floating": true, "requireHeartbeat": true, "heartbeatDuration": 60, "heartbeatBasis": "FROM_FIRST_PING"}),
        )
        .await;
    let (license, key) = app.create_license(&policy, json!({})).await;
    let m = machine(&app, &license, "hb", json!({})).await;
    let other = machine(&app, &license, "other", json!({})).await;
    assert_eq!(
        validate(&app, &key, json!({"machine": uuid::Uuid::new_v4().to_string()})).await,
        ("MACHINE_SCOPE_MISMATCH".into(), false)
    );
    assert_eq!(validate(&app, &key, json!({"machine": m})).await, ("HEARTBEAT_NOT_STARTED".into(), false));
    let ping = app.post(&app.acct(&format!("/machines/{m}/actions/ping")), &app.admin(), json!(null)).await;
    assert_eq!(ping.status, StatusCode::OK, "{}", ping.text);
    assert_eq!(validate(&app, &key, json!({"machine": m})).await, ("VALID".into(), true));
    let account: uuid::Uuid = app.account_id.parse().unwrap();
    let long_ago = licensor::time::now_ms() - 3_600_000;
    licensor::store::machines::set_heartbeat(&app.db, account, m.parse().unwrap(), Some(long_ago), long_ago, &[])
        .await
        .unwrap();
    assert_eq!(validate(&app, &key, json!({"machine": m})).await, ("HEARTBEAT_DEAD".into(), false));
    assert_eq!(validate(&app, &key, json!({"machine": other})).await, ("HEARTBEAT_NOT_STARTED".into(), false));

    // The machine's owner must be the user in scope.
    let policy = app.create_policy(&product, json!({"floating": true})).await;
    let (license, key) = app.create_license(&policy, json!({})).await;
    let (ann, bob) = (app.create_user("ann@example.com").await, app.create_user("bob@example.com").await);
    app.attach_users(&license, &[&ann, &bob]).await;
    let r = app
        .post(
            &app.acct("/machines"),
            &app.admin(),
            json!({"data": {"type": "machines", "attributes": {"fingerprint": "anns"}, "relationships": {
                "license": {"data": {"type": "licenses", "id": license}}, "owner": {"data": {"type": "users", "id": ann}}}}}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    let anns = r.id();
    assert_eq!(validate(&app, &key, json!({"machine": anns, "user": ann})).await, ("VALID".into(), true));
    assert_eq!(
        validate(&app, &key, json!({"machine": anns, "user": "bob@example.com"})).await,
        ("USER_SCOPE_MISMATCH".into(), false)
    );
    assert_eq!(
        validate(&app, &key, json!({"fingerprint": "anns", "user": bob})).await,
        ("USER_SCOPE_MISMATCH".into(), false)
    );
}

#[tokio::test]
async fn empty_components_scope() {
    let app = spawn_app().await;
    let (_, _, license, key) = app.license_fixture(json!({"floating": true})).await;
    machine(&app, &license, "box", json!({})).await;
    assert_eq!(
        validate(&app, &key, json!({"fingerprint": "box", "components": []})).await,
        ("COMPONENTS_SCOPE_EMPTY".into(), false)
    );
}

#[tokio::test]
async fn resource_overage_is_reported_but_valid() {
    let app = spawn_app().await;
    let product = app.create_product("App").await;
    for (limit, attr, code) in [
        ("maxCores", "cores", "TOO_MANY_CORES"),
        ("maxMemory", "memory", "TOO_MUCH_MEMORY"),
        ("maxDisk", "disk", "TOO_MUCH_DISK"),
    ] {
        let policy = app
            .create_policy(
                &product,
                json!({"strict": true, "floating": true, limit: 4, "overageStrategy": "ALLOW_2X_OVERAGE"}),
            )
            .await;
        let (license, key) = app.create_license(&policy, json!({})).await;
        machine(&app, &license, "a", json!({attr: 3})).await;
        assert_eq!(validate(&app, &key, Value::Null).await, ("VALID".into(), true), "{code}");
        machine(&app, &license, "b", json!({attr: 3})).await;
        assert_eq!(validate(&app, &key, Value::Null).await, (code.into(), true), "6 of 4 within 2x");
        // Without the allowance, the same totals fail.
        patch_license(&app, &license, json!({limit: 2})).await;
        assert_eq!(validate(&app, &key, Value::Null).await, (code.into(), false), "6 of 2 beyond 2x");
    }
}

#[tokio::test]
async fn too_many_users_without_overage_is_invalid() {
    let app = spawn_app().await;
    let (_, _, license, key) = app.license_fixture(json!({"maxUsers": 2})).await;
    let (a, b) = (app.create_user("a@example.com").await, app.create_user("b@example.com").await);
    app.attach_users(&license, &[&a, &b]).await;
    assert_eq!(validate(&app, &key, Value::Null).await, ("VALID".into(), true));
    patch_license(&app, &license, json!({"maxUsers": 1})).await;
    assert_eq!(validate(&app, &key, Value::Null).await, ("TOO_MANY_USERS".into(), false));
}

#[tokio::test]
async fn the_first_failing_check_wins() {
    let app = spawn_app().await;
    let product = app.create_product("App").await;
    let past = "2020-01-01T00:00:00.000Z";
    // A strict, node-locked license, expired under RESTRICT_ACCESS, with no machine: the machine
    // check comes before the expiry.
    let strict = app.create_policy(&product, json!({"strict": true})).await;
    let (_, key) = app.create_license(&strict, json!({"expiry": past})).await;
    assert_eq!(validate(&app, &key, Value::Null).await, ("NO_MACHINE".into(), false));
    // Suspension comes before a REVOKE_ACCESS expiry, which comes before every scope.
    let revoke = app.create_policy(&product, json!({"expirationStrategy": "REVOKE_ACCESS"})).await;
    let (_, key) = app.create_license(&revoke, json!({"expiry": past, "suspended": true})).await;
    assert_eq!(validate(&app, &key, json!({"product": "other"})).await, ("SUSPENDED".into(), false));
    let (_, key) = app.create_license(&revoke, json!({"expiry": past})).await;
    assert_eq!(validate(&app, &key, json!({"product": "other"})).await, ("EXPIRED".into(), false));
    // A scope mismatch comes before the RESTRICT_ACCESS expiry.
    let (_, key) = app.create_license(&strict, json!({"expiry": past})).await;
    assert_eq!(validate(&app, &key, json!({"product": "other"})).await, ("PRODUCT_SCOPE_MISMATCH".into(), false));
}
