//! A bad-input sweep over the three non-Keygen surfaces: every malformed request gets the
//! surface's own error format, never a 500, and changes nothing.

use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::helpers::*;
use crate::opswat::http_get;

async fn license_count(app: &TestApp) -> usize {
    app.get(&app.acct("/licenses"), &app.admin()).await.body["data"].as_array().unwrap().len()
}

#[tokio::test]
async fn malformed_requests_get_clear_errors_and_change_nothing() {
    let app = spawn_app().await;
    let (_, _, license, key) = app.license_fixture(json!({"floating": true})).await;
    let before = license_count(&app).await;
    let long = "K".repeat(20_000);

    // Air-gapped activation: odd encodings, huge and repeated parameters.
    for q in [
        "/activation?key=%ZZ&deployment=x&quantity=1".to_string(),
        format!("/activation?key={long}&deployment=MSCL{:032X}&quantity=1", 1),
        format!("/activation?key={key}&deployment=MSCL{:032X}&quantity=1e3", 1),
        format!("/activation?key={key}&deployment=%00&quantity=1"),
        format!("/deactivation?key={key}&deployment={}", "M".repeat(5000)),
    ] {
        let (status, headers, _) = http_get(&app, &q).await;
        assert!(status.starts_with("HTTP/1.1 200 ") || status.starts_with("HTTP/1.1 400 "), "{q}: {status}");
        assert!(!headers.contains("x-licensor-unmatched"));
    }

    // /api/licensing/v1: wrong types everywhere, JSON that is not an object, binary bodies.
    let bodies = [
        "null".to_string(),
        "\"text\"".to_string(),
        json!({"licenseeId": 1, "licenseeName": [], "expiration": {}, "licenses": "all"}).to_string(),
        json!({"licenseeId": "1", "licenseeName": "n", "expiration": "2099-12-31", "licenses": [null]}).to_string(),
        json!({"licenseeId": "1", "licenseeName": "n", "expiration": "2099-12-31", "licenses": [{"productKey": "1", "quantity": 1, "type": "U"}]}).to_string(),
        json!({"licenseeId": "1", "licenseeName": "n", "expiration": "2099-02-30", "licenses": [{"productKey": 1, "quantity": 1, "type": "U"}]}).to_string(),
        String::from_utf8_lossy(&[0xff, 0xfe, 0x00]).into_owned(),
    ];
    for b in &bodies {
        let r = app
            .send(Method::POST, "/api/licensing/v1/licenses/create", &app.admin(), Some("application/json"), b)
            .await;
        assert!(r.status.is_client_error(), "{b}: {}", r.text);
        assert!(r.body["error"]["code"].is_string(), "{b}: {}", r.text);
    }
    let r = app.send(Method::POST, "/api/licensing/v1/licenses", &app.admin(), Some("text/plain"), &long).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    let r = app.send(Method::PATCH, "/api/licensing/v1/licenses", &app.admin(), Some("text/plain"), "x").await;
    assert_eq!(r.status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(r.body["error"]["code"], "method_not_allowed");

    // /core/v1: wrong shapes for every field, a license id that is not one.
    let core = format!("/accounts/{}/core/v1/licenses", app.account_id);
    for b in [
        json!({"type": "application/astra-license", "version": "1.0", "licenseText": "e30=", "metadata": {"labels": [{"name": 1}]}}).to_string(),
        json!({"type": "application/astra-license", "version": "1.0", "licenseText": "e30="}).to_string(),
        json!({"type": "application/astra-license", "version": "1.0", "licenseText": "W10="}).to_string(),
        json!({"type": "application/astra-license", "version": "1.0", "licenseText": "e30=", "hostID": ""}).to_string(),
        "[]".to_string(),
    ] {
        let r = app.send(Method::POST, &core, &app.admin(), Some("application/astra-license+json"), &b).await;
        assert!(r.status.is_client_error(), "{b}: {}", r.text);
        assert_eq!(r.headers["content-type"], "application/problem+json", "{b}");
    }
    let r = app
        .send(Method::PUT, &format!("{core}/{license}"), &app.admin(), Some("application/json"), "{\"type\": 5}")
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    let r = app.send(Method::PATCH, &format!("{core}/{license}"), &app.admin(), Some("application/json"), "{}").await;
    assert!(r.status.is_client_error());
    assert_eq!(r.headers["content-type"], "application/problem+json");
    let r = app.get(&format!("{core}?filter=%27"), &app.admin()).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);

    // Path segments that are not even UTF-8: each surface's own not-found answer.
    let r = app.get("/api/licensing/v1/products/%FF", &app.admin()).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert_eq!(r.body["error"]["code"], "not_found");
    let r = app.get(&format!("{core}/%FF"), &app.admin()).await;
    assert_eq!(
        (r.status, r.body["type"].as_str()),
        (StatusCode::NOT_FOUND, Some("https://astra.netapp.io/problems/2"))
    );
    let r = app.delete(&format!("{core}/%FF"), &app.admin()).await;
    assert_eq!(
        (r.status, r.body["type"].as_str()),
        (StatusCode::NOT_FOUND, Some("https://astra.netapp.io/problems/1"))
    );
    let (status, _, _) =
        http_get(&app, &format!("/v1/accounts/%FF/opswat/activation?key={key}&deployment=MSCL{:032X}&quantity=1", 2))
            .await;
    assert_eq!(status, "HTTP/1.1 200 Invalid parameter");

    assert_eq!(license_count(&app).await, before, "no request wrote anything");
    assert_eq!(
        app.get(&app.acct(&format!("/licenses/{license}/machines")), &app.admin()).await.body["data"],
        json!([])
    );
}

