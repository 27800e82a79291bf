//! Validation codes and scopes, in Keygen's order of checks.

use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::helpers::*;

async fn validate_key(app: &TestApp, key: &str, scope: Value) -> Res {
    let mut meta = json!({"key": key});
    if !scope.is_null() {
        meta["scope"] = scope;
    }
    let r = app.post(&app.acct("/licenses/actions/validate-key"), &As::Anonymous, json!({"meta": meta})).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    r
}

fn code(r: &Res) -> (&str, bool) {
    (r.body["meta"]["code"].as_str().unwrap(), r.body["meta"]["valid"].as_bool().unwrap())
}

#[tokio::test]
async fn valid_invalid_and_blank_keys() {
    let app = spawn_app().await;
    let (_, _, id, key) = app.license_fixture(json!({})).await;
    let r = app
        .post(&app.acct("/licenses/actions/validate-key"), &As::Anonymous, json!({"meta": {"key": key, "nonce": 42}}))
        .await;
    assert_eq!(code(&r), ("VALID", true));
    assert_eq!(r.body["meta"]["detail"], "is valid");
    assert_eq!(r.body["meta"]["nonce"], 42);
    assert!(r.body["meta"]["ts"].is_string());
    assert_eq!(r.id(), id);
    let r = validate_key(&app, "NOPE-NOPE", Value::Null).await;
    assert_eq!(code(&r), ("NOT_FOUND", false));
    assert_eq!(r.body["meta"]["detail"], "does not exist");
    assert!(r.body["data"].is_null());
    let r = app.post(&app.acct("/licenses/actions/validate-key"), &As::Anonymous, json!({"meta": {"key": ""}})).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(r.pointer(), "/meta/key");
    // Credentials, if sent, must be valid, whether or not the key exists.
    for k in [key.as_str(), "NOPE-NOPE"] {
        let r = app
            .post(&app.acct("/licenses/actions/validate-key"), &As::Bearer("bogus".into()), json!({"meta": {"key": k}}))
            .await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{k}");
    }
}

#[tokio::test]
async fn suspended_expired_banned_overdue() {
    let app = spawn_app().await;
    let product = app.create_product("App").await;
    let restrict = app.create_policy(&product, json!({})).await;
    let revoke = app.create_policy(&product, json!({"expirationStrategy": "REVOKE_ACCESS"})).await;
    let maintain = app.create_policy(&product, json!({"expirationStrategy": "MAINTAIN_ACCESS"})).await;
    let past = "2020-01-01T00:00:00.000Z";
    let (_, k) = app.create_license(&restrict, json!({"suspended": true})).await;
    assert_eq!(code(&validate_key(&app, &k, Value::Null).await), ("SUSPENDED", false));
    let (_, k) = app.create_license(&restrict, json!({"expiry": past})).await;
    assert_eq!(code(&validate_key(&app, &k, Value::Null).await), ("EXPIRED", false));
    let (_, k) = app.create_license(&revoke, json!({"expiry": past})).await;
    assert_eq!(code(&validate_key(&app, &k, Value::Null).await), ("EXPIRED", false));
    let (_, k) = app.create_license(&maintain, json!({"expiry": past})).await;
    assert_eq!(code(&validate_key(&app, &k, Value::Null).await), ("EXPIRED", true));
    let user = app.create_user("banned@example.com").await;
    let (lid, k) = app.create_license(&restrict, json!({})).await;
    app.put(&app.acct(&format!("/licenses/{lid}/owner")), &app.admin(), json!({"data": {"type": "users", "id": user}}))
        .await;
    app.post(&app.acct(&format!("/users/{user}/actions/ban")), &app.admin(), json!(null)).await;
    assert_eq!(code(&validate_key(&app, &k, Value::Null).await), ("BANNED", false));
    // A check-in license becomes overdue once its interval passes without a check-in.
    let checkin = app
        .create_policy(&product, json!({"requireCheckIn": true, "checkInInterval": "day", "checkInIntervalCount": 1}))
        .await;
    let (lid, k) = app.create_license(&checkin, json!({})).await;
    assert_eq!(code(&validate_key(&app, &k, Value::Null).await), ("VALID", true));
    let two_days_ago = licensor::time::now_ms() - 2 * licensor::time::DAY;
    force_check_in(&app, &lid, two_days_ago).await;
    assert_eq!(code(&validate_key(&app, &k, Value::Null).await), ("OVERDUE", false));
    let r = app.post(&app.acct(&format!("/licenses/{lid}/actions/check-in")), &app.admin(), json!(null)).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(code(&validate_key(&app, &k, Value::Null).await), ("VALID", true));
}

