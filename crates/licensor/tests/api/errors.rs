//! The bad-input sweep: every kind of malformed request gets Keygen's error format, the right
//! status, and writes nothing.

use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::helpers::*;

#[tokio::test]
async fn malformed_bodies_are_400_everywhere() {
    let app = spawn_app().await;
    let (product, policy, license, _) = app.license_fixture(json!({})).await;
    let user = app.create_user("u@example.com").await;
    let endpoints = [
        (Method::POST, app.acct("/products")),
        (Method::PATCH, app.acct(&format!("/products/{product}"))),
        (Method::POST, app.acct("/policies")),
        (Method::PATCH, app.acct(&format!("/policies/{policy}"))),
        (Method::POST, app.acct("/licenses")),
        (Method::PATCH, app.acct(&format!("/licenses/{license}"))),
        (Method::POST, app.acct("/users")),
        (Method::PATCH, app.acct(&format!("/users/{user}"))),
        (Method::POST, app.acct("/entitlements")),
        (Method::POST, app.acct("/groups")),
        (Method::PATCH, app.acct("")),
        (Method::PUT, app.acct(&format!("/licenses/{license}/policy"))),
        (Method::POST, app.acct(&format!("/licenses/{license}/users"))),
        (Method::POST, app.acct(&format!("/licenses/{license}/entitlements"))),
    ];
    let bodies = [
        "{not json",
        "[]",
        "42",
        r#"{"data": "string"}"#,
        r#"{"data": {"type": 7}}"#,
        r#"{"data": {"type": "wrong-things", "attributes": {}}}"#,
        r#"{"data": {"type": "x", "attributes": []}}"#,
        r#"{"data": [{"type": "users"}]}"#,
        r#"{"nope": 1}"#,
    ];
    for (method, path) in &endpoints {
        for body in bodies {
            let r = app.raw(method.clone(), path, &app.admin(), Some(body.to_string())).await;
            assert_eq!(r.status, StatusCode::BAD_REQUEST, "{method} {path} with {body}: {}", r.text);
            assert!(r.body["errors"][0]["title"].is_string(), "{method} {path}: {}", r.text);
        }
    }
    // Nothing was written.
    assert_eq!(app.get(&app.acct("/products"), &app.admin()).await.body["data"].as_array().unwrap().len(), 1);
    assert_eq!(app.get(&app.acct("/licenses"), &app.admin()).await.body["data"].as_array().unwrap().len(), 1);
    assert_eq!(app.get(&app.acct("/policies"), &app.admin()).await.body["data"].as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn wrong_types_point_at_the_attribute() {
    let app = spawn_app().await;
    let (_, policy, license, _) = app.license_fixture(json!({})).await;
    let r = app
        .patch(
            &app.acct(&format!("/licenses/{license}")),
            &app.admin(),
            json!({"data": {"type": "licenses", "attributes": {"maxUses": "ten"}}}),
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(r.pointer(), "/data/attributes/maxUses");
    assert_eq!(r.body["errors"][0]["detail"], "type mismatch (received string expected integer)");
    let r = app
        .post(&app.acct("/licenses"), &app.admin(), json!({"data": {"type": "licenses", "attributes": {"suspended": "yes"}, "relationships": {"policy": {"data": {"type": "policies", "id": policy}}}}}))
        .await;
    assert_eq!(r.pointer(), "/data/attributes/suspended");
    let r =
        app.post(&app.acct("/licenses"), &app.admin(), json!({"data": {"type": "licenses", "attributes": {}}})).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(r.pointer(), "/data/relationships/policy");
    let r = app
        .post(&app.acct("/licenses"), &app.admin(), json!({"data": {"type": "licenses", "relationships": {"policy": {"data": {"type": "policies", "id": uuid::Uuid::new_v4()}}}}}))
        .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(r.pointer(), "/data/relationships/policy");
}

#[tokio::test]
async fn unknown_ids_are_404_and_unknown_routes_too() {
    let app = spawn_app().await;
    for path in [
        "/licenses/nope",
        "/policies/nope",
        "/products/nope",
        "/users/nope",
        "/entitlements/nope",
        "/groups/nope",
        "/tokens/nope",
        "/no-such-thing",
    ] {
        let r = app.get(&app.acct(path), &app.admin()).await;
        assert_eq!(r.status, StatusCode::NOT_FOUND, "{path}");
        assert_eq!(r.code(), "NOT_FOUND", "{path}");
    }
    let r = app.get(&app.acct("/licenses/nope"), &app.admin()).await;
    assert_eq!(r.body["errors"][0]["detail"], "The requested license 'nope' was not found");
}

#[tokio::test]
async fn missing_and_bad_credentials() {
    let app = spawn_app().await;
    for path in ["/licenses", "/products", "/policies", "/users", "/tokens", "/entitlements", "/groups", ""] {
        let r = app.get(&app.acct(path), &As::Anonymous).await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{path}");
        let r = app.get(&app.acct(path), &As::Bearer("admin-0000v3".into())).await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{path}");
        assert_eq!(r.code(), "TOKEN_INVALID");
    }
    let r = app.raw(Method::GET, &app.acct("/licenses"), &As::Anonymous, None).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn non_admins_are_forbidden_from_admin_writes() {
    let app = spawn_app().await;
    app.create_user("u@example.com").await;
    let t = app.post(&app.acct("/tokens"), &As::Basic("u@example.com".into(), PASSWORD.into()), json!(null)).await;
    let user = As::Bearer(t.attr("token").as_str().unwrap().to_string());
    let r = app
        .post(&app.acct("/products"), &user, json!({"data": {"type": "products", "attributes": {"name": "X"}}}))
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert_eq!(r.body["errors"][0]["title"], "Access denied");
    let r = app
        .post(
            &app.acct("/entitlements"),
            &user,
            json!({"data": {"type": "entitlements", "attributes": {"name": "X", "code": "X"}}}),
        )
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    let r = app.get(&app.acct("/policies"), &user).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn unsupported_accept_header_is_400() {
    let app = spawn_app().await;
    let r = app
        .client
        .get(app.url(&app.acct("/licenses")))
        .bearer_auth(&app.admin_token)
        .header("accept", "text/html")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["errors"][0]["source"]["header"], "Accept");
    let r = app
        .client
        .get(app.url(&app.acct("/licenses")))
        .bearer_auth(&app.admin_token)
        .header("accept", "application/json")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
}
