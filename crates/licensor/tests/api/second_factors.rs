//! Second factors (TOTP), ported from Keygen's users/relationships/second_factors.feature and
//! the 2FA scenarios of tokens/generate.feature, with what no scenario covers: a code taken
//! once, a disabled factor not asked for, the licensing surface's Basic logins, the console.

use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::helpers::*;

fn base32_decode(s: &str) -> Vec<u8> {
    let mut bits: u64 = 0;
    let mut n = 0;
    let mut out = Vec::new();
    for c in s.bytes() {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'2'..=b'7' => c - b'2' + 26,
            _ => panic!("not base32: {s}"),
        } as u64;
        bits = (bits << 5) | v;
        n += 5;
        if n >= 8 {
            n -= 8;
            out.push((bits >> n) as u8);
        }
    }
    out
}

/// The code an authenticator app shows now for `secret` (base32).
fn code(secret: &str) -> String {
    let now = chrono::Utc::now().timestamp();
    let step = licensor::domain::totp::step_of(now);
    format!("{:06}", licensor::domain::totp::code_at(&base32_decode(secret), step, 6))
}

/// A wrong code: the right one plus one.
fn wrong(secret: &str) -> String {
    format!("{:06}", (code(secret).parse::<u32>().unwrap() + 1) % 1_000_000)
}

/// Waits for the next 30-second step (a code is taken once per step).
async fn next_step() {
    let now = chrono::Utc::now().timestamp_millis();
    let wait = 30_000 - now.rem_euclid(30_000) + 50;
    tokio::time::sleep(std::time::Duration::from_millis(wait as u64)).await;
}

async fn login(app: &TestApp, email: &str, otp: Option<&str>) -> Res {
    let body = match otp {
        Some(o) => json!({"meta": {"otp": o}}),
        None => Value::Null,
    };
    app.post(&app.acct("/tokens"), &As::Basic(email.into(), PASSWORD.into()), body).await
}

#[tokio::test]
async fn second_factors_as_keygen_has_them() {
    let app = spawn_app().await;
    let admin = app.admin();
    let me = app.acct(&format!("/users/{}/second-factors", app.admin_email));
    let r = app.get(&me, &admin).await;
    assert_eq!((r.status, r.body["data"].as_array().map(Vec::len)), (StatusCode::OK, Some(0)), "{}", r.text);

    // "Admin creates a second factor … incorrect password" / "… correct password".
    let r = app.post(&me, &admin, json!({"meta": {"password": "h4x0r"}})).await;
    assert_eq!((r.status, r.code(), r.pointer()), (StatusCode::UNAUTHORIZED, "PASSWORD_INVALID", "/meta/password"));
    let r = app.post(&me, &admin, json!({})).await;
    assert_eq!((r.status, r.pointer()), (StatusCode::BAD_REQUEST, "/meta"), "{}", r.text);
    let r = app.post(&me, &admin, json!({"meta": {"password": PASSWORD}})).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    assert_eq!(r.body["data"]["type"], "second-factors");
    assert_eq!(r.attr("enabled"), false);
    let secret = r.attr("secret").as_str().unwrap().to_string();
    assert_eq!(secret.len(), 32);
    let uri = r.attr("uri").as_str().unwrap();
    assert!(
        uri.starts_with("otpauth://totp/Licensor:admin%40")
            && uri.ends_with(&format!("secret={secret}&issuer=Licensor")),
        "{uri}"
    );
    let factor = r.id();
    assert_eq!(
        r.headers["location"],
        format!(
            "/v1/accounts/{}/users/{}/second-factors/{factor}",
            app.account_id,
            r.body["data"]["relationships"]["user"]["data"]["id"].as_str().unwrap()
        )
    );
    // "… while having 2FA disabled and providing a correct password": one factor per user.
    let r = app.post(&me, &admin, json!({"meta": {"password": PASSWORD}})).await;
    assert_eq!(r.status, StatusCode::CONFLICT, "{}", r.text);

    // A factor set up but not enabled is not asked for at login.
    assert_eq!(login(&app, &app.admin_email, None).await.status, StatusCode::CREATED);

    // Enabling needs a code of this factor.
    let path = format!("{me}/{factor}");
    let enable = |enabled: bool, otp: Option<String>| {
        let (app, path, admin) = (&app, path.clone(), admin.clone());
        async move {
            let mut body = json!({"data": {"type": "second-factors", "attributes": {"enabled": enabled}}});
            if let Some(o) = otp {
                body["meta"] = json!({"otp": o});
            }
            app.patch(&path, &admin, body).await
        }
    };
    let r = enable(true, None).await;
    assert_eq!((r.status, r.pointer()), (StatusCode::BAD_REQUEST, "/meta"), "{}", r.text);
    let r = enable(true, Some(wrong(&secret))).await;
    assert_eq!((r.status, r.code(), r.pointer()), (StatusCode::UNAUTHORIZED, "OTP_INVALID", "/meta/otp"));
    let r = enable(true, Some(code(&secret))).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.attr("enabled"), true);
    assert!(r.body["data"]["attributes"].get("secret").is_none() && r.body["data"]["attributes"].get("uri").is_none());
    let r = app.get(&path, &admin).await;
    assert!(r.body["data"]["attributes"].get("uri").is_none(), "hidden once enabled: {}", r.text);

    // tokens/generate.feature: "Admin with 2FA enabled generates a new token via basic
    // authentication without an OTP code / with an invalid OTP code / with a valid OTP code".
    let r = login(&app, &app.admin_email, None).await;
    assert_eq!((r.status, r.code(), r.pointer()), (StatusCode::UNAUTHORIZED, "OTP_REQUIRED", "/meta/otp"));
    assert_eq!(r.body["errors"][0]["detail"], "second factor is required");
    assert_eq!(r.body["errors"].as_array().unwrap().len(), 1);
    let r = login(&app, &app.admin_email, Some(&wrong(&secret))).await;
    assert_eq!((r.status, r.code()), (StatusCode::UNAUTHORIZED, "OTP_INVALID"), "{}", r.text);
    // The code enabling the factor was taken; the next step's code logs in, once.
    next_step().await;
    let now_code = code(&secret);
    // A right code with a wrong password is refused for the password and does not use it up.
    let body = json!({"meta": {"otp": now_code}});
    let r = app.post(&app.acct("/tokens"), &As::Basic(app.admin_email.clone(), "h4x0r".into()), body).await;
    assert_eq!((r.status, r.code()), (StatusCode::UNAUTHORIZED, "PASSWORD_INVALID"), "{}", r.text);
    let r = login(&app, &app.admin_email, Some(&now_code)).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    let r = login(&app, &app.admin_email, Some(&now_code)).await;
    assert_eq!(r.code(), "OTP_INVALID", "a code is good once: {}", r.text);
    // Token logins never ask for a code; the licensing surface's Basic login cannot carry one.
    assert_eq!(app.get(&app.acct("/me"), &admin).await.status, StatusCode::OK);
    let r = app.get("/api/licensing/v1/products", &As::Basic(app.admin_email.clone(), PASSWORD.into())).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{}", r.text);

    // Others: a user sees only their own (an admin's is 404), products may not (403).
    app.create_user("u@example.com").await;
    let t = login(&app, "u@example.com", None).await;
    let user = As::Bearer(t.attr("token").as_str().unwrap().to_string());
    assert_eq!(app.get(&me, &user).await.status, StatusCode::NOT_FOUND);
    let theirs = app.acct("/users/u@example.com/second-factors");
    let r = app.post(&theirs, &user, json!({"meta": {"password": PASSWORD}})).await;
    assert_eq!(r.status, StatusCode::CREATED, "a user sets up their own: {}", r.text);
    let (product, _, _, _) = app.license_fixture(json!({})).await;
    let r = app.post(&app.acct(&format!("/products/{product}/tokens")), &admin, Value::Null).await;
    let product_token = As::Bearer(r.attr("token").as_str().unwrap().to_string());
    assert_eq!(app.get(&theirs, &product_token).await.status, StatusCode::FORBIDDEN);
    assert_eq!(app.get(&me, &product_token).await.status, StatusCode::NOT_FOUND);

    // Deleting an enabled factor needs a code; then logins need none.
    let r = app.req(reqwest::Method::DELETE, &path, &admin, Some(json!({"meta": {"otp": wrong(&secret)}}))).await;
    assert_eq!((r.status, r.code()), (StatusCode::UNAUTHORIZED, "OTP_INVALID"), "{}", r.text);
    next_step().await;
    let r = app.req(reqwest::Method::DELETE, &path, &admin, Some(json!({"meta": {"otp": code(&secret)}}))).await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.text);
    assert_eq!(login(&app, &app.admin_email, None).await.status, StatusCode::CREATED);
    // The events went to the log.
    let r = app.get(&app.acct("/event-logs?limit=100"), &admin).await;
    let events: Vec<&str> =
        r.body["data"].as_array().unwrap().iter().map(|e| e["attributes"]["event"].as_str().unwrap()).collect();
    for e in ["second-factor.created", "second-factor.enabled", "second-factor.deleted"] {
        assert!(events.contains(&e), "{e} in {events:?}");
    }
    assert!(!r.text.contains(&secret), "no secret in the event log");
}

