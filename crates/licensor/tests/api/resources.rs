use reqwest::StatusCode;
use serde_json::json;

use crate::helpers::*;

#[tokio::test]
async fn products_crud() {
    let app = spawn_app().await;
    let r = app
        .post(&app.acct("/products"), &app.admin(), json!({"data": {"type": "products", "attributes": {"name": "Desktop", "code": "desktop", "platforms": ["linux"], "metadata": {"tier": "gold"}}}}))
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    let location = r.headers["location"].to_str().unwrap().to_string();
    assert!(location.ends_with(&r.id()));
    assert_eq!(r.attr("distributionStrategy"), "LICENSED");
    let r2 = app.get(&app.acct("/products/desktop"), &app.admin()).await;
    assert_eq!(r2.id(), r.id(), "products are addressable by code");
    let dup = app
        .post(
            &app.acct("/products"),
            &app.admin(),
            json!({"data": {"type": "products", "attributes": {"name": "Other", "code": "desktop"}}}),
        )
        .await;
    assert_eq!(dup.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(dup.code(), "CODE_TAKEN");
    let p = app
        .patch(
            &app.acct(&format!("/products/{}", r.id())),
            &app.admin(),
            json!({"data": {"type": "products", "attributes": {"name": "Desktop 2", "url": "https://x.example"}}}),
        )
        .await;
    assert_eq!(p.status, StatusCode::OK);
    assert_eq!(p.attr("name"), "Desktop 2");
    assert_eq!(p.attr("metadata"), &json!({"tier": "gold"}));
    assert_eq!(
        app.delete(&app.acct(&format!("/products/{}", r.id())), &app.admin()).await.status,
        StatusCode::NO_CONTENT
    );
    assert_eq!(app.get(&app.acct(&format!("/products/{}", r.id())), &app.admin()).await.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn users_crud_ban_and_roles() {
    let app = spawn_app().await;
    let r = app
        .post(&app.acct("/users"), &app.admin(), json!({"data": {"type": "users", "attributes": {"email": "Ann@Example.com", "firstName": "Ann", "lastName": "Lee", "password": PASSWORD}}}))
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    assert_eq!(r.attr("email"), "ann@example.com");
    assert_eq!(r.attr("fullName"), "Ann Lee");
    assert_eq!(r.attr("role"), "user");
    assert_eq!(r.attr("status"), "ACTIVE");
    let id = r.id();
    let dup = app
        .post(
            &app.acct("/users"),
            &app.admin(),
            json!({"data": {"type": "users", "attributes": {"email": "ann@example.com"}}}),
        )
        .await;
    assert_eq!(dup.code(), "EMAIL_TAKEN");
    let by_email = app.get(&app.acct("/users/ann@example.com"), &app.admin()).await;
    assert_eq!(by_email.id(), id);
    // Ann logs in and can see herself but not the admin, nor change her role.
    let t = app.post(&app.acct("/tokens"), &As::Basic("ann@example.com".into(), PASSWORD.into()), json!(null)).await;
    let ann = As::Bearer(t.attr("token").as_str().unwrap().to_string());
    assert_eq!(app.get(&app.acct(&format!("/users/{id}")), &ann).await.status, StatusCode::OK);
    let users = app.get(&app.acct("/users"), &ann).await;
    assert_eq!(users.body["data"].as_array().unwrap().len(), 1);
    let r = app
        .patch(
            &app.acct(&format!("/users/{id}")),
            &ann,
            json!({"data": {"type": "users", "attributes": {"role": "admin"}}}),
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    // Banned users cannot authenticate.
    let r = app.post(&app.acct(&format!("/users/{id}/actions/ban")), &app.admin(), json!(null)).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.attr("status"), "BANNED");
    let r = app.get(&app.acct("/me"), &ann).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert_eq!(r.code(), "USER_BANNED");
    let r = app.post(&app.acct(&format!("/users/{id}/actions/unban")), &app.admin(), json!(null)).await;
    assert_eq!(r.attr("status"), "ACTIVE");
    assert_eq!(app.get(&app.acct("/me"), &ann).await.status, StatusCode::OK);
    assert_eq!(app.delete(&app.acct(&format!("/users/{id}")), &app.admin()).await.status, StatusCode::NO_CONTENT);
    assert_eq!(app.get(&app.acct("/me"), &ann).await.status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn anonymous_signup_only_when_account_unprotected() {
    let app = spawn_app().await;
    let body = json!({"data": {"type": "users", "attributes": {"email": "new@example.com", "password": PASSWORD}}});
    let r = app.post(&app.acct("/users"), &As::Anonymous, body.clone()).await;
    assert_eq!(r.status, StatusCode::CREATED);
    app.patch(&app.acct(""), &app.admin(), json!({"data": {"type": "accounts", "attributes": {"protected": true}}}))
        .await;
    let body = json!({"data": {"type": "users", "attributes": {"email": "new2@example.com", "password": PASSWORD}}});
    let r = app.post(&app.acct("/users"), &As::Anonymous, body).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn entitlements_and_groups_crud() {
    let app = spawn_app().await;
    let e = app
        .post(
            &app.acct("/entitlements"),
            &app.admin(),
            json!({"data": {"type": "entitlements", "attributes": {"name": "Export", "code": "EXPORT"}}}),
        )
        .await;
    assert_eq!(e.status, StatusCode::CREATED);
    assert_eq!(app.get(&app.acct("/entitlements/EXPORT"), &app.admin()).await.id(), e.id());
    let r = app
        .patch(
            &app.acct(&format!("/entitlements/{}", e.id())),
            &app.admin(),
            json!({"data": {"type": "entitlements", "attributes": {"name": "Export PDF"}}}),
        )
        .await;
    assert_eq!(r.attr("name"), "Export PDF");
    let missing = app
        .post(
            &app.acct("/entitlements"),
            &app.admin(),
            json!({"data": {"type": "entitlements", "attributes": {"name": "No code"}}}),
        )
        .await;
    assert_eq!(missing.status, StatusCode::BAD_REQUEST);
    assert_eq!(missing.pointer(), "/data/attributes/code");
    let g = app
        .post(
            &app.acct("/groups"),
            &app.admin(),
            json!({"data": {"type": "groups", "attributes": {"name": "EMEA", "maxLicenses": 10}}}),
        )
        .await;
    assert_eq!(g.status, StatusCode::CREATED, "{}", g.text);
    assert_eq!(g.attr("maxLicenses"), 10);
    let bad = app
        .post(
            &app.acct("/groups"),
            &app.admin(),
            json!({"data": {"type": "groups", "attributes": {"name": "X", "maxUsers": 0}}}),
        )
        .await;
    assert_eq!(bad.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(app.get(&app.acct("/groups"), &app.admin()).await.body["data"].as_array().unwrap().len(), 1);
    assert_eq!(
        app.delete(&app.acct(&format!("/groups/{}", g.id())), &app.admin()).await.status,
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        app.delete(&app.acct(&format!("/entitlements/{}", e.id())), &app.admin()).await.status,
        StatusCode::NO_CONTENT
    );
}
