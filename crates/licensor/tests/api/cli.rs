//! The command line: printing public keys, verifying offline, and the air-gapped OPSWAT round
//! trip driven entirely by `licensor` commands on the "offline" side.

use std::process::Command;

use serde_json::{json, Value};

use crate::helpers::*;
use crate::opswat::http_get;

fn licensor(app: &TestApp, args: &[&str]) -> (bool, String, String) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_licensor"));
    cmd.args(args).env("LICENSOR_DATABASE_URL", &app.database_url).env_remove("LICENSOR_DATABASE_SCHEMA");
    if let Some(schema) = &app.schema {
        cmd.env("LICENSOR_DATABASE_SCHEMA", schema);
    }
    let out = cmd.output().expect("run licensor");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test]
async fn offline_round_trip_from_the_command_line() {
    let app = spawn_app().await;
    let (_, _, _, key) = app.license_fixture(json!({"floating": true, "maxMachines": 1})).await;
    let (ok, out, err) = licensor(&app, &["keys", "--account", &app.slug]);
    assert!(ok, "{err}");
    let keys: Value = serde_json::from_str(&out).unwrap();
    let public = keys["ed25519"].as_str().unwrap().to_string();
    assert_eq!(keys["account_id"], json!(app.account_id));
    assert!(keys["rsa"].as_str().unwrap().starts_with("-----BEGIN PUBLIC KEY-----"));

    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("product").display().to_string();
    let (ok, deployment, _) = licensor(&app, &["offline", "deployment-id", "--dir", &state, "--prefix", "MSCL"]);
    assert!(ok);
    let deployment = deployment.trim().to_string();
    assert!(deployment.starts_with("MSCL") && deployment.len() == 36, "{deployment}");

    // Connected machine: fetch the file. Offline machine: verify, install, report.
    let (_, _, file) = http_get(&app, &format!("/activation?key={key}&deployment={deployment}&quantity=1")).await;
    let path = dir.path().join("license.yml");
    std::fs::write(&path, &file).unwrap();
    let (ok, out, err) =
        licensor(&app, &["verify", "--public-key", &public, "--deployment", &deployment, path.to_str().unwrap()]);
    assert!(ok, "{err}");
    assert_eq!(serde_json::from_str::<Value>(&out).unwrap()["key"], json!(key));
    let (ok, _, err) = licensor(
        &app,
        &[
            "verify",
            "--public-key",
            &public,
            "--deployment",
            "MSCL00000000000000000000000000000000",
            path.to_str().unwrap(),
        ],
    );
    assert!(!ok && err.contains("another machine"), "{err}");
    let (ok, out, err) =
        licensor(&app, &["offline", "install", "--dir", &state, "--public-key", &public, path.to_str().unwrap()]);
    assert!(ok, "{err}");
    assert_eq!(serde_json::from_str::<Value>(&out).unwrap()["success"], true);
    let (ok, out, _) = licensor(&app, &["offline", "info", "--dir", &state, "--public-key", &public]);
    assert!(ok);
    let info: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(info["deployment"], json!(deployment));
    assert_eq!(info["max_node_count"], "1");

    // A tampered file is refused and nothing is installed over the good one.
    std::fs::write(&path, file.replace("licensed_to: '", "licensed_to: 'X")).unwrap();
    let (ok, _, err) =
        licensor(&app, &["offline", "install", "--dir", &state, "--public-key", &public, path.to_str().unwrap()]);
    assert!(!ok, "tampered file installed");
    assert!(err.starts_with("error:"), "{err}");

    // Deactivate on the server, forget locally: the product reports no license.
    let (_, _, body) = http_get(&app, &format!("/deactivation?key={key}&deployment={deployment}")).await;
    assert_eq!(body, "result: ok");
    assert!(licensor(&app, &["offline", "remove", "--dir", &state]).0);
    let (_, out, _) = licensor(&app, &["offline", "info", "--dir", &state, "--public-key", &public]);
    assert_eq!(serde_json::from_str::<Value>(&out).unwrap(), json!({"deployment_id": deployment}));
}

