//! The `/api/licensing/v1` surface (docs/licensing-v1.md).

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use crate::helpers::*;

const BASE: &str = "/api/licensing/v1";

fn key_of(id: &str) -> i32 {
    licensor::domain::projection::legacy_key(id.parse().unwrap())
}

/// A product with one extension (an entitlement on one of its policies): (product id, extension id).
async fn catalogue(app: &TestApp, name: &str, ext_code: &str) -> (String, String) {
    let product = app.create_product(name).await;
    let policy = app.create_policy(&product, json!({})).await;
    let r = app
        .post(
            &app.acct("/entitlements"),
            &app.admin(),
            json!({"data": {"type": "entitlements", "attributes": {"name": format!("{ext_code} extension"), "code": ext_code}}}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    let ext = r.id();
    let r = app
        .post(
            &app.acct(&format!("/policies/{policy}/entitlements")),
            &app.admin(),
            json!({"data": [{"type": "entitlements", "id": ext}]}),
        )
        .await;
    assert!(r.status.is_success(), "{}", r.text);
    (product, ext)
}

fn admin_basic(app: &TestApp) -> As {
    As::Basic(app.admin_email.clone(), PASSWORD.into())
}

async fn create(app: &TestApp, who: &As, body: Value) -> Res {
    app.send(Method::POST, &format!("{BASE}/licenses/create"), who, Some("application/json"), &body.to_string()).await
}

async fn install(app: &TestApp, who: &As, code: &str) -> Res {
    app.send(Method::POST, &format!("{BASE}/licenses"), who, Some("text/plain"), code).await
}

#[tokio::test]
async fn catalogue_endpoints_show_products_and_extensions_by_signed_keys() {
    let app = spawn_app().await;
    let (product, ext) = catalogue(&app, "Web Framework", "ext-wf1").await;
    let who = admin_basic(&app);
    let r = app.get(&format!("{BASE}/products"), &who).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.body, json!([{"name": "Web Framework", "key": key_of(&product), "extensions": [key_of(&ext)]}]));
    let r = app.get(&format!("{BASE}/products/{}", key_of(&product)), &who).await;
    assert_eq!(r.body["name"], "Web Framework");
    let expected_ext = json!({"key": key_of(&ext), "name": "ext-wf1 extension", "code": "ext-wf1", "productName": "Web Framework", "productKey": key_of(&product)});
    let r = app.get(&format!("{BASE}/products/{}/extensions", key_of(&product)), &who).await;
    assert_eq!(r.body, json!([expected_ext.clone()]));
    let r = app.get(&format!("{BASE}/extensions"), &who).await;
    assert_eq!(r.body, json!([expected_ext.clone()]));
    let r = app.get(&format!("{BASE}/extensions/{}", key_of(&ext)), &who).await;
    assert_eq!(r.body, expected_ext);
    for path in ["/products/12345", "/products/abc", "/extensions/1", "/products/1/extensions", "/nothing"] {
        let r = app.get(&format!("{BASE}{path}"), &who).await;
        assert_eq!(r.status, StatusCode::NOT_FOUND, "{path}");
        assert_eq!(r.body["error"]["code"], "not_found");
    }
    // Bearer tokens work too.
    let r = app.get(&format!("{BASE}/products"), &app.admin()).await;
    assert_eq!(r.status, StatusCode::OK);
}

#[tokio::test]
async fn authentication_and_the_api_licensing_permission() {
    let app = spawn_app().await;
    let r = app.get(&format!("{BASE}/licenses"), &As::Anonymous).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert_eq!(r.headers["www-authenticate"], "Basic realm=\"licensor\"");
    assert_eq!(r.body["error"]["code"], "unauthorized");
    let r = app.get(&format!("{BASE}/licenses"), &As::Basic(app.admin_email.clone(), "wrong".into())).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    let r = app.get(&format!("{BASE}/licenses"), &As::Bearer("admin-nope".into())).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    // A plain user holds no api.licensing permission.
    app.create_user("user@example.com").await;
    let r = app.get(&format!("{BASE}/licenses"), &As::Basic("user@example.com".into(), PASSWORD.into())).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert_eq!(r.body["error"]["code"], "forbidden");
    let (_, _, _, key) = app.license_fixture(json!({})).await;
    let r = app.get(&format!("{BASE}/licenses"), &As::License(key)).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
}

/// A vendor moving from an installation with hard-coded keys chooses them: `licensingKey` at
/// creation of a product or an entitlement (an extension), unique in the account, the key the
/// licensing surface shows and finds (seed 001's own example keys).
#[tokio::test]
async fn product_and_extension_keys_can_be_chosen_at_creation() {
    let app = spawn_app().await;
    let who = admin_basic(&app);
    let create = |kind: &'static str, attrs: Value| {
        let app = &app;
        async move {
            app.post(&app.acct(&format!("/{kind}")), &app.admin(), json!({"data": {"type": kind, "attributes": attrs}}))
                .await
        }
    };
    let r = create("products", json!({"name": "Web Framework", "licensingKey": -1898141854})).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    let product = r.id();
    let r =
        create("entitlements", json!({"name": "WF Extension Ex1", "code": "ext-wf1", "licensingKey": 122343456})).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    let ext = r.id();
    let policy = app.create_policy(&product, json!({})).await;
    let r = app
        .post(
            &app.acct(&format!("/policies/{policy}/entitlements")),
            &app.admin(),
            json!({"data": [{"type": "entitlements", "id": ext}]}),
        )
        .await;
    assert!(r.status.is_success(), "{}", r.text);

    let r = app.get(&format!("{BASE}/products/-1898141854"), &who).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.body, json!({"name": "Web Framework", "key": -1898141854, "extensions": [122343456]}));
    let r = app.get(&format!("{BASE}/extensions/122343456"), &who).await;
    assert_eq!(r.body["productKey"], -1898141854, "{}", r.text);

    // Taken, out of range, or changed later: refused, and nothing is created.
    let r = create("products", json!({"name": "Another", "licensingKey": -1898141854})).await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.text);
    assert_eq!(r.code(), "LICENSING_KEY_TAKEN");
    assert_eq!(r.pointer(), "/data/attributes/licensingKey");
    let r = create("entitlements", json!({"name": "Again", "code": "again", "licensingKey": 122343456})).await;
    assert_eq!(r.code(), "LICENSING_KEY_TAKEN", "{}", r.text);
    let r = create("products", json!({"name": "Huge", "licensingKey": 4294967296i64})).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.text);
    let r = app
        .patch(
            &app.acct(&format!("/products/{product}")),
            &app.admin(),
            json!({"data": {"type": "products", "attributes": {"licensingKey": 7}}}),
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.text);
    let r = app.get(&format!("{BASE}/products"), &who).await;
    assert_eq!(r.body.as_array().unwrap().len(), 1, "{}", r.text);
}

