//! Air-gapped activation (docs/opswat.md): exact status lines and bodies, limits shared with the
//! Keygen surface, and the whole offline round trip through the client crate.

use std::sync::Arc;

use licensor_client::opswat;
use licensor_client::product::LicenseDir;
use licensor_client::PublicKey;
use reqwest::StatusCode;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::helpers::*;

const CHECK: &str = " Check if you typed it correctly or open a support ticket if problem persist.";

/// A raw HTTP/1.1 GET, so the reason phrase can be read: (status line, headers, body).
pub async fn http_get(app: &TestApp, path_and_query: &str) -> (String, String, String) {
    let (status, headers, body) = http_get_any(app, path_and_query).await;
    assert!(!status.contains(" 500 "), "server error: {status} {body}");
    (status, headers, body)
}

/// [`http_get`], whatever the status.
pub async fn http_get_any(app: &TestApp, path_and_query: &str) -> (String, String, String) {
    let mut s = tokio::net::TcpStream::connect(app.addr).await.unwrap();
    let req = format!("GET {path_and_query} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n", app.addr);
    s.write_all(req.as_bytes()).await.unwrap();
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).await.unwrap();
    let text = String::from_utf8(buf).unwrap();
    let (head, body) = text.split_once("\r\n\r\n").unwrap();
    let (status, headers) = head.split_once("\r\n").unwrap_or((head, ""));
    (status.to_string(), headers.to_lowercase(), body.to_string())
}

pub async fn public_key(app: &TestApp) -> PublicKey {
    let row = licensor::store::accounts::find(&app.db, &app.account_id).await.unwrap().unwrap();
    PublicKey::parse(&row.ed25519_public).unwrap()
}

fn deployment(n: u8) -> String {
    format!("MSCL{:032X}", n)
}

async fn machine_count(app: &TestApp, license: &str) -> usize {
    let r = app.get(&app.acct(&format!("/machines?license={license}")), &app.admin()).await;
    r.body["data"].as_array().unwrap().len()
}

#[tokio::test]
async fn activation_deactivation_and_limits() {
    let app = spawn_app().await;
    let (_, _, license, key) = app.license_fixture(json!({"floating": true, "maxMachines": 2})).await;
    let pk = public_key(&app).await;

    // The file signs the node count asked for: never more than the key's seats.
    let (status, _, body) =
        http_get(&app, &format!("/activation?key={key}&deployment={}&quantity=3", deployment(1))).await;
    assert_eq!(status, "HTTP/1.1 200 Activation failed");
    assert!(body.contains("is more than the Activation Key allows (2)"), "{body}");
    let (status, headers, body) =
        http_get(&app, &format!("/activation?key={key}&deployment={}&quantity=2", deployment(1))).await;
    assert_eq!(status, "HTTP/1.1 200 OK");
    assert!(headers.contains("content-disposition: attachment; filename=\"license.yml\""), "{headers}");
    let payload = opswat::verify(&body, &pk, Some(&deployment(1))).unwrap();
    assert_eq!(payload.license, license);
    assert_eq!(payload.key, key);
    assert_eq!(payload.max_node_count, 2);
    assert_eq!(payload.product_name, "App");
    payload.check_time(chrono::Utc::now()).unwrap();

    // Re-activating the same deployment is idempotent: a fresh file, no new slot.
    let (status, _, again) =
        http_get(&app, &format!("/activation?key={key}&deployment={}&quantity=2", deployment(1))).await;
    assert_eq!(status, "HTTP/1.1 200 OK");
    assert_eq!(opswat::verify(&again, &pk, None).unwrap().machine, payload.machine);
    assert_eq!(machine_count(&app, &license).await, 1);

    // The deployment is a machine on the Keygen surface.
    let r = app.get(&app.acct(&format!("/machines/{}", payload.machine)), &app.admin()).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.attr("fingerprint"), deployment(1).as_str());
    assert_eq!(r.attr("metadata")["nodeQuantity"], 2);

    // Quantity is not summed over deployments (docs/opswat.md): deployment 1 holds 2 nodes and
    // deployment 2 takes the second slot; a third deployment finds no slot left.
    let (status, _, _) =
        http_get(&app, &format!("/activation?key={key}&deployment={}&quantity=1", deployment(2))).await;
    assert_eq!(status, "HTTP/1.1 200 OK");
    let (status, headers, body) =
        http_get(&app, &format!("/activation?key={key}&deployment={}&quantity=1", deployment(3))).await;
    assert_eq!(status, "HTTP/1.1 200 Activation failed");
    assert!(headers.contains("content-type: application/x-yaml"));
    assert_eq!(
        body,
        "error: 'Could not activate your product because the Activation Key you provided has no activations left. Deactivate an unused deployment first.'"
    );

    let (status, _, body) = http_get(&app, &format!("/deactivation?key={key}&deployment={}", deployment(1))).await;
    assert_eq!((status.as_str(), body.as_str()), ("HTTP/1.1 200 OK", "result: ok"));
    let (status, _, body) = http_get(&app, &format!("/deactivation?key={key}&deployment={}", deployment(1))).await;
    assert_eq!(status, "HTTP/1.1 200 No active license found");
    assert_eq!(body, "error: 'Could not found any active license with the given parameters'");
    let (status, _, _) =
        http_get(&app, &format!("/activation?key={key}&deployment={}&quantity=1", deployment(3))).await;
    assert_eq!(status, "HTTP/1.1 200 OK");
    assert_eq!(machine_count(&app, &license).await, 2);
}

