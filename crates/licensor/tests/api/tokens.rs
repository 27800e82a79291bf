use reqwest::StatusCode;
use serde_json::json;

use crate::helpers::*;

#[tokio::test]
async fn admin_generates_a_token_with_basic_auth() {
    let app = spawn_app().await;
    let r = app.post(&app.acct("/tokens"), &As::Basic(app.admin_email.clone(), PASSWORD.into()), json!(null)).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    assert_eq!(r.body["data"]["type"], "tokens");
    assert_eq!(r.attr("kind"), "admin-token");
    let token = r.attr("token").as_str().unwrap().to_string();
    assert!(token.starts_with("admin-") && token.ends_with("v3"));
    // Admin tokens last 90 days unless asked otherwise (unlike Keygen's, which never expire).
    let expiry = chrono::DateTime::parse_from_rfc3339(r.attr("expiry").as_str().expect("an expiry")).unwrap();
    let days = (expiry.with_timezone(&chrono::Utc) - chrono::Utc::now()).num_days();
    assert!((89..=90).contains(&days), "{days}");
    let forever = json!({"data": {"type": "tokens", "attributes": {"expiry": null}}});
    let r2 = app.post(&app.acct("/tokens"), &As::Basic(app.admin_email.clone(), PASSWORD.into()), forever).await;
    assert!(r2.attr("expiry").is_null(), "an explicit null asks for none: {}", r2.text);
    assert_eq!(r.body["data"]["relationships"]["bearer"]["data"]["type"], "users");
    // The new token works; its secret is never stored in clear.
    let me = app.get(&app.acct("/me"), &As::Bearer(token.clone())).await;
    assert_eq!(me.status, StatusCode::OK);
    let stored = licensor::store::tokens::find(&app.db, app.account_id.parse().unwrap(), r.id().parse().unwrap())
        .await
        .unwrap()
        .unwrap();
    assert_ne!(stored.digest, token);
    assert!(!stored.digest.contains(&token[6..20]));
    // Listing never shows secrets.
    let list = app.get(&app.acct("/tokens"), &app.admin()).await;
    assert!(list.body["data"].as_array().unwrap().iter().all(|t| t["attributes"].get("token").is_none()));
}