#[tokio::test]
async fn verify_signed_keys_and_license_files() {
    let app = spawn_app().await;
    let (_, _, license, key) = app.license_fixture(json!({"scheme": "ED25519_SIGN"})).await;
    let (_, out, _) = licensor(&app, &["keys", "--account", &app.account_id]);
    let public = serde_json::from_str::<Value>(&out).unwrap()["ed25519"].as_str().unwrap().to_string();
    let (ok, out, err) = licensor(&app, &["verify", "--public-key", &public, &key]);
    assert!(ok, "{err}");
    assert_eq!(serde_json::from_str::<Value>(&out).unwrap()["license"]["id"], json!(license));
    let mut flipped = key.clone().into_bytes();
    flipped[10] ^= 1;
    let (ok, _, _) = licensor(&app, &["verify", "--public-key", &public, &String::from_utf8(flipped).unwrap()]);
    assert!(!ok);

    let r = app
        .post(
            &app.acct(&format!("/licenses/{license}/actions/check-out")),
            &app.admin(),
            json!({"meta": {"encrypt": true}}),
        )
        .await;
    let cert = r.attr("certificate").as_str().unwrap().to_string();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("license.lic");
    std::fs::write(&path, &cert).unwrap();
    let (ok, out, err) =
        licensor(&app, &["verify", "--public-key", &public, "--license-key", &key, path.to_str().unwrap()]);
    assert!(ok, "{err}");
    assert_eq!(serde_json::from_str::<Value>(&out).unwrap()["document"]["data"]["id"], json!(license));
    let (ok, _, err) =
        licensor(&app, &["verify", "--public-key", &public, "--license-key", "wrong", path.to_str().unwrap()]);
    assert!(!ok && err.contains("decrypt"), "{err}");
    let (ok, _, _) = licensor(&app, &["keys", "--account", "nobody"]);
    assert!(!ok);
}

/// The client crate verifies keys of every signing scheme the server issues, and rejects a
/// flipped bit or another account's key.
#[tokio::test]
async fn client_crate_verifies_every_signing_scheme() {
    use licensor_client::key::{verify, Scheme};
    use licensor_client::PublicKey;
    let app = spawn_app().await;
    let row = licensor::store::accounts::find(&app.db, &app.account_id).await.unwrap().unwrap();
    let ed = PublicKey::parse(&row.ed25519_public).unwrap();
    let rsa = PublicKey::parse(&row.rsa_public).unwrap();
    let ecdsa = PublicKey::parse(row.ecdsa_public.as_deref().unwrap()).unwrap();
    let product = app.create_product("Schemes").await;
    for (scheme, pk) in [
        ("ED25519_SIGN", &ed),
        ("RSA_2048_PKCS1_SIGN", &rsa),
        ("RSA_2048_PKCS1_PSS_SIGN", &rsa),
        ("RSA_2048_PKCS1_SIGN_V2", &rsa),
        ("RSA_2048_PKCS1_PSS_SIGN_V2", &rsa),
        ("ECDSA_P256_SIGN", &ecdsa),
        ("RSA_2048_PKCS1_ENCRYPT", &rsa),
        ("RSA_2048_JWT_RS256", &rsa),
    ] {
        let policy = app.create_policy(&product, json!({"scheme": scheme})).await;
        let (id, key) = app.create_license(&policy, json!({})).await;
        let data = verify(&key, Scheme::parse(scheme).unwrap(), pk).unwrap_or_else(|e| panic!("{scheme}: {e}"));
        let seed: Value = serde_json::from_slice(&data).unwrap();
        let license_id = match scheme {
            "RSA_2048_PKCS1_ENCRYPT" => &seed["id"],
            "RSA_2048_JWT_RS256" => &seed["sub"],
            _ => &seed["license"]["id"],
        };
        assert_eq!(license_id, &json!(id), "{scheme}");
        let mut bytes = key.clone().into_bytes();
        let i = bytes.len() / 3;
        bytes[i] = if bytes[i] == b'A' { b'B' } else { b'A' };
        assert!(verify(&String::from_utf8(bytes).unwrap(), Scheme::parse(scheme).unwrap(), pk).is_err(), "{scheme}");
        let wrong = if scheme == "ED25519_SIGN" { &ecdsa } else { &ed };
        assert!(verify(&key, Scheme::parse(scheme).unwrap(), wrong).is_err(), "{scheme}");
    }
}

