//! The `/accounts/{account_id}/core/v1` surface (docs/core-v1.md).

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use crate::helpers::*;

pub fn core(app: &TestApp, path: &str) -> String {
    format!("/accounts/{}/core/v1{path}", app.account_id)
}

pub async fn signing_key(app: &TestApp) -> ed25519_dalek::SigningKey {
    let row = licensor::store::accounts::find(&app.db, &app.account_id).await.unwrap().unwrap();
    licensor::crypto::AccountKeys::unseal(&app.master, row.id, &row.ed25519_secret, &row.rsa_secret).unwrap().ed25519
}

/// A licenseText signed by the test account, as a vendor's own license system would issue it.
pub async fn text_for(app: &TestApp, product: &str, serial: &str, end: &str, capacity: &str) -> String {
    let nlf = licensor::domain::nlf::Nlf {
        serial: serial.into(),
        product: product.into(),
        product_version: "1.0".into(),
        license_id: None,
        key: None,
        capacity: capacity.into(),
        capacity2: "0".into(),
        kind: "machines".into(),
        host_id: None,
        features: vec!["feature-a".into()],
        protocol: "ENT_TB".into(),
        evaluation: false,
        start: Some("2026-01-01T00:00:00.000000Z".into()),
        end: Some(end.into()),
        addons: vec![json!({"startDate": "2026-01-01T00:00:00.000000Z", "capacity": "10", "features": "x"})],
    };
    licensor::domain::nlf::render(&nlf, &signing_key(app).await)
}

fn assert_problem(r: &Res, status: StatusCode, n: u16) {
    assert_eq!(r.status, status, "{}", r.text);
    assert_eq!(r.headers["content-type"], "application/problem+json");
    assert_eq!(r.body["type"], format!("https://astra.netapp.io/problems/{n}"), "{}", r.text);
    assert_eq!(r.body["status"], json!(status.as_u16().to_string()), "status is a string");
    assert!(r.body["title"].is_string() && r.body["detail"].is_string());
    assert!(r.body["correlationID"].is_string());
}

async fn post_license(app: &TestApp, body: &str) -> Res {
    app.send(Method::POST, &core(app, "/licenses"), &app.admin(), Some("application/astra-license+json"), body).await
}

#[tokio::test]
async fn authentication_and_tenant_isolation_problems() {
    let app = spawn_app().await;
    let (_, _, license, key) = app.license_fixture(json!({})).await;
    assert_problem(&app.get(&core(&app, "/licenses"), &As::Anonymous).await, StatusCode::UNAUTHORIZED, 3);
    assert_problem(&app.get(&core(&app, "/licenses"), &As::Bearer("nope".into())).await, StatusCode::UNAUTHORIZED, 4);
    assert_problem(&app.get(&core(&app, "/licenses"), &As::License(key)).await, StatusCode::UNAUTHORIZED, 4);
    // A plain user may read (their own) but not write.
    app.create_user("u@example.com").await;
    let t = app.post(&app.acct("/tokens"), &As::Basic("u@example.com".into(), PASSWORD.into()), json!(null)).await;
    let user = As::Bearer(t.attr("token").as_str().unwrap().to_string());
    let r = app.get(&core(&app, "/licenses"), &user).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.body["items"], json!([]));
    assert_problem(&app.delete(&core(&app, &format!("/licenses/{license}")), &user).await, StatusCode::NOT_FOUND, 1);
    assert_problem(&post_license(&app, "{}").await, StatusCode::BAD_REQUEST, 8);
    let r = app.send(Method::POST, &core(&app, "/licenses"), &user, Some("application/json"), "{}").await;
    assert_problem(&r, StatusCode::FORBIDDEN, 11);
    // Another tenant: never 403, always not found.
    let (other_id, other_admin) = app.other_account("astra-other").await;
    let r = app.get(&format!("/accounts/{other_id}/core/v1/licenses"), &app.admin()).await;
    assert_problem(&r, StatusCode::NOT_FOUND, 2);
    let r = app.get(&core(&app, &format!("/licenses/{license}")), &other_admin).await;
    assert_problem(&r, StatusCode::NOT_FOUND, 2);
    let r = app.delete(&core(&app, &format!("/licenses/{license}")), &other_admin).await;
    assert_problem(&r, StatusCode::NOT_FOUND, 1);
    let r = app.get("/accounts/00000000-0000-0000-0000-000000000000/core/v1/licenses", &app.admin()).await;
    assert_problem(&r, StatusCode::NOT_FOUND, 2);
}

