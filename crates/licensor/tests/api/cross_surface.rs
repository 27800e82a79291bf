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

/// One rule set, whichever surface activates: the same policy's FROM_FIRST_ACTIVATION expiry
/// comes out the same through `POST /machines` and `/activation` (a month added on the
/// calendar, not 2,629,746 seconds), and the gate on the license is the one validation applies.
#[tokio::test]
async fn activation_starts_the_same_clock_on_every_surface() {
    let app = spawn_app().await;
    let product = app.create_product("Clocked").await;
    let policy = app
        .create_policy(
            &product,
            json!({"floating": true, "maxMachines": 5, "duration": 2_629_746, "expirationBasis": "FROM_FIRST_ACTIVATION"}),
        )
        .await;
    let (keygen_id, _) = app.create_license(&policy, json!({})).await;
    let (opswat_id, opswat_key) = app.create_license(&policy, json!({})).await;
    let r = app
        .post(
            &app.acct("/machines"),
            &app.admin(),
            json!({"data": {"type": "machines", "attributes": {"fingerprint": "box"},
                "relationships": {"license": {"data": {"type": "licenses", "id": keygen_id}}}}}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    assert_eq!(activate(&app, &opswat_key, 7).await, "HTTP/1.1 200 OK");
    let expiry = |id: String| {
        let app = &app;
        async move {
            let r = app.get(&app.acct(&format!("/licenses/{id}")), &app.admin()).await;
            chrono::DateTime::parse_from_rfc3339(r.attr("expiry").as_str().expect("clock started")).unwrap()
        }
    };
    let (by_keygen, by_opswat) = (expiry(keygen_id).await, expiry(opswat_id).await);
    assert!((by_keygen - by_opswat).num_seconds().abs() < 60, "{by_keygen} vs {by_opswat}");
    let calendar = chrono::Utc::now().checked_add_months(chrono::Months::new(1)).unwrap();
    assert!((by_opswat.with_timezone(&chrono::Utc) - calendar).num_seconds().abs() < 120, "{by_opswat}");
}

/// Machines get time-ordered ids (UUIDv7, `model::fleet_id`) whichever surface activates them.
#[tokio::test]
async fn machines_get_time_ordered_ids_on_every_surface() {
    let app = spawn_app().await;
    let (_, _, license, key) = app.license_fixture(json!({"floating": true, "maxMachines": 5})).await;
    let r = app.activate_machine(&license, "box").await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    assert_eq!(activate(&app, &key, 7).await, "HTTP/1.1 200 OK");
    let r = app.get(&app.acct(&format!("/machines?license={license}")), &app.admin()).await;
    let ids: Vec<uuid::Uuid> =
        r.body["data"].as_array().unwrap().iter().map(|m| m["id"].as_str().unwrap().parse().unwrap()).collect();
    assert_eq!(ids.len(), 2, "{}", r.text);
    assert!(ids.iter().all(|id| id.get_version_num() == 7), "{ids:?}");
}

/// `/activation` refuses what validation refuses and admits what it admits: an overdue check-in
/// is refused, an expiry under MAINTAIN_ACCESS is not, under RESTRICT_ACCESS it is; a policy
/// that takes no license credential (`NONE`) takes no activation key.
#[tokio::test]
async fn activation_uses_the_validation_gate() {
    let app = spawn_app().await;
    let product = app.create_product("Gated").await;
    let policy = |attrs: Value| {
        let mut a = json!({"floating": true, "maxMachines": 5});
        a.as_object_mut().unwrap().extend(attrs.as_object().unwrap().clone());
        app.create_policy(&product, a)
    };
    let body = |key: &str, n: u8| {
        let app = &app;
        let path = format!("/activation?key={key}&deployment={}&quantity=1", deployment(n));
        async move { http_get(app, &path).await }
    };
    let past = "2020-01-01T00:00:00Z";

    let maintain = policy(json!({"expirationStrategy": "MAINTAIN_ACCESS"})).await;
    let (_, key) = app.create_license(&maintain, json!({"expiry": past})).await;
    assert_eq!(validate_key(&app, &key).await["valid"], true);
    assert_eq!(body(&key, 1).await.0, "HTTP/1.1 200 OK");

    let restrict = policy(json!({"expirationStrategy": "RESTRICT_ACCESS"})).await;
    let (_, key) = app.create_license(&restrict, json!({"expiry": past})).await;
    assert_eq!(validate_key(&app, &key).await["valid"], false);
    let (status, _, text) = body(&key, 2).await;
    assert_eq!(status, "HTTP/1.1 200 Activation failed");
    assert!(text.contains("has expired"), "{text}");

    let check_in = policy(json!({"requireCheckIn": true, "checkInInterval": "day", "checkInIntervalCount": 1})).await;
    let (id, key) = app.create_license(&check_in, json!({})).await;
    let before = licensor::store::licenses::find(&app.db, app.account_id.parse().unwrap(), id.parse().unwrap())
        .await
        .unwrap()
        .unwrap();
    let mut overdue = before.clone();
    overdue.last_check_in_at = Some(licensor::time::now_ms() - 3 * 86_400_000);
    licensor::store::licenses::update(&app.db, &before, &overdue, &[]).await.unwrap();
    assert_eq!(validate_key(&app, &key).await["code"], "OVERDUE");
    let (status, _, text) = body(&key, 3).await;
    assert_eq!(status, "HTTP/1.1 200 Activation failed");
    assert!(text.contains("overdue"), "{text}");

    let closed = policy(json!({"authenticationStrategy": "NONE", "protected": true})).await;
    let (_, key) = app.create_license(&closed, json!({})).await;
    let r = app.get(&app.acct("/me"), &As::License(key.clone())).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "the Keygen surface refuses the key: {}", r.text);
    let (status, _, text) = body(&key, 4).await;
    assert_eq!(status, "HTTP/1.1 200 Activation failed");
    assert!(text.contains("cannot be used for activation"), "{text}");
}

/// `/deactivation` removes only deployments `/activation` created: a machine the vendor
/// activated through the API, even with a deployment-shaped fingerprint, stays.
#[tokio::test]
async fn deactivation_removes_only_offline_deployments() {
    let app = spawn_app().await;
    let (_, _, license, key) = app.license_fixture(json!({"floating": true, "maxMachines": 5})).await;
    let r = app
        .post(
            &app.acct("/machines"),
            &app.admin(),
            json!({"data": {"type": "machines", "attributes": {"fingerprint": deployment(9)},
                "relationships": {"license": {"data": {"type": "licenses", "id": license}}}}}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    // Asking /activation for that deployment gets a file, but does not make it removable.
    assert_eq!(activate(&app, &key, 9).await, "HTTP/1.1 200 OK");
    let (status, _, _) = http_get(&app, &format!("/deactivation?key={key}&deployment={}", deployment(9))).await;
    assert_eq!(status, "HTTP/1.1 200 No active license found");
    assert_eq!(app.get(&app.acct(&format!("/machines/{}", r.id())), &app.admin()).await.status, StatusCode::OK);
    assert_eq!(activate(&app, &key, 10).await, "HTTP/1.1 200 OK");
    let (status, _, body) = http_get(&app, &format!("/deactivation?key={key}&deployment={}", deployment(10))).await;
    assert_eq!((status.as_str(), body.as_str()), ("HTTP/1.1 200 OK", "result: ok"));
}

/// `DELETE /api/licensing/v1/licenses/<productKey>` removes one licensee's licenses, never other
/// customers': with several licensees it wants `?licenseeId=…` and removes nothing until then.
#[tokio::test]
async fn a_licensing_delete_never_removes_other_customers_licenses() {
    let app = spawn_app().await;
    let product = app.create_product("Engine").await;
    let grant = |licensee: &str| {
        json!({"licenseeId": licensee, "licenseeName": format!("Customer {licensee}"), "expiration": "2099-12-31",
               "licenses": [{"productKey": key_of(&product), "type": "S", "quantity": 1}]})
        .to_string()
    };
    for licensee in ["11.111.111/0001-11", "22.222.222/0001-22"] {
        let r = app
            .send(
                Method::POST,
                "/api/licensing/v1/licenses/create",
                &app.admin(),
                Some("application/json"),
                &grant(licensee),
            )
            .await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    }
    // A third customer's license, made through the Keygen API under the same product.
    let policy = app.create_policy(&product, json!({})).await;
    app.create_license(&policy, json!({"name": "Keygen customer"})).await;
    let listing = app.acct(&format!("/licenses?product={product}"));
    let count = || async { app.get(&listing, &app.admin()).await.body["data"].as_array().unwrap().len() };
    assert_eq!(count().await, 3);

    let path = format!("/api/licensing/v1/licenses/{}", key_of(&product));
    let r = app.send(Method::DELETE, &path, &app.admin(), None, "").await;
    assert_eq!(r.status, StatusCode::CONFLICT, "{}", r.text);
    assert_eq!(r.body["error"]["code"], "ambiguous_licensee");
    assert_eq!(count().await, 3, "nothing removed");

    let r = app.send(Method::DELETE, &format!("{path}?licenseeId=11.111.111/0001-11"), &app.admin(), None, "").await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(count().await, 2, "only that licensee's license");
    let r = app.send(Method::DELETE, &format!("{path}?licenseeId=11.111.111/0001-11"), &app.admin(), None, "").await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "already gone");
    let names: Vec<String> = app.get(&app.acct(&format!("/licenses?product={product}")), &app.admin()).await.body
        ["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["attributes"]["name"].as_str().unwrap_or("").to_string())
        .collect();
    assert!(names.contains(&"Keygen customer".to_string()) && names.iter().any(|n| n.contains("22.222")), "{names:?}");
}