/// ECDSA P-256 end to end: the account publishes the key, license files and signed responses
/// use `ecdsa-p256`, and the client crate verifies both.
#[tokio::test]
async fn ecdsa_files_and_responses_verify() {
    use base64::Engine;
    use licensor_client::PublicKey;
    let app = spawn_app().await;
    let account = app.get(&app.acct(""), &app.admin()).await;
    let pem = base64::engine::general_purpose::STANDARD
        .decode(account.body["meta"]["keys"]["ecdsa"].as_str().unwrap())
        .unwrap();
    let ecdsa = PublicKey::parse(std::str::from_utf8(&pem).unwrap()).unwrap();
    let (_, _, license, key) = app.license_fixture(json!({"scheme": "ECDSA_P256_SIGN"})).await;
    let r = app.post(&app.acct(&format!("/licenses/{license}/actions/check-out")), &app.admin(), json!({})).await;
    let cert = r.attr("certificate").as_str().unwrap();
    let file = licensor_client::file::verify(cert, &ecdsa, None).unwrap();
    assert_eq!(file.attributes()["key"], json!(key));
    assert!(cert.contains('\n'));

    let path = app.acct(&format!("/licenses/{license}"));
    let resp = app
        .client
        .get(app.url(&path))
        .bearer_auth(&app.admin_token)
        .header("accept", "application/vnd.api+json")
        .header("keygen-accept-signature", "algorithm=\"ecdsa-p256\"")
        .send()
        .await
        .unwrap();
    let headers = resp.headers().clone();
    let body = resp.bytes().await.unwrap();
    let signed = licensor_client::response::SignedResponse {
        method: "GET",
        path_and_query: &path,
        host: &app.addr.to_string(),
        signature_header: headers["keygen-signature"].to_str().unwrap(),
        date: headers["date"].to_str().unwrap(),
        body: &body,
    };
    licensor_client::response::verify(&signed, &ecdsa).unwrap();
    let mut tampered = body.to_vec();
    tampered[5] ^= 1;
    let signed = licensor_client::response::SignedResponse { body: &tampered, ..signed };
    assert!(licensor_client::response::verify(&signed, &ecdsa).is_err());
}

/// A master key that does not open the database stops the server before it serves (it would
/// fail every signed answer and seal new keys under the wrong key); a lost key file is not
/// silently replaced; `rotate-master-key` re-seals every account under a new key.
#[tokio::test]
async fn the_master_key_is_checked_and_rotates() {
    let app = spawn_app().await;
    let data = tempfile::tempdir().unwrap();
    let run = |master: Option<&str>, args: &[&str]| {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_licensor"));
        cmd.args(args)
            .env("LICENSOR_DATABASE_URL", &app.database_url)
            .env("LICENSOR_DATA_DIR", data.path())
            .env_remove("LICENSOR_DATABASE_SCHEMA")
            .env_remove("LICENSOR_MASTER_KEY");
        if let Some(schema) = &app.schema {
            cmd.env("LICENSOR_DATABASE_SCHEMA", schema);
        }
        if let Some(m) = master {
            cmd.env("LICENSOR_MASTER_KEY", m);
        }
        let out = cmd.output().expect("run licensor");
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let setup = |master: Option<&str>, n: u32| {
        let account = format!("shop-{n}");
        run(master, &["setup", "--account", &account, "--email", "ops@example.com", "--password", "long enough pw"])
    };

    let wrong = "00".repeat(32);
    let (ok, _, err) = setup(Some(&wrong), 1);
    assert!(!ok && err.contains("does not open"), "{err}");
    let (ok, _, err) = setup(None, 2);
    assert!(!ok && err.contains("master.key is missing"), "{err}");
    assert!(!data.path().join("master.key").exists(), "no key is invented for a database that has one");
    let (ok, _, err) = setup(Some(&app.master_hex), 3);
    assert!(ok, "{err}");

    // A second factor's secret is sealed with the master key too.
    let me = app.acct(&format!("/users/{}/second-factors", app.admin_email));
    let r = app.post(&me, &app.admin(), json!({"meta": {"password": PASSWORD}})).await;
    assert_eq!(r.status, reqwest::StatusCode::CREATED, "{}", r.text);
    let secret = r.attr("secret").as_str().unwrap().to_string();

    let new_file = data.path().join("new.key");
    let (ok, out, err) =
        run(Some(&app.master_hex), &["rotate-master-key", "--new-key-file", new_file.to_str().unwrap()]);
    assert!(ok, "{err}");
    assert!(out.contains("re-sealed the keys of 2 accounts"), "{out}");
    let new_hex = std::fs::read_to_string(&new_file).unwrap();
    let (ok, _, err) = setup(Some(&app.master_hex), 4);
    assert!(!ok && err.contains("does not open"), "the old key no longer opens the database: {err}");
    let (ok, _, err) = setup(Some(new_hex.trim()), 5);
    assert!(ok, "{err}");
    // The re-sealed keys still sign as the account's published public key says.
    let master = licensor::crypto::MasterKey::from_hex(new_hex.trim()).unwrap();
    let row = licensor::store::accounts::find(&app.db, &app.account_id).await.unwrap().unwrap();
    let keys = licensor::crypto::AccountKeys::for_account(&master, &row).unwrap();
    assert_eq!(hex::encode(keys.ed25519.verifying_key().as_bytes()), row.ed25519_public);
    let user = licensor::store::users::find_by_email(&app.db, row.id, &app.admin_email).await.unwrap().unwrap();
    let factor = licensor::store::second_factors::of_user(&app.db, row.id, user.id).await.unwrap().unwrap();
    let opened = master.open(&factor.secret, factor.id.as_bytes()).expect("the second factor's secret re-sealed");
    assert_eq!(licensor::domain::totp::base32(&opened), secret);
}