/// The console's admins sign in with their second factor's code too.
#[tokio::test]
async fn console_admins_sign_in_with_their_second_factor() {
    let app = spawn_app().await;
    let me = app.acct(&format!("/users/{}/second-factors", app.admin_email));
    let r = app.post(&me, &app.admin(), json!({"meta": {"password": PASSWORD}})).await;
    let (factor, secret) = (r.id(), r.attr("secret").as_str().unwrap().to_string());
    let enabling = code(&secret);
    let body = json!({"data": {"type": "second-factors", "attributes": {"enabled": true}}, "meta": {"otp": enabling}});
    assert_eq!(app.patch(&format!("{me}/{factor}"), &app.admin(), body).await.status, StatusCode::OK);

    let mut v = crate::console::Visitor::new(&app);
    let form = v.get("/admin/sign-in").await;
    assert!(form.body.contains("name=\"otp\""), "{}", form.body);
    let csrf = form.csrf();
    let r = console_sign_in(&mut v, &app, &csrf, None).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert!(r.body.contains("Enter the code from your authenticator app."), "{}", r.body);
    let r = console_sign_in(&mut v, &app, &csrf, Some(&enabling)).await;
    assert!(r.body.contains("not valid (or was used already)"), "the code that enabled it is spent: {}", r.body);
    next_step().await;
    let r = console_sign_in(&mut v, &app, &csrf, Some(&code(&secret))).await;
    assert_eq!((r.status, r.location()), (StatusCode::SEE_OTHER, "/admin"), "{}", r.body);
}

async fn console_sign_in(
    v: &mut crate::console::Visitor,
    app: &TestApp,
    csrf: &str,
    otp: Option<&str>,
) -> crate::console::Page {
    let mut form = vec![("csrf", csrf), ("email", app.admin_email.as_str()), ("password", PASSWORD)];
    if let Some(o) = otp {
        form.push(("otp", o));
    }
    v.post("/admin/sign-in", &form).await
}
