//! Key pools, after Keygen's `features/api/v1/keys/*.feature` and
//! `policies/relationships/pool.feature`: keys are made for a pooled policy, a license created
//! under it takes the newest, and the pool pops.

use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::helpers::*;

fn key_doc(key: &str, policy: &str) -> Value {
    json!({"data": {"type": "keys", "attributes": {"key": key},
        "relationships": {"policy": {"data": {"type": "policies", "id": policy}}}}})
}

async fn pooled(app: &TestApp) -> (String, String) {
    let product = app.create_product("Boxed").await;
    let policy = app.create_policy(&product, json!({"usePool": true})).await;
    (product, policy)
}

#[tokio::test]
async fn keys_are_created_listed_shown_updated_and_deleted() {
    let app = spawn_app().await;
    let (product, policy) = pooled(&app).await;
    let r = app.post(&app.acct("/keys"), &app.admin(), key_doc("BOX-0001-AAAA-ZZZZ", &policy)).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    assert_eq!(r.body["data"]["type"], "keys");
    assert_eq!(r.attr("key"), "BOX-0001-AAAA-ZZZZ");
    assert_eq!(r.body["data"]["relationships"]["policy"]["data"]["id"], policy.as_str());
    assert_eq!(r.body["data"]["relationships"]["product"]["data"]["id"], product.as_str());
    let id = r.id();
    assert_eq!(r.body["data"]["links"]["self"], format!("/v1/accounts/{}/keys/{id}", app.account_id).as_str());

    // Filters by policy and product.
    let other = app.create_product("Other").await;
    let other_policy = app.create_policy(&other, json!({"usePool": true})).await;
    app.post(&app.acct("/keys"), &app.admin(), key_doc("OTHER-KEY-0001-XYZ", &other_policy)).await;
    let all = app.get(&app.acct("/keys"), &app.admin()).await;
    assert_eq!(all.body["data"].as_array().unwrap().len(), 2);
    let mine = app.get(&app.acct(&format!("/keys?policy={policy}")), &app.admin()).await;
    assert_eq!(mine.body["data"].as_array().unwrap().len(), 1);
    let theirs = app.get(&app.acct(&format!("/keys?product={other}")), &app.admin()).await;
    assert_eq!(theirs.body["data"][0]["attributes"]["key"], "OTHER-KEY-0001-XYZ");

    // Show, the relationships, update (the key only), delete.
    assert_eq!(app.get(&app.acct(&format!("/keys/{id}")), &app.admin()).await.status, StatusCode::OK);
    let p = app.get(&app.acct(&format!("/keys/{id}/policy")), &app.admin()).await;
    assert_eq!((p.body["data"]["type"].as_str(), p.id()), (Some("policies"), policy.clone()));
    assert_eq!(p.body["data"]["attributes"]["usePool"], true);
    let pr = app.get(&app.acct(&format!("/keys/{id}/product")), &app.admin()).await;
    assert_eq!(pr.id(), product);
    let r = app
        .patch(
            &app.acct(&format!("/keys/{id}")),
            &app.admin(),
            json!({"data": {"type": "keys", "attributes": {"key": "BOX-0001-CHANGED-1"}}}),
        )
        .await;
    assert_eq!((r.status, r.attr("key").as_str()), (StatusCode::OK, Some("BOX-0001-CHANGED-1")));
    let moved = json!({"data": {"type": "keys", "relationships": {"policy": {"data": {"type": "policies", "id": other_policy}}}}});
    assert_eq!(app.patch(&app.acct(&format!("/keys/{id}")), &app.admin(), moved).await.status, StatusCode::BAD_REQUEST);
    assert_eq!(app.delete(&app.acct(&format!("/keys/{id}")), &app.admin()).await.status, StatusCode::NO_CONTENT);
    assert_eq!(app.get(&app.acct(&format!("/keys/{id}")), &app.admin()).await.status, StatusCode::NOT_FOUND);
    // Each change is an event.
    let log = app.get(&app.acct(&format!("/event-logs?resource[type]=keys&resource[id]={id}")), &app.admin()).await;
    let events: Vec<&str> =
        log.body["data"].as_array().unwrap().iter().map(|e| e["attributes"]["event"].as_str().unwrap()).collect();
    assert_eq!(events, ["key.deleted", "key.updated", "key.created"]);
}

