//! Rate limits (docs/operations.md): Keygen's windows and headers, each surface's own 429, the
//! stricter login and password buckets, the per-license activation limit, limits shared by
//! nodes on PostgreSQL, and password checks that cannot starve validations.

use std::time::Duration;

use licensor::ratelimit::{Config, Rate};
use reqwest::StatusCode;
use serde_json::json;

use crate::helpers::*;

fn rate(s: &str) -> Rate {
    s.parse().unwrap()
}

/// Waits out the last seconds of a clock minute: a minute window that rolls over in the
/// middle of a test resets its count.
async fn away_from_a_minute_boundary() {
    let second = chrono::Utc::now().timestamp() % 60;
    if second >= 50 {
        tokio::time::sleep(Duration::from_secs((61 - second) as u64)).await;
    }
}

fn header<'a>(r: &'a Res, name: &str) -> &'a str {
    r.headers.get(name).map_or("", |v| v.to_str().unwrap())
}

#[tokio::test]
async fn requests_are_limited_per_credential_with_keygens_headers() {
    let app = spawn_app_with(Config { requests: vec![rate("3/1m")], ..Config::default() }).await;
    let me = app.acct("/me");
    away_from_a_minute_boundary().await;
    for remaining in ["2", "1", "0"] {
        let r = app.get(&me, &app.admin()).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text);
        assert_eq!(header(&r, "x-ratelimit-window"), "1m");
        assert_eq!(header(&r, "x-ratelimit-limit"), "3");
        assert_eq!(header(&r, "x-ratelimit-remaining"), remaining);
        let reset: i64 = header(&r, "x-ratelimit-reset").parse().unwrap();
        assert!(reset > chrono::Utc::now().timestamp() && reset % 60 == 0, "{reset}");
    }
    let r = app.get(&me, &app.admin()).await;
    assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS, "{}", r.text);
    assert_eq!(r.code(), "TOO_MANY_REQUESTS");
    assert_eq!(r.body["errors"][0]["title"], "Too many requests");
    assert_eq!(header(&r, "x-ratelimit-count"), "4");
    assert_eq!(header(&r, "x-ratelimit-remaining"), "0");
    let retry: i64 = header(&r, "retry-after").parse().unwrap();
    assert!((1..=60).contains(&retry), "{retry}");
    // Another credential from the same address has its own bucket.
    let r = app.get(&me, &As::Anonymous).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert_eq!(header(&r, "x-ratelimit-remaining"), "2");
    // Refusals are counted, by surface and limit.
    let metrics = app.get("/metrics", &As::Bearer("x".into())).await;
    assert_eq!(metrics.status, StatusCode::UNAUTHORIZED, "the metrics bucket is its own");
    let metrics = app.get("/metrics", &app.admin()).await;
    assert_eq!(metrics.status, StatusCode::OK, "{}", metrics.text);
    assert!(
        metrics.text.contains(r#"licensor_rate_limited_total{surface="keygen",limit="requests"} 1"#),
        "{}",
        metrics.text
    );
}

#[tokio::test]
async fn a_client_changing_its_credential_meets_the_address_limit() {
    let app =
        spawn_app_with(Config { requests: vec![rate("3/1m")], addresses: vec![rate("5/1m")], ..Config::default() })
            .await;
    let me = app.acct("/me");
    away_from_a_minute_boundary().await;
    for i in 0..5 {
        let r = app.get(&me, &As::Bearer(format!("made-up-{i}"))).await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{}", r.text);
        assert_eq!(header(&r, "x-ratelimit-remaining"), "2", "each credential's own bucket is reported");
    }
    let r = app.get(&me, &As::Bearer("made-up-5".into())).await;
    assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS, "{}", r.text);
    assert_eq!(r.code(), "TOO_MANY_REQUESTS");
    assert_eq!(header(&r, "x-ratelimit-limit"), "5");
    // A real credential from the same address is refused too: the address is spent.
    assert_eq!(app.get(&me, &app.admin()).await.status, StatusCode::TOO_MANY_REQUESTS);
    // Another account's bucket is its own (the limit is per account and address).
    let r = app.get("/v1/accounts/another/me", &As::Bearer("made-up-6".into())).await;
    assert_ne!(r.status, StatusCode::TOO_MANY_REQUESTS, "{}", r.text);
    let metrics = app.get("/metrics", &app.admin()).await;
    assert!(
        metrics.text.contains(r#"licensor_rate_limited_total{surface="keygen",limit="addresses"} 2"#),
        "{}",
        metrics.text
    );
}

