use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::helpers::*;

#[tokio::test]
async fn license_is_created_with_a_keygen_key_and_policy_values() {
    let app = spawn_app().await;
    let product = app.create_product("App").await;
    let policy = app
        .create_policy(&product, json!({"duration": 30 * 86400, "floating": true, "maxMachines": 5, "strict": true}))
        .await;
    let r = app
        .post(
            &app.acct("/licenses"),
            &app.admin(),
            json!({"data": {"type": "licenses", "attributes": {"name": "Acme seat", "metadata": {"customerId": 42}}, "relationships": {"policy": {"data": {"type": "policies", "id": policy}}}}}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    let key = r.attr("key").as_str().unwrap();
    let groups: Vec<&str> = key.split('-').collect();
    assert_eq!(groups.len(), 6);
    assert_eq!(groups[5], "V3");
    assert!(groups[..5].iter().all(|g| g.len() == 6));
    assert_eq!(r.attr("status"), "ACTIVE");
    assert_eq!(r.attr("maxMachines"), 5);
    assert_eq!(r.attr("floating"), true);
    assert_eq!(r.attr("strict"), true);
    assert_eq!(r.attr("uses"), 0);
    assert_eq!(r.attr("metadata"), &json!({"customerId": 42}));
    let expiry = licensor::time::parse_iso(r.attr("expiry").as_str().unwrap()).unwrap();
    let created = licensor::time::parse_iso(r.attr("created").as_str().unwrap()).unwrap();
    assert_eq!(expiry - created, 30 * licensor::time::DAY);
    let rel = &r.body["data"]["relationships"];
    assert_eq!(rel["policy"]["data"]["id"], json!(policy));
    assert_eq!(rel["product"]["data"]["id"], json!(product));
    assert_eq!(rel["machines"]["meta"]["count"], 0);
    assert_eq!(rel["owner"]["data"], json!(null));
    // Fetch by id and by key.
    let by_key = app.get(&app.acct(&format!("/licenses/{key}")), &app.admin()).await;
    assert_eq!(by_key.id(), r.id());
}

#[tokio::test]
async fn custom_keys_are_unique_and_immutable() {
    let app = spawn_app().await;
    let product = app.create_product("App").await;
    let policy = app.create_policy(&product, json!({})).await;
    let (id, key) = app.create_license(&policy, json!({"key": "MY-CUSTOM-KEY-1"})).await;
    assert_eq!(key, "MY-CUSTOM-KEY-1");
    let dup = app
        .post(&app.acct("/licenses"), &app.admin(), json!({"data": {"type": "licenses", "attributes": {"key": "MY-CUSTOM-KEY-1"}, "relationships": {"policy": {"data": {"type": "policies", "id": policy}}}}}))
        .await;
    assert_eq!(dup.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(dup.code(), "KEY_TAKEN");
    assert_eq!(dup.pointer(), "/data/attributes/key");
    let short = app
        .post(&app.acct("/licenses"), &app.admin(), json!({"data": {"type": "licenses", "attributes": {"key": "abc"}, "relationships": {"policy": {"data": {"type": "policies", "id": policy}}}}}))
        .await;
    assert_eq!(short.status, StatusCode::UNPROCESSABLE_ENTITY);
    let r = app
        .patch(
            &app.acct(&format!("/licenses/{id}")),
            &app.admin(),
            json!({"data": {"type": "licenses", "attributes": {"key": "NEW-KEY-123"}}}),
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(r.pointer(), "/data/attributes/key");
}

#[tokio::test]
async fn status_follows_suspension_and_expiry() {
    let app = spawn_app().await;
    let (_, policy, id, _) = app.license_fixture(json!({})).await;
    let path = app.acct(&format!("/licenses/{id}"));
    let r =
        app.patch(&path, &app.admin(), json!({"data": {"type": "licenses", "attributes": {"suspended": true}}})).await;
    assert_eq!(r.attr("status"), "SUSPENDED");
    let r = app.patch(&path, &app.admin(), json!({"data": {"type": "licenses", "attributes": {"suspended": false, "expiry": "2001-01-01T00:00:00.000Z"}}})).await;
    assert_eq!(r.attr("status"), "EXPIRED");
    assert_eq!(r.attr("expiry"), "2001-01-01T00:00:00.000Z");
    let soon = licensor::time::iso(licensor::time::now_ms() + licensor::time::DAY);
    let r = app.patch(&path, &app.admin(), json!({"data": {"type": "licenses", "attributes": {"expiry": soon}}})).await;
    assert_eq!(r.attr("status"), "EXPIRING");
    let r = app.patch(&path, &app.admin(), json!({"data": {"type": "licenses", "attributes": {"expiry": null}}})).await;
    assert_eq!(r.attr("status"), "ACTIVE");
    // Banned owner → BANNED.
    let user = app.create_user("owner@example.com").await;
    let (lid, _) = app.create_license(&policy, json!({})).await;
    app.set_owner(&lid, &user).await;
    app.post(&app.acct(&format!("/users/{user}/actions/ban")), &app.admin(), json!(null)).await;
    let r = app.get(&app.acct(&format!("/licenses/{lid}")), &app.admin()).await;
    assert_eq!(r.attr("status"), "BANNED");
    let r = app.get(&app.acct("/licenses?status=BANNED"), &app.admin()).await;
    assert_eq!(r.body["data"].as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn pagination_links_and_limits() {
    let app = spawn_app().await;
    let product = app.create_product("App").await;
    let policy = app.create_policy(&product, json!({})).await;
    for _ in 0..5 {
        app.create_license(&policy, json!({})).await;
    }
    let r = app.get(&app.acct("/licenses?page[size]=2&page[number]=2"), &app.admin()).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.body["data"].as_array().unwrap().len(), 2);
    let links = &r.body["links"];
    assert_eq!(links["meta"]["count"], 5);
    assert_eq!(links["meta"]["pages"], 3);
    let base = format!("/v1/accounts/{}/licenses", app.account_id);
    assert_eq!(links["self"], format!("{base}?page[number]=2&page[size]=2"));
    assert_eq!(links["next"], format!("{base}?page[number]=3&page[size]=2"));
    assert_eq!(links["prev"], format!("{base}?page[number]=1&page[size]=2"));
    assert_eq!(links["first"], format!("{base}?page[number]=1&page[size]=2"));
    assert_eq!(links["last"], format!("{base}?page[number]=3&page[size]=2"));
    // A page number far past the end (its offset past i64) reads nothing, on every list.
    for list in ["/licenses", "/machines", "/users", "/products"] {
        let r = app.get(&app.acct(&format!("{list}?page[size]=100&page[number]={}", i64::MAX)), &app.admin()).await;
        assert_eq!(
            (r.status, r.body["data"].as_array().map(Vec::len)),
            (StatusCode::OK, Some(0)),
            "{list}: {}",
            r.text
        );
    }
    // The links are followable, and walk the same (filtered) list.
    let mut seen = Vec::new();
    let mut next = Some(format!("/v1/accounts/{}/licenses?page[size]=2&suspended=false", app.slug));
    while let Some(path) = next {
        let page = app.get(&path, &app.admin()).await;
        assert_eq!(page.status, StatusCode::OK, "{path}: {}", page.text);
        seen.extend(page.body["data"].as_array().unwrap().iter().map(|l| l["id"].clone()));
        assert!(page.body["links"]["last"].as_str().unwrap().ends_with("&suspended=false"));
        next = page.body["links"]["next"].as_str().map(str::to_string);
    }
    assert_eq!(seen.len(), 5);
    let r = app.get("/v1/licenses?page[size]=4", &app.admin()).await;
    assert_eq!(r.body["links"]["next"], "/v1/licenses?page[number]=2&page[size]=4");
    let r = app.get(&app.acct("/licenses?limit=3"), &app.admin()).await;
    assert_eq!(r.body["data"].as_array().unwrap().len(), 3);
    let r = app.get(&app.acct("/licenses?page[size]=101&page[number]=1"), &app.admin()).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(r.body["errors"][0]["source"]["parameter"], "page[size]");
    let r = app.get(&app.acct("/licenses?limit=0"), &app.admin()).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    // Newest first.
    let all = app.get(&app.acct("/licenses?limit=100"), &app.admin()).await;
    let created: Vec<&str> =
        all.body["data"].as_array().unwrap().iter().map(|l| l["attributes"]["created"].as_str().unwrap()).collect();
    let mut sorted = created.clone();
    sorted.sort_by(|a, b| b.cmp(a));
    assert_eq!(created, sorted);
}

#[tokio::test]
async fn filters_scope_lists() {
    let app = spawn_app().await;
    let p1 = app.create_product("One").await;
    let p2 = app.create_product("Two").await;
    let pol1 = app.create_policy(&p1, json!({})).await;
    let pol2 = app.create_policy(&p2, json!({})).await;
    app.create_license(&pol1, json!({})).await;
    app.create_license(&pol2, json!({})).await;
    app.create_license(&pol2, json!({"suspended": true})).await;
    let count = |r: &Res| r.body["data"].as_array().unwrap().len();
    assert_eq!(count(&app.get(&app.acct(&format!("/licenses?product={p1}")), &app.admin()).await), 1);
    assert_eq!(count(&app.get(&app.acct(&format!("/licenses?policy={pol2}")), &app.admin()).await), 2);
    assert_eq!(count(&app.get(&app.acct("/licenses?suspended=true"), &app.admin()).await), 1);
    assert_eq!(count(&app.get(&app.acct("/licenses?product=not-a-uuid"), &app.admin()).await), 0);
    // A product token sees only its own product's licenses, whatever filter it passes.
    let t = app.post(&app.acct(&format!("/products/{p1}/tokens")), &app.admin(), json!(null)).await;
    let prod = As::Bearer(t.attr("token").as_str().unwrap().to_string());
    assert_eq!(count(&app.get(&app.acct(&format!("/licenses?product={p2}")), &prod).await), 1);
    let theirs = app.get(&app.acct(&format!("/licenses?policy={pol2}")), &app.admin()).await;
    let other_id = theirs.body["data"][0]["id"].as_str().unwrap();
    // Lookups are scoped to what the bearer sees, so another product's license is not found.
    assert_eq!(app.get(&app.acct(&format!("/licenses/{other_id}")), &prod).await.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn owners_and_users_see_their_licenses_only() {
    let app = spawn_app().await;
    let (_, policy, _, _) = app.license_fixture(json!({})).await;
    let owner = app.create_user("own@example.com").await;
    let (mine, _) = app.create_license(&policy, json!({})).await;
    app.put(
        &app.acct(&format!("/licenses/{mine}/owner")),
        &app.admin(),
        json!({"data": {"type": "users", "id": owner}}),
    )
    .await;
    let t = app.post(&app.acct("/tokens"), &As::Basic("own@example.com".into(), PASSWORD.into()), json!(null)).await;
    let me = As::Bearer(t.attr("token").as_str().unwrap().to_string());
    let r = app.get(&app.acct("/licenses"), &me).await;
    assert_eq!(r.body["data"].as_array().unwrap().len(), 1);
    assert_eq!(r.body["data"][0]["id"], json!(mine));
    let others = app.get(&app.acct("/licenses"), &app.admin()).await;
    let other = others.body["data"].as_array().unwrap().iter().find(|l| l["id"] != json!(mine)).unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(app.get(&app.acct(&format!("/licenses/{other}")), &me).await.status, StatusCode::NOT_FOUND);
    // Users cannot create licenses for others, nor under protected policies.
    let r = app.post(&app.acct("/licenses"), &me, json!({"data": {"type": "licenses", "relationships": {"policy": {"data": {"type": "policies", "id": policy}}}}})).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn attach_users_respects_max_users() {
    let app = spawn_app().await;
    let (_, _, license, _) = app.license_fixture(json!({"maxUsers": 2})).await;
    let a = app.create_user("a@example.com").await;
    let b = app.create_user("b@example.com").await;
    let c = app.create_user("c@example.com").await;
    let path = app.acct(&format!("/licenses/{license}/users"));
    let r =
        app.post(&path, &app.admin(), json!({"data": [{"type": "users", "id": a}, {"type": "users", "id": b}]})).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let r = app.post(&path, &app.admin(), json!({"data": [{"type": "users", "id": c}]})).await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(r.code(), "USER_LIMIT_EXCEEDED");
    let r = app.get(&app.acct(&format!("/licenses/{license}")), &app.admin()).await;
    assert_eq!(r.body["data"]["relationships"]["users"]["meta"]["count"], 2);
    let r = app
        .req(reqwest::Method::DELETE, &path, &app.admin(), Some(json!({"data": [{"type": "users", "id": a}]})))
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    assert_eq!(app.get(&path, &app.admin()).await.body["data"].as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn entitlements_attach_and_inherited_ones_cannot_be_detached() {
    // Keygen's licenses/relationships/entitlements.feature: "Admin attaches entitlements to a
    // license", "…already exists as a policy entitlement", "…already exists as a license
    // entitlement", "…with an invalid entitlement ID", "Admin detaches … inherited from the
    // policy", "Admin retrieves the entitlements for a license key".
    let app = spawn_app().await;
    let (_, policy, license, _) = app.license_fixture(json!({})).await;
    let mk = |code: &'static str| {
        let app = &app;
        async move {
            app.post(
                &app.acct("/entitlements"),
                &app.admin(),
                json!({"data": {"type": "entitlements", "attributes": {"name": code, "code": code}}}),
            )
            .await
            .id()
        }
    };
    let inherited = mk("FROM_POLICY").await;
    let own = mk("OWN").await;
    let other = mk("OTHER").await;
    let r = app
        .post(
            &app.acct(&format!("/policies/{policy}/entitlements")),
            &app.admin(),
            json!({"data": [{"type": "entitlements", "id": inherited}]}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.body["data"][0]["type"], "policy-entitlements");
    let path = app.acct(&format!("/licenses/{license}/entitlements"));
    let r = app.post(&path, &app.admin(), json!({"data": [{"type": "entitlements", "id": own}]})).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let join = &r.body["data"][0];
    assert_eq!(join["type"], "license-entitlements");
    assert_eq!(join["relationships"]["entitlement"]["data"]["id"], own.as_str());
    assert_eq!(join["relationships"]["license"]["data"]["id"], license.as_str());
    assert_eq!(
        join["links"]["related"],
        format!("/v1/accounts/{}/licenses/{license}/entitlements/{own}", app.account_id)
    );
    assert!(join["attributes"]["created"].is_string());
    // The license lists its own and its policy's, as entitlements.
    let r = app.get(&path, &app.admin()).await;
    assert_eq!(r.body["data"].as_array().unwrap().len(), 2);
    assert_eq!(r.body["data"][0]["type"], "entitlements");

    let refused = |body: Value, code: &'static str, detail: &'static str| {
        let (app, path) = (&app, &path);
        async move {
            let r = app.post(path, &app.admin(), body).await;
            assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.text);
            assert_eq!(r.code(), code);
            assert_eq!(r.body["errors"][0]["detail"], detail);
            assert_eq!(r.body["errors"][0]["source"]["pointer"], "/data/relationships/entitlement");
        }
    };
    refused(json!({"data": [{"type": "entitlements", "id": own}]}), "ENTITLEMENT_TAKEN", "already exists").await;
    refused(
        json!({"data": [{"type": "entitlements", "id": other}, {"type": "entitlements", "id": other}]}),
        "ENTITLEMENT_TAKEN",
        "already exists",
    )
    .await;
    refused(
        json!({"data": [{"type": "entitlements", "id": inherited}]}),
        "ENTITLEMENT_CONFLICT",
        "already exists (entitlement is attached through policy)",
    )
    .await;
    refused(
        json!({"data": [{"type": "entitlements", "id": uuid::Uuid::new_v4()}]}),
        "ENTITLEMENT_NOT_FOUND",
        "must exist",
    )
    .await;
    let r = app.get(&path, &app.admin()).await;
    assert_eq!(r.body["data"].as_array().unwrap().len(), 2, "a refused attachment attaches nothing");

    let detach = |ids: Vec<&String>| {
        let (app, path) = (&app, &path);
        let data: Vec<Value> = ids.iter().map(|id| json!({"type": "entitlements", "id": id})).collect();
        async move { app.req(reqwest::Method::DELETE, path, &app.admin(), Some(json!({ "data": data }))).await }
    };
    let r = detach(vec![&inherited]).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.text);
    assert_eq!(
        r.body["errors"][0]["detail"],
        format!("cannot detach entitlement '{inherited}' (entitlement is attached through policy)")
    );
    let r = detach(vec![&own, &other]).await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.text);
    assert_eq!(
        r.body["errors"][0]["detail"],
        format!("cannot detach entitlement '{other}' (entitlement is not attached)")
    );
    assert_eq!(r.body["errors"][0]["source"]["pointer"], "/data/1");
    assert!(r.body["errors"][0].get("code").is_none_or(Value::is_null), "{}", r.text);
    assert_eq!(detach(vec![&own]).await.status, StatusCode::NO_CONTENT);
}

#[tokio::test]
async fn change_policy_with_reset_expiry_and_stricter_uniqueness() {
    let app = spawn_app().await;
    let (product, _, license, _) = app.license_fixture(json!({})).await;
    let reset = app.create_policy(&product, json!({"duration": 10 * 86400, "transferStrategy": "RESET_EXPIRY"})).await;
    let strict = app.create_policy(&product, json!({"machineUniquenessStrategy": "UNIQUE_PER_ACCOUNT"})).await;
    let path = app.acct(&format!("/licenses/{license}/policy"));
    let r = app.put(&path, &app.admin(), json!({"data": {"type": "policies", "id": reset}})).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.body["data"]["relationships"]["policy"]["data"]["id"], json!(reset));
    let expiry = licensor::time::parse_iso(r.attr("expiry").as_str().unwrap()).unwrap();
    assert!((expiry - (licensor::time::now_ms() + 10 * licensor::time::DAY)).abs() < 60_000);
    let r = app.put(&path, &app.admin(), json!({"data": {"type": "policies", "id": strict}})).await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!((r.code(), r.pointer()), ("POLICY_NOT_COMPATIBLE", "/data/relationships/policy"));
    assert_eq!(
        r.body["errors"][0]["detail"],
        "cannot change to a policy with a more strict machine uniqueness strategy"
    );
    for (attrs, detail) in [
        (
            json!({"componentUniquenessStrategy": "UNIQUE_PER_LICENSE"}),
            "cannot change to a policy with a more strict component uniqueness strategy",
        ),
        (json!({"scheme": "ED25519_SIGN"}), "cannot change to a policy with a different scheme"),
        (json!({"encrypted": true}), "cannot change from an encrypted policy to an unencrypted policy (or vice-versa)"),
    ] {
        let other = app.create_policy(&product, attrs.clone()).await;
        let r = app.put(&path, &app.admin(), json!({"data": {"type": "policies", "id": other}})).await;
        assert_eq!(
            (r.code(), r.body["errors"][0]["detail"].as_str()),
            ("POLICY_NOT_COMPATIBLE", Some(detail)),
            "{attrs}"
        );
    }
}

#[tokio::test]
async fn delete_license() {
    let app = spawn_app().await;
    let (_, _, license, key) = app.license_fixture(json!({})).await;
    assert_eq!(app.delete(&app.acct(&format!("/licenses/{key}")), &app.admin()).await.status, StatusCode::NO_CONTENT);
    assert_eq!(app.get(&app.acct(&format!("/licenses/{license}")), &app.admin()).await.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn ed25519_signed_key_verifies_with_the_account_key() {
    use base64::engine::general_purpose::URL_SAFE;
    use base64::Engine;
    use ed25519_dalek::Verifier;
    let app = spawn_app().await;
    let product = app.create_product("App").await;
    let policy = app.create_policy(&product, json!({"scheme": "ED25519_SIGN"})).await;
    let (id, key) = app.create_license(&policy, json!({})).await;
    let (signing_data, sig) = key.rsplit_once('.').unwrap();
    assert!(signing_data.starts_with("key/"));
    let seed: serde_json::Value = serde_json::from_slice(&URL_SAFE.decode(&signing_data[4..]).unwrap()).unwrap();
    assert_eq!(seed["license"]["id"], json!(id));
    assert_eq!(seed["account"]["id"], json!(app.account_id));
    let account = licensor::store::accounts::find(&app.db, &app.account_id).await.unwrap().unwrap();
    let public: [u8; 32] = hex::decode(&account.ed25519_public).unwrap().try_into().unwrap();
    let vk = ed25519_dalek::VerifyingKey::from_bytes(&public).unwrap();
    let sig = ed25519_dalek::Signature::from_slice(&URL_SAFE.decode(sig).unwrap()).unwrap();
    vk.verify(signing_data.as_bytes(), &sig).expect("signature verifies");
}

/// The machine count, cores, memory, disk and user count a license reports (and validation
/// reads) are kept by the database as machines and users come and go, by every path that
/// changes them.
#[tokio::test]
async fn license_counts_follow_machines_and_users() {
    let app = spawn_app().await;
    let (_, _, license, _) = app.license_fixture(json!({"floating": true, "maxMachines": 5})).await;
    let license_path = app.acct(&format!("/licenses/{license}"));
    let counts = || async {
        let r = app.get(&license_path, &app.admin()).await;
        let rel = &r.body["data"]["relationships"];
        let m = &rel["machines"]["meta"];
        let n = |v: &serde_json::Value| v.as_i64().expect("a number");
        (n(&m["count"]), n(&m["cores"]), n(&m["memory"]), n(&m["disk"]), n(&rel["users"]["meta"]["count"]))
    };
    let activate = |fingerprint: &'static str, cores: i64| {
        let body = json!({"data": {"type": "machines", "attributes": {"fingerprint": fingerprint, "cores": cores,
            "memory": cores * 1024, "disk": cores * 10},
            "relationships": {"license": {"data": {"type": "licenses", "id": license}}}}});
        let app = &app;
        async move {
            let r = app.post(&app.acct("/machines"), &app.admin(), body).await;
            assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
            r.id()
        }
    };
    assert_eq!(counts().await, (0, 0, 0, 0, 0));
    let a = activate("fp-a", 4).await;
    let b = activate("fp-b", 2).await;
    assert_eq!(counts().await, (2, 6, 6144, 60, 0));
    let r = app
        .patch(
            &app.acct(&format!("/machines/{a}")),
            &app.admin(),
            json!({"data": {"type": "machines", "attributes": {"cores": 8, "disk": 5}}}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(counts().await, (2, 10, 6144, 25, 0));
    assert_eq!(app.delete(&app.acct(&format!("/machines/{b}")), &app.admin()).await.status, StatusCode::NO_CONTENT);
    assert_eq!(counts().await, (1, 8, 4096, 5, 0));
    let user = app.create_user("counted@example.com").await;
    let users = app.acct(&format!("/licenses/{license}/users"));
    let r = app.post(&users, &app.admin(), json!({"data": [{"type": "users", "id": user}]})).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    // Attaching the same user again changes nothing.
    app.post(&users, &app.admin(), json!({"data": [{"type": "users", "id": user}]})).await;
    assert_eq!(counts().await, (1, 8, 4096, 5, 1));
    let r = app
        .req(reqwest::Method::DELETE, &users, &app.admin(), Some(json!({"data": [{"type": "users", "id": user}]})))
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    assert_eq!(counts().await, (1, 8, 4096, 5, 0));
}

#[tokio::test]
async fn the_owner_counts_as_a_user() {
    let app = spawn_app().await;
    let (_, _, license, key) = app.license_fixture(json!({"maxUsers": 2})).await;
    let (a, b, owner) = (
        app.create_user("a@example.com").await,
        app.create_user("b@example.com").await,
        app.create_user("o@example.com").await,
    );
    app.attach_users(&license, &[&a]).await;
    let owner_path = app.acct(&format!("/licenses/{license}/owner"));
    let r = app.put(&owner_path, &app.admin(), json!({"data": {"type": "users", "id": owner}})).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.body["data"]["relationships"]["users"]["meta"]["count"], 2, "one attached plus the owner");
    let listed = app.get(&app.acct(&format!("/licenses/{license}/users")), &app.admin()).await;
    let mut ids: Vec<&str> =
        listed.body["data"].as_array().unwrap().iter().map(|u| u["id"].as_str().unwrap()).collect();
    ids.sort();
    let mut expected = vec![a.as_str(), owner.as_str()];
    expected.sort();
    assert_eq!(ids, expected, "the owner is listed among the users");
    // Full: one more attached user is one too many.
    let users = app.acct(&format!("/licenses/{license}/users"));
    let r = app.post(&users, &app.admin(), json!({"data": [{"type": "users", "id": b}]})).await;
    assert_eq!(r.code(), "USER_LIMIT_EXCEEDED");
    // The owner is not attached a second time, nor detached.
    let r = app.post(&users, &app.admin(), json!({"data": [{"type": "users", "id": owner}]})).await;
    assert_eq!((r.code(), r.pointer()), ("USER_CONFLICT", "/data/relationships/user"));
    let r = app
        .req(reqwest::Method::DELETE, &users, &app.admin(), Some(json!({"data": [{"type": "users", "id": owner}]})))
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    // Validation counts the owner too.
    let r = app
        .patch(
            &app.acct(&format!("/licenses/{license}")),
            &app.admin(),
            json!({"data": {"type": "licenses", "attributes": {"maxUsers": 1}}}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let v = app.post(&app.acct("/licenses/actions/validate-key"), &As::Anonymous, json!({"meta": {"key": key}})).await;
    assert_eq!(v.body["meta"]["code"], "TOO_MANY_USERS");
    // A new owner that would pass the limit is refused; clearing the owner frees the slot.
    let r = app.put(&owner_path, &app.admin(), json!({"data": null})).await;
    assert_eq!(r.status, StatusCode::OK);
    let r = app.put(&owner_path, &app.admin(), json!({"data": {"type": "users", "id": b}})).await;
    assert_eq!((r.code(), r.pointer()), ("USER_LIMIT_EXCEEDED", "/data/relationships/users"));
}

/// Logs `email` in (created with the test password) and returns its bearer.
async fn login(app: &TestApp, email: &str) -> As {
    let t = app.post(&app.acct("/tokens"), &As::Basic(email.into(), PASSWORD.into()), json!(null)).await;
    As::Bearer(t.attr("token").as_str().expect("token").to_string())
}

#[tokio::test]
async fn an_explicit_null_expiry_still_takes_the_policys_duration() {
    let app = spawn_app().await;
    let product = app.create_product("App").await;
    let policy = app.create_policy(&product, json!({"duration": 31_556_952})).await;
    let (id, _) = app.create_license(&policy, json!({"expiry": null})).await;
    let r = app.get(&app.acct(&format!("/licenses/{id}")), &app.admin()).await;
    let expiry = licensor::time::parse_iso(r.attr("expiry").as_str().expect("an expiry")).unwrap();
    // One year is the same date a year on (calendar arithmetic, as Keygen adds durations).
    let a_year_on = chrono::Utc::now().checked_add_months(chrono::Months::new(12)).unwrap().timestamp_millis();
    assert!((expiry - a_year_on).abs() < 60_000, "{}", r.attr("expiry"));
}

#[tokio::test]
async fn users_licensing_themselves_choose_only_name_key_and_metadata() {
    let app = spawn_app().await;
    let (_, policy, _, _) = app.license_fixture(json!({})).await;
    let me_id = app.create_user("self@example.com").await;
    let group = app
        .post(&app.acct("/groups"), &app.admin(), json!({"data": {"type": "groups", "attributes": {"name": "G"}}}))
        .await
        .id();
    let me = login(&app, "self@example.com").await;
    let body = |attributes: Value, extra_rels: Value| {
        let mut rels = json!({"policy": {"data": {"type": "policies", "id": policy}},
                              "owner": {"data": {"type": "users", "id": me_id}}});
        rels.as_object_mut().unwrap().extend(extra_rels.as_object().cloned().unwrap_or_default());
        json!({"data": {"type": "licenses", "attributes": attributes, "relationships": rels}})
    };
    for (attrs, pointer) in [
        (json!({"protected": false}), "/data/attributes/protected"),
        (json!({"maxUses": 1000}), "/data/attributes/maxUses"),
        (json!({"maxProcesses": 1000}), "/data/attributes/maxProcesses"),
        (json!({"maxUsers": 1000}), "/data/attributes/maxUsers"),
        (json!({"maxCores": 1000}), "/data/attributes/maxCores"),
        (json!({"expiry": null}), "/data/attributes/expiry"),
    ] {
        let r = app.post(&app.acct("/licenses"), &me, body(attrs.clone(), json!({}))).await;
        assert_eq!((r.status, r.pointer()), (StatusCode::BAD_REQUEST, pointer), "{attrs}");
        assert_eq!(r.body["errors"][0]["detail"], "unpermitted parameter");
    }
    let r = app
        .post(&app.acct("/licenses"), &me, body(json!({}), json!({"group": {"data": {"type": "groups", "id": group}}})))
        .await;
    assert_eq!((r.status, r.pointer()), (StatusCode::BAD_REQUEST, "/data/relationships/group"));
    assert_eq!(app.get(&app.acct("/licenses"), &me).await.body["data"].as_array().unwrap().len(), 0, "nothing written");
    let r = app
        .post(
            &app.acct("/licenses"),
            &me,
            body(json!({"name": "Mine", "key": "MY-OWN-KEY-1", "metadata": {"seat": 1}}), json!({})),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    assert_eq!((r.attr("key"), r.attr("name")), (&json!("MY-OWN-KEY-1"), &json!("Mine")));
}

#[tokio::test]
async fn who_may_move_a_license_to_another_policy() {
    let app = spawn_app().await;
    let (product, _, license, _) = app.license_fixture(json!({})).await;
    let open = app.create_policy(&product, json!({})).await;
    let protected = app.create_policy(&product, json!({"protected": true})).await;
    let elsewhere_product = app.create_product("Other").await;
    let elsewhere = app.create_policy(&elsewhere_product, json!({})).await;
    let owner = app.create_user("mover@example.com").await;
    app.set_owner(&license, &owner).await;
    let me = login(&app, "mover@example.com").await;
    let path = app.acct(&format!("/licenses/{license}/policy"));
    let to = |p: &str| json!({"data": {"type": "policies", "id": p}});
    // The owner moves it between unprotected policies, never onto a protected one.
    let r = app.put(&path, &me, to(&open)).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(app.put(&path, &me, to(&protected)).await.status, StatusCode::FORBIDDEN);
    // Its product keeps it among its own policies.
    let product_token = app.post(&app.acct(&format!("/products/{product}/tokens")), &app.admin(), json!(null)).await;
    let as_product = As::Bearer(product_token.attr("token").as_str().unwrap().to_string());
    assert_eq!(app.put(&path, &as_product, to(&elsewhere)).await.status, StatusCode::FORBIDDEN);
    // An admin may move it to another product's policy; the license follows to that product.
    let r = app.put(&path, &app.admin(), to(&elsewhere)).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.body["data"]["relationships"]["product"]["data"]["id"], json!(elsewhere_product));
    let r = app.get(&app.acct(&format!("/licenses?product={elsewhere_product}")), &app.admin()).await;
    assert_eq!(r.body["data"][0]["id"], json!(license));
}

/// Keygen's default license permissions leave out `account.read`, `product.read`,
/// `policy.read` and `user.read`: a license reads itself and its machines, not the catalog.
/// What it cannot see at all (another policy or product) is 404.
#[tokio::test]
async fn a_license_reads_itself_not_the_catalog() {
    let app = spawn_app().await;
    let (product, policy, license, key) = app.license_fixture(json!({"authenticationStrategy": "LICENSE"})).await;
    let (other_product, other_policy, _, _) = app.license_fixture(json!({})).await;
    let me = As::License(key);
    for (path, status) in [
        ("/me".to_string(), StatusCode::OK),
        (format!("/licenses/{license}"), StatusCode::OK),
        (format!("/licenses/{license}/machines"), StatusCode::OK),
        (format!("/licenses/{license}/entitlements"), StatusCode::OK),
        (String::new(), StatusCode::FORBIDDEN),
        (format!("/policies/{policy}"), StatusCode::FORBIDDEN),
        (format!("/products/{product}"), StatusCode::FORBIDDEN),
        (format!("/licenses/{license}/policy"), StatusCode::FORBIDDEN),
        (format!("/licenses/{license}/product"), StatusCode::FORBIDDEN),
        (format!("/licenses/{license}/owner"), StatusCode::FORBIDDEN),
        ("/policies".to_string(), StatusCode::FORBIDDEN),
        ("/products".to_string(), StatusCode::FORBIDDEN),
        (format!("/policies/{other_policy}"), StatusCode::NOT_FOUND),
        (format!("/products/{other_product}"), StatusCode::NOT_FOUND),
    ] {
        let r = app.get(&app.acct(&path), &me).await;
        assert_eq!(r.status, status, "GET {path}: {}", r.text);
    }
    // Admins still read all of it.
    assert_eq!(app.get(&app.acct(&format!("/licenses/{license}/policy")), &app.admin()).await.status, StatusCode::OK);
}

/// `protected` is copied from the policy when the license is created (as in Keygen), so a
/// later change to the policy leaves existing licenses as they were.
#[tokio::test]
async fn protection_is_copied_from_the_policy_at_creation() {
    let app = spawn_app().await;
    let (_, policy, before, _) = app.license_fixture(json!({})).await;
    let r = app.patch_attributes("policies", &policy, json!({"protected": true})).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let (after, _) = app.create_license(&policy, json!({})).await;
    let app = &app;
    let protected = |id: String| async move {
        app.get(&app.acct(&format!("/licenses/{id}")), &app.admin()).await.attr("protected").clone()
    };
    assert_eq!(protected(before.clone()).await, json!(false));
    assert_eq!(protected(after).await, json!(true));
    let r = app.patch_attributes("licenses", &before, json!({"protected": null})).await;
    assert_eq!((r.status, r.pointer()), (StatusCode::BAD_REQUEST, "/data/attributes/protected"), "{}", r.text);
}

/// A change writes only the columns it changed: a suspension made between another request's
/// read and its write survives that write, and an expiry computed from a stale read is refused
/// rather than written over a renewal.
#[tokio::test]
async fn changes_made_meanwhile_are_not_lost() {
    use licensor::store::licenses;
    let app = spawn_app().await;
    let (_, _, id, _) = app.license_fixture(json!({"duration": 86400 * 30})).await;
    let (account, license) = (app.account_id.parse().unwrap(), id.parse().unwrap());
    let before = licenses::find(&app.db, account, license).await.unwrap().unwrap();

    let r = app.post(&app.acct(&format!("/licenses/{id}/actions/suspend")), &app.admin(), json!(null)).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let mut renamed = before.clone();
    renamed.name = Some("Renamed".into());
    licenses::update(&app.db, &before, &renamed, &[]).await.unwrap();
    let r = app.get(&app.acct(&format!("/licenses/{id}")), &app.admin()).await;
    assert_eq!((r.attr("name"), r.attr("suspended")), (&json!("Renamed"), &json!(true)));

    let r = app.post(&app.acct(&format!("/licenses/{id}/actions/renew")), &app.admin(), json!(null)).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let renewed = r.attr("expiry").clone();
    let mut stale = before.clone();
    stale.expiry = before.expiry.map(|e| e + 1000);
    let e = licenses::update(&app.db, &before, &stale, &[]).await.unwrap_err();
    assert!(matches!(e, licensor::error::Error::Conflict { .. }), "{e:?}");
    assert_eq!(app.get(&app.acct(&format!("/licenses/{id}")), &app.admin()).await.attr("expiry"), &renewed);
}

/// The status filter runs in the database with the rule that renders `status`: each listed
/// license shows the status asked for, the counts add up, and pages count only the matches.
#[tokio::test]
async fn status_filter_pages_in_the_database() {
    let app = spawn_app().await;
    let (_, policy, _, _) = app.license_fixture(json!({})).await;
    let soon = (chrono::Utc::now() + chrono::Duration::days(1)).to_rfc3339();
    let (expiring, _) = app.create_license(&policy, json!({"expiry": soon})).await;
    let (expired, _) = app.create_license(&policy, json!({"expiry": "2020-01-01T00:00:00Z"})).await;
    for _ in 0..2 {
        let (id, _) = app.create_license(&policy, json!({})).await;
        let r = app.post(&app.acct(&format!("/licenses/{id}/actions/suspend")), &app.admin(), json!(null)).await;
        assert_eq!(r.status, StatusCode::OK);
    }
    let owner = app.create_user("banned-owner@example.com").await;
    let (banned, _) = app.create_license(&policy, json!({})).await;
    app.set_owner(&banned, &owner).await;
    app.post(&app.acct(&format!("/users/{owner}/actions/ban")), &app.admin(), json!(null)).await;

    let mut total = 0;
    for (status, expected) in
        [("ACTIVE", 1), ("EXPIRING", 1), ("EXPIRED", 1), ("SUSPENDED", 2), ("BANNED", 1), ("INACTIVE", 0)]
    {
        let r =
            app.get(&app.acct(&format!("/licenses?status={}&page[size]=1", status.to_lowercase())), &app.admin()).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text);
        assert_eq!(r.body["links"]["meta"]["count"], expected, "{status}: {}", r.text);
        for l in r.body["data"].as_array().unwrap() {
            assert_eq!(l["attributes"]["status"], status);
        }
        total += expected;
    }
    assert_eq!(total, 6);
    let r = app.get(&app.acct("/licenses?status=EXPIRING"), &app.admin()).await;
    assert_eq!(r.body["data"][0]["id"], json!(expiring));
    let r = app.get(&app.acct("/licenses?status=EXPIRED"), &app.admin()).await;
    assert_eq!(r.body["data"][0]["id"], json!(expired));
}

/// A key that authenticates is a credential: under LICENSE or MIXED authentication a custom
/// key needs 16 characters; one that only identifies a license keeps Keygen's minimum of 6.
#[tokio::test]
async fn keys_that_authenticate_are_long() {
    let app = spawn_app().await;
    let product = app.create_product("Keys").await;
    let body = |policy: &str, key: &str| {
        json!({"data": {"type": "licenses", "attributes": {"key": key},
            "relationships": {"policy": {"data": {"type": "policies", "id": policy}}}}})
    };
    for strategy in ["LICENSE", "MIXED"] {
        let policy = app.create_policy(&product, json!({"authenticationStrategy": strategy})).await;
        let r = app.post(&app.acct("/licenses"), &app.admin(), body(&policy, "SHORT-KEY")).await;
        assert_eq!((r.status, r.code()), (StatusCode::UNPROCESSABLE_ENTITY, "KEY_TOO_SHORT"), "{strategy}");
        let r =
            app.post(&app.acct("/licenses"), &app.admin(), body(&policy, &format!("LONG-ENOUGH-{strategy}-KEY"))).await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    }
    let policy = app.create_policy(&product, json!({"authenticationStrategy": "TOKEN"})).await;
    let r = app.post(&app.acct("/licenses"), &app.admin(), body(&policy, "SHORT-KEY")).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
}

async fn ids_of(app: &TestApp, query: &str) -> Vec<String> {
    let r = app.get(&app.acct(&format!("/licenses?{query}")), &app.admin()).await;
    r.body["data"].as_array().unwrap().iter().map(|l| l["id"].as_str().unwrap().to_string()).collect()
}

/// `metadata[key]=value` filters (strings, numbers and booleans read as text) and
/// `order=asc`, in SQL on both engines (Keygen's licenses/index.feature).
#[tokio::test]
async fn metadata_filters_and_order() {
    let app = spawn_app().await;
    let (_, policy, first, _) = app.license_fixture(json!({})).await;
    // Apart in time, so creation order is the order (ties would go by id).
    let pause = || tokio::time::sleep(std::time::Duration::from_millis(3));
    pause().await;
    let gold = app.create_license(&policy, json!({"metadata": {"tier": "gold", "seats": 5, "trial": false}})).await.0;
    pause().await;
    let silver =
        app.create_license(&policy, json!({"metadata": {"tier": "silver", "seats": 5, "trial": true}})).await.0;
    assert_eq!(ids_of(&app, "metadata[tier]=gold").await, [gold.as_str()]);
    assert_eq!(ids_of(&app, "metadata[seats]=5").await, [silver.as_str(), gold.as_str()]);
    assert_eq!(ids_of(&app, "metadata[seats]=5&metadata[trial]=true").await, [silver.as_str()]);
    assert_eq!(ids_of(&app, "metadata[trial]=false").await, [gold.as_str()]);
    assert!(ids_of(&app, "metadata[tier]=bronze").await.is_empty());
    assert!(ids_of(&app, "metadata[nothing]=gold").await.is_empty());
    // Newest first by default; oldest first with order=asc.
    assert_eq!(ids_of(&app, "").await, [silver.as_str(), gold.as_str(), first.as_str()]);
    assert_eq!(ids_of(&app, "order=asc").await, [first.as_str(), gold.as_str(), silver.as_str()]);
}

/// `Keygen-Version`: Keygen's released versions are accepted (`1.5`, `v1.5`); any other is
/// 400 INVALID_API_VERSION, signed like every answer.
#[tokio::test]
async fn unknown_api_versions_are_refused() {
    let app = spawn_app().await;
    let url = format!("http://{}{}", app.addr, app.acct("/licenses"));
    for (version, ok) in
        [("1.8", true), ("1.5", true), ("v1.7", true), ("1.9", false), ("2.0", false), ("latest", false)]
    {
        let r =
            app.client.get(&url).bearer_auth(&app.admin_token).header("Keygen-Version", version).send().await.unwrap();
        let signed = r.headers().contains_key("keygen-signature");
        let status = r.status();
        let body: serde_json::Value = r.json().await.unwrap();
        if ok {
            assert_eq!(status, StatusCode::OK, "{version}");
        } else {
            assert_eq!(status, StatusCode::BAD_REQUEST, "{version}");
            assert_eq!(body["errors"][0]["code"], "INVALID_API_VERSION");
            assert_eq!(body["errors"][0]["detail"], "unsupported API version requested");
            assert!(signed);
        }
    }
}

/// A license created for an owner in a group joins that group (Keygen's license model; seed
/// 002), and the group's maxLicenses holds for it.
#[tokio::test]
async fn a_license_joins_its_owners_group() {
    let app = spawn_app().await;
    let product = app.create_product("App").await;
    let policy = app.create_policy(&product, json!({})).await;
    let group = app
        .post(
            &app.acct("/groups"),
            &app.admin(),
            json!({"data": {"type": "groups", "attributes": {"name": "Acme", "maxLicenses": 1}}}),
        )
        .await
        .id();
    let user = app.create_user("member@example.com").await;
    let r = app
        .put(&app.acct(&format!("/users/{user}/group")), &app.admin(), json!({"data": {"type": "groups", "id": group}}))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let owned = |extra: Value| {
        let mut rels = json!({"policy": {"data": {"type": "policies", "id": policy}},
            "owner": {"data": {"type": "users", "id": user}}});
        rels.as_object_mut().unwrap().extend(extra.as_object().cloned().unwrap());
        json!({"data": {"type": "licenses", "relationships": rels}})
    };
    let r = app.post(&app.acct("/licenses"), &app.admin(), owned(json!({}))).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    assert_eq!(r.body["data"]["relationships"]["group"]["data"]["id"], group.as_str());
    let r = app.post(&app.acct("/licenses"), &app.admin(), owned(json!({}))).await;
    assert_eq!((r.status, r.code()), (StatusCode::UNPROCESSABLE_ENTITY, "GROUP_LICENSE_LIMIT_EXCEEDED"), "{}", r.text);
    // A group given explicitly wins.
    let other = app
        .post(&app.acct("/groups"), &app.admin(), json!({"data": {"type": "groups", "attributes": {"name": "Other"}}}))
        .await
        .id();
    let r = app
        .post(&app.acct("/licenses"), &app.admin(), owned(json!({"group": {"data": {"type": "groups", "id": other}}})))
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    assert_eq!(r.body["data"]["relationships"]["group"]["data"]["id"], other.as_str());

    // A license given an owner later joins the owner's group too, within its maxLicenses.
    let (loose, _) = app.create_license(&policy, json!({})).await;
    let to_owner = |u: &str| json!({"data": {"type": "users", "id": u}});
    let r = app.put(&app.acct(&format!("/licenses/{loose}/owner")), &app.admin(), to_owner(&user)).await;
    assert_eq!((r.status, r.code()), (StatusCode::UNPROCESSABLE_ENTITY, "GROUP_LICENSE_LIMIT_EXCEEDED"), "{}", r.text);
    let shown = app.get(&app.acct(&format!("/licenses/{loose}")), &app.admin()).await;
    assert!(shown.body["data"]["relationships"]["owner"]["data"].is_null(), "nothing changed");
    let roomy = app.create_user("roomy@example.com").await;
    app.put(
        &app.acct(&format!("/users/{roomy}/group")),
        &app.admin(),
        json!({"data": {"type": "groups", "id": other}}),
    )
    .await;
    let r = app.put(&app.acct(&format!("/licenses/{loose}/owner")), &app.admin(), to_owner(&roomy)).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.body["data"]["relationships"]["group"]["data"]["id"], other.as_str());
}

/// Keygen's licenses/update.feature "Admin updates a license expiry (UNIX string)", "(UNIX
/// number)" and "(ISO8103 format)": UNIX seconds are taken as a number or a string of digits.
#[tokio::test]
async fn expiry_is_taken_as_unix_seconds_or_iso_8601() {
    let app = spawn_app().await;
    let (_, _, license, _) = app.license_fixture(json!({})).await;
    let path = app.acct(&format!("/licenses/{license}"));
    let patch = |expiry: Value| json!({"data": {"type": "licenses", "attributes": {"expiry": expiry}}});
    for expiry in [json!("1645630138"), json!(1645630138)] {
        let r = app.patch(&path, &app.admin(), patch(expiry.clone())).await;
        assert_eq!(r.status, 200, "{expiry}: {}", r.text);
        assert_eq!(r.attr("expiry"), "2022-02-23T15:28:58.000Z", "{expiry}");
    }
    let r = app.patch(&path, &app.admin(), patch(json!("2030-01-02T03:04:05.000Z"))).await;
    assert_eq!(r.attr("expiry"), "2030-01-02T03:04:05.000Z");
    let r = app.patch(&path, &app.admin(), patch(json!(""))).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.attr("expiry"), &Value::Null, "a blank expiry clears it");
    for (bad, what) in [(json!(1.5), "float"), (json!(-1), "integer"), (json!(true), "boolean")] {
        let r = app.patch(&path, &app.admin(), patch(bad)).await;
        assert_eq!(r.status, 400, "{}", r.text);
        assert_eq!(r.body["errors"][0]["detail"], format!("failed to coerce {what} to time"));
        assert_eq!(r.body["errors"][0]["source"]["pointer"], "/data/attributes/expiry");
    }
    let r = app.patch(&path, &app.admin(), patch(json!("next tuesday"))).await;
    assert_eq!(r.status, 422, "{}", r.text);
    assert_eq!(r.code(), "EXPIRY_INVALID");
    // On creation too.
    let (_, policy, _, _) = app.license_fixture(json!({})).await;
    let r = app
        .post(
            &app.acct("/licenses"),
            &app.admin(),
            json!({"data": {"type": "licenses", "attributes": {"expiry": 1645630138},
                "relationships": {"policy": {"data": {"type": "policies", "id": policy}}}}}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    assert_eq!(r.attr("expiry"), "2022-02-23T15:28:58.000Z");
}

/// Keygen's licenses/create.feature "Admin creates a license with metadata for their account
/// and the keys should be transformed to camelcase", and machines/index.feature's metadata
/// filters "(camelcase)" and "(snakecase)": keys are stored as Rails underscores them and
/// shown camelCased, and a filter names a key either way.
#[tokio::test]
async fn metadata_keys_are_cased_as_keygen_cases_them() {
    let app = spawn_app().await;
    let (_, policy, _, _) = app.license_fixture(json!({})).await;
    let metadata = json!({
        "example_key_1": 1, "ExampleKey2": 2, "exampleKey3": 3, "example key 4": 4,
        "nodeID": "n-1", "parentKey": {"child_key": "value"}
    });
    let r = app
        .post(
            &app.acct("/licenses"),
            &app.admin(),
            json!({"data": {"type": "licenses", "attributes": {"metadata": metadata},
                "relationships": {"policy": {"data": {"type": "policies", "id": policy}}}}}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    assert_eq!(
        r.attr("metadata"),
        &json!({"exampleKey1": 1, "exampleKey2": 2, "exampleKey3": 3, "exampleKey4": 4,
            "nodeId": "n-1", "parentKey": {"childKey": "value"}})
    );
    for filter in ["metadata[nodeId]=n-1", "metadata[node_id]=n-1", "metadata[nodeID]=n-1"] {
        let r = app.get(&app.acct(&format!("/licenses?{filter}")), &app.admin()).await;
        assert_eq!(r.body["data"].as_array().map(Vec::len), Some(1), "{filter}: {}", r.text);
    }
}

/// Answers in the shapes of the version a client pins, as Keygen's `(v1.x)` scenarios show:
/// tokens/generate.feature "…with an invalid password (v1.7)" (CREDENTIALS_INVALID) and
/// "(v1.8)"; licenses/show.feature "(v1.5)" (the owner is the `user` relationship);
/// licenses/actions/validations.feature "(v1.1)"/"(v1.0)" (`constant`, not `code`);
/// policies/show.feature "(v1.6)" (`leasingStrategy`) and "(v1.3)" (fingerprint strategies).
/// The version is echoed, and the migrated answer is what is signed.
#[tokio::test]
async fn older_api_versions_are_answered_in_their_shapes() {
    let app = spawn_app().await;
    let (_, policy, license, key) = app.license_fixture(json!({})).await;
    let account = licensor::store::accounts::find(&app.db, &app.account_id).await.unwrap().unwrap();
    let pk = licensor_client::PublicKey::parse(&account.ed25519_public).unwrap();
    let send = |method: reqwest::Method, path: String, version: &'static str, body: Option<Value>, basic: bool| {
        let (app, pk) = (&app, &pk);
        async move {
            let url = format!("http://{}{}", app.addr, path);
            let mut r = app.client.request(method.clone(), &url).header("Keygen-Version", version);
            r = if basic {
                r.basic_auth(&app.admin_email, Some("wrong password"))
            } else {
                r.bearer_auth(&app.admin_token)
            };
            if let Some(b) = body {
                r = r.header("content-type", "application/vnd.api+json").body(b.to_string());
            }
            let r = r.send().await.unwrap();
            let echoed = r.headers()["keygen-version"].to_str().unwrap().to_string();
            let headers = r.headers().clone();
            let text = r.text().await.unwrap();
            let signed = licensor_client::response::SignedResponse {
                method: method.as_str(),
                path_and_query: &path,
                host: &app.addr.to_string(),
                signature_header: headers["keygen-signature"].to_str().unwrap(),
                date: headers["date"].to_str().unwrap(),
                body: text.as_bytes(),
            };
            licensor_client::response::verify(&signed, pk).expect("the migrated answer is the signed one");
            (echoed, serde_json::from_str::<Value>(&text).unwrap())
        }
    };

    let tokens = app.acct("/tokens");
    let (v, doc) = send(reqwest::Method::POST, tokens.clone(), "1.7", None, true).await;
    assert_eq!(v, "1.7");
    assert_eq!(doc["errors"][0]["code"], "CREDENTIALS_INVALID");
    assert_eq!(doc["errors"][0]["detail"], "email and password must be valid");
    assert_eq!(doc["errors"][0]["source"]["header"], "Authorization");
    let (v, doc) = send(reqwest::Method::POST, tokens, "1.8", None, true).await;
    assert_eq!((v.as_str(), doc["errors"][0]["code"].as_str()), ("1.8", Some("PASSWORD_INVALID")));

    let show = app.acct(&format!("/licenses/{license}"));
    let (_, doc) = send(reqwest::Method::GET, show.clone(), "1.5", None, false).await;
    let rels = &doc["data"]["relationships"];
    assert!(rels.get("owner").is_none(), "{rels}");
    assert_eq!(rels["user"]["links"]["related"], format!("/v1/accounts/{}/licenses/{license}/user", app.account_id));
    let (_, doc) = send(reqwest::Method::GET, show, "1.6", None, false).await;
    assert!(doc["data"]["relationships"].get("owner").is_some());

    let validate = app.acct("/licenses/actions/validate-key");
    let body = json!({"meta": {"key": key}});
    let (_, doc) = send(reqwest::Method::POST, validate.clone(), "1.0", Some(body.clone()), false).await;
    assert_eq!((doc["meta"]["constant"].as_str(), doc["meta"].get("code")), (Some("VALID"), None));
    let (_, doc) = send(reqwest::Method::POST, validate, "1.2", Some(body), false).await;
    assert_eq!(doc["meta"]["code"], "VALID");

    let policy_path = app.acct(&format!("/policies/{policy}"));
    let (_, doc) = send(reqwest::Method::GET, policy_path.clone(), "1.6", None, false).await;
    let attrs = &doc["data"]["attributes"];
    assert!(attrs.get("leasingStrategy").is_some() && attrs.get("processLeasingStrategy").is_none(), "{attrs}");
    assert!(attrs.get("machineUniquenessStrategy").is_some());
    let (_, doc) = send(reqwest::Method::GET, policy_path, "1.3", None, false).await;
    let attrs = &doc["data"]["attributes"];
    assert!(attrs.get("fingerprintUniquenessStrategy").is_some() && attrs.get("machineUniquenessStrategy").is_none());
    assert!(attrs.get("fingerprintMatchingStrategy").is_some());

    // Requests are read in the version's names too: policies/create.feature "(v1.6)" and
    // "(v1.1)" scenarios write `leasingStrategy` and `concurrent`.
    let product = app.create_product("Old client").await;
    let policies = app.acct("/policies");
    let body = |attrs: Value| {
        json!({"data": {"type": "policies", "attributes": attrs,
            "relationships": {"product": {"data": {"type": "products", "id": product}}}}})
    };
    let (_, doc) = send(
        reqwest::Method::POST,
        policies.clone(),
        "1.6",
        Some(body(json!({"name": "Old", "leasingStrategy": "PER_LICENSE", "protected": false}))),
        false,
    )
    .await;
    assert_eq!(doc["data"]["attributes"]["leasingStrategy"], "PER_LICENSE", "{doc}");
    let (_, doc) = send(
        reqwest::Method::POST,
        policies,
        "1.1",
        Some(body(json!({"name": "Older", "concurrent": true, "fingerprintUniquenessStrategy": "UNIQUE_PER_PRODUCT", "protected": false}))),
        false,
    )
    .await;
    let attrs = &doc["data"]["attributes"];
    assert_eq!(
        (attrs["concurrent"].as_bool(), attrs["overageStrategy"].as_str()),
        (Some(true), Some("ALWAYS_ALLOW_OVERAGE")),
        "{doc}"
    );
    assert_eq!(attrs["fingerprintUniquenessStrategy"], "UNIQUE_PER_PRODUCT");

    // machines/show.feature "(v1.5)": a machine's `user` is its license's owner.
    let owner = app.create_user("owner@example.com").await;
    app.set_owner(&license, &owner).await;
    let r = app
        .post(
            &app.acct("/machines"),
            &app.admin(),
            json!({"data": {"type": "machines", "attributes": {"fingerprint": "old-client-fp"},
                "relationships": {"license": {"data": {"type": "licenses", "id": license}}}}}),
        )
        .await;
    assert_eq!(r.status, reqwest::StatusCode::CREATED, "{}", r.text);
    let (_, doc) = send(reqwest::Method::GET, app.acct(&format!("/machines/{}", r.id())), "1.5", None, false).await;
    let rels = &doc["data"]["relationships"];
    assert_eq!(rels["user"]["data"]["id"], owner.as_str(), "{rels}");
    assert!(rels.get("owner").is_none(), "{rels}");
}

/// Creation answers with the license as it was written, without reading it back: the answer
/// must be what a read shows, whatever the policy and the relationships filled in.
#[tokio::test]
async fn a_created_license_reads_back_as_it_was_answered() {
    let app = spawn_app().await;
    let admin = app.admin();
    let product = app.create_product("App").await;
    let plain = app.create_policy(&product, json!({})).await;
    let timed = app
        .create_policy(
            &product,
            json!({"duration": 86_400, "requireCheckIn": true, "checkInInterval": "day", "checkInIntervalCount": 1,
                   "protected": true, "floating": true, "maxMachines": 3}),
        )
        .await;
    let signed = app.create_policy(&product, json!({"scheme": "ED25519_SIGN"})).await;
    let pooled = app.create_policy(&product, json!({"usePool": true})).await;
    let key = json!({"data": {"type": "keys", "attributes": {"key": "POOL-0001-AAAA-ZZZZ"},
        "relationships": {"policy": {"data": {"type": "policies", "id": pooled}}}}});
    assert_eq!(app.post(&app.acct("/keys"), &admin, key).await.status, StatusCode::CREATED);
    // A banned owner in a group: the license joins the group and shows the ban.
    let group = app
        .post(&app.acct("/groups"), &admin, json!({"data": {"type": "groups", "attributes": {"name": "G"}}}))
        .await
        .id();
    let owner = app.create_user("owner@example.com").await;
    let r = app
        .put(&app.acct(&format!("/users/{owner}/group")), &admin, json!({"data": {"type": "groups", "id": group}}))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    app.post(&app.acct(&format!("/users/{owner}/actions/ban")), &admin, json!(null)).await;

    let rel = |kind: &str, id: &str| json!({"data": {"type": kind, "id": id}});
    let cases = [
        (&plain, json!({}), json!({})),
        (
            &timed,
            json!({"name": "Timed", "metadata": {"seatCount": 2, "nested": {"a": [1, 2]}}, "maxCores": 8, "suspended": true}),
            json!({}),
        ),
        (&signed, json!({}), json!({"owner": rel("users", &owner)})),
        (&pooled, json!({}), json!({})),
        (&plain, json!({"key": "a-custom-key-of-some-length", "expiry": "2031-01-01T00:00:00.000Z"}), json!({})),
    ];
    for (policy, attributes, mut relationships) in cases {
        relationships["policy"] = rel("policies", policy);
        let doc = json!({"data": {"type": "licenses", "attributes": attributes, "relationships": relationships}});
        let created = app.post(&app.acct("/licenses"), &admin, doc).await;
        assert_eq!(created.status, StatusCode::CREATED, "{}", created.text);
        let read = app.get(&app.acct(&format!("/licenses/{}", created.id())), &admin).await;
        assert_eq!(created.body["data"], read.body["data"], "policy {policy}");
    }
    // The banned owner's license is banned from the start, in the group.
    let licenses = app.get(&app.acct(&format!("/licenses?owner={owner}")), &admin).await;
    let license = &licenses.body["data"][0];
    assert_eq!(license["attributes"]["status"], "BANNED", "{license}");
    assert_eq!(license["relationships"]["group"]["data"]["id"], group.as_str());
}
