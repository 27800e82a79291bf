//! License actions: suspend, reinstate, renew, revoke, check-in, usage.

use reqwest::StatusCode;
use serde_json::json;

use crate::helpers::*;

#[tokio::test]
async fn suspend_reinstate_twice_is_422() {
    let app = spawn_app().await;
    let (_, _, id, _) = app.license_fixture(json!({})).await;
    let path = |a: &str| app.acct(&format!("/licenses/{id}/actions/{a}"));
    assert_eq!(app.post(&path("suspend"), &app.admin(), json!(null)).await.attr("suspended"), true);
    let r = app.post(&path("suspend"), &app.admin(), json!(null)).await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    // Keygen's form for these: "Unprocessable entity", no code, the attribute's pointer.
    assert_eq!(
        r.body["errors"][0],
        json!({"title": "Unprocessable entity", "detail": "is already suspended",
               "source": {"pointer": "/data/attributes/suspended"}})
    );
    assert_eq!(app.post(&path("reinstate"), &app.admin(), json!(null)).await.attr("suspended"), false);
    let r = app.post(&path("reinstate"), &app.admin(), json!(null)).await;
    assert_eq!(
        (r.status, r.body["errors"][0]["detail"].as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, Some("is not suspended"))
    );
}

/// Durations are added on the calendar, as Keygen adds them: a month from 19 July is 19 August.
#[tokio::test]
async fn renewal_adds_the_duration_on_the_calendar() {
    let app = spawn_app().await;
    let product = app.create_product("App").await;
    let monthly = app.create_policy(&product, json!({"duration": 2_629_746, "renewalBasis": "FROM_EXPIRY"})).await;
    let (id, _) = app.create_license(&monthly, json!({"expiry": "2021-07-19T00:00:00.000Z"})).await;
    let renew = |id: &str| app.acct(&format!("/licenses/{id}/actions/renew"));
    let r = app.post(&renew(&id), &app.admin(), json!(null)).await;
    assert_eq!(r.attr("expiry"), "2021-08-19T00:00:00.000Z", "{}", r.text);
    let r = app.post(&renew(&id), &app.admin(), json!(null)).await;
    assert_eq!(r.attr("expiry"), "2021-09-19T00:00:00.000Z");
    // A clock that has not started yet (first activation) leaves nothing to renew.
    let later =
        app.create_policy(&product, json!({"duration": 2_629_746, "expirationBasis": "FROM_FIRST_ACTIVATION"})).await;
    let (unstarted, _) = app.create_license(&later, json!({})).await;
    let r = app.post(&renew(&unstarted), &app.admin(), json!(null)).await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(r.body["errors"][0]["detail"], "cannot be renewed because the license does not have an expiry");
    let r = app.get(&app.acct(&format!("/licenses/{unstarted}")), &app.admin()).await;
    assert_eq!(r.attr("expiry"), &json!(null));
    // Nothing past the year 9999: the expiry would no longer be an ISO 8601 timestamp (and,
    // renewed often enough, would wrap).
    let long = app.create_policy(&product, json!({"duration": 2_147_483_647_i64})).await;
    let (late, _) = app.create_license(&long, json!({"expiry": "9990-01-01T00:00:00.000Z"})).await;
    let r = app.post(&renew(&late), &app.admin(), json!(null)).await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.text);
    assert_eq!(r.body["errors"][0]["detail"], "cannot be renewed past the year 9999");
    let r = app.get(&app.acct(&format!("/licenses/{late}")), &app.admin()).await;
    assert_eq!(r.attr("expiry"), "9990-01-01T00:00:00.000Z");
}

#[tokio::test]
async fn renew_from_now_if_expired() {
    let app = spawn_app().await;
    let product = app.create_product("App").await;
    let policy =
        app.create_policy(&product, json!({"duration": 86400 * 30, "renewalBasis": "FROM_NOW_IF_EXPIRED"})).await;
    let (id, _) = app.create_license(&policy, json!({"expiry": "2020-01-01T00:00:00Z"})).await;
    let r = app.post(&app.acct(&format!("/licenses/{id}/actions/renew")), &app.admin(), json!(null)).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let expiry = licensor::time::parse_iso(r.attr("expiry").as_str().unwrap()).unwrap();
    assert!((expiry - (licensor::time::now_ms() + 30 * licensor::time::DAY)).abs() < 60_000);
    let (_, _, perpetual, _) = app.license_fixture(json!({})).await;
    let r = app.post(&app.acct(&format!("/licenses/{perpetual}/actions/renew")), &app.admin(), json!(null)).await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(
        r.body["errors"][0],
        json!({"title": "Unprocessable entity", "detail": "cannot be renewed because the policy does not have a duration"})
    );
}

