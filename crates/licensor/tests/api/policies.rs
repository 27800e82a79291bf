use reqwest::StatusCode;
use serde_json::json;

use crate::helpers::*;

#[tokio::test]
async fn policy_gets_keygens_defaults() {
    let app = spawn_app().await;
    let product = app.create_product("App").await;
    let id = app.create_policy(&product, json!({})).await;
    let r = app.get(&app.acct(&format!("/policies/{id}")), &app.admin()).await;
    let a = &r.body["data"]["attributes"];
    assert_eq!(a["maxMachines"], 1, "node-locked policies allow one machine");
    assert_eq!(a["floating"], false);
    assert_eq!(a["machineUniquenessStrategy"], "UNIQUE_PER_LICENSE");
    assert_eq!(a["machineMatchingStrategy"], "MATCH_ANY");
    assert_eq!(a["expirationStrategy"], "RESTRICT_ACCESS");
    assert_eq!(a["expirationBasis"], "FROM_CREATION");
    assert_eq!(a["authenticationStrategy"], "TOKEN");
    assert_eq!(a["overageStrategy"], "NO_OVERAGE");
    assert_eq!(a["heartbeatCullStrategy"], "DEACTIVATE_DEAD");
    assert_eq!(a["heartbeatBasis"], "FROM_FIRST_PING");
    assert_eq!(a["duration"], json!(null));
    assert_eq!(r.body["data"]["relationships"]["product"]["data"]["id"], json!(product));
}

#[tokio::test]
async fn policy_rules_are_validated_with_pointers() {
    let app = spawn_app().await;
    let product = app.create_product("App").await;
    let cases = [
        (json!({"duration": 10}), 422, "/data/attributes/duration"),
        (json!({"maxMachines": 5}), 422, "/data/attributes/maxMachines"),
        (json!({"floating": true, "maxMachines": 0}), 422, "/data/attributes/maxMachines"),
        (json!({"expirationStrategy": "NEVER"}), 422, "/data/attributes/expirationStrategy"),
        (
            json!({"floating": true, "maxMachines": 5, "overageStrategy": "ALLOW_1_25X_OVERAGE"}),
            422,
            "/data/attributes/overageStrategy",
        ),
        (json!({"requireCheckIn": true}), 422, "/data/attributes/checkInInterval"),
        (json!({"maxMachines": "five"}), 400, "/data/attributes/maxMachines"),
        (json!({"strict": null}), 400, "/data/attributes/strict"),
        (json!({"notAThing": true}), 400, "/data/attributes/notAThing"),
    ];
    for (attrs, status, pointer) in cases {
        let mut a = json!({"name": "P"});
        a.as_object_mut().unwrap().extend(attrs.as_object().unwrap().clone());
        let r = app
            .post(&app.acct("/policies"), &app.admin(), json!({"data": {"type": "policies", "attributes": a, "relationships": {"product": {"data": {"type": "products", "id": product}}}}}))
            .await;
        assert_eq!(r.status.as_u16(), status, "{attrs}: {}", r.text);
        assert_eq!(r.pointer(), pointer, "{attrs}");
    }
    let r = app.get(&app.acct("/policies"), &app.admin()).await;
    assert_eq!(r.body["data"].as_array().unwrap().len(), 0, "no failed create left a row behind");
    // As in Keygen, the check-in interval is checked only when check-in is required.
    let a = json!({"name": "P", "checkInInterval": "fortnight"});
    let r = app
        .post(&app.acct("/policies"), &app.admin(), json!({"data": {"type": "policies", "attributes": a, "relationships": {"product": {"data": {"type": "products", "id": product}}}}}))
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    assert_eq!(
        app.get(&app.acct(&format!("/policies/{}", r.id())), &app.admin()).await.attr("checkInInterval"),
        "fortnight"
    );
    let r = app.patch_attributes("policies", &r.id(), json!({"requireCheckIn": true, "checkInIntervalCount": 1})).await;
    assert_eq!((r.status.as_u16(), r.code()), (422, "CHECK_IN_INTERVAL_NOT_ALLOWED"), "{}", r.text);
}

#[tokio::test]
async fn policy_update_and_create_only_attributes() {
    let app = spawn_app().await;
    let product = app.create_product("App").await;
    let id = app.create_policy(&product, json!({"floating": true, "maxMachines": 3})).await;
    let path = app.acct(&format!("/policies/{id}"));
    let r = app
        .patch(
            &path,
            &app.admin(),
            json!({"data": {"type": "policies", "attributes": {"maxMachines": 10, "name": "Pro"}}}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.attr("maxMachines"), 10);
    assert_eq!(r.attr("name"), "Pro");
    let r = app
        .patch(&path, &app.admin(), json!({"data": {"type": "policies", "attributes": {"scheme": "ED25519_SIGN"}}}))
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(r.pointer(), "/data/attributes/scheme");
    let r = app.get(&app.acct(&format!("/policies?product={product}")), &app.admin()).await;
    assert_eq!(r.body["data"].as_array().unwrap().len(), 1);
    let r = app.delete(&path, &app.admin()).await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    assert_eq!(app.get(&path, &app.admin()).await.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn policy_entitlements_attach_and_detach() {
    let app = spawn_app().await;
    let product = app.create_product("App").await;
    let policy = app.create_policy(&product, json!({})).await;
    let e = app
        .post(
            &app.acct("/entitlements"),
            &app.admin(),
            json!({"data": {"type": "entitlements", "attributes": {"name": "Feature A", "code": "FEATURE_A"}}}),
        )
        .await;
    assert_eq!(e.status, StatusCode::CREATED, "{}", e.text);
    let path = app.acct(&format!("/policies/{policy}/entitlements"));
    let r = app.post(&path, &app.admin(), json!({"data": [{"type": "entitlements", "id": e.id()}]})).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.body["data"][0]["type"], "policy-entitlements");
    assert_eq!(r.body["data"][0]["relationships"]["policy"]["data"]["id"], policy.as_str());
    let again = app.post(&path, &app.admin(), json!({"data": [{"type": "entitlements", "id": e.id()}]})).await;
    assert_eq!((again.status, again.code()), (StatusCode::UNPROCESSABLE_ENTITY, "ENTITLEMENT_TAKEN"), "{}", again.text);
    let r = app.get(&path, &app.admin()).await;
    assert_eq!(r.body["data"][0]["attributes"]["code"], "FEATURE_A");
    let r = app.delete(&path, &app.admin()).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "detach needs a body");
    let r = app
        .req(
            reqwest::Method::DELETE,
            &path,
            &app.admin(),
            Some(json!({"data": [{"type": "entitlements", "id": e.id()}]})),
        )
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    assert_eq!(app.get(&path, &app.admin()).await.body["data"].as_array().unwrap().len(), 0);
    let r = app
        .req(
            reqwest::Method::DELETE,
            &path,
            &app.admin(),
            Some(json!({"data": [{"type": "entitlements", "id": e.id()}]})),
        )
        .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.text);
    assert_eq!(r.body["errors"][0]["title"], "Unprocessable entity");
}