#[tokio::test]
async fn each_surface_refuses_in_its_own_format() {
    let app = spawn_app_with(Config { requests: vec![rate("1/1m")], ..Config::default() }).await;
    away_from_a_minute_boundary().await;
    let token = app.admin();
    let basic = As::Basic(app.admin_email.clone(), PASSWORD.into());

    let core = format!("/accounts/{}/core/v1/licenses", app.account_id);
    assert_eq!(app.get(&core, &token).await.status, StatusCode::OK);
    let r = app.get(&core, &token).await;
    assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(header(&r, "content-type"), "application/problem+json");
    assert_eq!(r.body["type"], "urn:licensor:problems:too-many-requests");
    assert_eq!(r.body["status"], "429");
    assert!(!header(&r, "retry-after").is_empty());

    assert_eq!(app.get("/api/licensing/v1/products", &basic).await.status, StatusCode::OK);
    let r = app.get("/api/licensing/v1/products", &basic).await;
    assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(r.body["error"]["code"], "too_many_requests", "{}", r.text);
    assert!(!header(&r, "retry-after").is_empty());

    let q = "/activation?key=NOPE&deployment=MSCL00000000000000000000000000000001&quantity=1";
    assert_eq!(app.get(q, &As::Anonymous).await.status, StatusCode::OK);
    let r = app.get(q, &As::Anonymous).await;
    assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS);
    assert!(r.text.starts_with("error: 'Too many requests."), "{}", r.text);
    assert_eq!(header(&r, "content-type"), "application/x-yaml");
}

/// Keygen's own password bucket: email and password logins per account, address and email.
#[tokio::test]
async fn password_logins_have_a_stricter_bucket() {
    let app = spawn_app_with(Config { logins: Some(rate("2/1m")), ..Config::default() }).await;
    away_from_a_minute_boundary().await;
    let tokens = app.acct("/tokens");
    let wrong = As::Basic(app.admin_email.clone(), "wrong password".into());
    for _ in 0..2 {
        let r = app.post(&tokens, &wrong, json!({})).await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{}", r.text);
    }
    let r = app.post(&tokens, &As::Basic(app.admin_email.clone(), PASSWORD.into()), json!({})).await;
    assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS, "even the right password waits: {}", r.text);
    assert_eq!(r.code(), "TOO_MANY_REQUESTS");
    // The bucket is the email's: another email is still checked; tokens are not limited here.
    let r = app.post(&tokens, &As::Basic("someone@else.example".into(), "x".into()), json!({})).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert_eq!(app.get(&app.acct("/me"), &app.admin()).await.status, StatusCode::OK);
    // The licensing surface checks a password on every request: same bucket.
    let r = app.get("/api/licensing/v1/products", &As::Basic(app.admin_email.clone(), PASSWORD.into())).await;
    assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS, "{}", r.text);
    assert_eq!(r.body["error"]["code"], "too_many_requests");
}

/// Setting up a second factor takes the password: each try counts as a password change, per
/// user, so a token cannot be used to guess the password (or a code) without limit.
#[tokio::test]
async fn second_factor_changes_count_as_password_changes() {
    let app = spawn_app_with(Config { password_changes: Some(rate("2/1m")), ..Config::default() }).await;
    away_from_a_minute_boundary().await;
    let factors = app.acct(&format!("/users/{}/second-factors", app.admin_email));
    for _ in 0..2 {
        let r = app.post(&factors, &app.admin(), json!({"meta": {"password": "wrong password"}})).await;
        assert_eq!((r.status, r.code()), (StatusCode::UNAUTHORIZED, "PASSWORD_INVALID"), "{}", r.text);
    }
    let r = app.post(&factors, &app.admin(), json!({"meta": {"password": PASSWORD}})).await;
    assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS, "even the right password waits: {}", r.text);
    // Reading is not a guess.
    assert_eq!(app.get(&factors, &app.admin()).await.status, StatusCode::OK);
}

#[tokio::test]
async fn activations_and_deactivations_are_limited_per_license() {
    let app = spawn_app_with(Config { license_changes: Some(rate("3/1h")), ..Config::default() }).await;
    let (_, _, license, key) = app.license_fixture(json!({"floating": true, "maxMachines": 5})).await;
    let activate = |fp: &'static str| {
        let body = json!({"data": {"type": "machines", "attributes": {"fingerprint": fp},
            "relationships": {"license": {"data": {"type": "licenses", "id": license}}}}});
        let app = &app;
        async move { app.post(&app.acct("/machines"), &app.admin(), body).await }
    };
    let r = activate("fp-1").await;
    assert_eq!(r.status, StatusCode::CREATED);
    let id = r.id();
    assert_eq!(app.delete(&app.acct(&format!("/machines/{id}")), &app.admin()).await.status, StatusCode::NO_CONTENT);
    assert_eq!(activate("fp-2").await.status, StatusCode::CREATED);
    let r = activate("fp-3").await;
    assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS, "{}", r.text);
    assert_eq!(r.code(), "TOO_MANY_REQUESTS");
    let retry = header(&r, "retry-after").parse::<i64>().unwrap();
    assert!((1..=3600).contains(&retry), "{retry}");
    // The same license through the activation server.
    let (_, _, body) = crate::opswat::http_get_any(
        &app,
        &format!("/activation?key={key}&deployment=MSCL00000000000000000000000000000009&quantity=1"),
    )
    .await;
    assert!(body.starts_with("error: 'Too many requests."), "{body}");
    // Another license is not affected.
    let (_, _, other, _) = app.license_fixture(json!({"floating": true, "maxMachines": 5})).await;
    let body = json!({"data": {"type": "machines", "attributes": {"fingerprint": "fp-9"},
        "relationships": {"license": {"data": {"type": "licenses", "id": other}}}}});
    assert_eq!(app.post(&app.acct("/machines"), &app.admin(), body.clone()).await.status, StatusCode::CREATED);
    // A refused activation counts too (it is the same churn), and one over the limit
    // activates nothing.
    assert_eq!(app.post(&app.acct("/machines"), &app.admin(), body).await.status, StatusCode::UNPROCESSABLE_ENTITY);
    let body = |fp: &str| {
        json!({"data": {"type": "machines", "attributes": {"fingerprint": fp},
            "relationships": {"license": {"data": {"type": "licenses", "id": other}}}}})
    };
    assert_eq!(app.post(&app.acct("/machines"), &app.admin(), body("fp-10")).await.status, StatusCode::CREATED);
    let r = app.post(&app.acct("/machines"), &app.admin(), body("fp-11")).await;
    assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS, "{}", r.text);
    let r = app.get(&app.acct(&format!("/licenses/{other}")), &app.admin()).await;
    assert_eq!(r.body["data"]["relationships"]["machines"]["meta"]["count"], 2, "{}", r.text);
}