/// Moves a license's last check-in into the past (time travel for tests).
async fn force_check_in(app: &TestApp, license: &str, at: i64) {
    let account: uuid::Uuid = app.account_id.parse().unwrap();
    let before = licensor::store::licenses::find(&app.db, account, license.parse().unwrap()).await.unwrap().unwrap();
    let mut l = before.clone();
    l.last_check_in_at = Some(at);
    licensor::store::licenses::update(&app.db, &before, &l, &[]).await.unwrap();
    app.wrote_behind_its_back();
}

#[tokio::test]
async fn product_policy_and_entitlement_scopes() {
    let app = spawn_app().await;
    let (product, policy, license, key) = app.license_fixture(json!({"requireProductScope": true})).await;
    assert_eq!(code(&validate_key(&app, &key, Value::Null).await), ("PRODUCT_SCOPE_REQUIRED", false));
    assert_eq!(
        code(&validate_key(&app, &key, json!({"product": uuid::Uuid::new_v4()})).await),
        ("PRODUCT_SCOPE_MISMATCH", false)
    );
    assert_eq!(code(&validate_key(&app, &key, json!({"product": product})).await), ("VALID", true));
    assert_eq!(
        code(&validate_key(&app, &key, json!({"product": product, "policy": uuid::Uuid::new_v4()})).await),
        ("POLICY_SCOPE_MISMATCH", false)
    );
    assert_eq!(code(&validate_key(&app, &key, json!({"product": product, "policy": policy})).await), ("VALID", true));
    let e = app
        .post(
            &app.acct("/entitlements"),
            &app.admin(),
            json!({"data": {"type": "entitlements", "attributes": {"name": "A", "code": "A"}}}),
        )
        .await;
    app.post(
        &app.acct(&format!("/licenses/{license}/entitlements")),
        &app.admin(),
        json!({"data": [{"type": "entitlements", "id": e.id()}]}),
    )
    .await;
    assert_eq!(
        code(&validate_key(&app, &key, json!({"product": product, "entitlements": ["A"]})).await),
        ("VALID", true)
    );
    assert_eq!(
        code(&validate_key(&app, &key, json!({"product": product, "entitlements": ["A", "B"]})).await),
        ("ENTITLEMENTS_MISSING", false)
    );
    assert_eq!(
        code(&validate_key(&app, &key, json!({"product": product, "entitlements": []})).await),
        ("ENTITLEMENTS_SCOPE_EMPTY", false)
    );
    // The scope is echoed back.
    let r = validate_key(&app, &key, json!({"product": product})).await;
    assert_eq!(r.body["meta"]["scope"], json!({"product": product}));
}

#[tokio::test]
async fn user_scope_matches_owner_by_id_or_email() {
    let app = spawn_app().await;
    let (_, _, license, key) = app.license_fixture(json!({"requireUserScope": true})).await;
    let user = app.create_user("who@example.com").await;
    assert_eq!(code(&validate_key(&app, &key, Value::Null).await), ("USER_SCOPE_REQUIRED", false));
    assert_eq!(code(&validate_key(&app, &key, json!({"user": user})).await), ("USER_SCOPE_MISMATCH", false));
    app.put(
        &app.acct(&format!("/licenses/{license}/owner")),
        &app.admin(),
        json!({"data": {"type": "users", "id": user}}),
    )
    .await;
    assert_eq!(code(&validate_key(&app, &key, json!({"user": user})).await), ("VALID", true));
    assert_eq!(code(&validate_key(&app, &key, json!({"user": "who@example.com"})).await), ("VALID", true));
}