/// Seed 001's clients log in with a user name (`-u 'admin:pass'`): the user whose email's
/// local part it is, when exactly one user has it; otherwise, like a wrong password, 401.
#[tokio::test]
async fn clients_log_in_with_a_user_name() {
    let app = spawn_app().await;
    // The fixture's admin is admin@<slug>.example.
    let r = app.get(&format!("{BASE}/products"), &As::Basic("admin".into(), PASSWORD.into())).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let r = app.get(&format!("{BASE}/products"), &As::Basic("ADMIN".into(), PASSWORD.into())).await;
    assert_eq!(r.status, StatusCode::OK, "user names are not case-sensitive: {}", r.text);
    let r = app.get(&format!("{BASE}/products"), &As::Basic("admin".into(), "wrong".into())).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    let r = app.get(&format!("{BASE}/products"), &As::Basic("adm".into(), PASSWORD.into())).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED, "a prefix of a name is no name");
    // Two users named alike: the name is ambiguous, and no one is logged in by it.
    app.create_user("admin@elsewhere.example").await;
    let r = app.get(&format!("{BASE}/products"), &As::Basic("admin".into(), PASSWORD.into())).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{}", r.text);
    assert_eq!(r.body["error"]["message"], "the credentials are invalid");
    // The full email still works.
    let r = app.get(&format!("{BASE}/products"), &As::Basic(app.admin_email.clone(), PASSWORD.into())).await;
    assert_eq!(r.status, StatusCode::OK);
}

/// Email and password name no account: with several on the server and none chosen by
/// `--account`, the 401 says why instead of calling good credentials invalid. Tokens still work.
#[tokio::test]
async fn password_login_needs_a_default_account_once_there_are_several() {
    let app = spawn_app().await;
    let (_, As::Bearer(other_admin)) = app.other_account("second").await else { panic!("a token") };
    let data_dir = tempfile::tempdir().unwrap();
    let (_server, url) = app.serve_process(data_dir.path()).await;
    let licenses = format!("{url}{BASE}/licenses");
    let basic = app.client.get(&licenses).basic_auth(&app.admin_email, Some(PASSWORD)).send().await.unwrap();
    assert_eq!(basic.status(), StatusCode::UNAUTHORIZED);
    let body: Value = basic.json().await.unwrap();
    assert!(body["error"]["message"].as_str().unwrap().contains("--account"), "{body}");
    for token in [app.admin_token.clone(), other_admin] {
        let r = app.client.get(&licenses).bearer_auth(token).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::OK);
    }
}