#[tokio::test]
async fn keygen_licenses_render_as_signed_resources() {
    let app = spawn_app().await;
    let product = app.create_product("Astra Control Center").await;
    let policy = app.create_policy(&product, json!({"floating": true, "maxMachines": 4})).await;
    let (license, _) = app.create_license(&policy, json!({"expiry": "2099-01-01T00:00:00Z"})).await;
    let r = app.get(&core(&app, &format!("/licenses/{license}")), &app.admin()).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.headers["content-type"], "application/json");
    let etag = r.headers["etag"].to_str().unwrap().to_string();
    assert!(etag.starts_with('"') && etag.len() == 34, "{etag}");
    let res = &r.body;
    assert_eq!(res["type"], "application/astra-license");
    assert_eq!(res["version"], "1.0");
    assert_eq!(res["id"], json!(license));
    assert_eq!(res["allocation"], json!(app.account_id));
    assert_eq!(res["product"], "Astra Control Center");
    assert_eq!(res["capacity"], "4");
    assert_eq!(res["capacity2"], "0");
    assert_eq!(res["isEvaluation"], "false");
    assert_eq!(res["validUntilTimestamp"], "2099-01-01T00:00:00.000000Z");
    assert_eq!(res["productSN"].as_str().unwrap().len(), 9);
    assert_eq!(res["metadata"]["labels"], json!([]));
    for v in res.as_object().unwrap().values() {
        assert!(v.is_string() || v.is_object(), "every field is a string: {v}");
    }
    // The licenseText is an NLF whose Signature covers the exact bytes of statusResp.
    let doc = STANDARD.decode(res["licenseText"].as_str().unwrap()).unwrap();
    #[derive(serde::Deserialize)]
    struct Doc<'a> {
        #[serde(rename = "statusResp", borrow)]
        status_resp: &'a serde_json::value::RawValue,
        #[serde(rename = "Signature")]
        signature: String,
    }
    let parsed: Doc = serde_json::from_slice(&doc).unwrap();
    let sig = ed25519_dalek::Signature::from_slice(&STANDARD.decode(parsed.signature).unwrap()).unwrap();
    signing_key(&app).await.verifying_key().verify_strict(parsed.status_resp.get().as_bytes(), &sig).unwrap();
    let status: Value = serde_json::from_str(parsed.status_resp.get()).unwrap();
    assert_eq!(status["serialNumber"], res["productSN"]);
    // The resource's own media type when asked for; the same ETag while nothing changes.
    let r2 = app
        .client
        .get(app.url(&core(&app, &format!("/licenses/{license}"))))
        .bearer_auth(&app.admin_token)
        .header("accept", "application/astra-license+json")
        .send()
        .await
        .unwrap();
    assert_eq!(r2.headers()["content-type"], "application/astra-license+json");
    assert_eq!(r2.headers()["etag"].to_str().unwrap(), etag);
    assert_problem(
        &app.get(&core(&app, &format!("/licenses/{license}?x=1")), &app.admin()).await,
        StatusCode::BAD_REQUEST,
        6,
    );
    assert_problem(&app.get(&core(&app, "/licenses/not-a-uuid"), &app.admin()).await, StatusCode::NOT_FOUND, 2);
    assert_problem(
        &app.get(&core(&app, &format!("/licenses/{}", uuid::Uuid::new_v4())), &app.admin()).await,
        StatusCode::NOT_FOUND,
        2,
    );
}

#[tokio::test]
async fn list_parameters() {
    let app = spawn_app().await;
    let a = app.create_product("Alpha").await;
    let b = app.create_product("Beta").await;
    let pa = app.create_policy(&a, json!({"floating": true, "maxMachines": 2})).await;
    let pb = app.create_policy(&b, json!({"floating": true, "maxMachines": 7})).await;
    let (la, _) = app.create_license(&pa, json!({})).await;
    app.create_license(&pb, json!({})).await;
    let r = app.get(&core(&app, "/licenses"), &app.admin()).await;
    assert_eq!(r.body["type"], "application/astra-licenses");
    assert_eq!(r.body["items"].as_array().unwrap().len(), 2);
    let r = app.get(&core(&app, "/licenses?include=id,product&filter=product%20eq%20'Alpha'"), &app.admin()).await;
    assert_eq!(r.body["items"], json!([[la, "Alpha"]]));
    let r = app.get(&core(&app, "/licenses?filter=capacity%20gt%20'3'&include=product"), &app.admin()).await;
    assert_eq!(r.body["items"], json!([["Beta"]]));
    let r = app.get(&core(&app, "/licenses?limit=1"), &app.admin()).await;
    assert_eq!(r.body["items"].as_array().unwrap().len(), 1);
    for q in ["orderBy=product", "skip=1", "count=true", "continue=abc"] {
        let r = app.get(&core(&app, &format!("/licenses?{q}")), &app.admin()).await;
        assert_problem(&r, StatusCode::BAD_REQUEST, 6);
        assert_eq!(r.body["invalidParams"][0]["name"], q.split('=').next().unwrap());
    }
    for q in ["limit=0", "limit=x", "filter=product%20like%20'A'", "include=a%20b", "bogus=1"] {
        assert_problem(
            &app.get(&core(&app, &format!("/licenses?{q}")), &app.admin()).await,
            StatusCode::BAD_REQUEST,
            5,
        );
    }
}

