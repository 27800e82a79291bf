//! One core, four surfaces: a license created through any surface is visible and enforced
//! through every other one.

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use crate::astra::{core, text_for};
use crate::helpers::*;
use crate::opswat::http_get;

fn key_of(id: &str) -> i32 {
    licensor::domain::projection::legacy_key(id.parse().unwrap())
}

fn deployment(n: u8) -> String {
    format!("MSCL{:032X}", n)
}

async fn activate(app: &TestApp, key: &str, n: u8) -> String {
    http_get(app, &format!("/activation?key={key}&deployment={}&quantity=1", deployment(n))).await.0
}

async fn validate_key(app: &TestApp, key: &str) -> Value {
    let r = app.post(&app.acct("/licenses/actions/validate-key"), &As::Anonymous, json!({"meta": {"key": key}})).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    r.body["meta"].clone()
}

async fn licensing_list(app: &TestApp) -> Vec<Value> {
    let r = app.get("/api/licensing/v1/licenses", &app.admin()).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    r.body.as_array().unwrap().clone()
}

/// Keygen → OPSWAT, /api/licensing/v1 and /core/v1.
#[tokio::test]
async fn a_keygen_license_is_seen_and_enforced_everywhere() {
    let app = spawn_app().await;
    let product = app.create_product("Scanner").await;
    let policy = app.create_policy(&product, json!({"floating": true, "maxMachines": 1})).await;
    let (license, key) = app.create_license(&policy, json!({"expiry": "2099-12-31T12:00:00Z"})).await;

    let listed = licensing_list(&app).await;
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0]["type"], "simultaneousUser");
    assert_eq!(listed[0]["quantity"], 1);
    assert_eq!(listed[0]["expiration"], "2099-12-31");
    assert_eq!(listed[0]["productKey"], key_of(&product));
    let astra = app.get(&core(&app, &format!("/licenses/{license}")), &app.admin()).await;
    assert_eq!(astra.body["capacity"], "1");
    assert_eq!(astra.body["validUntilTimestamp"], "2099-12-31T12:00:00.000000Z");

    // One seat: an OPSWAT deployment takes it, so a Keygen activation is refused.
    assert_eq!(activate(&app, &key, 1).await, "HTTP/1.1 200 OK");
    let r = app
        .post(
            &app.acct("/machines"),
            &app.admin(),
            json!({"data": {"type": "machines", "attributes": {"fingerprint": "keygen-box"},
            "relationships": {"license": {"data": {"type": "licenses", "id": license}}}}}),
        )
        .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(r.code(), "MACHINE_LIMIT_EXCEEDED");
    let ents = app.get(&core(&app, "/entitlements"), &app.admin()).await;
    assert_eq!(ents.body["items"][0]["entitlementConsumption"], "1");
    assert_eq!(ents.body["items"][0]["entitlementValue"], "1");
    // The deployment is the license's machine: Keygen validation with that fingerprint passes.
    let r = app
        .post(
            &app.acct("/licenses/actions/validate-key"),
            &As::Anonymous,
            json!({"meta": {"key": key, "scope": {"fingerprint": deployment(1)}}}),
        )
        .await;
    assert_eq!(r.body["meta"]["code"], "VALID", "{}", r.text);

    // Suspended through Keygen: OPSWAT refuses, the other surfaces still list it.
    http_get(&app, &format!("/deactivation?key={key}&deployment={}", deployment(1))).await;
    app.post(&app.acct(&format!("/licenses/{license}/actions/suspend")), &app.admin(), json!({})).await;
    assert_eq!(activate(&app, &key, 2).await, "HTTP/1.1 200 Activation failed");
    assert_eq!(validate_key(&app, &key).await["code"], "SUSPENDED");
    assert_eq!(licensing_list(&app).await.len(), 1);
}

