//! The account keys sign several formats: license keys, license and machine files, responses,
//! OPSWAT files, core/v1 license texts and licensing codes. No caller may get a signature over
//! bytes of their choosing that also verifies as one of the others, and a license's signed
//! dataset is the vendor's, not whatever a self-licensing user writes.

use base64::engine::general_purpose::{STANDARD, URL_SAFE};
use base64::Engine;
use licensor_client::public_key::Algorithm;
use licensor_client::PublicKey;
use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::helpers::*;

const V1_SCHEMES: [&str; 3] = ["RSA_2048_PKCS1_SIGN", "RSA_2048_PKCS1_PSS_SIGN", "RSA_2048_PKCS1_ENCRYPT"];
const V2_SCHEMES: [&str; 4] =
    ["ED25519_SIGN", "ECDSA_P256_SIGN", "RSA_2048_PKCS1_SIGN_V2", "RSA_2048_PKCS1_PSS_SIGN_V2"];

fn license_body(policy: &str, attributes: Value) -> Value {
    json!({"data": {"type": "licenses", "attributes": attributes,
        "relationships": {"policy": {"data": {"type": "policies", "id": policy}}}}})
}

/// A self-registered user of an open account, with a token: (user id, bearer).
async fn signed_up_user(app: &TestApp, email: &str) -> (String, As) {
    app.open_account().await;
    let body = json!({"data": {"type": "users", "attributes": {"email": email, "password": PASSWORD}}});
    let r = app.post(&app.acct("/users"), &As::Anonymous, body).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    let t = app.post(&app.acct("/tokens"), &As::Basic(email.into(), PASSWORD.into()), json!(null)).await;
    assert_eq!(t.status, StatusCode::CREATED, "{}", t.text);
    (r.id(), As::Bearer(t.attr("token").as_str().unwrap().to_string()))
}