#[tokio::test]
async fn fingerprint_scopes_and_matching_strategies() {
    let app = spawn_app().await;
    let (_, _, node_locked, nl_key) = app.license_fixture(json!({})).await;
    assert_eq!(code(&validate_key(&app, &nl_key, json!({"fingerprint": "fp-1"})).await), ("NO_MACHINE", false));
    assert_eq!(app.activate_machine(&node_locked, "fp-1").await.status, StatusCode::CREATED);
    assert_eq!(code(&validate_key(&app, &nl_key, json!({"fingerprint": "fp-1"})).await), ("VALID", true));
    assert_eq!(
        code(&validate_key(&app, &nl_key, json!({"fingerprint": "fp-2"})).await),
        ("FINGERPRINT_SCOPE_MISMATCH", false)
    );
    assert_eq!(
        code(&validate_key(&app, &nl_key, json!({"fingerprints": []})).await),
        ("FINGERPRINT_SCOPE_EMPTY", false)
    );
    let (_, _, floating, fl_key) =
        app.license_fixture(json!({"floating": true, "maxMachines": 4, "machineMatchingStrategy": "MATCH_MOST"})).await;
    assert_eq!(code(&validate_key(&app, &fl_key, json!({"fingerprints": ["a"]})).await), ("NO_MACHINES", false));
    app.activate_machine(&floating, "a").await;
    app.activate_machine(&floating, "b").await;
    assert_eq!(
        code(&validate_key(&app, &fl_key, json!({"fingerprints": ["a", "b", "c", "d"]})).await),
        ("VALID", true)
    );
    assert_eq!(
        code(&validate_key(&app, &fl_key, json!({"fingerprints": ["a", "x", "y", "z"]})).await),
        ("FINGERPRINT_SCOPE_MISMATCH", false)
    );
    let (_, _, _, req_key) = app.license_fixture(json!({"requireFingerprintScope": true})).await;
    assert_eq!(code(&validate_key(&app, &req_key, Value::Null).await), ("FINGERPRINT_SCOPE_REQUIRED", false));
    // Machine scope by id.
    let machines = app.get(&app.acct(&format!("/machines?license={node_locked}")), &app.admin()).await;
    let mid = machines.body["data"][0]["id"].as_str().unwrap().to_string();
    assert_eq!(code(&validate_key(&app, &nl_key, json!({"machine": mid})).await), ("VALID", true));
    assert_eq!(
        code(&validate_key(&app, &nl_key, json!({"machine": uuid::Uuid::new_v4()})).await),
        ("MACHINE_SCOPE_MISMATCH", false)
    );
}

#[tokio::test]
async fn strict_licenses_count_machines_with_overage() {
    let app = spawn_app().await;
    let (_, _, id, key) = app.license_fixture(json!({"strict": true})).await;
    assert_eq!(code(&validate_key(&app, &key, Value::Null).await), ("NO_MACHINE", false));
    assert_eq!(
        validate_key(&app, &key, Value::Null).await.body["meta"]["detail"],
        "must have exactly 1 associated machine"
    );
    app.activate_machine(&id, "m1").await;
    assert_eq!(code(&validate_key(&app, &key, Value::Null).await), ("VALID", true));
    let (_, _, fid, fkey) = app
        .license_fixture(
            json!({"strict": true, "floating": true, "maxMachines": 4, "overageStrategy": "ALLOW_1_25X_OVERAGE"}),
        )
        .await;
    assert_eq!(code(&validate_key(&app, &fkey, Value::Null).await), ("NO_MACHINES", false));
    for i in 0..5 {
        assert_eq!(
            app.activate_machine(&fid, &format!("f{i}")).await.status,
            StatusCode::CREATED,
            "within 1.25x overage"
        );
    }
    assert_eq!(code(&validate_key(&app, &fkey, Value::Null).await), ("TOO_MANY_MACHINES", true));
    let r = app.activate_machine(&fid, "f5").await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(r.code(), "MACHINE_LIMIT_EXCEEDED");
    // Lowering the license's limit below its machine count fails validation outright.
    app.patch(
        &app.acct(&format!("/licenses/{fid}")),
        &app.admin(),
        json!({"data": {"type": "licenses", "attributes": {"maxMachines": 2}}}),
    )
    .await;
    assert_eq!(code(&validate_key(&app, &fkey, Value::Null).await), ("TOO_MANY_MACHINES", false));
    // Cores.
    let (_, _, cid, ckey) =
        app.license_fixture(json!({"strict": true, "floating": true, "maxMachines": 10, "maxCores": 8})).await;
    let r = app.post(&app.acct("/machines"), &app.admin(), json!({"data": {"type": "machines", "attributes": {"fingerprint": "big", "cores": 16}, "relationships": {"license": {"data": {"type": "licenses", "id": cid}}}}})).await;
    assert_eq!(r.code(), "MACHINE_CORE_LIMIT_EXCEEDED");
    let r = app.post(&app.acct("/machines"), &app.admin(), json!({"data": {"type": "machines", "attributes": {"fingerprint": "ok", "cores": 8}, "relationships": {"license": {"data": {"type": "licenses", "id": cid}}}}})).await;
    assert_eq!(r.status, StatusCode::CREATED);
    assert_eq!(code(&validate_key(&app, &ckey, Value::Null).await), ("VALID", true));
}