#[tokio::test]
async fn check_in_requires_policy() {
    let app = spawn_app().await;
    let (_, _, id, key) = app.license_fixture(json!({})).await;
    let r = app.post(&app.acct(&format!("/licenses/{key}/actions/check-in")), &app.admin(), json!(null)).await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(
        r.body["errors"][0],
        json!({"title": "Unprocessable entity", "detail": "cannot be checked in because the policy does not require it"})
    );
    let (_, _, id2, _) = app
        .license_fixture(json!({"requireCheckIn": true, "checkInInterval": "week", "checkInIntervalCount": 2}))
        .await;
    let r = app.post(&app.acct(&format!("/licenses/{id2}/actions/check-in")), &app.admin(), json!(null)).await;
    assert_eq!(r.status, StatusCode::OK);
    let last = licensor::time::parse_iso(r.attr("lastCheckIn").as_str().unwrap()).unwrap();
    let next = licensor::time::parse_iso(r.attr("nextCheckIn").as_str().unwrap()).unwrap();
    assert_eq!(next - last, 14 * licensor::time::DAY);
    let _ = id;
    // A monthly interval is a calendar month from the last check-in.
    let (_, _, monthly, _) = app
        .license_fixture(json!({"requireCheckIn": true, "checkInInterval": "month", "checkInIntervalCount": 1}))
        .await;
    let r = app.get(&app.acct(&format!("/licenses/{monthly}")), &app.admin()).await;
    let last = chrono::DateTime::parse_from_rfc3339(r.attr("lastCheckIn").as_str().unwrap()).unwrap();
    let next = chrono::DateTime::parse_from_rfc3339(r.attr("nextCheckIn").as_str().unwrap()).unwrap();
    assert_eq!(next, last.checked_add_months(chrono::Months::new(1)).unwrap());
}