/// A NUL character (PostgreSQL cannot store one) in a path, a query or a JSON string is refused
/// at the edge of every surface in its own format, on both engines, and never reaches the
/// database as a query it cannot run.
#[tokio::test]
async fn nul_characters_are_refused_on_every_surface() {
    let app = spawn_app().await;
    let (_, policy, license, key) = app.license_fixture(json!({"floating": true, "maxMachines": 2})).await;
    let before = license_count(&app).await;
    let nul = "a\u{0}b";

    // Keygen: the account, an id, a filter, a JSON string anywhere.
    let r = app.get("/v1/accounts/%00/licenses", &As::Anonymous).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.text);
    for path in ["/licenses/%00", "/licenses?owner=%00", "/machines?fingerprint=a%00"] {
        let r = app.get(&app.acct(path), &app.admin()).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{path}: {}", r.text);
        assert!(r.body["errors"][0]["detail"].as_str().unwrap().contains("NUL"), "{path}");
    }
    let r = app.post(&app.acct("/licenses/actions/validate-key"), &As::Anonymous, json!({"meta": {"key": nul}})).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.text);
    let body = json!({"data": {"type": "licenses", "attributes": {"name": nul},
        "relationships": {"policy": {"data": {"type": "policies", "id": policy}}}}});
    assert_eq!(app.post(&app.acct("/licenses"), &app.admin(), body).await.status, StatusCode::BAD_REQUEST);
    let body = json!({"data": {"type": "licenses", "attributes": {"metadata": {"k": nul}}}});
    assert_eq!(
        app.patch(&app.acct(&format!("/licenses/{license}")), &app.admin(), body).await.status,
        StatusCode::BAD_REQUEST
    );

    // OPSWAT: a key holding one is simply not a key.
    let (status, _, _) =
        http_get(&app, &format!("/activation?key={key}%00&deployment=MSCL{:032X}&quantity=1", 7)).await;
    assert_eq!(status, "HTTP/1.1 200 Invalid parameter");
    let (status, _, _) = http_get(&app, &format!("/deactivation?key=%00&deployment=MSCL{:032X}", 7)).await;
    assert_eq!(status, "HTTP/1.1 200 Invalid parameter");

    // licensing/v1.
    let basic = As::Basic(app.admin_email.clone(), PASSWORD.into());
    let r = app.get("/api/licensing/v1/products/%00", &basic).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND, "{}", r.text);
    let create = json!({"licenseeId": "1", "licenseeName": nul, "expiration": "2099-12-31", "licenses": []});
    let r = app
        .send(Method::POST, "/api/licensing/v1/licenses/create", &basic, Some("application/json"), &create.to_string())
        .await;
    assert_eq!(
        (r.status, r.body["error"]["code"].as_str()),
        (StatusCode::BAD_REQUEST, Some("malformed_json")),
        "{}",
        r.text
    );

    // core/v1.
    let r = app.get("/accounts/%00/core/v1/licenses", &app.admin()).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND, "{}", r.text);
    let r = app.get(&format!("/accounts/{}/core/v1/licenses/%00", app.account_id), &app.admin()).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND, "{}", r.text);
    let body = json!({"type": "application/astra-license", "version": "1.0", "licenseText": nul});
    let r = app
        .send(
            Method::POST,
            &format!("/accounts/{}/core/v1/licenses", app.account_id),
            &app.admin(),
            Some("application/astra-license+json"),
            &body.to_string(),
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.text);
    assert_eq!(license_count(&app).await, before, "nothing was written");
}