#[tokio::test]
async fn delete_then_reinstall_the_same_text_and_post_errors() {
    let app = spawn_app().await;
    let product = app.create_product("Astra Control Center").await;
    let policy = app.create_policy(&product, json!({"floating": true, "maxMachines": 4})).await;
    let (license, key) = app.create_license(&policy, json!({})).await;
    let res = app.get(&core(&app, &format!("/licenses/{license}")), &app.admin()).await.body;
    let text = res["licenseText"].as_str().unwrap().to_string();
    let r = app.delete(&core(&app, &format!("/licenses/{license}")), &app.admin()).await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    assert_problem(
        &app.get(&core(&app, &format!("/licenses/{license}")), &app.admin()).await,
        StatusCode::NOT_FOUND,
        2,
    );
    assert_problem(
        &app.delete(&core(&app, &format!("/licenses/{license}")), &app.admin()).await,
        StatusCode::NOT_FOUND,
        1,
    );
    assert_eq!(app.get(&app.acct(&format!("/licenses/{license}")), &app.admin()).await.status, StatusCode::NOT_FOUND);

    let body = json!({"type": "application/astra-license", "version": "1.0", "licenseText": text, "allocation": app.account_id,
                      "metadata": {"labels": [{"name": "site", "value": "lab"}]}});
    let r = post_license(&app, &body.to_string()).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    assert_eq!(r.body["id"], json!(license), "the text restores the same license");
    assert_eq!(r.body["licenseText"], json!(text), "kept byte for byte");
    assert_eq!(r.body["metadata"]["labels"], json!([{"name": "site", "value": "lab"}]));
    let location = r.headers["location"].to_str().unwrap();
    assert!(
        location.starts_with("http://")
            && location.ends_with(&format!("/accounts/{}/core/v1/licenses/{license}", app.account_id)),
        "{location}"
    );
    let k = app.get(&app.acct(&format!("/licenses/{license}")), &app.admin()).await;
    assert_eq!(k.attr("key"), key.as_str(), "the same key validates again");
    assert_eq!(k.attr("maxMachines"), 4);
    assert_problem(&post_license(&app, &body.to_string()).await, StatusCode::CONFLICT, 10);

    let doc = String::from_utf8(STANDARD.decode(&text).unwrap()).unwrap();
    let cases: Vec<(String, StatusCode, u16)> = vec![
        ("{not json".into(), StatusCode::BAD_REQUEST, 7),
        (json!({"version": "1.0", "licenseText": text}).to_string(), StatusCode::BAD_REQUEST, 8),
        (json!({"type": "application/astra-license", "version": "2.0", "licenseText": text}).to_string(), StatusCode::BAD_REQUEST, 8),
        (json!({"type": "application/astra-license", "version": "1.0", "licenseText": text, "capacity": "9"}).to_string(), StatusCode::BAD_REQUEST, 8),
        (json!({"type": "application/astra-license", "version": "1.0", "licenseText": 5}).to_string(), StatusCode::BAD_REQUEST, 8),
        (json!({"type": "application/astra-license", "version": "1.0", "licenseText": "%%%"}).to_string(), StatusCode::BAD_REQUEST, 8),
        (json!({"type": "application/astra-license", "version": "1.0", "licenseText": STANDARD.encode(doc.replace("\"4\"", "\"40\""))}).to_string(), StatusCode::BAD_REQUEST, 9),
        (json!({"type": "application/astra-license", "version": "1.0", "licenseText": STANDARD.encode(format!("{doc}{doc}"))}).to_string(), StatusCode::BAD_REQUEST, 169),
        (json!({"type": "application/astra-license", "version": "1.0", "licenseText": text, "allocation": uuid::Uuid::new_v4()}).to_string(), StatusCode::BAD_REQUEST, 9),
        (json!({"type": "application/astra-license", "version": "1.0", "licenseText": text_for(&app, "No Such Product", "111111111", "2099-01-01T00:00:00Z", "1").await}).to_string(), StatusCode::BAD_REQUEST, 20),
        (json!({"type": "application/astra-license", "version": "1.0", "licenseText": text_for(&app, "Astra Control Center", "111111112", "2020-01-01T00:00:00Z", "1").await}).to_string(), StatusCode::CONFLICT, 23),
    ];
    for (body, status, n) in cases {
        assert_problem(&post_license(&app, &body).await, status, n);
    }
    // A text signed by another account does not verify here.
    let (other_id, other_admin) = app.other_account("astra-signer").await;
    let other_product = app
        .post(
            &format!("/v1/accounts/{other_id}/products"),
            &other_admin,
            json!({"data": {"type": "products", "attributes": {"name": "Astra Control Center"}}}),
        )
        .await;
    assert_eq!(other_product.status, StatusCode::CREATED);
    let r = app.get(&format!("/accounts/{other_id}/core/v1/licenses"), &other_admin).await;
    assert_eq!(r.status, StatusCode::OK);
    let body = json!({"type": "application/astra-license", "version": "1.0", "licenseText": text});
    let r = app
        .send(
            Method::POST,
            &format!("/accounts/{other_id}/core/v1/licenses"),
            &other_admin,
            Some("application/json"),
            &body.to_string(),
        )
        .await;
    assert_problem(&r, StatusCode::BAD_REQUEST, 9);
    assert_eq!(r.body["invalidFields"][0]["name"], "licenseText");
}