#[tokio::test]
async fn usage_is_bounded_and_atomic() {
    let app = spawn_app().await;
    let (_, _, id, _) = app.license_fixture(json!({"maxUses": 99})).await;
    let path = |a: &str| app.acct(&format!("/licenses/{id}/actions/{a}"));
    let r = app.post(&path("increment-usage"), &app.admin(), json!({"meta": {"increment": 100}})).await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(r.code(), "USES_LIMIT_EXCEEDED");
    assert_eq!(r.pointer(), "/data/attributes/uses");
    for huge in ["46116860184273879031", "10000000000000000000"] {
        let body = format!(r#"{{"meta": {{"increment": {huge}}}}}"#);
        let r = app.raw(reqwest::Method::POST, &path("increment-usage"), &app.admin(), Some(body)).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{huge}");
        assert_eq!(
            (r.body["errors"][0]["detail"].as_str(), r.pointer()),
            (Some("integer is too large"), "/meta/increment")
        );
    }
    let r = app.post(&path("increment-usage"), &app.admin(), json!({"meta": {"increment": 99}})).await;
    assert_eq!(r.attr("uses"), 99);
    let r = app.post(&path("decrement-usage"), &app.admin(), json!({"meta": {"decrement": 100}})).await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    let r = app.post(&path("decrement-usage"), &app.admin(), json!(null)).await;
    assert_eq!(r.attr("uses"), 98);
    let r = app.post(&path("reset-usage"), &app.admin(), json!(null)).await;
    assert_eq!(r.attr("uses"), 0);
    let r = app.post(&path("increment-usage"), &app.admin(), json!({"meta": {"increment": "1"}})).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    // 120 concurrent increments against maxUses 99: exactly 99 succeed.
    let mut tasks = Vec::new();
    for _ in 0..120 {
        let client = app.client.clone();
        let url = app.url(&path("increment-usage"));
        let token = app.admin_token.clone();
        tasks.push(tokio::spawn(async move { client.post(url).bearer_auth(token).send().await.unwrap().status() }));
    }
    let mut ok = 0;
    for t in tasks {
        if t.await.unwrap() == StatusCode::OK {
            ok += 1;
        }
    }
    assert_eq!(ok, 99);
    assert_eq!(app.get(&app.acct(&format!("/licenses/{id}")), &app.admin()).await.attr("uses"), 99);
}

/// Overage strategies stretch machines, cores, processes and users, never uses (as in Keygen).
#[tokio::test]
async fn usage_gets_no_overage() {
    let app = spawn_app().await;
    let (_, _, id, _) =
        app.license_fixture(json!({"maxUses": 2, "floating": true, "overageStrategy": "ALWAYS_ALLOW_OVERAGE"})).await;
    let path = app.acct(&format!("/licenses/{id}/actions/increment-usage"));
    let r = app.post(&path, &app.admin(), json!({"meta": {"increment": 2}})).await;
    assert_eq!(r.attr("uses"), 2, "{}", r.text);
    let r = app.post(&path, &app.admin(), json!(null)).await;
    assert_eq!((r.status, r.code()), (StatusCode::UNPROCESSABLE_ENTITY, "USES_LIMIT_EXCEEDED"));
}

#[tokio::test]
async fn revoke_deletes() {
    let app = spawn_app().await;
    let (_, _, id, _) = app.license_fixture(json!({})).await;
    assert_eq!(
        app.delete(&app.acct(&format!("/licenses/{id}/actions/revoke")), &app.admin()).await.status,
        StatusCode::NO_CONTENT
    );
    assert_eq!(app.get(&app.acct(&format!("/licenses/{id}")), &app.admin()).await.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn owners_renew_revoke_and_check_in_but_attached_users_do_not() {
    let app = spawn_app().await;
    let product = app.create_product("App").await;
    let open = app
        .create_policy(
            &product,
            json!({"duration": 86400, "requireCheckIn": true, "checkInInterval": "day", "checkInIntervalCount": 1,
                   "authenticationStrategy": "MIXED"}),
        )
        .await;
    let protected = app
        .create_policy(
            &product,
            json!({"duration": 86400, "requireCheckIn": true, "checkInInterval": "day", "checkInIntervalCount": 1,
                   "protected": true}),
        )
        .await;
    let (owner, member) = (app.create_user("owner@example.com").await, app.create_user("member@example.com").await);
    let token = |email: &'static str| {
        let app = &app;
        async move {
            let t = app.post(&app.acct("/tokens"), &As::Basic(email.into(), PASSWORD.into()), json!(null)).await;
            As::Bearer(t.attr("token").as_str().unwrap().to_string())
        }
    };
    let (as_owner, as_member) = (token("owner@example.com").await, token("member@example.com").await);
    let licensed = |policy: String| {
        let app = &app;
        let (owner, member) = (owner.clone(), member.clone());
        async move {
            let (id, key) = app.create_license(&policy, json!({})).await;
            app.put(
                &app.acct(&format!("/licenses/{id}/owner")),
                &app.admin(),
                json!({"data": {"type": "users", "id": owner}}),
            )
            .await;
            app.attach_users(&id, &[&member]).await;
            (id, key)
        }
    };
    let action = |id: &str, a: &str| app.acct(&format!("/licenses/{id}/actions/{a}"));

    let (id, key) = licensed(open.clone()).await;
    for a in ["renew", "check-in"] {
        assert_eq!(
            app.post(&action(&id, a), &as_member, json!(null)).await.status,
            StatusCode::FORBIDDEN,
            "member {a}"
        );
        assert_eq!(app.post(&action(&id, a), &as_owner, json!(null)).await.status, StatusCode::OK, "owner {a}");
    }
    for a in ["suspend", "reinstate"] {
        assert_eq!(app.post(&action(&id, a), &as_owner, json!(null)).await.status, StatusCode::FORBIDDEN, "owner {a}");
    }
    assert_eq!(app.post(&action(&id, "check-in"), &As::License(key.clone()), json!(null)).await.status, StatusCode::OK);
    // Usage: the owner and the license increment; only admins and products decrement.
    for who in [&as_owner, &As::License(key.clone())] {
        assert_eq!(app.post(&action(&id, "increment-usage"), who, json!(null)).await.status, StatusCode::OK);
        // Who may increment is decided by the direction, not the amount.
        let zero = json!({"meta": {"increment": 0}});
        assert_eq!(app.post(&action(&id, "increment-usage"), who, zero).await.status, StatusCode::OK);
        assert_eq!(app.post(&action(&id, "decrement-usage"), who, json!(null)).await.status, StatusCode::FORBIDDEN);
    }
    assert_eq!(app.post(&action(&id, "increment-usage"), &as_member, json!(null)).await.status, StatusCode::FORBIDDEN);
    assert_eq!(app.post(&action(&id, "renew"), &As::License(key), json!(null)).await.status, StatusCode::FORBIDDEN);
    assert_eq!(app.delete(&action(&id, "revoke"), &as_member).await.status, StatusCode::FORBIDDEN);
    assert_eq!(app.delete(&action(&id, "revoke"), &as_owner).await.status, StatusCode::NO_CONTENT);

    // Under a protected policy the owner may do none of it.
    let (id, _) = licensed(protected).await;
    for a in ["renew", "check-in"] {
        assert_eq!(
            app.post(&action(&id, a), &as_owner, json!(null)).await.status,
            StatusCode::FORBIDDEN,
            "protected {a}"
        );
    }
    assert_eq!(app.delete(&action(&id, "revoke"), &as_owner).await.status, StatusCode::FORBIDDEN);
    // Someone else's license is not found.
    let (other, _) = app.create_license(&open, json!({})).await;
    assert_eq!(app.delete(&action(&other, "revoke"), &as_owner).await.status, StatusCode::NOT_FOUND);
}
