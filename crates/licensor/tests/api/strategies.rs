//! Policy strategies not covered elsewhere: overage factors, uniqueness scopes, transfer,
//! machine and process leasing, authentication, expiration and renewal bases, culling and
//! resurrection.

use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::helpers::*;

async fn activate(app: &TestApp, license: &str, fingerprint: &str, owner: Option<&str>) -> Res {
    let mut rels = json!({"license": {"data": {"type": "licenses", "id": license}}});
    if let Some(o) = owner {
        rels["owner"] = json!({"data": {"type": "users", "id": o}});
    }
    app.post(
        &app.acct("/machines"),
        &app.admin(),
        json!({"data": {"type": "machines", "attributes": {"fingerprint": fingerprint}, "relationships": rels}}),
    )
    .await
}

async fn activated(app: &TestApp, license: &str, count: usize) -> usize {
    let mut ok = 0;
    for i in 0..count {
        if activate(app, license, &format!("fp-{i}"), None).await.status == StatusCode::CREATED {
            ok += 1;
        }
    }
    ok
}

#[tokio::test]
async fn overage_factors_bound_activations() {
    let app = spawn_app().await;
    let product = app.create_product("App").await;
    for (strategy, max, admitted) in [
        ("NO_OVERAGE", 4, 4),
        ("ALLOW_1_25X_OVERAGE", 4, 5),
        ("ALLOW_1_5X_OVERAGE", 4, 6),
        ("ALLOW_2X_OVERAGE", 4, 8),
        ("ALWAYS_ALLOW_OVERAGE", 4, 10),
    ] {
        let policy = app
            .create_policy(&product, json!({"floating": true, "maxMachines": max, "overageStrategy": strategy}))
            .await;
        let (license, _) = app.create_license(&policy, json!({})).await;
        assert_eq!(activated(&app, &license, 10).await, admitted, "{strategy}");
    }
}

#[tokio::test]
async fn uniqueness_scopes_for_fingerprints() {
    let app = spawn_app().await;
    let (a, b) = (app.create_product("A").await, app.create_product("B").await);
    for (strategy, same_policy, same_product, other_product) in [
        ("UNIQUE_PER_LICENSE", true, true, true),
        ("UNIQUE_PER_POLICY", false, true, true),
        ("UNIQUE_PER_PRODUCT", false, false, true),
        ("UNIQUE_PER_ACCOUNT", false, false, false),
    ] {
        let fp = format!("shared-{strategy}");
        let attrs = json!({"floating": true, "machineUniquenessStrategy": strategy});
        let p1 = app.create_policy(&a, attrs.clone()).await;
        let p2 = app.create_policy(&a, attrs.clone()).await;
        let p3 = app.create_policy(&b, attrs).await;
        let (l1, _) = app.create_license(&p1, json!({})).await;
        let (l2, _) = app.create_license(&p1, json!({})).await;
        let (l3, _) = app.create_license(&p2, json!({})).await;
        let (l4, _) = app.create_license(&p3, json!({})).await;
        assert_eq!(activate(&app, &l1, &fp, None).await.status, StatusCode::CREATED);
        for (license, allowed, what) in [
            (&l2, same_policy, "same policy"),
            (&l3, same_product, "same product"),
            (&l4, other_product, "other product"),
        ] {
            let r = activate(&app, license, &fp, None).await;
            assert_eq!(r.status == StatusCode::CREATED, allowed, "{strategy}, {what}: {}", r.text);
            if !allowed {
                assert_eq!(r.code(), "FINGERPRINT_TAKEN");
            }
        }
    }
}

#[tokio::test]
async fn transfer_strategies_on_policy_change() {
    let app = spawn_app().await;
    let product = app.create_product("App").await;
    let from = app.create_policy(&product, json!({"duration": 3 * 86400})).await;
    let keep = app.create_policy(&product, json!({"duration": 86400, "transferStrategy": "KEEP_EXPIRY"})).await;
    let reset = app.create_policy(&product, json!({"duration": 86400, "transferStrategy": "RESET_EXPIRY"})).await;
    for (to, kept) in [(&keep, true), (&reset, false)] {
        let (license, _) = app.create_license(&from, json!({})).await;
        let before = app.get(&app.acct(&format!("/licenses/{license}")), &app.admin()).await.attr("expiry").clone();
        let r = app
            .put(
                &app.acct(&format!("/licenses/{license}/policy")),
                &app.admin(),
                json!({"data": {"type": "policies", "id": to}}),
            )
            .await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text);
        let after = r.attr("expiry").clone();
        assert_eq!(before == after, kept, "{before} -> {after}");
        if !kept {
            let t = licensor::time::parse_iso(after.as_str().unwrap()).unwrap();
            assert!((t - licensor::time::now_ms() - 86_400_000).abs() < 60_000, "reset to now + the new duration");
        }
    }
}

