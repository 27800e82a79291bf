//! Password resets, after Keygen's `features/api/v1/passwords/reset.feature` and the reset
//! scenarios of `users/actions/password.feature`: anyone may ask by email, the token goes out
//! in a `user.password-reset` event (no mail is sent), and the user sets a new password with it.

use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::helpers::*;

/// The token the last `user.password-reset` delivery carried, read from the webhook-events list.
async fn token_sent(app: &TestApp) -> String {
    let r = app.get(&app.acct("/webhook-events?events[]=user.password-reset"), &app.admin()).await;
    let payload = r.body["data"][0]["attributes"]["payload"].as_str().expect("a user.password-reset delivery");
    let doc: Value = serde_json::from_str(payload).unwrap();
    assert_eq!(doc["data"]["type"], "users");
    doc["meta"]["passwordResetToken"].as_str().unwrap().to_string()
}

fn reset(token: &str, password: &str) -> Value {
    json!({"meta": {"passwordResetToken": token, "newPassword": password}})
}

#[tokio::test]
async fn a_user_resets_a_forgotten_password_with_the_token_sent() {
    let app = spawn_app().await;
    let hook = json!({"data": {"type": "webhook-endpoints", "attributes": {"url": "https://hooks.example.com/in", "subscriptions": ["user.password-reset"]}}});
    assert_eq!(app.post(&app.acct("/webhook-endpoints"), &app.admin(), hook).await.status, StatusCode::CREATED);
    let user = app.create_user("forgetful@example.com").await;
    let basic = As::Basic("forgetful@example.com".into(), PASSWORD.into());
    let old_token = app.post(&app.acct("/tokens"), &basic, json!(null)).await;
    let old_token = As::Bearer(old_token.attr("token").as_str().unwrap().to_string());

    // Asked by email, in any case, without credentials: 204 and an event with the token.
    let r = app
        .post(
            &app.acct("/passwords"),
            &As::Anonymous,
            json!({"meta": {"email": "Forgetful@Example.com", "deliver": false}}),
        )
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.text);
    let token = token_sent(&app).await;
    assert_eq!(token.len(), 50);
    let log = app.get(&app.acct("/event-logs?events[]=user.password-reset"), &app.admin()).await;
    assert_eq!(log.body["data"][0]["relationships"]["resource"]["data"]["id"], user.as_str());
    assert!(!log.text.contains(&token), "the event log keeps no token");

    // Checks before the token is spent.
    let path = app.acct(&format!("/users/{user}/actions/reset-password"));
    let r = app.post(&path, &As::Anonymous, json!({"meta": {"passwordResetToken": token}})).await;
    assert_eq!((r.status, r.pointer()), (StatusCode::BAD_REQUEST, "/meta/newPassword"));
    let r = app.post(&path, &As::Anonymous, reset(&token, "short")).await;
    assert_eq!((r.status, r.code()), (StatusCode::UNPROCESSABLE_ENTITY, "PASSWORD_TOO_SHORT"));
    let r = app
        .post(&path, &As::Anonymous, reset("0123456789abcdef0123456789abcdef0123456789abcdefv3", "a brand new secret"))
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND, "a wrong token is a user not found");
    assert_eq!(r.body["errors"][0]["detail"], format!("The requested user '{user}' was not found").as_str());

    // The token: 200 with the user, the old tokens are revoked, the new password works.
    let r = app.post(&path, &As::Anonymous, reset(&token, "a brand new secret")).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!((r.body["data"]["type"].as_str(), r.id()), (Some("users"), user.clone()));
    assert_eq!(app.get(&app.acct(&format!("/users/{user}")), &old_token).await.status, StatusCode::UNAUTHORIZED);
    let fresh = As::Basic("forgetful@example.com".into(), "a brand new secret".into());
    assert_eq!(app.post(&app.acct("/tokens"), &fresh, json!(null)).await.status, StatusCode::CREATED);
    assert_eq!(app.post(&app.acct("/tokens"), &basic, json!(null)).await.status, StatusCode::UNAUTHORIZED);
    // Spent: a second use is refused.
    let r = app.post(&path, &As::Anonymous, reset(&token, "yet another secret")).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);

    // By email in the path too.
    app.post(&app.acct("/passwords"), &As::Anonymous, json!({"meta": {"email": "forgetful@example.com"}})).await;
    let token = token_sent(&app).await;
    let by_email = app.acct("/users/forgetful@example.com/actions/reset-password");
    assert_eq!(app.post(&by_email, &As::Anonymous, reset(&token, "third secret here")).await.status, StatusCode::OK);
}

#[tokio::test]
async fn reset_requests_tell_nothing_about_who_exists() {
    let app = spawn_app().await;
    let hook = json!({"data": {"type": "webhook-endpoints", "attributes": {"url": "https://hooks.example.com/in"}}});
    app.post(&app.acct("/webhook-endpoints"), &app.admin(), hook).await;
    let r = app.post(&app.acct("/passwords"), &As::Anonymous, json!({"meta": {"email": "nobody@example.com"}})).await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    let events = app.get(&app.acct("/webhook-events?events[]=user.password-reset"), &app.admin()).await;
    assert_eq!(events.body["data"].as_array().unwrap().len(), 0, "no event for an unknown email");
    let r = app.post(&app.acct("/passwords"), &As::Anonymous, json!({"meta": {}})).await;
    assert_eq!((r.status, r.pointer()), (StatusCode::BAD_REQUEST, "/meta/email"));
    let r = app.post(&app.acct("/passwords"), &As::Anonymous, json!({"meta": {"email": 42}})).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    // Unknown users cannot be reset either.
    let r = app
        .post(
            &app.acct("/users/nobody@example.com/actions/reset-password"),
            &As::Anonymous,
            reset("x", "long enough pw"),
        )
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn a_reset_token_expires_after_a_day() {
    let app = spawn_app().await;
    let hook = json!({"data": {"type": "webhook-endpoints", "attributes": {"url": "https://hooks.example.com/in"}}});
    app.post(&app.acct("/webhook-endpoints"), &app.admin(), hook).await;
    let user = app.create_user("late@example.com").await;
    app.post(&app.acct("/passwords"), &As::Anonymous, json!({"meta": {"email": "late@example.com"}})).await;
    let token = token_sent(&app).await;
    // Two days pass.
    let two_days_ago = licensor::time::now_ms() - 2 * 24 * 3600 * 1000;
    let uuid = uuid::Uuid::parse_str(&user).unwrap();
    licensor::db_run!(&app.db, |pool| sqlx::query("UPDATE users SET password_reset_sent_at = $1 WHERE id = $2")
        .bind(two_days_ago)
        .bind(uuid)
        .execute(pool)
        .await
        .map(|_| ())
        .unwrap());
    let r = app
        .post(
            &app.acct(&format!("/users/{user}/actions/reset-password")),
            &As::Anonymous,
            reset(&token, "too late now!"),
        )
        .await;
    assert_eq!((r.status, r.body["errors"][0]["detail"].as_str()), (StatusCode::UNAUTHORIZED, Some("is expired")));
    assert_eq!(r.pointer(), "/meta/passwordResetToken");
    // The old password still works.
    let basic = As::Basic("late@example.com".into(), PASSWORD.into());
    assert_eq!(app.post(&app.acct("/tokens"), &basic, json!(null)).await.status, StatusCode::CREATED);
}