#[tokio::test]
async fn bad_keys_are_refused_as_keygen_refuses_them() {
    let app = spawn_app().await;
    let (product, policy) = pooled(&app).await;
    let unpooled = app.create_policy(&product, json!({})).await;
    let (_, license_key) = app.create_license(&unpooled, json!({"key": "EXISTING-LICENSE-KEY-1"})).await;
    app.post(&app.acct("/keys"), &app.admin(), key_doc("TAKEN-POOL-KEY-0001", &policy)).await;
    let missing = "00000000-0000-4000-8000-000000000000";
    for (doc, code, detail, pointer) in [
        (
            key_doc("SOME-VALID-KEY-0001", &unpooled),
            "POLICY_NOT_SUPPORTED",
            "cannot be added to an unpooled policy",
            "/data/relationships/policy",
        ),
        (key_doc("SOME-VALID-KEY-0001", missing), "POLICY_NOT_FOUND", "must exist", "/data/relationships/policy"),
        (key_doc("TAKEN-POOL-KEY-0001", &policy), "KEY_TAKEN", "has already been taken", "/data/attributes/key"),
        (
            key_doc(&license_key, &policy),
            "KEY_CONFLICT",
            "is already being used as a license's key",
            "/data/attributes/key",
        ),
        (
            key_doc(missing, &policy),
            "KEY_CONFLICT",
            "must not conflict with another license's identifier (UUID)",
            "/data/attributes/key",
        ),
        (key_doc("short", &policy), "KEY_TOO_SHORT", "is too short (minimum is 8 characters)", "/data/attributes/key"),
        (
            key_doc(&"k".repeat(1025), &policy),
            "KEY_TOO_LONG",
            "is too long (maximum is 1024 characters)",
            "/data/attributes/key",
        ),
        (key_doc("   ", &policy), "KEY_MISSING", "can't be blank", "/data/attributes/key"),
    ] {
        let r = app.post(&app.acct("/keys"), &app.admin(), doc).await;
        assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{code}: {}", r.text);
        assert_eq!((r.code(), r.body["errors"][0]["detail"].as_str(), r.pointer()), (code, Some(detail), pointer));
        assert_eq!(r.body["errors"][0]["title"], "Unprocessable resource");
    }
    // Missing members are a bad request.
    for doc in [
        json!({"data": {"type": "keys", "attributes": {"key": "NO-POLICY-GIVEN-1"}}}),
        json!({"data": {"type": "keys", "relationships": {"policy": {"data": {"type": "policies", "id": policy}}}}}),
        json!({"data": {"type": "keys", "attributes": {"key": "X-Y-Z-1234567", "extra": 1}, "relationships": {"policy": {"data": {"type": "policies", "id": policy}}}}}),
    ] {
        assert_eq!(app.post(&app.acct("/keys"), &app.admin(), doc).await.status, StatusCode::BAD_REQUEST);
    }
    // The same text in another account is no conflict.
    let (other_id, other_admin) = app.other_account("pool-other").await;
    let acct = |p: &str| format!("/v1/accounts/{other_id}{p}");
    let prod = app
        .post(&acct("/products"), &other_admin, json!({"data": {"type": "products", "attributes": {"name": "X"}}}))
        .await
        .id();
    let pol = app
        .post(
            &acct("/policies"),
            &other_admin,
            json!({"data": {"type": "policies", "attributes": {"name": "P", "usePool": true},
                "relationships": {"product": {"data": {"type": "products", "id": prod}}}}}),
        )
        .await
        .id();
    let r = app.post(&acct("/keys"), &other_admin, key_doc("TAKEN-POOL-KEY-0001", &pol)).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    // Nothing above was created.
    let all = app.get(&app.acct("/keys"), &app.admin()).await;
    assert_eq!(all.body["data"].as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn licenses_take_the_newest_pool_key_until_the_pool_is_empty() {
    let app = spawn_app().await;
    let (_, policy) = pooled(&app).await;
    for k in ["POOL-KEY-OLDEST-0001", "POOL-KEY-MIDDLE-0002", "POOL-KEY-NEWEST-0003"] {
        let r = app.post(&app.acct("/keys"), &app.admin(), key_doc(k, &policy)).await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
        tokio::time::sleep(std::time::Duration::from_millis(3)).await;
    }
    let (_, key) = app.create_license(&policy, json!({})).await;
    assert_eq!(key, "POOL-KEY-NEWEST-0003");
    let pool = app.get(&app.acct(&format!("/policies/{policy}/pool")), &app.admin()).await;
    assert_eq!(pool.body["data"].as_array().unwrap().len(), 2);
    // The license validates with the key it took.
    let v = app.post(&app.acct("/licenses/actions/validate-key"), &As::Anonymous, json!({"meta": {"key": key}})).await;
    assert_eq!(v.body["meta"]["code"], "VALID");
    // A custom key leaves the pool alone.
    let (_, custom) = app.create_license(&policy, json!({"key": "MY-OWN-CUSTOM-KEY-99"})).await;
    assert_eq!(custom, "MY-OWN-CUSTOM-KEY-99");
    assert_eq!(
        app.get(&app.acct(&format!("/policies/{policy}/pool")), &app.admin()).await.body["data"]
            .as_array()
            .unwrap()
            .len(),
        2
    );

    // Popping answers the newest key and takes it out.
    let r = app.delete(&app.acct(&format!("/policies/{policy}/pool")), &app.admin()).await;
    assert_eq!((r.status, r.attr("key").as_str()), (StatusCode::OK, Some("POOL-KEY-MIDDLE-0002")));
    let last = app.create_license(&policy, json!({})).await.1;
    assert_eq!(last, "POOL-KEY-OLDEST-0001");

    // Empty: a license cannot be created, and nothing is.
    let before = app.get(&app.acct("/licenses"), &app.admin()).await.body["data"].as_array().unwrap().len();
    let r = app
        .post(
            &app.acct("/licenses"),
            &app.admin(),
            json!({"data": {"type": "licenses", "relationships": {"policy": {"data": {"type": "policies", "id": policy}}}}}),
        )
        .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.text);
    assert_eq!(
        (r.code(), r.body["errors"][0]["detail"].as_str(), r.pointer()),
        ("POLICY_POOL_EMPTY", Some("pool is empty"), "/data/relationships/policy")
    );
    assert_eq!(app.get(&app.acct("/licenses"), &app.admin()).await.body["data"].as_array().unwrap().len(), before);
    let r = app.delete(&app.acct(&format!("/policies/{policy}/pool")), &app.admin()).await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(r.body["errors"][0]["detail"], "pool is empty");
    assert_eq!(r.pointer(), "/data/relationships/pool");

    // A policy without a pool: an empty pool list, and no pop.
    let product = app.create_product("Plain").await;
    let plain = app.create_policy(&product, json!({})).await;
    let r = app.get(&app.acct(&format!("/policies/{plain}/pool")), &app.admin()).await;
    assert_eq!((r.status, r.body["data"].as_array().map(Vec::len)), (StatusCode::OK, Some(0)));
    let r = app.delete(&app.acct(&format!("/policies/{plain}/pool")), &app.admin()).await;
    assert_eq!(
        (r.status, r.body["errors"][0]["detail"].as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, Some("pool is not supported"))
    );
}

#[tokio::test]
async fn racing_licenses_never_share_a_pool_key() {
    let app = spawn_app().await;
    let (_, policy) = pooled(&app).await;
    for i in 0..10 {
        app.post(&app.acct("/keys"), &app.admin(), key_doc(&format!("RACE-POOL-KEY-{i:04}"), &policy)).await;
    }
    let mut tasks = Vec::new();
    for _ in 0..16 {
        let (client, url, token) =
            (app.client.clone(), format!("http://{}{}", app.addr, app.acct("/licenses")), app.admin_token.clone());
        let body = json!({"data": {"type": "licenses", "relationships": {"policy": {"data": {"type": "policies", "id": policy}}}}});
        tasks.push(tokio::spawn(async move {
            let r = client
                .post(url)
                .bearer_auth(token)
                .header("content-type", "application/vnd.api+json")
                .body(body.to_string())
                .send()
                .await
                .unwrap();
            let status = r.status();
            let v: Value = r.json().await.unwrap();
            (status, v["data"]["attributes"]["key"].as_str().map(str::to_string))
        }));
    }
    let mut keys = Vec::new();
    for t in tasks {
        let (status, key) = t.await.unwrap();
        match status {
            StatusCode::CREATED => keys.push(key.unwrap()),
            StatusCode::UNPROCESSABLE_ENTITY => {}
            other => panic!("unexpected {other}"),
        }
    }
    keys.sort();
    keys.dedup();
    assert_eq!(keys.len(), 10, "each of the 10 keys went to exactly one license");
}

#[tokio::test]
async fn who_may_touch_keys() {
    let app = spawn_app().await;
    let (product, policy) = pooled(&app).await;
    let id = app.post(&app.acct("/keys"), &app.admin(), key_doc("SCOPED-KEY-0001-AB", &policy)).await.id();
    let token = app.post(&app.acct(&format!("/products/{product}/tokens")), &app.admin(), json!(null)).await;
    let as_product = As::Bearer(token.attr("token").as_str().unwrap().to_string());
    // Its own product: everything.
    assert_eq!(app.get(&app.acct(&format!("/keys/{id}")), &as_product).await.status, StatusCode::OK);
    let r = app.post(&app.acct("/keys"), &as_product, key_doc("PRODUCT-MADE-KEY-01", &policy)).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    // Another product's keys: not found, and not creatable.
    let other = app.create_product("Other").await;
    let other_policy = app.create_policy(&other, json!({"usePool": true})).await;
    let other_key =
        app.post(&app.acct("/keys"), &app.admin(), key_doc("OTHER-PRODUCT-KEY-1", &other_policy)).await.id();
    assert_eq!(app.get(&app.acct(&format!("/keys/{other_key}")), &as_product).await.status, StatusCode::NOT_FOUND);
    assert_eq!(app.delete(&app.acct(&format!("/keys/{other_key}")), &as_product).await.status, StatusCode::NOT_FOUND);
    assert_eq!(
        app.post(&app.acct("/keys"), &as_product, key_doc("NOT-MINE-TO-MAKE-1", &other_policy)).await.status,
        StatusCode::FORBIDDEN
    );
    let listed = app.get(&app.acct("/keys"), &as_product).await;
    assert!(listed.body["data"]
        .as_array()
        .unwrap()
        .iter()
        .all(|k| k["relationships"]["product"]["data"]["id"] == product.as_str()));
    assert_eq!(
        app.delete(&app.acct(&format!("/policies/{other_policy}/pool")), &as_product).await.status,
        StatusCode::NOT_FOUND
    );

    // Users and licenses: 403 on list and create, 404 on a key and a pool.
    app.create_user("someone@example.com").await;
    let user = As::Basic("someone@example.com".into(), PASSWORD.into());
    let user_token = app.post(&app.acct("/tokens"), &user, json!(null)).await;
    let as_user = As::Bearer(user_token.attr("token").as_str().unwrap().to_string());
    let unpooled = app.create_policy(&product, json!({"authenticationStrategy": "LICENSE"})).await;
    let (_, license_key) = app.create_license(&unpooled, json!({})).await;
    for who in [as_user, As::License(license_key)] {
        assert_eq!(app.get(&app.acct("/keys"), &who).await.status, StatusCode::FORBIDDEN);
        assert_eq!(
            app.post(&app.acct("/keys"), &who, key_doc("SNEAKY-KEY-000001", &policy)).await.status,
            StatusCode::FORBIDDEN
        );
        assert_eq!(app.get(&app.acct(&format!("/keys/{id}")), &who).await.status, StatusCode::NOT_FOUND);
        assert_eq!(app.get(&app.acct(&format!("/policies/{policy}/pool")), &who).await.status, StatusCode::NOT_FOUND);
        assert_eq!(
            app.delete(&app.acct(&format!("/policies/{policy}/pool")), &who).await.status,
            StatusCode::FORBIDDEN
        );
    }
    // No credentials, and another account's admin.
    assert_eq!(app.get(&app.acct("/keys"), &As::Anonymous).await.status, StatusCode::UNAUTHORIZED);
    let (_, foreign) = app.other_account("keys-foreign").await;
    let r = app.get(&app.acct(&format!("/keys/{id}")), &foreign).await;
    assert!(matches!(r.status, StatusCode::UNAUTHORIZED | StatusCode::NOT_FOUND), "{}", r.status);
}

#[tokio::test]
async fn use_pool_is_set_at_creation_and_excludes_schemes_and_encryption() {
    let app = spawn_app().await;
    let product = app.create_product("P").await;
    let base = |attrs: Value| {
        let mut a = json!({"name": "Pooled", "usePool": true});
        a.as_object_mut().unwrap().extend(attrs.as_object().cloned().unwrap());
        json!({"data": {"type": "policies", "attributes": a,
            "relationships": {"product": {"data": {"type": "products", "id": product}}}}})
    };
    let r = app.post(&app.acct("/policies"), &app.admin(), base(json!({"encrypted": true}))).await;
    assert_eq!((r.status, r.code()), (StatusCode::UNPROCESSABLE_ENTITY, "ENCRYPTED_NOT_SUPPORTED"), "{}", r.text);
    let r = app.post(&app.acct("/policies"), &app.admin(), base(json!({"scheme": "ED25519_SIGN"}))).await;
    assert_eq!((r.status, r.code()), (StatusCode::UNPROCESSABLE_ENTITY, "SCHEME_NOT_SUPPORTED"), "{}", r.text);
    let policy = app.create_policy(&product, json!({"usePool": true})).await;
    let r = app.patch_attributes("policies", &policy, json!({"usePool": false})).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.text);
    // Deleting the policy empties its pool.
    let k = app.post(&app.acct("/keys"), &app.admin(), key_doc("GONE-WITH-POLICY-1", &policy)).await.id();
    assert_eq!(
        app.delete(&app.acct(&format!("/policies/{policy}")), &app.admin()).await.status,
        StatusCode::NO_CONTENT
    );
    assert_eq!(app.get(&app.acct(&format!("/keys/{k}")), &app.admin()).await.status, StatusCode::NOT_FOUND);
}