#[tokio::test]
async fn too_many_users_respects_overage() {
    let app = spawn_app().await;
    let (_, _, id, key) = app
        .license_fixture(
            json!({"floating": true, "maxMachines": 2, "maxUsers": 2, "overageStrategy": "ALLOW_2X_OVERAGE"}),
        )
        .await;
    let mut users = Vec::new();
    for i in 0..5 {
        users.push(app.create_user(&format!("u{i}@example.com")).await);
    }
    let attach =
        |ids: &[String]| json!({"data": ids.iter().map(|u| json!({"type": "users", "id": u})).collect::<Vec<_>>()});
    let r = app.post(&app.acct(&format!("/licenses/{id}/users")), &app.admin(), attach(&users[..3])).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(code(&validate_key(&app, &key, Value::Null).await), ("TOO_MANY_USERS", true));
    let r = app.post(&app.acct(&format!("/licenses/{id}/users")), &app.admin(), attach(&users[3..])).await;
    assert_eq!(r.code(), "USER_LIMIT_EXCEEDED", "5 users exceed 2 × 2");
}

#[tokio::test]
async fn heartbeat_scopes() {
    let app = spawn_app().await;
    let (_, _, id, key) =
        app.license_fixture(json!({"requireHeartbeat": true, "heartbeatBasis": "FROM_FIRST_PING"})).await;
    let m = app.activate_machine(&id, "hb").await;
    assert_eq!(m.attr("heartbeatStatus"), "NOT_STARTED");
    assert_eq!(code(&validate_key(&app, &key, json!({"fingerprint": "hb"})).await), ("HEARTBEAT_NOT_STARTED", false));
    let r = app.post(&app.acct(&format!("/machines/{}/actions/ping", m.id())), &app.admin(), json!(null)).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.attr("heartbeatStatus"), "ALIVE");
    assert_eq!(code(&validate_key(&app, &key, json!({"fingerprint": "hb"})).await), ("VALID", true));
}