#[tokio::test]
async fn per_user_machine_leasing() {
    let app = spawn_app().await;
    let (_, _, license, _) =
        app.license_fixture(json!({"floating": true, "maxMachines": 1, "machineLeasingStrategy": "PER_USER"})).await;
    let (ann, bob) = (app.create_user("ann@example.com").await, app.create_user("bob@example.com").await);
    app.attach_users(&license, &[&ann, &bob]).await;
    assert_eq!(activate(&app, &license, "ann-1", Some(&ann)).await.status, StatusCode::CREATED);
    let r = activate(&app, &license, "ann-2", Some(&ann)).await;
    assert_eq!(r.code(), "MACHINE_LIMIT_EXCEEDED");
    assert!(r.body["errors"][0]["detail"].as_str().unwrap().contains("for user"));
    assert_eq!(
        activate(&app, &license, "bob-1", Some(&bob)).await.status,
        StatusCode::CREATED,
        "each user has their own allowance"
    );
}

#[tokio::test]
async fn process_leasing_strategies() {
    let app = spawn_app().await;
    let product = app.create_product("App").await;
    for (strategy, second_machine_allowed) in [("PER_MACHINE", true), ("PER_LICENSE", false)] {
        let policy = app
            .create_policy(&product, json!({"floating": true, "maxProcesses": 1, "processLeasingStrategy": strategy}))
            .await;
        let (license, _) = app.create_license(&policy, json!({})).await;
        let m1 = activate(&app, &license, "m1", None).await.id();
        let m2 = activate(&app, &license, "m2", None).await.id();
        assert_eq!(spawn(&app, &m1, "1").await.status, StatusCode::CREATED);
        assert_eq!(spawn(&app, &m1, "2").await.status, StatusCode::UNPROCESSABLE_ENTITY, "{strategy}: one per scope");
        assert_eq!(spawn(&app, &m2, "3").await.status == StatusCode::CREATED, second_machine_allowed, "{strategy}");
    }
}

#[tokio::test]
async fn authentication_strategies() {
    let app = spawn_app().await;
    let product = app.create_product("App").await;
    for (strategy, key_ok, token_ok) in [
        ("LICENSE", true, false),
        ("TOKEN", false, true),
        ("MIXED", true, true),
        ("NONE", false, false),
        // Sessions are Keygen's portal cookies, which Licensor has none of: neither key nor token.
        ("SESSION", false, false),
    ] {
        let policy = app.create_policy(&product, json!({"authenticationStrategy": strategy})).await;
        let (license, key) = app.create_license(&policy, json!({})).await;
        let path = app.acct(&format!("/licenses/{license}"));
        assert_eq!(app.get(&path, &As::License(key)).await.status == StatusCode::OK, key_ok, "{strategy} key");
        let t = app.post(&app.acct(&format!("/licenses/{license}/tokens")), &app.admin(), json!(null)).await;
        let token = t.attr("token").as_str().unwrap().to_string();
        assert_eq!(app.get(&path, &As::Bearer(token)).await.status == StatusCode::OK, token_ok, "{strategy} token");
    }
}

fn expiry(r: &Res) -> Option<i64> {
    r.attr("expiry").as_str().and_then(licensor::time::parse_iso)
}