#[tokio::test]
async fn every_parameter_row_of_the_seed() {
    let app = spawn_app().await;
    let (_, _, _, key) = app.license_fixture(json!({"floating": true})).await;
    let d = deployment(9);
    let uuid = uuid::Uuid::new_v4();
    for q in [
        format!("/activation?deployment={d}&quantity=1"),
        format!("/activation?key={key}&quantity=1"),
        format!("/activation?key={key}&deployment={d}"),
        format!("/activation?key=&deployment={d}&quantity=1"),
        "/activation".to_string(),
    ] {
        let (status, _, body) = http_get(&app, &q).await;
        assert_eq!(
            (status.as_str(), body.as_str()),
            ("HTTP/1.1 400 Bad Request", "Missing key, quantity or deployment"),
            "{q}"
        );
    }
    for q in [format!("/deactivation?key={key}"), format!("/deactivation?deployment={d}")] {
        let (status, _, body) = http_get(&app, &q).await;
        assert_eq!((status.as_str(), body.as_str()), ("HTTP/1.1 400 Bad Request", "Missing key or deployment"), "{q}");
    }
    let invalid = |verb: &str, what: &str| {
        format!("error: 'Could not {verb} your product because the {what} you provided is invalid.{CHECK}'")
    };
    let cases = [
        (format!("/activation?key=NOPE-NOPE&deployment={d}&quantity=1"), invalid("activate", "Activation Key")),
        (format!("/activation?key={key}&deployment=not-a-deployment&quantity=1"), invalid("activate", "Deployment ID")),
        (format!("/activation?key={key}&deployment={d}&quantity=0"), invalid("activate", "quantity")),
        (format!("/activation?key={key}&deployment={d}&quantity=many"), invalid("activate", "quantity")),
        (format!("/activation?key={key}&deployment={d}&quantity=2147483648"), invalid("activate", "quantity")),
        (format!("/deactivation?key=NOPE-NOPE&deployment={d}"), invalid("deactivate", "Activation Key")),
        (format!("/deactivation?key={key}&deployment=MSCL123"), invalid("deactivate", "Deployment ID")),
    ];
    for (q, expected) in cases {
        let (status, _, body) = http_get(&app, &q).await;
        assert_eq!(status, "HTTP/1.1 200 Invalid parameter", "{q}");
        assert_eq!(body, expected, "{q}");
    }
    // Key checked before deployment, deployment before quantity.
    let (_, _, body) = http_get(&app, "/activation?key=NOPE-NOPE&deployment=x&quantity=0").await;
    assert_eq!(body, invalid("activate", "Activation Key"));
    let (_, _, body) = http_get(&app, &format!("/activation?key={key}&deployment=x&quantity=0")).await;
    assert_eq!(body, invalid("activate", "Deployment ID"));
    // UUID deployment IDs are accepted too.
    let (status, _, _) = http_get(&app, &format!("/activation?key={key}&deployment={uuid}&quantity=1")).await;
    assert_eq!(status, "HTTP/1.1 200 OK");
}