#[tokio::test]
async fn vendor_issued_text_creates_a_license_with_entitlements_and_addons() {
    let app = spawn_app().await;
    app.create_product("Astra Control Center").await;
    let text = text_for(&app, "Astra Control Center", "320000046", "2099-08-06T00:00:00.000000Z", "5").await;
    let body = json!({"type": "application/astra-license", "version": "1.0", "licenseText": text});
    let r = post_license(&app, &body.to_string()).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    assert_eq!(r.body["productSN"].as_str().unwrap().len(), 9);
    assert_eq!(r.body["capacity"], "5");
    assert_eq!(r.body["features"], "feature-a");
    assert_eq!(r.body["licenseProtocol"], "ENT_TB");
    assert_eq!(r.body["addons"][0]["capacity"], "10");
    assert_eq!(r.body["validUntilTimestamp"], "2099-08-06T00:00:00.000000Z");
    let id = r.body["id"].as_str().unwrap().to_string();
    let k = app.get(&app.acct(&format!("/licenses/{id}")), &app.admin()).await;
    assert_eq!(k.attr("maxMachines"), 5);
    let ents = app.get(&app.acct(&format!("/licenses/{id}/entitlements")), &app.admin()).await;
    assert_eq!(ents.body["data"][0]["attributes"]["code"], "feature-a");
}