#[tokio::test]
async fn expiration_bases_start_the_clock_on_their_event() {
    let app = spawn_app().await;
    let product = app.create_product("App").await;
    let day = 86_400_000;
    let near = |t: Option<i64>| t.is_some_and(|t| (t - licensor::time::now_ms() - day).abs() < 60_000);

    let policy = app.create_policy(&product, json!({"duration": 86400, "expirationBasis": "FROM_CREATION"})).await;
    let (license, _) = app.create_license(&policy, json!({})).await;
    assert!(near(expiry(&app.get(&app.acct(&format!("/licenses/{license}")), &app.admin()).await)));

    let policy = app
        .create_policy(
            &product,
            json!({"duration": 86400, "floating": true, "expirationBasis": "FROM_FIRST_ACTIVATION"}),
        )
        .await;
    let (license, _) = app.create_license(&policy, json!({})).await;
    let path = app.acct(&format!("/licenses/{license}"));
    assert_eq!(expiry(&app.get(&path, &app.admin()).await), None);
    activate(&app, &license, "first", None).await;
    assert!(near(expiry(&app.get(&path, &app.admin()).await)));

    let policy = app.create_policy(&product, json!({"duration": 86400, "expirationBasis": "FROM_FIRST_USE"})).await;
    let (license, _) = app.create_license(&policy, json!({})).await;
    let path = app.acct(&format!("/licenses/{license}"));
    assert_eq!(expiry(&app.get(&path, &app.admin()).await), None);
    let r =
        app.post(&app.acct(&format!("/licenses/{license}/actions/increment-usage")), &app.admin(), json!(null)).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert!(near(expiry(&app.get(&path, &app.admin()).await)));
}

#[tokio::test]
async fn renewal_bases() {
    let app = spawn_app().await;
    let product = app.create_product("App").await;
    let day = 86_400_000;
    for (basis, expected_from_expiry) in [("FROM_EXPIRY", true), ("FROM_NOW", false)] {
        let policy = app.create_policy(&product, json!({"duration": 86400, "renewalBasis": basis})).await;
        let far = licensor::time::now_ms() + 10 * day;
        let (license, _) = app.create_license(&policy, json!({"expiry": licensor::time::iso(far)})).await;
        let r = app.post(&app.acct(&format!("/licenses/{license}/actions/renew")), &app.admin(), json!(null)).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text);
        let got = expiry(&r).unwrap();
        let want = if expected_from_expiry { far + day } else { licensor::time::now_ms() + day };
        assert!((got - want).abs() < 60_000, "{basis}: got {got}, want {want}");
    }
}

#[tokio::test]
async fn dead_machines_are_culled_or_revived_by_policy() {
    let app = spawn_app().await;
    let account = app.account_id.parse().unwrap();
    let product = app.create_product("App").await;
    let long_ago = licensor::time::now_ms() - 3_600_000;
    let mut cases: Vec<(String, &str, Value)> = Vec::new();
    for (cull, revive) in [("DEACTIVATE_DEAD", "NO_REVIVE"), ("KEEP_DEAD", "ALWAYS_REVIVE")] {
        let policy = app
            .create_policy(
                &product,
                json!({"floating": true, "requireHeartbeat": true, "heartbeatDuration": 60,
                "heartbeatCullStrategy": cull, "heartbeatResurrectionStrategy": revive}),
            )
            .await;
        let (license, _) = app.create_license(&policy, json!({})).await;
        let m = activate(&app, &license, "fp", None).await.id();
        licensor::store::machines::set_heartbeat(&app.db, account, m.parse().unwrap(), Some(long_ago), long_ago, &[])
            .await
            .unwrap();
        cases.push((m, cull, json!(revive)));
    }
    licensor::jobs::cull_once(&app.db, licensor::time::now_ms()).await.unwrap();
    for (m, cull, _) in &cases {
        let r = app.get(&app.acct(&format!("/machines/{m}")), &app.admin()).await;
        assert_eq!(r.status == StatusCode::NOT_FOUND, *cull == "DEACTIVATE_DEAD", "{cull}");
    }
    // The kept one comes back to life on its next ping.
    let (kept, _, _) = &cases[1];
    let r = app.post(&app.acct(&format!("/machines/{kept}/actions/ping")), &app.admin(), json!(null)).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.attr("heartbeatStatus"), "RESURRECTED");
}