/// A flood of password logins waits for the capped argon2 slots; validations do not queue
/// behind it.
#[tokio::test]
async fn a_login_flood_does_not_starve_validations() {
    let app = spawn_app().await;
    let (_, _, _, key) = app.license_fixture(json!({})).await;
    let flood: Vec<_> = (0..24)
        .map(|i| {
            let client = app.client.clone();
            let url = app.url(&app.acct("/tokens"));
            tokio::spawn(async move {
                client
                    .post(url)
                    .basic_auth(format!("nobody{i}@example.com"), Some("wrong"))
                    .send()
                    .await
                    .unwrap()
                    .status()
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(50)).await;
    let waiting = {
        let r = app.get("/metrics", &app.admin()).await;
        let line = r.text.lines().find(|l| l.starts_with("licensor_password_checks_waiting ")).unwrap().to_string();
        line.rsplit(' ').next().unwrap().parse::<u64>().unwrap()
    };
    assert!(waiting > 0, "password checks run unbounded");
    for _ in 0..10 {
        let r =
            app.post(&app.acct("/licenses/actions/validate-key"), &As::Anonymous, json!({"meta": {"key": key}})).await;
        assert_eq!(r.status, StatusCode::OK);
    }
    let mut unfinished = 0;
    for f in &flood {
        if !f.is_finished() {
            unfinished += 1;
        }
    }
    assert!(unfinished > 0, "validations finished only after the flood");
    for f in flood {
        assert_eq!(f.await.unwrap(), StatusCode::UNAUTHORIZED);
    }
}

/// On PostgreSQL the nodes share counts: exactly for logins and activations, within about a
/// second's worth of requests for the general windows.
#[tokio::test]
async fn nodes_share_their_counts_on_postgres() {
    let app = spawn_app().await;
    if !matches!(app.db, licensor::db::Db::Postgres(_)) {
        return;
    }
    let envs = [
        ("LICENSOR_RATE_LIMITS", "20/1m"),
        ("LICENSOR_LOGIN_RATE_LIMIT", "4/1m"),
        ("LICENSOR_ACCOUNT", app.slug.as_str()),
    ];
    let (dir_a, dir_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (_a, url_a) = app.serve_process_with(dir_a.path(), &envs).await;
    let (_b, url_b) = app.serve_process_with(dir_b.path(), &envs).await;
    let client = reqwest::Client::new();
    let me = format!("/v1/accounts/{}/me", app.slug);
    away_from_a_minute_boundary().await;

    // Logins alternate between the nodes: the fifth is refused, wherever it lands.
    let tokens = format!("/v1/accounts/{}/tokens", app.slug);
    let mut statuses = Vec::new();
    for i in 0..6 {
        let url = if i % 2 == 0 { &url_a } else { &url_b };
        let r = client.post(format!("{url}{tokens}")).basic_auth(&app.admin_email, Some("wrong")).send().await.unwrap();
        statuses.push(r.status().as_u16());
    }
    assert_eq!(statuses, [401, 401, 401, 401, 429, 429]);

    // 15 requests on node A, a sync, then node B admits only what is left of the 20.
    for _ in 0..15 {
        let r = client.get(format!("{url_a}{me}")).bearer_auth(&app.admin_token).send().await.unwrap();
        assert_eq!(r.status(), 200);
    }
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let mut admitted = 0;
    for _ in 0..10 {
        let r = client.get(format!("{url_b}{me}")).bearer_auth(&app.admin_token).send().await.unwrap();
        if r.status() == 200 {
            admitted += 1;
        }
    }
    assert!(admitted <= 5, "node B admitted {admitted} after node A used 15 of 20");
}