#[tokio::test]
async fn put_preserves_server_fields_honours_preconditions_and_renews() {
    let app = spawn_app().await;
    let product = app.create_product("Astra Control Center").await;
    let policy = app.create_policy(&product, json!({"floating": true, "maxMachines": 4})).await;
    let (license, _) = app.create_license(&policy, json!({"expiry": "2030-01-01T00:00:00Z"})).await;
    let path = core(&app, &format!("/licenses/{license}"));
    let put = |body: Value, if_match: Option<String>| {
        let app = &app;
        let path = path.clone();
        async move {
            let mut req = app
                .client
                .put(app.url(&path))
                .bearer_auth(&app.admin_token)
                .header("content-type", "application/astra-license+json");
            if let Some(m) = if_match {
                req = req.header("if-match", m);
            }
            let resp = req.body(body.to_string()).send().await.unwrap();
            let status = resp.status();
            let headers = resp.headers().clone();
            let text = resp.text().await.unwrap();
            Res { status, headers, body: serde_json::from_str(&text).unwrap_or(Value::Null), text }
        }
    };
    let r = app.get(&path, &app.admin()).await;
    let etag = r.headers["etag"].to_str().unwrap().to_string();
    let mut res = r.body.clone();

    let mut changed = res.clone();
    changed["capacity"] = json!("400");
    let r = put(changed, None).await;
    assert_problem(&r, StatusCode::CONFLICT, 10);
    assert_eq!(r.body["invalidFields"][0]["name"], "capacity");
    let r = put(res.clone(), Some("\"0123\"".into())).await;
    assert_eq!(r.status, StatusCode::PRECONDITION_FAILED);
    assert_eq!(r.body["type"], "urn:licensor:problems:precondition-failed");

    res["metadata"]["labels"] = json!([{"name": "env", "value": "prod"}]);
    let r = put(res.clone(), Some(etag.clone())).await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.text);
    assert_eq!(r.text, "");
    let after = app.get(&path, &app.admin()).await;
    assert_eq!(after.body["metadata"]["labels"], json!([{"name": "env", "value": "prod"}]));
    assert_ne!(after.headers["etag"].to_str().unwrap(), etag, "the ETag follows the resource");
    assert_eq!(put(res.clone(), Some(etag)).await.status, StatusCode::PRECONDITION_FAILED, "the old ETag is stale");

    // Renewal: a new text for the same serial moves the expiry.
    let serial = after.body["productSN"].as_str().unwrap().to_string();
    let mut renewed = after.body.clone();
    renewed["licenseText"] =
        json!(text_for(&app, "Astra Control Center", &serial, "2040-01-01T00:00:00.000000Z", "8").await);
    let r = put(renewed.clone(), None).await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.text);
    let k = app.get(&app.acct(&format!("/licenses/{license}")), &app.admin()).await;
    assert_eq!(k.attr("expiry"), "2040-01-01T00:00:00.000Z");
    assert_eq!(k.attr("maxMachines"), 8);
    renewed["licenseText"] =
        json!(text_for(&app, "Astra Control Center", "999999999", "2040-01-01T00:00:00.000000Z", "8").await);
    let r = put(renewed, None).await;
    assert_problem(&r, StatusCode::CONFLICT, 10);
    let missing = core(&app, &format!("/licenses/{}", uuid::Uuid::new_v4()));
    let body = json!({"type": "application/astra-license", "version": "1.0"}).to_string();
    assert_problem(
        &app.send(Method::PUT, &missing, &app.admin(), Some("application/json"), &body).await,
        StatusCode::NOT_FOUND,
        1,
    );
}

/// Seeds 003/004: a value of the wrong format is refused by the schema (400, problem 8) before
/// anything is compared with the stored license (409), and `deviceCredentialID` is an Astra
/// identifier, kept and shown back.
#[tokio::test]
async fn the_schema_is_checked_first_and_device_credentials_are_kept() {
    let app = spawn_app().await;
    let product = app.create_product("Astra Control Center").await;
    let policy = app.create_policy(&product, json!({"floating": true, "maxMachines": 4})).await;
    let (license, _) = app.create_license(&policy, json!({"expiry": "2030-01-01T00:00:00Z"})).await;
    let path = core(&app, &format!("/licenses/{license}"));
    let put = |body: Value| {
        let (app, path) = (&app, path.clone());
        async move {
            app.send(Method::PUT, &path, &app.admin(), Some("application/astra-license+json"), &body.to_string()).await
        }
    };
    let current = app.get(&path, &app.admin()).await.body;
    for (field, value) in [
        ("isEvaluation", json!("maybe")),
        ("validUntilTimestamp", json!("next tuesday")),
        ("validFromTimestamp", json!("2026-13-45")),
        ("addons", json!([{"startDate": "soon"}])),
        ("addons", json!([{"colour": "blue"}])),
        ("addons", json!(["not an object"])),
        ("deviceCredentialID", json!("not-an-identifier")),
        ("deviceCredentialID", json!("6F9619FF-8B86-D011-B42D-00C04FC964FF")),
    ] {
        let mut body = current.clone();
        body[field] = value.clone();
        let r = put(body).await;
        assert_problem(&r, StatusCode::BAD_REQUEST, 8);
        assert!(r.text.contains(field), "{field} {value}: {}", r.text);
    }
    // A well-formed value that differs from the stored one is still a conflict.
    let mut body = current.clone();
    body["isEvaluation"] = json!(if current["isEvaluation"] == "true" { "false" } else { "true" });
    assert_problem(&put(body).await, StatusCode::CONFLICT, 10);

    let credential = "3fa85f64-5717-4562-b3fc-2c963f66afa6";
    let mut body = current.clone();
    body["deviceCredentialID"] = json!(credential);
    let r = put(body).await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.text);
    assert_eq!(app.get(&path, &app.admin()).await.body["deviceCredentialID"], credential);
    // On creation too.
    let text = text_for(&app, "Astra Control Center", "222222222", "2040-01-01T00:00:00.000000Z", "2").await;
    let nil = "00000000-0000-0000-0000-000000000000";
    let body =
        json!({"type": "application/astra-license", "version": "1.0", "licenseText": text, "deviceCredentialID": nil});
    let r = post_license(&app, &body.to_string()).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    assert_eq!(r.body["deviceCredentialID"], nil);
}