#[tokio::test]
async fn memory_and_disk_limits_bound_activation() {
    let app = spawn_app().await;
    let (_, _, license, _) = app.license_fixture(json!({"floating": true, "maxMemory": 1000, "maxDisk": 5000})).await;
    let machine = |fp: &'static str, attrs: Value| {
        let app = &app;
        let license = license.clone();
        async move {
            let mut a = json!({"fingerprint": fp});
            a.as_object_mut().unwrap().extend(attrs.as_object().cloned().unwrap());
            app.post(
                &app.acct("/machines"),
                &app.admin(),
                json!({"data": {"type": "machines", "attributes": a,
                "relationships": {"license": {"data": {"type": "licenses", "id": license}}}}}),
            )
            .await
        }
    };
    assert_eq!(machine("a", json!({"memory": 600, "disk": 3000})).await.status, StatusCode::CREATED);
    let r = machine("b", json!({"memory": 600})).await;
    assert_eq!(r.code(), "MACHINE_MEMORY_LIMIT_EXCEEDED");
    assert_eq!(r.body["errors"][0]["detail"], "machine memory has exceeded maximum allowed for license (1000)");
    let r = machine("c", json!({"disk": 3000})).await;
    assert_eq!(r.code(), "MACHINE_DISK_LIMIT_EXCEEDED");
    assert_eq!(machine("d", json!({"memory": 400, "disk": 2000})).await.status, StatusCode::CREATED);
}

#[tokio::test]
async fn group_limits_on_machines_and_licenses() {
    let app = spawn_app().await;
    let g = app
        .post(
            &app.acct("/groups"),
            &app.admin(),
            json!({"data": {"type": "groups", "attributes": {"name": "Team", "maxMachines": 1, "maxLicenses": 1, "maxUsers": 1}}}),
        )
        .await;
    assert_eq!(g.status, StatusCode::CREATED, "{}", g.text);
    let group = g.id();
    let product = app.create_product("App").await;
    let policy = app.create_policy(&product, json!({"floating": true})).await;
    let in_group = json!({"data": {"type": "groups", "id": group}});
    let body = json!({"data": {"type": "licenses",
        "relationships": {"policy": {"data": {"type": "policies", "id": policy}}, "group": in_group}}});
    let first = app.post(&app.acct("/licenses"), &app.admin(), body.clone()).await;
    assert_eq!(first.status, StatusCode::CREATED, "{}", first.text);
    let r = app.post(&app.acct("/licenses"), &app.admin(), body).await;
    assert_eq!(r.code(), "GROUP_LICENSE_LIMIT_EXCEEDED");
    assert_eq!(r.pointer(), "/data/relationships/group");
    assert_eq!(r.body["errors"][0]["detail"], "license count has exceeded maximum allowed by current group (1)");
    let (other, _) = app.create_license(&policy, json!({})).await;
    let r = app.put(&app.acct(&format!("/licenses/{other}/group")), &app.admin(), in_group.clone()).await;
    assert_eq!(r.code(), "GROUP_LICENSE_LIMIT_EXCEEDED");

    let license = first.id();
    let activate = |fp: &'static str| {
        let app = &app;
        let (license, group) = (license.clone(), group.clone());
        async move {
            app.post(&app.acct("/machines"), &app.admin(), json!({"data": {"type": "machines", "attributes": {"fingerprint": fp},
                "relationships": {"license": {"data": {"type": "licenses", "id": license}}, "group": {"data": {"type": "groups", "id": group}}}}}))
                .await
        }
    };
    assert_eq!(activate("one").await.status, StatusCode::CREATED);
    let r = activate("two").await;
    assert_eq!(r.code(), "GROUP_MACHINE_LIMIT_EXCEEDED");
    assert_eq!(r.body["errors"][0]["detail"], "machine count has exceeded maximum allowed by current group (1)");

    let user = |email: &str| {
        json!({"data": {"type": "users", "attributes": {"email": email, "password": PASSWORD},
            "relationships": {"group": {"data": {"type": "groups", "id": group}}}}})
    };
    assert_eq!(app.post(&app.acct("/users"), &app.admin(), user("one@example.com")).await.status, StatusCode::CREATED);
    let r = app.post(&app.acct("/users"), &app.admin(), user("two@example.com")).await;
    assert_eq!(r.code(), "GROUP_USER_LIMIT_EXCEEDED", "{}", r.text);
    assert_eq!(r.body["errors"][0]["detail"], "user count has exceeded maximum allowed by current group (1)");
    assert_eq!(
        app.get(&app.acct("/users/two@example.com"), &app.admin()).await.status,
        StatusCode::NOT_FOUND,
        "nothing written"
    );
}