#[tokio::test]
async fn suspended_and_expired_keys_fail_and_the_account_alias_pins_the_account() {
    let app = spawn_app().await;
    let (_, _, license, key) = app.license_fixture(json!({"floating": true})).await;
    let r = app.post(&app.acct(&format!("/licenses/{license}/actions/suspend")), &app.admin(), json!({})).await;
    assert_eq!(r.status, StatusCode::OK);
    let (status, _, body) =
        http_get(&app, &format!("/activation?key={key}&deployment={}&quantity=1", deployment(1))).await;
    assert_eq!(status, "HTTP/1.1 200 Activation failed");
    assert_eq!(
        body,
        "error: 'Could not activate your product because the Activation Key you provided has been suspended.'"
    );

    let policy = app.create_policy(&app.create_product("Old").await, json!({"floating": true})).await;
    let (_, old_key) = app.create_license(&policy, json!({"expiry": "2020-01-01T00:00:00Z"})).await;
    let (status, _, body) =
        http_get(&app, &format!("/activation?key={old_key}&deployment={}&quantity=1", deployment(1))).await;
    assert_eq!(status, "HTTP/1.1 200 Activation failed");
    assert!(body.ends_with("has expired.'"), "{body}");

    let (_, good_key) = app.create_license(&policy, json!({})).await;
    let alias =
        format!("/v1/accounts/{}/opswat/activation?key={good_key}&deployment={}&quantity=1", app.slug, deployment(2));
    let (status, _, _) = http_get(&app, &alias).await;
    assert_eq!(status, "HTTP/1.1 200 OK");
    let other = format!(
        "/v1/accounts/no-such-account/opswat/activation?key={good_key}&deployment={}&quantity=1",
        deployment(2)
    );
    let (status, _, _) = http_get(&app, &other).await;
    assert_eq!(status, "HTTP/1.1 200 Invalid parameter");
    let dealias = format!("/v1/accounts/{}/opswat/deactivation?key={good_key}&deployment={}", app.slug, deployment(2));
    let (_, _, body) = http_get(&app, &dealias).await;
    assert_eq!(body, "result: ok");
}

/// Keys are unique per account only. A tenant who issues another tenant's custom key later
/// neither breaks nor takes over its account-less activation: the oldest license answers; the
/// account alias answers for its own account.
#[tokio::test]
async fn a_key_copied_into_another_account_does_not_take_over_activation() {
    let app = spawn_app().await;
    let policy = app.create_policy(&app.create_product("App").await, json!({"floating": true})).await;
    let key = "VICTIM-CUSTOM-KEY-0001";
    let (victim, _) = app.create_license(&policy, json!({"key": key})).await;

    let (rival, rival_admin) = app.other_account("rival").await;
    let post = |path: &str, body: serde_json::Value| {
        let url = format!("/v1/accounts/{rival}{path}");
        let who = rival_admin.clone();
        let app = &app;
        async move { app.post(&url, &who, body).await }
    };
    let product = post("/products", json!({"data": {"type": "products", "attributes": {"name": "Copy"}}})).await.id();
    let policy = post(
        "/policies",
        json!({"data": {"type": "policies", "attributes": {"name": "P", "floating": true, "protected": false},
            "relationships": {"product": {"data": {"type": "products", "id": product}}}}}),
    )
    .await
    .id();
    let r = post(
        "/licenses",
        json!({"data": {"type": "licenses", "attributes": {"key": key},
            "relationships": {"policy": {"data": {"type": "policies", "id": policy}}}}}),
    )
    .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    let copy = r.id();

    let pk = public_key(&app).await;
    let (status, _, body) =
        http_get(&app, &format!("/activation?key={key}&deployment={}&quantity=1", deployment(1))).await;
    assert_eq!(status, "HTTP/1.1 200 OK", "{body}");
    assert_eq!(opswat::verify(&body, &pk, None).unwrap().license, victim);
    let (_, _, body) = http_get(&app, &format!("/deactivation?key={key}&deployment={}", deployment(1))).await;
    assert_eq!(body, "result: ok");

    // A server with no default account (two accounts, no --account): the older license answers.
    let dir = tempfile::tempdir().unwrap();
    let (_server, url) = app.serve_process(dir.path()).await;
    let get = |path: String| {
        let url = format!("{url}{path}");
        async move { reqwest::get(url).await.unwrap().text().await.unwrap() }
    };
    let body = get(format!("/activation?key={key}&deployment={}&quantity=1", deployment(3))).await;
    assert_eq!(opswat::verify(&body, &pk, None).unwrap().license, victim);
    assert_eq!(get(format!("/deactivation?key={key}&deployment={}", deployment(3))).await, "result: ok");

    let (status, _, body) = http_get(
        &app,
        &format!("/v1/accounts/rival/opswat/activation?key={key}&deployment={}&quantity=1", deployment(2)),
    )
    .await;
    assert_eq!(status, "HTTP/1.1 200 OK", "{body}");
    assert!(body.contains("product_name: 'Copy'"), "{body}");
    let r = app.get(&format!("/v1/accounts/rival/machines?license={copy}"), &rival_admin).await;
    assert_eq!(r.body["data"].as_array().unwrap().len(), 1, "{}", r.text);
}