#[tokio::test]
async fn entitlements_are_computed_with_current_consumption() {
    let app = spawn_app().await;
    let product = app.create_product("Astra Control Center").await;
    let policy = app.create_policy(&product, json!({"floating": true, "maxMachines": 3})).await;
    let (license, key) = app.create_license(&policy, json!({})).await;
    let e = app
        .post(
            &app.acct("/entitlements"),
            &app.admin(),
            json!({"data": {"type": "entitlements", "attributes": {"name": "Snapshots", "code": "snapshots"}}}),
        )
        .await;
    app.post(
        &app.acct(&format!("/licenses/{license}/entitlements")),
        &app.admin(),
        json!({"data": [{"type": "entitlements", "id": e.id()}]}),
    )
    .await;
    let (status, _, _) =
        crate::opswat::http_get(&app, &format!("/activation?key={key}&deployment=MSCL{:032X}&quantity=1", 1)).await;
    assert_eq!(status, "HTTP/1.1 200 OK");
    let r = app.get(&core(&app, "/entitlements?count=true"), &app.admin()).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.body["type"], "application/astra-entitlements");
    assert_eq!(r.body["metadata"]["count"], 2);
    let items = r.body["items"].as_array().unwrap();
    let machines = items.iter().find(|i| i["entitlementType"] == "machines").unwrap();
    assert_eq!(machines["entitlementValue"], "3");
    assert_eq!(machines["entitlementConsumption"], "1");
    assert_eq!(machines["sourceLicense"], json!(license));
    let snap = items.iter().find(|i| i["entitlementType"] == "snapshots").unwrap();
    assert_eq!(snap["entitlementValue"], "1");
    let id = machines["id"].as_str().unwrap();
    let one = app.get(&core(&app, &format!("/entitlements/{id}")), &app.admin()).await;
    assert_eq!(one.body["id"], json!(id), "ids are stable across recalculation");
    let r = app.get(&core(&app, "/entitlements?limit=1"), &app.admin()).await;
    let next = r.body["metadata"]["continue"].as_str().unwrap().to_string();
    let r2 = app.get(&core(&app, &format!("/entitlements?limit=1&continue={next}")), &app.admin()).await;
    assert_ne!(r.body["items"][0]["id"], r2.body["items"][0]["id"]);
    let r = app
        .get(&core(&app, "/entitlements?orderBy=entitlementType%20desc&include=entitlementType"), &app.admin())
        .await;
    assert_eq!(r.body["items"], json!([["snapshots"], ["machines"]]));
    assert_problem(
        &app.get(&core(&app, &format!("/entitlements/{}", uuid::Uuid::new_v4())), &app.admin()).await,
        StatusCode::NOT_FOUND,
        2,
    );
}

/// The license collection reads the database a page at a time: a filter finds a license past
/// the first page read, and `limit` cuts the answer (with a continuation) without a cap on
/// what was looked at.
#[tokio::test]
async fn license_collection_filters_past_the_first_page_read() {
    let app = spawn_app().await;
    let old = app.create_product("Oldest").await;
    let old_policy = app.create_policy(&old, json!({"floating": true, "maxMachines": 2})).await;
    let (first, _) = app.create_license(&old_policy, json!({})).await;
    let newer = app.create_product("Newer").await;
    let policy = app.create_policy(&newer, json!({"floating": true, "maxMachines": 3})).await;
    for _ in 0..205 {
        app.create_license(&policy, json!({})).await;
    }
    let r = app.get(&core(&app, "/licenses?include=id&filter=product%20eq%20'Oldest'"), &app.admin()).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.body["items"], json!([[first]]));
    let r = app.get(&core(&app, "/licenses?include=id&limit=3"), &app.admin()).await;
    assert_eq!(r.body["items"].as_array().unwrap().len(), 3, "{}", r.text);
    let r = app.get(&core(&app, "/licenses?include=id"), &app.admin()).await;
    assert_eq!(r.body["items"].as_array().unwrap().len(), 206);
}