async fn validate_as(app: &TestApp, key: &str, scope: Value) -> (String, bool) {
    let r = app
        .post(
            &app.acct("/licenses/actions/validate-key"),
            &As::Anonymous,
            json!({"meta": {"key": key, "scope": scope}}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    (r.body["meta"]["code"].as_str().unwrap().to_string(), r.body["meta"]["valid"].as_bool().unwrap())
}

async fn spawn(app: &TestApp, machine: &str, pid: &str) -> Res {
    app.post(
        &app.acct("/processes"),
        &app.admin(),
        json!({"data": {"type": "processes", "attributes": {"pid": pid},
        "relationships": {"machine": {"data": {"type": "machines", "id": machine}}}}}),
    )
    .await
}

#[tokio::test]
async fn per_user_machine_leasing_at_validation() {
    let app = spawn_app().await;
    let (_, _, license, key) = app
        .license_fixture(
            json!({"strict": true, "floating": true, "maxMachines": 2, "machineLeasingStrategy": "PER_USER"}),
        )
        .await;
    let (ann, bob) = (app.create_user("ann@example.com").await, app.create_user("bob@example.com").await);
    app.attach_users(&license, &[&ann, &bob]).await;
    for fp in ["ann-1", "ann-2"] {
        assert_eq!(activate(&app, &license, fp, Some(&ann)).await.status, StatusCode::CREATED);
    }
    assert_eq!(activate(&app, &license, "bob-1", Some(&bob)).await.status, StatusCode::CREATED);
    // Three machines on a limit of two: fine, since each user holds at most two.
    assert_eq!(validate_as(&app, &key, json!({"user": ann})).await, ("VALID".into(), true));
    let r = app
        .patch(
            &app.acct(&format!("/licenses/{license}")),
            &app.admin(),
            json!({"data": {"type": "licenses", "attributes": {"maxMachines": 1}}}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(validate_as(&app, &key, json!({"user": ann})).await, ("TOO_MANY_MACHINES".into(), false));
    assert_eq!(validate_as(&app, &key, json!({"user": "bob@example.com"})).await, ("VALID".into(), true));
    // Without a user in scope, the ownerless machines are the bucket: none, so nothing is over
    // the limit (NO_MACHINES looks at the whole license, which has three).
    assert_eq!(validate_as(&app, &key, json!({})).await, ("VALID".into(), true));
}

#[tokio::test]
async fn per_user_process_leasing() {
    let app = spawn_app().await;
    let (_, _, license, _) =
        app.license_fixture(json!({"floating": true, "maxProcesses": 1, "processLeasingStrategy": "PER_USER"})).await;
    let (ann, bob) = (app.create_user("ann@example.com").await, app.create_user("bob@example.com").await);
    app.attach_users(&license, &[&ann, &bob]).await;
    let ann1 = activate(&app, &license, "ann-1", Some(&ann)).await.id();
    let ann2 = activate(&app, &license, "ann-2", Some(&ann)).await.id();
    let bob1 = activate(&app, &license, "bob-1", Some(&bob)).await.id();
    assert_eq!(spawn(&app, &ann1, "1").await.status, StatusCode::CREATED);
    let r = spawn(&app, &ann2, "2").await;
    assert_eq!(r.code(), "MACHINE_PROCESS_LIMIT_EXCEEDED", "Ann's allowance spans her machines");
    assert_eq!(r.body["errors"][0]["detail"], "process count has exceeded maximum allowed for user (1)");
    assert_eq!(spawn(&app, &bob1, "3").await.status, StatusCode::CREATED, "Bob has his own");
}

#[tokio::test]
async fn component_uniqueness_strategies() {
    let app = spawn_app().await;
    let product = app.create_product("App").await;
    let other_product = app.create_product("Other").await;
    // Each strategy's component has its own fingerprint, so earlier rounds do not collide.
    let with_board = |license: &str, fp: &str, board: &str| {
        json!({"data": {"type": "machines", "attributes": {"fingerprint": fp}, "relationships": {
            "license": {"data": {"type": "licenses", "id": license}},
            "components": {"data": [{"type": "components", "attributes": {"fingerprint": board, "name": "Board"}}]}}}})
    };
    // Where a second machine carrying the same component is refused: (strategy, same license,
    // sibling license of the same policy, license of another policy of the product, another product).
    for (strategy, refused, detail) in [
        ("UNIQUE_PER_MACHINE", [false, false, false, false], ""),
        ("UNIQUE_PER_LICENSE", [true, false, false, false], "has already been taken for this license"),
        ("UNIQUE_PER_POLICY", [true, true, false, false], "has already been taken for this policy"),
        ("UNIQUE_PER_PRODUCT", [true, true, true, false], "has already been taken for this product"),
        ("UNIQUE_PER_ACCOUNT", [true, true, true, true], "has already been taken for this account"),
    ] {
        let attrs = json!({"floating": true, "componentUniquenessStrategy": strategy});
        let policy = app.create_policy(&product, attrs.clone()).await;
        let (first, _) = app.create_license(&policy, json!({})).await;
        let r = app
            .post(&app.acct("/machines"), &app.admin(), with_board(&first, &format!("{strategy}-0"), strategy))
            .await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
        let (sibling, _) = app.create_license(&policy, json!({})).await;
        let (cousin, _) = app.create_license(&app.create_policy(&product, attrs.clone()).await, json!({})).await;
        let (stranger, _) = app.create_license(&app.create_policy(&other_product, attrs).await, json!({})).await;
        for (i, (license, refused)) in [first, sibling, cousin, stranger].iter().zip(refused).enumerate() {
            let r = app
                .post(
                    &app.acct("/machines"),
                    &app.admin(),
                    with_board(license, &format!("{strategy}-{}", i + 1), strategy),
                )
                .await;
            if refused {
                assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{strategy} #{i}: {}", r.text);
                assert_eq!(r.code(), "COMPONENTS_FINGERPRINT_TAKEN");
                assert_eq!(r.body["errors"][0]["detail"], detail);
                assert_eq!(r.pointer(), "/data/relationships/components/data/0/attributes/fingerprint");
            } else {
                assert_eq!(r.status, StatusCode::CREATED, "{strategy} #{i}: {}", r.text);
            }
        }
        // Adding the component to a machine afterwards obeys the same scope.
        let (fresh, _) = app.create_license(&policy, json!({})).await;
        let m = activate(&app, &fresh, &format!("{strategy}-bare"), None).await.id();
        let r = app
            .post(
                &app.acct("/components"),
                &app.admin(),
                json!({"data": {"type": "components", "attributes": {"fingerprint": strategy, "name": "Board"},
                "relationships": {"machine": {"data": {"type": "machines", "id": m}}}}}),
            )
            .await;
        if strategy == "UNIQUE_PER_MACHINE" || strategy == "UNIQUE_PER_LICENSE" {
            assert_eq!(r.status, StatusCode::CREATED, "{strategy}: {}", r.text);
        } else {
            assert_eq!(r.code(), "FINGERPRINT_TAKEN", "{strategy}");
            assert_eq!(r.body["errors"][0]["detail"], detail);
        }
    }
}

#[tokio::test]
async fn every_resurrection_window() {
    let app = spawn_app().await;
    let product = app.create_product("App").await;
    let account: uuid::Uuid = app.account_id.parse().unwrap();
    for minutes in [1, 2, 5, 10, 15] {
        let policy = app
            .create_policy(
                &product,
                json!({"floating": true, "requireHeartbeat": true, "heartbeatDuration": 60,
                "heartbeatCullStrategy": "KEEP_DEAD", "heartbeatResurrectionStrategy": format!("{minutes}_MINUTE_REVIVE")}),
            )
            .await;
        let (license, _) = app.create_license(&policy, json!({})).await;
        // Died (one heartbeat duration after the last ping) 30 s inside and 30 s past the window.
        for (fp, dead_for, revived) in [("inside", minutes * 60 - 30, true), ("outside", minutes * 60 + 30, false)] {
            let m = activate(&app, &license, &format!("{minutes}-{fp}"), None).await.id();
            let last = licensor::time::now_ms() - (60 + dead_for) * 1000;
            licensor::store::machines::set_heartbeat(&app.db, account, m.parse().unwrap(), Some(last), last, &[])
                .await
                .unwrap();
            let r = app.post(&app.acct(&format!("/machines/{m}/actions/ping")), &app.admin(), json!(null)).await;
            if revived {
                assert_eq!(r.status, StatusCode::OK, "{minutes} min {fp}: {}", r.text);
                assert_eq!(r.attr("heartbeatStatus"), "RESURRECTED");
            } else {
                assert_eq!(r.code(), "MACHINE_HEARTBEAT_DEAD", "{minutes} min {fp}");
            }
        }
    }
}

#[tokio::test]
async fn protected_policies_keep_users_from_managing_their_licenses() {
    let app = spawn_app().await;
    let product = app.create_product("App").await;
    let user = app.create_user("own@example.com").await;
    let t = app.post(&app.acct("/tokens"), &As::Basic("own@example.com".into(), PASSWORD.into()), json!(null)).await;
    let me = As::Bearer(t.attr("token").as_str().unwrap().to_string());
    for (protected, allowed) in [(false, true), (true, false)] {
        let policy = app.create_policy(&product, json!({"floating": true, "protected": protected})).await;
        // A user may create a license for themself only under an unprotected policy.
        let r = app
            .post(
                &app.acct("/licenses"),
                &me,
                json!({"data": {"type": "licenses", "relationships": {
                    "policy": {"data": {"type": "policies", "id": policy}},
                    "owner": {"data": {"type": "users", "id": user}}}}}),
            )
            .await;
        assert_eq!(r.status == StatusCode::CREATED, allowed, "protected={protected}: {}", r.text);
        // And activate a machine on a license they own only when it is unprotected.
        let (license, _) = app.create_license(&policy, json!({})).await;
        let r = app
            .put(
                &app.acct(&format!("/licenses/{license}/owner")),
                &app.admin(),
                json!({"data": {"type": "users", "id": user}}),
            )
            .await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text);
        let r = app
            .post(
                &app.acct("/machines"),
                &me,
                json!({"data": {"type": "machines", "attributes": {"fingerprint": format!("mine-{protected}")},
                "relationships": {"license": {"data": {"type": "licenses", "id": license}}}}}),
            )
            .await;
        if allowed {
            assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
        } else {
            assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.text);
        }
    }
    // The license's own attribute overrides its policy's.
    let policy = app.create_policy(&product, json!({"floating": true})).await;
    let (license, _) = app.create_license(&policy, json!({"protected": true})).await;
    app.put(
        &app.acct(&format!("/licenses/{license}/owner")),
        &app.admin(),
        json!({"data": {"type": "users", "id": user}}),
    )
    .await;
    let r = app
        .post(
            &app.acct("/machines"),
            &me,
            json!({"data": {"type": "machines", "attributes": {"fingerprint": "override"},
            "relationships": {"license": {"data": {"type": "licenses", "id": license}}}}}),
        )
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.text);
}

#[tokio::test]
async fn change_group() {
    let app = spawn_app().await;
    let (_, _, license, _) = app.license_fixture(json!({})).await;
    let g = app
        .post(&app.acct("/groups"), &app.admin(), json!({"data": {"type": "groups", "attributes": {"name": "Team"}}}))
        .await;
    let group = g.id();
    let path = app.acct(&format!("/licenses/{license}/group"));
    let r = app.put(&path, &app.admin(), json!({"data": {"type": "groups", "id": group}})).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let shown = app.get(&app.acct(&format!("/licenses/{license}")), &app.admin()).await;
    assert_eq!(shown.body["data"]["relationships"]["group"]["data"]["id"], json!(group));
    assert_eq!(app.get(&path, &app.admin()).await.id(), group);
    let r = app.put(&path, &app.admin(), json!({"data": null})).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let shown = app.get(&app.acct(&format!("/licenses/{license}")), &app.admin()).await;
    assert!(shown.body["data"]["relationships"]["group"]["data"].is_null(), "{}", shown.text);
    let r = app.put(&path, &app.admin(), json!({"data": {"type": "groups", "id": uuid::Uuid::new_v4()}})).await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.text);
}

#[tokio::test]
async fn heartbeat_action_aliases() {
    let app = spawn_app().await;
    let (_, _, license, _) =
        app.license_fixture(json!({"requireHeartbeat": true, "heartbeatBasis": "FROM_FIRST_PING"})).await;
    let m = activate(&app, &license, "alias", None).await.id();
    let r = app.post(&app.acct(&format!("/machines/{m}/actions/ping-heartbeat")), &app.admin(), json!(null)).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.attr("heartbeatStatus"), "ALIVE");
    let r = app.post(&app.acct(&format!("/machines/{m}/actions/reset-heartbeat")), &app.admin(), json!(null)).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.attr("heartbeatStatus"), "NOT_STARTED");
}