#[tokio::test]
async fn quick_validation_skips_scopes_and_needs_auth() {
    let app = spawn_app().await;
    let (_, _, id, key) =
        app.license_fixture(json!({"requireFingerprintScope": true, "authenticationStrategy": "LICENSE"})).await;
    let r = app.get(&app.acct(&format!("/licenses/{id}/actions/validate")), &app.admin()).await;
    assert_eq!(code(&r), ("VALID", true));
    let r = app
        .post(
            &app.acct(&format!("/licenses/{id}/actions/validate")),
            &As::License(key.clone()),
            json!({"meta": {"nonce": 1}}),
        )
        .await;
    assert_eq!(code(&r), ("FINGERPRINT_SCOPE_REQUIRED", false));
    let r = app.post(&app.acct(&format!("/licenses/{id}/actions/validate")), &As::Anonymous, json!(null)).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn last_validated_is_recorded_without_a_synchronous_write() {
    let mut app = spawn_app().await;
    let (_, _, id, key) = app.license_fixture(json!({})).await;
    validate_key(&app, &key, Value::Null).await;
    // The flush runs every second; shutting down flushes too.
    let account: uuid::Uuid = app.account_id.parse().unwrap();
    app.stop().await;
    let l = licensor::store::licenses::find(&app.db, account, id.parse().unwrap()).await.unwrap().unwrap();
    assert!(l.last_validated_at.is_some(), "validation timestamp survives shutdown");
}

#[tokio::test]
async fn expiry_clock_starts_on_first_validation() {
    let app = spawn_app().await;
    let (_, _, _, key) =
        app.license_fixture(json!({"duration": 86400 * 7, "expirationBasis": "FROM_FIRST_VALIDATION"})).await;
    let before = app.get(&app.acct(&format!("/licenses/{key}")), &app.admin()).await;
    assert!(before.attr("expiry").is_null());
    let r = validate_key(&app, &key, Value::Null).await;
    let expiry = licensor::time::parse_iso(r.attr("expiry").as_str().unwrap()).unwrap();
    assert!((expiry - (licensor::time::now_ms() + 7 * licensor::time::DAY)).abs() < 60_000);
}

/// Validation writes nothing on its own path, yet its timestamp reaches the database: at the
/// latest when the server shuts down. A license deleted before the write is skipped, not an
/// error that would hold back every other license's timestamp.
#[tokio::test]
async fn last_validated_is_kept_through_shutdown() {
    let mut app = spawn_app().await;
    let (_, policy, license, key) = app.license_fixture(json!({})).await;
    let (doomed, doomed_key) = app.create_license(&policy, json!({})).await;
    let r = validate_key(&app, &key, Value::Null).await;
    assert_eq!(r.body["meta"]["code"], "VALID", "{}", r.text);
    let answered = licensor::time::parse_iso(r.attr("lastValidated").as_str().unwrap()).unwrap();
    validate_key(&app, &doomed_key, Value::Null).await;
    assert_eq!(
        app.delete(&app.acct(&format!("/licenses/{doomed}")), &app.admin()).await.status,
        StatusCode::NO_CONTENT
    );
    app.stop().await;

    let account = app.account_id.parse().unwrap();
    let stored = licensor::store::licenses::find(&app.db, account, license.parse().unwrap()).await.unwrap().unwrap();
    assert_eq!(stored.last_validated_at, Some(answered));
    let now = licensor::time::now_ms();
    licensor::store::licenses::touch_validated(&app.db, &[(doomed.parse().unwrap(), now), (stored.id, now)])
        .await
        .expect("a deleted license does not fail the batch");
    let stored = licensor::store::licenses::find(&app.db, account, stored.id).await.unwrap().unwrap();
    assert_eq!(stored.last_validated_at, Some(now));
    // Never backwards (nodes flush out of order).
    licensor::store::licenses::touch_validated(&app.db, &[(stored.id, now - 60_000)]).await.unwrap();
    let stored = licensor::store::licenses::find(&app.db, account, stored.id).await.unwrap().unwrap();
    assert_eq!(stored.last_validated_at, Some(now));
}

#[tokio::test]
async fn typed_parameters_refuse_nulls_blanks_and_strangers() {
    let app = spawn_app().await;
    let (_, _, id, key) = app.license_fixture(json!({"floating": true})).await;
    let path = app.acct("/licenses/actions/validate-key");
    let refused = |body: Value, detail: &'static str, pointer: &'static str| {
        let (app, path) = (&app, &path);
        async move {
            let r = app.post(path, &As::Anonymous, body.clone()).await;
            assert_eq!(r.status, StatusCode::BAD_REQUEST, "{body}: {}", r.text);
            assert_eq!(r.body["errors"][0]["detail"], detail, "{body}");
            assert_eq!(r.pointer(), pointer, "{body}");
        }
    };
    refused(json!({"meta": {"key": ""}}), "cannot be blank", "/meta/key").await;
    refused(json!({"meta": {"key": null}}), "cannot be null", "/meta/key").await;
    refused(json!({"meta": {}}), "is missing", "/meta/key").await;
    refused(json!({"meta": {"key": 42}}), "type mismatch (received integer expected string)", "/meta/key").await;
    refused(
        json!({"meta": {"key": key, "nonce": "n"}}),
        "type mismatch (received string expected integer)",
        "/meta/nonce",
    )
    .await;
    refused(json!({"meta": {"key": key, "scope": {"fingerprint": ""}}}), "cannot be blank", "/meta/scope/fingerprint")
        .await;
    refused(
        json!({"meta": {"key": key, "scope": {"fingerprints": ["a", null]}}}),
        "cannot be null",
        "/meta/scope/fingerprints/1",
    )
    .await;
    refused(json!({"meta": {"key": key, "scope": {"product": null}}}), "cannot be null", "/meta/scope/product").await;
    refused(json!({"meta": {"key": key, "scope": {"colour": "red"}}}), "unpermitted parameter", "/meta/scope/colour")
        .await;
    // By id, the key-lookup parameters are not accepted.
    let by_id = app.acct(&format!("/licenses/{id}/actions/validate"));
    let r = app.post(&by_id, &app.admin(), json!({"meta": {"key": key}})).await;
    assert_eq!((r.status, r.pointer()), (StatusCode::BAD_REQUEST, "/meta/key"));
    assert_eq!(r.body["errors"][0]["detail"], "unpermitted parameter");
    // An integer nonce and a null user scope are echoed as sent.
    let r = app.post(&path, &As::Anonymous, json!({"meta": {"key": key, "nonce": 7, "scope": {"user": null}}})).await;
    assert_eq!(code(&r), ("VALID", true), "an ownerless license matches a null user");
    assert_eq!(r.body["meta"]["nonce"], 7);
    assert_eq!(r.body["meta"]["scope"], json!({"user": null}));
    let owner = app.create_user("owner@example.com").await;
    app.put(&app.acct(&format!("/licenses/{id}/owner")), &app.admin(), json!({"data": {"type": "users", "id": owner}}))
        .await;
    assert_eq!(code(&validate_key(&app, &key, json!({"user": null})).await), ("USER_SCOPE_MISMATCH", false));
}

#[tokio::test]
async fn validators_see_only_what_they_may_read() {
    let app = spawn_app().await;
    let (_, policy, mine, my_key) = app.license_fixture(json!({"authenticationStrategy": "LICENSE"})).await;
    let (theirs, their_key) = app.create_license(&policy, json!({})).await;
    let user = app.create_user("me@example.com").await;
    app.put(
        &app.acct(&format!("/licenses/{mine}/owner")),
        &app.admin(),
        json!({"data": {"type": "users", "id": user}}),
    )
    .await;
    let t = app.post(&app.acct("/tokens"), &As::Basic("me@example.com".into(), PASSWORD.into()), json!(null)).await;
    let me = As::Bearer(t.attr("token").as_str().unwrap().to_string());
    let by_key = |key: &str| json!({"meta": {"key": key}});
    let path = app.acct("/licenses/actions/validate-key");
    assert_eq!(code(&app.post(&path, &me, by_key(&my_key)).await), ("VALID", true));
    // Someone else's key, as this user: forbidden; by id: not found (lookups are scoped).
    assert_eq!(app.post(&path, &me, by_key(&their_key)).await.status, StatusCode::FORBIDDEN);
    for method in [reqwest::Method::GET, reqwest::Method::POST] {
        let r = app.req(method, &app.acct(&format!("/licenses/{theirs}/actions/validate")), &me, None).await;
        assert_eq!(r.status, StatusCode::NOT_FOUND, "{}", r.text);
    }
    // A license validating another license by id: not found either.
    let r = app.get(&app.acct(&format!("/licenses/{theirs}/actions/validate")), &As::License(my_key.clone())).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND, "{}", r.text);
}