#[tokio::test]
async fn a_user_licensing_themselves_cannot_write_the_signed_dataset() {
    let app = spawn_app().await;
    let (user, bearer) = signed_up_user(&app, "mallory@example.com").await;
    let product = app.create_product("Signed").await;
    let row = licensor::store::accounts::find(&app.db, &app.account_id).await.unwrap().unwrap();
    let ed = PublicKey::parse(&row.ed25519_public).unwrap();
    for scheme in V1_SCHEMES.iter().chain(&V2_SCHEMES) {
        let policy = app.create_policy(&product, json!({"scheme": scheme, "protected": false})).await;
        let mut body = license_body(&policy, json!({"key": r#"{"tier":"enterprise","maxMachines":100000}"#}));
        body["data"]["relationships"]["owner"] = json!({"data": {"type": "users", "id": user}});
        let r = app.post(&app.acct("/licenses"), &bearer, body.clone()).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{scheme}: {}", r.text);
        assert_eq!(r.pointer(), "/data/attributes/key", "{scheme}");

        // Without a key the server writes the dataset from the license's real attributes.
        body["data"]["attributes"] = json!({});
        let r = app.post(&app.acct("/licenses"), &bearer, body).await;
        assert_eq!(r.status, StatusCode::CREATED, "{scheme}: {}", r.text);
        if *scheme == "ED25519_SIGN" {
            let key = r.attr("key").as_str().unwrap();
            let data = licensor_client::key::verify(key, licensor_client::key::Scheme::Ed25519Sign, &ed).unwrap();
            let seed: Value = serde_json::from_slice(&data).unwrap();
            assert_eq!(seed["license"]["id"], json!(r.id()));
            assert_eq!(seed["policy"]["id"], json!(policy));
            assert_eq!(seed["user"]["email"], json!("mallory@example.com"));
        }
    }
    // Without a signing scheme the key is only an identifier, which users may still choose.
    let plain = app.create_policy(&product, json!({"protected": false})).await;
    let mut body = license_body(&plain, json!({"key": "MALLORY-CHOSEN-KEY"}));
    body["data"]["relationships"]["owner"] = json!({"data": {"type": "users", "id": user}});
    let r = app.post(&app.acct("/licenses"), &bearer, body).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
}

#[tokio::test]
async fn template_variables_are_json_escaped_and_emails_cannot_carry_json() {
    let app = spawn_app().await;
    let (product, policy) = {
        let product = app.create_product("Templates").await;
        let policy = app.create_policy(&product, json!({"scheme": "ED25519_SIGN"})).await;
        (product, policy)
    };
    let _ = product;
    let user = app.create_user("o'neil+tag@example.com").await;
    // An address that would close the JSON string and add a member is not an address.
    let r = app.patch_attributes("users", &user, json!({"email": "x\",\"tier\":\"enterprise@evil.example"})).await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.text);
    assert_eq!(r.pointer(), "/data/attributes/email");

    let mut body = license_body(&policy, json!({"key": r#"{"email":"{{email}}","id":"{{id}}","tier":"basic"}"#}));
    body["data"]["relationships"]["owner"] = json!({"data": {"type": "users", "id": user}});
    let r = app.post(&app.acct("/licenses"), &app.admin(), body).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    let key = r.attr("key").as_str().unwrap();
    let enc = key.strip_prefix("key/").unwrap().rsplit_once('.').unwrap().0;
    let seed: Value = serde_json::from_slice(&URL_SAFE.decode(enc).unwrap()).unwrap();
    assert_eq!(seed, json!({"email": "o'neil+tag@example.com", "id": r.id(), "tier": "basic"}));
}

/// The bytes each other format signs, taken from real answers of this server.
async fn signed_formats(app: &TestApp, product: &str) -> Vec<(&'static str, String)> {
    let policy = app
        .create_policy(product, json!({"scheme": "RSA_2048_PKCS1_SIGN_V2", "floating": true, "maxMachines": 5}))
        .await;
    let (license, v2_key) = app.create_license(&policy, json!({})).await;
    let jwt_policy = app.create_policy(product, json!({"scheme": "RSA_2048_JWT_RS256"})).await;
    let (_, jwt) = app.create_license(&jwt_policy, json!({})).await;

    let out = app
        .post(
            &app.acct(&format!("/licenses/{license}/actions/check-out?algorithm=base64%2Brsa-sha256")),
            &app.admin(),
            json!({}),
        )
        .await;
    assert_eq!(out.status, StatusCode::OK, "{}", out.text);
    let license_enc = certificate_enc(out.attr("certificate").as_str().unwrap());

    let machine = app
        .post(
            &app.acct("/machines"),
            &app.admin(),
            json!({"data": {"type": "machines", "attributes": {"fingerprint": "oracle-fp"},
                "relationships": {"license": {"data": {"type": "licenses", "id": license}}}}}),
        )
        .await;
    assert_eq!(machine.status, StatusCode::CREATED, "{}", machine.text);
    let out = app
        .post(
            &app.acct(&format!("/machines/{}/actions/check-out?algorithm=base64%2Brsa-sha256", machine.id())),
            &app.admin(),
            json!({}),
        )
        .await;
    assert_eq!(out.status, StatusCode::OK, "{}", out.text);
    let machine_enc = certificate_enc(out.attr("certificate").as_str().unwrap());

    let path = app.acct(&format!("/licenses/{license}"));
    let resp = app
        .client
        .get(app.url(&path))
        .bearer_auth(&app.admin_token)
        .header("keygen-accept-signature", "algorithm=\"rsa-sha256\"")
        .send()
        .await
        .unwrap();
    let date = resp.headers()["date"].to_str().unwrap().to_string();
    let digest = resp.headers()["digest"].to_str().unwrap().to_string();
    let response = format!("(request-target): get {path}\nhost: {}\ndate: {date}\ndigest: {digest}", app.addr);

    vec![
        ("license file", format!("license/{license_enc}")),
        ("machine file", format!("machine/{machine_enc}")),
        ("response", response),
        ("V2 key", v2_key.rsplit_once('.').unwrap().0.to_string()),
        ("JWT key", jwt.rsplit_once('.').unwrap().0.to_string()),
    ]
}

fn certificate_enc(cert: &str) -> String {
    let body: String = cert.lines().filter(|l| !l.starts_with("-----")).collect();
    let doc: Value = serde_json::from_slice(&STANDARD.decode(body).unwrap()).unwrap();
    doc["enc"].as_str().unwrap().to_string()
}

/// The attack of the audit: under a V1 scheme the key dataset is signed raw with the RSA key that
/// also signs files, responses and other keys. Asking for a key equal to another format's signed
/// bytes must fail for every caller, the admin included; a V2 key signs `key/…` whatever the
/// dataset, so its signature never stands for the other format.
#[tokio::test]
async fn no_key_signature_verifies_as_another_signed_format() {
    let app = spawn_app().await;
    let product = app.create_product("Oracle").await;
    let row = licensor::store::accounts::find(&app.db, &app.account_id).await.unwrap().unwrap();
    let rsa = PublicKey::parse(&row.rsa_public).unwrap();
    let formats = signed_formats(&app, &product).await;
    // The forged license file of the audit: a document of the attacker's, under the license prefix.
    let forged = STANDARD.encode(br#"{"data":{"attributes":{"name":"FORGED ENTERPRISE","maxMachines":100000}}}"#);
    let formats: Vec<_> = formats.into_iter().chain([("forged license file", format!("license/{forged}"))]).collect();

    for scheme in V1_SCHEMES {
        let policy = app.create_policy(&product, json!({"scheme": scheme})).await;
        for (format, bytes) in &formats {
            let r = app.post(&app.acct("/licenses"), &app.admin(), license_body(&policy, json!({"key": bytes}))).await;
            assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{scheme} / {format}: {}", r.text);
            assert_eq!((r.code(), r.pointer()), ("KEY_NOT_ALLOWED", "/data/attributes/key"), "{scheme} / {format}");
        }
        // An ordinary dataset is still signed as Keygen signs it.
        let (_, key) = app.create_license(&policy, json!({"key": r#"{"tier":"pro"}"#})).await;
        let data = licensor_client::key::verify(&key, licensor_client::key::Scheme::parse(scheme).unwrap(), &rsa);
        assert_eq!(data.unwrap(), br#"{"tier":"pro"}"#, "{scheme}");
    }

    for scheme in ["RSA_2048_PKCS1_SIGN_V2", "RSA_2048_PKCS1_PSS_SIGN_V2"] {
        let policy = app.create_policy(&product, json!({"scheme": scheme})).await;
        for (format, bytes) in &formats {
            let r = app.post(&app.acct("/licenses"), &app.admin(), license_body(&policy, json!({"key": bytes}))).await;
            if r.code() == "KEY_TOO_LONG" {
                continue; // no signature issued at all
            }
            assert_eq!(r.status, StatusCode::CREATED, "{scheme} / {format}: {}", r.text);
            let key = r.attr("key").as_str().unwrap();
            let sig = URL_SAFE.decode(key.rsplit_once('.').unwrap().1).unwrap();
            for alg in [Algorithm::RsaSha256, Algorithm::RsaPssSha256] {
                assert!(rsa.verify(alg, bytes.as_bytes(), &sig).is_err(), "{scheme} / {format}");
            }
        }
    }
}

/// Licensor's own offline formats are all signed with the account's Ed25519 key, as are V2
/// Ed25519 keys, files and responses. Each document's signed bytes, presented to every other
/// format's verifier, are refused: the prefixed formats never share a prefix, and the JSON
/// formats never parse as one another.
#[tokio::test]
async fn ed25519_formats_do_not_verify_as_one_another() {
    use ed25519_dalek::Signer;
    use licensor::domain::{licensing_code, nlf};
    let sk = ed25519_dalek::SigningKey::generate(&mut rand::rngs::OsRng);
    let pk = PublicKey::Ed25519(sk.verifying_key());

    let opswat = licensor_client::opswat::Payload {
        version: 1,
        account: uuid::Uuid::new_v4().to_string(),
        license: uuid::Uuid::new_v4().to_string(),
        machine: uuid::Uuid::new_v4().to_string(),
        key: "serialNumber".into(),
        deployment: "MSCL0123456789abcdef0123456789abcdef".into(),
        product_id: "product".into(),
        product_name: "product".into(),
        licensed_to: "statusResp".into(),
        expiry: None,
        max_node_count: 1,
        licensed_engines: vec![],
        issued: "2026-11-29T00:00:00Z".into(),
    };
    let nlf_doc = nlf::Nlf {
        serial: "4711".into(),
        product: "P".into(),
        product_version: "1.0".into(),
        license_id: None,
        key: Some("K".into()),
        capacity: "1".into(),
        capacity2: "0".into(),
        kind: "machines".into(),
        host_id: None,
        features: vec![],
        protocol: "p".into(),
        evaluation: false,
        start: None,
        end: None,
        addons: vec![],
    };
    let nlf_text = nlf::render(&nlf_doc, &sk);
    let nlf_json: Value = serde_json::from_slice(&STANDARD.decode(&nlf_text).unwrap()).unwrap();
    let grant = licensing_code::Grant {
        account: uuid::Uuid::new_v4(),
        group: uuid::Uuid::new_v4(),
        licenser_key: 1,
        licensee_id: "x".into(),
        licensee_name: "y".into(),
        expiration: "9999-12-31".into(),
        licenses: vec![],
        issued: "2026-11-29".into(),
    };
    let documents: Vec<(&str, Vec<u8>)> = vec![
        ("V2 key", format!("key/{}", URL_SAFE.encode(r#"{"license":{"id":"x"}}"#)).into_bytes()),
        ("license file", format!("license/{}", STANDARD.encode("{}")).into_bytes()),
        ("machine file", format!("machine/{}", STANDARD.encode("{}")).into_bytes()),
        ("response", b"(request-target): get /v1/ping\nhost: h\ndate: d\ndigest: sha-256=x".to_vec()),
        ("OPSWAT file", serde_json::to_vec(&opswat).unwrap()),
        ("core/v1 license text", nlf_json["statusResp"].to_string().into_bytes()),
        ("licensing code", serde_json::to_vec(&grant).unwrap()),
    ];
    for (name, m) in &documents {
        let sig = sk.sign(m).to_bytes();
        let text = String::from_utf8(m.clone()).unwrap();
        let refused = |verifier: &str, ok: bool| assert!(!ok, "{name} verified as {verifier}");

        if *name != "V2 key" {
            let key = format!("{text}.{}", URL_SAFE.encode(sig));
            let ok = licensor_client::key::verify(&key, licensor_client::key::Scheme::Ed25519Sign, &pk).is_ok();
            refused("V2 key", ok);
        }
        for (kind, prefix) in [("license file", "license/"), ("machine file", "machine/")] {
            if *name != kind {
                // A file's verifier signs `<prefix>/<enc>`: only bytes with that prefix can be fed.
                refused(kind, text.starts_with(prefix));
            }
        }
        if *name != "response" {
            refused("response", text.starts_with("(request-target)"));
        }
        if *name != "OPSWAT file" {
            let file =
                format!("payload: '{}'\nsignature: '{}'\nalg: 'ed25519'\n", STANDARD.encode(m), STANDARD.encode(sig));
            // The signature passes; the payload must then fail to parse (not merely lack the
            // readable fields, which an attacker would copy in).
            let e = licensor_client::opswat::verify(&file, &pk, None).unwrap_err();
            assert_eq!(e, licensor_client::Error::Malformed("payload is not JSON".into()), "{name} as OPSWAT file");
        }
        if *name != "core/v1 license text" {
            if let Ok(raw) = serde_json::from_slice::<Value>(m) {
                let doc = format!("{{\"statusResp\":{raw},\"Signature\":\"{}\"}}", STANDARD.encode(sig));
                refused("core/v1 license text", nlf::parse(&STANDARD.encode(doc), &sk.verifying_key()).is_ok());
            }
        }
        // Licensing codes are sealed with AES-GCM under a key derived from the private key, so
        // no signature made for another format can be presented as one; their payload is a
        // `Grant`, which the JSON verifiers above refuse.
    }
    // The same presentation of an OPSWAT payload gets past the signature and the parse.
    let own = format!(
        "payload: '{}'\nsignature: '{}'\nalg: 'ed25519'\n",
        STANDARD.encode(&documents[4].1),
        STANDARD.encode(sk.sign(&documents[4].1).to_bytes())
    );
    let e = licensor_client::opswat::verify(&own, &pk, None).unwrap_err();
    assert!(matches!(&e, licensor_client::Error::Malformed(m) if m.ends_with("is missing")), "{e}");
    assert!(nlf::parse(&nlf_text, &sk.verifying_key()).is_ok());
}