#[tokio::test]
async fn create_install_delete_and_renew() {
    let app = spawn_app().await;
    let (engine, _) = catalogue(&app, "Engine", "ext-e").await;
    let (web, web_ext) = catalogue(&app, "Web Framework", "ext-wf").await;
    let who = admin_basic(&app);
    let body = json!({
        "licenseVersion": 3,
        "licenseeId": "00.000.000/0000-00",
        "licenseeName": "Empresa Licenciada Ltda.",
        "expiration": "2099-12-31",
        "licenses": [
            {"productKey": key_of(&engine), "type": "nominalUser", "quantity": 50},
            {"productKey": key_of(&web), "type": "S", "quantity": 3, "extensions": [key_of(&web_ext)]}
        ]
    });
    let r = create(&app, &who, body.clone()).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert!(r.headers["content-type"].to_str().unwrap().starts_with("text/plain"));
    let code = r.text.clone();
    assert!(code.len() > 100 && !code.contains('{'), "an opaque code: {code}");

    let r = app.get(&format!("{BASE}/licenses"), &who).await;
    let list = r.body.as_array().unwrap().clone();
    assert_eq!(list.len(), 2);
    let licenser_key = list[0]["licenserKey"].as_i64().unwrap();
    assert!(list.iter().all(|l| l["licenserKey"].as_i64() == Some(licenser_key)), "one grant, one licenserKey");
    let engine_row = list.iter().find(|l| l["productKey"] == key_of(&engine)).unwrap();
    assert_eq!(
        engine_row,
        &json!({"productName": "Engine", "type": "nominalUser", "quantity": 50, "extensions": [], "licenseeName": "Empresa Licenciada Ltda.",
                "licenserKey": licenser_key, "productKey": key_of(&engine), "licenseeId": "00.000.000/0000-00", "expiration": "2099-12-31"})
    );
    let r = app.get(&format!("{BASE}/licenses/{}", key_of(&web)), &who).await;
    assert_eq!(r.body["type"], "simultaneousUser");
    assert_eq!(r.body["quantity"], 3);
    assert_eq!(r.body["extensions"], json!([key_of(&web_ext)]));

    // The same licenses on the Keygen surface: limits and entitlements enforced there.
    let r = app.get(&app.acct(&format!("/licenses?product={web}")), &app.admin()).await;
    let web_license = &r.body["data"][0];
    assert_eq!(web_license["attributes"]["maxMachines"], 3);
    assert_eq!(web_license["attributes"]["expiry"], "2099-12-31T23:59:59.999Z");
    let web_license_id = web_license["id"].as_str().unwrap().to_string();

    // Installing the code again changes nothing.
    let r = install(&app, &who, &code).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.text, "");
    assert_eq!(app.get(&format!("{BASE}/licenses"), &who).await.body.as_array().unwrap().len(), 2);

    // DELETE: 200, then 204 ("product already has no license"); the code restores it.
    let r = app.send(Method::DELETE, &format!("{BASE}/licenses/{}", key_of(&web)), &who, None, "").await;
    assert_eq!(r.status, StatusCode::OK);
    let r = app.send(Method::DELETE, &format!("{BASE}/licenses/{}", key_of(&web)), &who, None, "").await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    let r = app.get(&format!("{BASE}/licenses/{}", key_of(&web)), &who).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    let r = install(&app, &who, &code).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let r = app.get(&app.acct(&format!("/licenses/{web_license_id}")), &app.admin()).await;
    assert_eq!(r.status, StatusCode::OK, "restored with its original id");
    assert_eq!(app.get(&format!("{BASE}/licenses"), &who).await.body.as_array().unwrap().len(), 2);

    // Renewal by licenserKey: new expiry and quantity on the same licenses.
    let mut renewal = body.clone();
    renewal["licenserKey"] = json!(licenser_key);
    renewal["expiration"] = json!("2100-06-30");
    renewal["licenses"][0]["quantity"] = json!(60);
    let r = create(&app, &who, renewal.clone()).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let list = app.get(&format!("{BASE}/licenses"), &who).await.body;
    assert_eq!(list.as_array().unwrap().len(), 2);
    let engine_row = list.as_array().unwrap().iter().find(|l| l["productKey"] == key_of(&engine)).unwrap();
    assert_eq!(engine_row["quantity"], 60);
    assert_eq!(engine_row["expiration"], "2100-06-30");
    assert_eq!(engine_row["licenserKey"], licenser_key);
    renewal["licenserKey"] = json!(12345);
    let r = create(&app, &who, renewal).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn bad_requests_are_clear_and_change_nothing() {
    let app = spawn_app().await;
    let (engine, _) = catalogue(&app, "Engine", "ext-e").await;
    let who = admin_basic(&app);
    let good = json!({"licenseeId": "1", "licenseeName": "L", "expiration": "2099-12-31",
                      "licenses": [{"productKey": key_of(&engine), "type": "U", "quantity": 5}]});
    let r =
        app.send(Method::POST, &format!("{BASE}/licenses/create"), &who, Some("text/plain"), &good.to_string()).await;
    assert_eq!(r.status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    assert_eq!(r.body["error"]["code"], "unsupported_media_type");
    let r = app.send(Method::POST, &format!("{BASE}/licenses"), &who, Some("application/json"), "x").await;
    assert_eq!(r.status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    let r =
        app.send(Method::POST, &format!("{BASE}/licenses/create"), &who, Some("application/json"), "{not json").await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(r.body["error"]["code"], "malformed_json");
    let mut cases: Vec<(Value, StatusCode, &str)> = Vec::new();
    let with = |path: &str, v: Value| {
        let mut b = good.clone();
        let target = b.pointer_mut(path).unwrap();
        *target = v;
        b
    };
    cases.push((with("/licenses/0/type", json!("weekly")), StatusCode::BAD_REQUEST, "invalid_type"));
    cases.push((with("/licenses/0/type", json!(3)), StatusCode::BAD_REQUEST, "invalid_field"));
    cases.push((with("/licenses/0/quantity", json!("5")), StatusCode::BAD_REQUEST, "invalid_field"));
    cases.push((with("/licenses/0/quantity", json!(-1)), StatusCode::BAD_REQUEST, "invalid_field"));
    // Seats (S) and processors (P) are sold from 1, like every license's machine and core limit.
    let mut v = with("/licenses/0/quantity", json!(0));
    v["licenses"][0]["type"] = json!("S");
    cases.push((v, StatusCode::BAD_REQUEST, "invalid_field"));
    cases.push((with("/licenses/0/productKey", json!(1)), StatusCode::NOT_FOUND, "not_found"));
    cases.push((with("/licenses/0/productKey", json!(1e12)), StatusCode::BAD_REQUEST, "invalid_field"));
    cases.push((with("/licenses", json!([])), StatusCode::BAD_REQUEST, "invalid_field"));
    cases.push((with("/expiration", json!("31/12/2099")), StatusCode::BAD_REQUEST, "invalid_date"));
    cases.push((with("/licenseeName", json!(null)), StatusCode::BAD_REQUEST, "invalid_field"));
    let mut v = good.clone();
    v["licenses"][0]["extensions"] = json!([42]);
    cases.push((v, StatusCode::NOT_FOUND, "not_found"));
    let mut v = good.clone();
    v["licenseVersion"] = json!(9);
    cases.push((v, StatusCode::BAD_REQUEST, "unsupported_license_version"));
    cases.push((json!([1, 2]), StatusCode::BAD_REQUEST, "invalid_body"));
    for (body, status, code) in cases {
        let r = create(&app, &who, body.clone()).await;
        assert_eq!(r.status, status, "{body}: {}", r.text);
        assert_eq!(r.body["error"]["code"], code, "{body}");
        assert!(r.body["error"]["message"].as_str().is_some_and(|m| !m.is_empty()));
    }
    // Nothing was written by any of them.
    assert_eq!(app.get(&format!("{BASE}/licenses"), &who).await.body, json!([]));
    let r = app.get(&app.acct("/groups"), &app.admin()).await;
    assert_eq!(r.body["data"].as_array().unwrap().len(), 0);

    // Tampered or foreign codes are refused.
    let code = create(&app, &who, good).await.text;
    let mut raw = base64::Engine::decode(&base64::engine::general_purpose::STANDARD, code.trim()).unwrap();
    raw[30] ^= 1;
    let r = install(&app, &who, &base64::Engine::encode(&base64::engine::general_purpose::STANDARD, &raw)).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(r.body["error"]["code"], "invalid_code");
    let r = install(&app, &who, "definitely not a code").await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    let (_, other_admin) = app.other_account("licensing-other").await;
    let r = install(&app, &other_admin, &code).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "another account cannot install it");
    let r = app.get(&format!("{BASE}/licenses"), &other_admin).await;
    assert_eq!(r.body, json!([]), "nor see our licenses");
}