/// Activate on the server → carry the file → verify and install with no network → report →
/// deactivate, using the client crate's product side, its embeddable router included.
#[tokio::test]
async fn air_gapped_round_trip() {
    let app = spawn_app().await;
    let (_, _, _, key) = app.license_fixture(json!({"floating": true, "maxMachines": 1})).await;
    let dir = tempfile::tempdir().unwrap();
    let product = Arc::new(LicenseDir::new(dir.path(), public_key(&app).await, "MSCL"));
    let deployment = product.deployment_id().unwrap();
    assert_eq!(product.deployment_id().unwrap(), deployment, "deployment IDs are kept");
    assert_eq!(product.info(chrono::Utc::now()).unwrap(), json!({"deployment_id": deployment}));

    // The product's own admin API, mounted from the client crate.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let product_addr = listener.local_addr().unwrap();
    let router = licensor_client::product::router(product.clone(), "secret-api-key".into());
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    let client = reqwest::Client::new();
    let admin_license = format!("http://{product_addr}/admin/license");

    // Online half: the activation server.
    let (_, _, file) = http_get(&app, &format!("/activation?key={key}&deployment={deployment}&quantity=1")).await;

    // Offline half: the product verifies and installs the file.
    let r = client.post(&admin_license).body(file.clone()).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    assert_eq!(r.json::<serde_json::Value>().await.unwrap(), json!({"err": "Access denied"}));
    let tampered = file.replace("max_node_count: '1'", "max_node_count: '9'");
    let r = client.post(&admin_license).header("apikey", "secret-api-key").body(tampered).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert_eq!(r.json::<serde_json::Value>().await.unwrap(), json!({"err": "Invalid license"}));
    let r = client.post(&admin_license).header("apikey", "secret-api-key").body(file.clone()).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.json::<serde_json::Value>().await.unwrap(), json!({"success": true}));
    let info: serde_json::Value =
        client.get(&admin_license).header("apikey", "secret-api-key").send().await.unwrap().json().await.unwrap();
    assert_eq!(info["deployment"], json!(deployment));
    assert_eq!(info["max_node_count"], "1");
    assert_eq!(info["licensed_engines"], "*");
    assert_eq!(info["online_activated"], false);
    assert_eq!(info["product_name"], "App");
    assert_eq!(info["expiration"], "never");

    // A file for another deployment is refused.
    // The directory outlives the check (a temporary dropped at once would be recreated, and leak).
    let other_dir = tempfile::tempdir().unwrap();
    let other = LicenseDir::new(other_dir.path(), public_key(&app).await, "MSCL");
    assert!(other.install(&file, chrono::Utc::now()).is_err());

    // Deactivate with the stored key and deployment; the slot is free again.
    let stored = product.stored_key().unwrap();
    let (_, _, body) = http_get(&app, &format!("/deactivation?key={stored}&deployment={deployment}")).await;
    assert_eq!(body, "result: ok");
    product.remove().unwrap();
    assert_eq!(product.info(chrono::Utc::now()).unwrap(), json!({"deployment_id": deployment}));
    let (status, _, _) =
        http_get(&app, &format!("/activation?key={key}&deployment={}&quantity=1", opswat::new_deployment_id("MSCL")))
            .await;
    assert_eq!(status, "HTTP/1.1 200 OK");
}

/// The machine limit holds when many deployments activate one key at once.
#[tokio::test]
async fn concurrent_activations_respect_the_limit() {
    let app = std::sync::Arc::new(spawn_app().await);
    let (_, _, license, key) = app.license_fixture(json!({"floating": true, "maxMachines": 5})).await;
    let mut tasks = Vec::new();
    for n in 0..50u8 {
        let (app, key) = (app.clone(), key.clone());
        tasks.push(tokio::spawn(async move {
            http_get(&app, &format!("/activation?key={key}&deployment={}&quantity=1", deployment(100 + n))).await.0
        }));
    }
    let mut ok = 0;
    for t in tasks {
        let status = t.await.unwrap();
        match status.as_str() {
            "HTTP/1.1 200 OK" => ok += 1,
            "HTTP/1.1 200 Activation failed" => {}
            other => panic!("unexpected {other}"),
        }
    }
    assert_eq!(ok, 5);
    assert_eq!(machine_count(&app, &license).await, 5);
}
