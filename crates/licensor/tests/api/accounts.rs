use reqwest::StatusCode;
use serde_json::json;

use crate::helpers::*;

#[tokio::test]
async fn ping_answers_without_an_account() {
    let app = spawn_app().await;
    let r = app.get("/v1/ping", &As::Anonymous).await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(r.headers["content-type"].to_str().unwrap().starts_with("application/vnd.api+json"));
}

#[tokio::test]
async fn account_shows_its_public_keys_by_id_and_by_slug() {
    use base64::Engine;
    let app = spawn_app().await;
    let by_id = app.get(&app.acct(""), &app.admin()).await;
    assert_eq!(by_id.status, StatusCode::OK, "{}", by_id.text);
    assert_eq!(by_id.attr("slug"), &json!(app.slug));
    let ed = by_id.body["meta"]["keys"]["ed25519"].as_str().unwrap();
    let hex_key = String::from_utf8(base64::engine::general_purpose::STANDARD.decode(ed).unwrap()).unwrap();
    assert_eq!(hex_key.len(), 64, "Ed25519 public key is shown as base64 of its hex form");
    let rsa =
        base64::engine::general_purpose::STANDARD.decode(by_id.body["meta"]["publicKey"].as_str().unwrap()).unwrap();
    assert!(String::from_utf8(rsa).unwrap().starts_with("-----BEGIN PUBLIC KEY-----"));
    let by_slug = app.get(&format!("/v1/accounts/{}", app.slug), &app.admin()).await;
    assert_eq!(by_slug.id(), app.account_id);
}

#[tokio::test]
async fn unknown_account_is_404_in_keygen_format() {
    let app = spawn_app().await;
    let r = app.get("/v1/accounts/no-such-account/licenses", &app.admin()).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert_eq!(r.code(), "NOT_FOUND");
    assert_eq!(r.body["errors"][0]["title"], "Not found");
    assert!(r.body["meta"]["id"].is_string(), "error documents carry the request id");
}

#[tokio::test]
async fn private_keys_are_encrypted_at_rest() {
    let app = spawn_app().await;
    let row = licensor::store::accounts::find(&app.db, &app.account_id).await.unwrap().unwrap();
    // A sealed Ed25519 key is nonce + ciphertext + tag, never the 32 raw bytes.
    assert_eq!(row.ed25519_secret.len(), 12 + 32 + 16);
    let keys =
        licensor::crypto::AccountKeys::unseal(&app.master, row.id, &row.ed25519_secret, &row.rsa_secret).unwrap();
    assert_eq!(hex::encode(keys.ed25519.verifying_key().as_bytes()), row.ed25519_public);
    assert!(licensor::crypto::AccountKeys::unseal(
        &licensor::crypto::MasterKey::generate(),
        row.id,
        &row.ed25519_secret,
        &row.rsa_secret
    )
    .is_err());
}

#[tokio::test]
async fn me_shows_the_bearer() {
    let app = spawn_app().await;
    let r = app.get(&app.acct("/me"), &app.admin()).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.body["data"]["type"], "users");
    assert_eq!(r.attr("email"), &json!(app.admin_email));
    let (_, _, _, key) = app.license_fixture(json!({"authenticationStrategy": "LICENSE"})).await;
    let r = app.get(&app.acct("/me"), &As::License(key.clone())).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.body["data"]["type"], "licenses");
    assert_eq!(r.attr("key"), &json!(key));
    let r = app.get(&app.acct("/me"), &As::Anonymous).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert_eq!(r.code(), "TOKEN_MISSING");
    assert_eq!(r.headers["www-authenticate"], "Bearer realm=\"keygen\"");
}

#[tokio::test]
async fn admin_updates_account_name_and_slug() {
    let app = spawn_app().await;
    let r = app
        .patch(
            &app.acct(""),
            &app.admin(),
            json!({"data": {"type": "accounts", "attributes": {"name": "Acme Inc", "slug": "acme-renamed"}}}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.attr("name"), "Acme Inc");
    let r = app.get("/v1/accounts/acme-renamed", &app.admin()).await;
    assert_eq!(r.status, StatusCode::OK);
    let r = app
        .patch(&app.acct(""), &app.admin(), json!({"data": {"type": "accounts", "attributes": {"slug": "Bad Slug"}}}))
        .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(r.pointer(), "/data/attributes/slug");
}

/// Two accounts on one server: neither sees the other's data, whatever credential it uses.
#[tokio::test]
async fn tenants_are_isolated() {
    let app = spawn_app().await;
    let (product, policy, license, key) = app.license_fixture(json!({"authenticationStrategy": "MIXED"})).await;
    let other = licensor::bootstrap::create_account(&app.db, &app.master, "other-co", "boss@other.example", PASSWORD)
        .await
        .unwrap();
    let (_, other_token) =
        licensor::auth::issue_token(&app.db, other.account.id, "user", other.admin.id, "admin", Default::default())
            .await
            .unwrap();
    let other_admin = As::Bearer(other_token);
    for path in [
        format!("/products/{product}"),
        format!("/policies/{policy}"),
        format!("/licenses/{license}"),
        format!("/licenses/{key}"),
    ] {
        let r = app.get(&format!("/v1/accounts/other-co{path}"), &other_admin).await;
        assert_eq!(r.status, StatusCode::NOT_FOUND, "{path} visible from another account");
    }
    let r = app.get("/v1/accounts/other-co/licenses", &other_admin).await;
    assert_eq!(r.body["data"].as_array().unwrap().len(), 0);
    // Our admin token means nothing in the other account, and theirs nothing in ours.
    let r = app.get("/v1/accounts/other-co/licenses", &app.admin()).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert_eq!(r.code(), "TOKEN_INVALID");
    let r = app.get(&app.acct("/licenses"), &other_admin).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    // A license key works only in its own account.
    let r = app.get("/v1/accounts/other-co/me", &As::License(key)).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert_eq!(r.code(), "LICENSE_INVALID");
    // Writing into our account with their token fails and leaves nothing behind.
    let r = app
        .post(
            &app.acct("/products"),
            &As::Bearer("admin-deadbeefv3".into()),
            json!({"data": {"type": "products", "attributes": {"name": "X"}}}),
        )
        .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    let r = app.get(&app.acct("/products"), &app.admin()).await;
    assert_eq!(r.body["data"].as_array().unwrap().len(), 1);
}