#[tokio::test]
async fn quick_validation_records_the_instant() {
    let app = spawn_app().await;
    let (_, _, id, _) = app.license_fixture(json!({})).await;
    let r = app.get(&app.acct(&format!("/licenses/{id}/actions/validate")), &app.admin()).await;
    assert_eq!(code(&r), ("VALID", true));
    let at = r.body["data"]["attributes"]["lastValidated"].as_str().and_then(licensor::time::parse_iso);
    assert!(at.is_some_and(|t| (licensor::time::now_ms() - t).abs() < 5_000), "{}", r.text);
}

#[tokio::test]
async fn a_malformed_content_type_is_refused() {
    let app = spawn_app().await;
    let (_, _, _, key) = app.license_fixture(json!({})).await;
    let r = app
        .send(
            reqwest::Method::POST,
            &app.acct("/licenses/actions/validate-key"),
            &As::Anonymous,
            Some("vnd.api+xml"),
            &format!("<validation><meta><key>{key}</key></meta></validation>"),
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(r.code(), "MIME_TYPE_INVALID");
    assert_eq!(
        r.body["errors"][0]["detail"],
        "The mime type of the request is not acceptable (check content-type and accept headers)"
    );
    // Well-formed types, with parameters, pass.
    let r = app
        .send(
            reqwest::Method::POST,
            &app.acct("/licenses/actions/validate-key"),
            &As::Anonymous,
            Some("application/vnd.api+json; charset=utf-8"),
            &json!({"meta": {"key": key}}).to_string(),
        )
        .await;
    assert_eq!(code(&r), ("VALID", true));
}