/// /api/licensing/v1 → Keygen, OPSWAT and /core/v1; deleting through /core/v1 removes it everywhere.
#[tokio::test]
async fn a_licensing_code_license_is_seen_and_enforced_everywhere() {
    let app = spawn_app().await;
    let product = app.create_product("Web Framework").await;
    let body = json!({"licenseeId": "00.000.000/0000-00", "licenseeName": "Empresa", "expiration": "2099-12-31",
                      "licenses": [{"productKey": key_of(&product), "type": "S", "quantity": 1}]});
    let r = app
        .send(
            Method::POST,
            "/api/licensing/v1/licenses/create",
            &app.admin(),
            Some("application/json"),
            &body.to_string(),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);

    let k = app.get(&app.acct(&format!("/licenses?product={product}")), &app.admin()).await;
    let license = k.body["data"][0]["id"].as_str().unwrap().to_string();
    let key = k.body["data"][0]["attributes"]["key"].as_str().unwrap().to_string();
    assert_eq!(k.body["data"][0]["attributes"]["maxMachines"], 1);
    assert_eq!(k.body["data"][0]["attributes"]["name"], "Empresa");
    assert_eq!(validate_key(&app, &key).await["valid"], true);

    assert_eq!(activate(&app, &key, 1).await, "HTTP/1.1 200 OK");
    assert_eq!(activate(&app, &key, 2).await, "HTTP/1.1 200 Activation failed", "quantity 1 = one seat");

    let astra = app.get(&core(&app, &format!("/licenses/{license}")), &app.admin()).await;
    assert_eq!(astra.body["product"], "Web Framework");
    assert_eq!(astra.body["capacity"], "1");
    assert_eq!(astra.body["validUntilTimestamp"], "2099-12-31T23:59:59.999000Z");

    assert_eq!(
        app.delete(&core(&app, &format!("/licenses/{license}")), &app.admin()).await.status,
        StatusCode::NO_CONTENT
    );
    let r = app.get(&format!("/api/licensing/v1/licenses/{}", key_of(&product)), &app.admin()).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert_eq!(app.get(&app.acct(&format!("/licenses/{license}")), &app.admin()).await.status, StatusCode::NOT_FOUND);
    assert_eq!(validate_key(&app, &key).await["code"], "NOT_FOUND");
    assert_eq!(activate(&app, &key, 3).await, "HTTP/1.1 200 Invalid parameter");
}

/// /core/v1 → Keygen, OPSWAT and /api/licensing/v1; deleting through /api/licensing/v1 removes it.
#[tokio::test]
async fn a_core_v1_license_is_seen_and_enforced_everywhere() {
    let app = spawn_app().await;
    let product = app.create_product("Astra Control Center").await;
    let text = text_for(&app, "Astra Control Center", "320000046", "2099-08-06T00:00:00.000000Z", "2").await;
    let r = app
        .send(
            Method::POST,
            &core(&app, "/licenses"),
            &app.admin(),
            Some("application/astra-license+json"),
            &json!({"type": "application/astra-license", "version": "1.0", "licenseText": text}).to_string(),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    let license = r.body["id"].as_str().unwrap().to_string();

    let k = app.get(&app.acct(&format!("/licenses/{license}")), &app.admin()).await;
    assert_eq!(k.attr("maxMachines"), 2);
    assert_eq!(k.attr("expiry"), "2099-08-06T00:00:00.000Z");
    let key = k.attr("key").as_str().unwrap().to_string();
    assert_eq!(validate_key(&app, &key).await["code"], "VALID");

    let listed = licensing_list(&app).await;
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0]["type"], "simultaneousUser");
    assert_eq!(listed[0]["quantity"], 2);
    assert_eq!(listed[0]["expiration"], "2099-08-06");

    assert_eq!(activate(&app, &key, 1).await, "HTTP/1.1 200 OK");
    assert_eq!(activate(&app, &key, 2).await, "HTTP/1.1 200 OK");
    assert_eq!(activate(&app, &key, 3).await, "HTTP/1.1 200 Activation failed");
    let machines = app.get(&app.acct(&format!("/licenses/{license}/machines")), &app.admin()).await;
    assert_eq!(machines.body["data"].as_array().unwrap().len(), 2);

    let r = app
        .send(Method::DELETE, &format!("/api/licensing/v1/licenses/{}", key_of(&product)), &app.admin(), None, "")
        .await;
    assert_eq!(r.status, StatusCode::OK);
    let r = app.get(&core(&app, &format!("/licenses/{license}")), &app.admin()).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
}