/// Keygen's codes for a refused password login (features/api/v1/tokens/generate.feature), each
/// with `source.header: Authorization`.
#[tokio::test]
async fn wrong_password_or_unknown_email_is_401() {
    let app = spawn_app().await;
    let managed = app
        .post(
            &app.acct("/users"),
            &app.admin(),
            json!({"data": {"type": "users", "attributes": {"email": "managed@example.com"}}}),
        )
        .await;
    assert_eq!(managed.status, StatusCode::CREATED, "{}", managed.text);
    for (email, pw, code, detail) in [
        (app.admin_email.as_str(), "nope-nope-nope", "PASSWORD_INVALID", "password must be valid"),
        ("ghost@nowhere.example", PASSWORD, "EMAIL_INVALID", "email must be valid"),
        ("managed@example.com", "anything-at-all", "PASSWORD_NOT_SUPPORTED", "password is unsupported"),
    ] {
        let r = app.post(&app.acct("/tokens"), &As::Basic(email.into(), pw.into()), json!(null)).await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{code}");
        assert_eq!((r.code(), r.body["errors"][0]["detail"].as_str()), (code, Some(detail)));
        assert_eq!(r.body["errors"][0]["source"]["header"], "Authorization");
    }
    let r = app.post(&app.acct("/tokens"), &As::Anonymous, json!(null)).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn user_tokens_expire_in_two_weeks_and_users_see_only_their_own() {
    let app = spawn_app().await;
    app.create_user("jo@example.com").await;
    let r = app.post(&app.acct("/tokens"), &As::Basic("jo@example.com".into(), PASSWORD.into()), json!(null)).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    assert_eq!(r.attr("kind"), "user-token");
    let expiry = licensor::time::parse_iso(r.attr("expiry").as_str().unwrap()).unwrap();
    let in_two_weeks = licensor::time::now_ms() + 14 * licensor::time::DAY;
    assert!((expiry - in_two_weeks).abs() < 60_000);
    let jo = As::Bearer(r.attr("token").as_str().unwrap().to_string());
    let list = app.get(&app.acct("/tokens"), &jo).await;
    assert_eq!(list.body["data"].as_array().unwrap().len(), 1);
    let admin_tokens = app.get(&app.acct("/tokens"), &app.admin()).await;
    let admin_token_id = admin_tokens.body["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["attributes"]["kind"] == "admin-token")
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    // Lookups are scoped to the caller's tokens, as in Keygen: another's is not found.
    let r = app.get(&app.acct(&format!("/tokens/{admin_token_id}")), &jo).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn regenerate_and_revoke() {
    let app = spawn_app().await;
    let r = app.post(&app.acct("/tokens"), &As::Basic(app.admin_email.clone(), PASSWORD.into()), json!(null)).await;
    let id = r.id();
    let old = As::Bearer(r.attr("token").as_str().unwrap().to_string());
    let r = app.put(&app.acct(&format!("/tokens/{id}")), &old, json!(null)).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let new = As::Bearer(r.attr("token").as_str().unwrap().to_string());
    assert_eq!(app.get(&app.acct("/me"), &old).await.status, StatusCode::UNAUTHORIZED);
    assert_eq!(app.get(&app.acct("/me"), &new).await.status, StatusCode::OK);
    let r = app.delete(&app.acct(&format!("/tokens/{id}")), &new).await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    assert_eq!(app.get(&app.acct("/me"), &new).await.status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn product_and_license_tokens() {
    let app = spawn_app().await;
    let (product, _, license, _) = app.license_fixture(json!({})).await;
    let r = app.post(&app.acct(&format!("/products/{product}/tokens")), &app.admin(), json!(null)).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.attr("kind"), "product-token");
    assert!(r.attr("token").as_str().unwrap().starts_with("prod-"));
    let prod = As::Bearer(r.attr("token").as_str().unwrap().to_string());
    let r = app.get(&app.acct(&format!("/licenses/{license}")), &prod).await;
    assert_eq!(r.status, StatusCode::OK);
    let r = app
        .post(
            &app.acct(&format!("/licenses/{license}/tokens")),
            &prod,
            json!({"data": {"type": "tokens", "attributes": {"maxActivations": 3}}}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.attr("kind"), "activation-token");
    assert_eq!(r.attr("maxActivations"), 3);
    assert!(r.attr("token").as_str().unwrap().starts_with("activ-"));
    let lic = As::Bearer(r.attr("token").as_str().unwrap().to_string());
    let me = app.get(&app.acct("/me"), &lic).await;
    assert_eq!(me.id(), license);
    // A token's UUID is not a token.
    let r = app.get(&app.acct("/me"), &As::Bearer(r.id())).await;
    assert_eq!(r.code(), "TOKEN_FORMAT_INVALID");
}

/// As in Keygen: a license's token is refused only for a banned owner or a policy without token
/// authentication, so a suspended license still activates with it and learns its state by
/// validating. Its key, by contrast, must be in good standing, checked before the strategy.
#[tokio::test]
async fn license_tokens_and_keys_on_suspended_and_banned_licenses() {
    let app = spawn_app().await;
    let (_, policy, license, key) = app.license_fixture(json!({"authenticationStrategy": "TOKEN"})).await;
    let r = app.post(&app.acct(&format!("/licenses/{license}/tokens")), &app.admin(), json!(null)).await;
    let token = As::Bearer(r.attr("token").as_str().unwrap().to_string());
    let r = app.post(&app.acct(&format!("/licenses/{license}/actions/suspend")), &app.admin(), json!(null)).await;
    assert_eq!(r.attr("suspended"), true);
    let activate = json!({"data": {"type": "machines", "attributes": {"fingerprint": "fp-suspended"},
        "relationships": {"license": {"data": {"type": "licenses", "id": license}}}}});
    let r = app.post(&app.acct("/machines"), &token, activate).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    let r = app.get(&app.acct(&format!("/licenses/{license}/actions/validate")), &token).await;
    assert_eq!((r.status, r.body["meta"]["code"].as_str()), (StatusCode::OK, Some("SUSPENDED")));
    // The key of a suspended license is refused as suspended, before the TOKEN-only strategy.
    let r = app.get(&app.acct("/me"), &As::License(key)).await;
    assert_eq!((r.status, r.code()), (StatusCode::FORBIDDEN, "LICENSE_SUSPENDED"));
    // A banned owner bars the license's token.
    let (owned, _) = app.create_license(&policy, json!({})).await;
    let user = app.create_user("banned@example.com").await;
    app.set_owner(&owned, &user).await;
    let r = app.post(&app.acct(&format!("/licenses/{owned}/tokens")), &app.admin(), json!(null)).await;
    let owned_token = As::Bearer(r.attr("token").as_str().unwrap().to_string());
    assert_eq!(app.get(&app.acct("/me"), &owned_token).await.status, StatusCode::OK);
    let r = app.post(&app.acct(&format!("/users/{user}/actions/ban")), &app.admin(), json!(null)).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let r = app.get(&app.acct("/me"), &owned_token).await;
    assert_eq!((r.status, r.code()), (StatusCode::FORBIDDEN, "USER_BANNED"));
}

/// Credentials are checked before the body, and only users and admins generate their own
/// tokens with `POST /tokens` (Keygen's token policy): a product or license gets its tokens
/// from an admin.
#[tokio::test]
async fn token_generation_is_for_users_and_credentials_come_first() {
    let app = spawn_app().await;
    for path in ["/tokens", "/processes", "/components"] {
        let r = app.post(&app.acct(path), &As::Anonymous, json!({})).await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{path}: {}", r.text);
        let r = app.post(&app.acct(path), &As::Bearer("admin-nope".into()), json!({})).await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{path}: {}", r.text);
    }
    let (product, _, _, key) = app.license_fixture(json!({"authenticationStrategy": "LICENSE"})).await;
    let r = app.post(&app.acct(&format!("/products/{product}/tokens")), &app.admin(), json!(null)).await;
    let product_token = As::Bearer(r.attr("token").as_str().unwrap().to_string());
    for who in [As::License(key), product_token] {
        let r = app.post(&app.acct("/tokens"), &who, json!(null)).await;
        assert_eq!(r.status, StatusCode::FORBIDDEN, "{who:?}: {}", r.text);
    }
    assert_eq!(app.post(&app.acct("/tokens"), &app.admin(), json!(null)).await.status, StatusCode::CREATED);
}

/// A password changes with the old one, by the user themself, and signs them out everywhere
/// else; only the vendor sets one outright, which signs the user out everywhere.
#[tokio::test]
async fn a_password_change_needs_the_old_one_and_revokes_other_tokens() {
    let app = spawn_app().await;
    let user = app.create_user("changer@example.com").await;
    let login = |password: &'static str| {
        let app = &app;
        async move {
            let r = app
                .post(&app.acct("/tokens"), &As::Basic("changer@example.com".into(), password.into()), json!(null))
                .await;
            (r.status, r.body["data"]["attributes"]["token"].as_str().map(|t| As::Bearer(t.to_string())))
        }
    };
    let (_, elsewhere) = login(PASSWORD).await;
    let (_, here) = login(PASSWORD).await;
    let (elsewhere, here) = (elsewhere.unwrap(), here.unwrap());
    let path = app.acct(&format!("/users/{user}/actions/update-password"));
    let r = app.post(&path, &here, json!({"meta": {"oldPassword": "not it", "newPassword": "a new passphrase"}})).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{}", r.text);
    let r = app.post(&path, &here, json!({"meta": {"oldPassword": PASSWORD, "newPassword": "short"}})).await;
    assert_eq!((r.status, r.code()), (StatusCode::UNPROCESSABLE_ENTITY, "PASSWORD_TOO_SHORT"));
    let r = app
        .patch(
            &app.acct(&format!("/users/{user}")),
            &here,
            json!({"data": {"type": "users", "attributes": {"password": "a new passphrase"}}}),
        )
        .await;
    assert_eq!((r.status, r.pointer()), (StatusCode::BAD_REQUEST, "/data/attributes/password"), "{}", r.text);
    // An admin may not change a user's password with this action (it is the user's).
    let r = app
        .post(&path, &app.admin(), json!({"meta": {"oldPassword": PASSWORD, "newPassword": "a new passphrase"}}))
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);

    let r = app.post(&path, &here, json!({"meta": {"oldPassword": PASSWORD, "newPassword": "a new passphrase"}})).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(app.get(&app.acct("/me"), &here).await.status, StatusCode::OK, "the token used stays");
    assert_eq!(app.get(&app.acct("/me"), &elsewhere).await.status, StatusCode::UNAUTHORIZED, "the others go");
    assert_eq!(login(PASSWORD).await.0, StatusCode::UNAUTHORIZED);
    let (status, fresh) = login("a new passphrase").await;
    assert_eq!(status, StatusCode::CREATED);

    // The vendor sets a password outright: every token of the user goes.
    let r = app.patch_attributes("users", &user, json!({"password": "the vendor's choice"})).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    for t in [here, fresh.unwrap()] {
        assert_eq!(app.get(&app.acct("/me"), &t).await.status, StatusCode::UNAUTHORIZED);
    }
}
