//! License and machine files, and signed responses, checked with Keygen's own SDK verifier.

use keygen_rs::config::KeygenConfig;
use keygen_rs::license::{LicenseCheckoutOpts, LicenseValidationRequest};
use keygen_rs::license_file::LicenseFile;
use reqwest::StatusCode;
use serde_json::json;

use crate::helpers::*;

async fn public_key_hex(app: &TestApp) -> String {
    licensor::store::accounts::find(&app.db, &app.account_id).await.unwrap().unwrap().ed25519_public
}

#[tokio::test]
async fn keygen_rs_verifies_signed_responses_and_license_files() {
    let app = spawn_app().await;
    let (product, _, _, key) =
        app.license_fixture(json!({"authenticationStrategy": "LICENSE", "floating": true, "maxMachines": 3})).await;
    let public_key = public_key_hex(&app).await;
    let cfg = KeygenConfig {
        api_url: format!("http://{}", app.addr),
        account: app.account_id.clone(),
        product,
        license_key: Some(key.clone()),
        public_key: Some(public_key.clone()),
        verify_keygen_signature: Some(true),
        ..KeygenConfig::default()
    };
    // Every response below is signature-checked by the SDK.
    let result = keygen_rs::validate_with_config(cfg.clone(), &LicenseValidationRequest::for_fingerprint("fp".into()))
        .await
        .expect("signed validation");
    let license = result.license.unwrap();
    let machine = license.activate("fp", &[]).await.expect("signed activation");

    for encrypt in [false, true] {
        let file =
            license.checkout(&LicenseCheckoutOpts::with_ttl(7200).with_encrypt(encrypt)).await.expect("checkout");
        assert_eq!(file.ttl, 7200);
        file.verify_with_key(&public_key).expect("license file signature verifies");
        let dataset = if encrypt { file.decrypt(&key).expect("decrypt") } else { file.decode().expect("decode") };
        assert_eq!(dataset.license.key, key);
        assert_eq!(dataset.ttl, 7200);
        // A flipped bit anywhere in the payload fails verification.
        let mut cert = file.certificate.clone();
        let body_start = cert.find('\n').unwrap() + 5;
        let c = cert.as_bytes()[body_start];
        cert.replace_range(body_start..=body_start, if c == b'A' { "B" } else { "A" });
        let tampered = LicenseFile { certificate: cert, ..file.clone() };
        assert!(tampered.verify_with_key(&public_key).is_err());
        // The wrong key fails too.
        let other = hex::encode(ed25519_dalek::SigningKey::from_bytes(&[7u8; 32]).verifying_key().as_bytes());
        assert!(file.verify_with_key(&other).is_err());
    }
    let mfile =
        machine.checkout(&keygen_rs::machine::MachineCheckoutOpts::with_ttl(3600)).await.expect("machine checkout");
    let mut mcfg = cfg.clone();
    mcfg.license_key = Some(key.clone());
    keygen_rs::config::set_config(mcfg).unwrap();
    mfile.verify().expect("machine file verifies");
    assert!(mfile.certificate.starts_with("-----BEGIN MACHINE FILE-----\n"));
}

#[tokio::test]
async fn raw_checkout_and_bad_options() {
    let app = spawn_app().await;
    let (_, _, id, _) = app.license_fixture(json!({})).await;
    let r = app
        .client
        .get(app.url(&app.acct(&format!("/licenses/{id}/actions/check-out?include=entitlements,product"))))
        .bearer_auth(&app.admin_token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.headers()["content-type"], "application/octet-stream");
    assert_eq!(r.headers()["content-disposition"], format!("attachment; filename=\"{id}.lic\"").as_str());
    let text = r.text().await.unwrap();
    assert!(text.starts_with("-----BEGIN LICENSE FILE-----\n"));
    assert!(text.ends_with("-----END LICENSE FILE-----\n"));
    assert!(text.lines().skip(1).take_while(|l| !l.starts_with("-----")).all(|l| l.len() <= 60));
    let r = app
        .post(&app.acct(&format!("/licenses/{id}/actions/check-out")), &app.admin(), json!({"meta": {"ttl": 60}}))
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(r.code(), "CHECKOUT_TTL_INVALID");
    assert_eq!(r.body["errors"][0]["source"]["parameter"], "ttl");
    // No TTL so long the expiry could not be written (or would wrap): 32 bits of seconds at most.
    for ttl in [json!(2_147_483_648_i64), json!(i64::MAX)] {
        let r = app
            .post(&app.acct(&format!("/licenses/{id}/actions/check-out")), &app.admin(), json!({"meta": {"ttl": ttl}}))
            .await;
        assert_eq!((r.status, r.code()), (StatusCode::BAD_REQUEST, "CHECKOUT_TTL_INVALID"), "{ttl}");
        assert_eq!(r.body["errors"][0]["detail"], "must be less than or equal to 2147483647");
    }
    let r = app
        .post(&app.acct(&format!("/licenses/{id}/actions/check-out?include=secrets")), &app.admin(), json!(null))
        .await;
    assert_eq!(r.code(), "CHECKOUT_INCLUDE_INVALID");
    let r = app
        .post(
            &app.acct(&format!("/licenses/{id}/actions/check-out?algorithm=rot13%2Bed25519")),
            &app.admin(),
            json!(null),
        )
        .await;
    assert_eq!(r.code(), "CHECKOUT_ALGORITHM_INVALID");
    let r = app
        .post(
            &app.acct(&format!("/licenses/{id}/actions/check-out?algorithm=base64%2Brsa-pss-sha256")),
            &app.admin(),
            json!(null),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.attr("algorithm"), "base64+rsa-pss-sha256");
    let shown = app.get(&app.acct(&format!("/licenses/{id}")), &app.admin()).await;
    assert!(shown.attr("lastCheckOut").is_string());
}

#[tokio::test]
async fn signature_headers_and_bad_accept_signature() {
    use base64::Engine;
    use ed25519_dalek::Verifier;
    let app = spawn_app().await;
    let r = app.get(&app.acct("/me"), &app.admin()).await;
    let sig_header = r.headers["keygen-signature"].to_str().unwrap().to_string();
    assert!(sig_header.contains(&format!("keyid=\"{}\"", app.account_id)));
    assert!(sig_header.contains("algorithm=\"ed25519\""));
    let digest = r.headers["digest"].to_str().unwrap();
    let expected = format!(
        "sha-256={}",
        base64::engine::general_purpose::STANDARD.encode(<sha2::Sha256 as sha2::Digest>::digest(r.text.as_bytes()))
    );
    assert_eq!(digest, expected);
    let date = r.headers["date"].to_str().unwrap();
    let signing =
        format!("(request-target): get {}\nhost: {}\ndate: {date}\ndigest: {digest}", app.acct("/me"), app.addr);
    let sig_b64 = sig_header.split("signature=\"").nth(1).unwrap().split('"').next().unwrap();
    let sig = ed25519_dalek::Signature::from_slice(&base64::engine::general_purpose::STANDARD.decode(sig_b64).unwrap())
        .unwrap();
    let pk: [u8; 32] = hex::decode(public_key_hex(&app).await).unwrap().try_into().unwrap();
    ed25519_dalek::VerifyingKey::from_bytes(&pk).unwrap().verify(signing.as_bytes(), &sig).expect("signature verifies");
    // Errors are signed too; unsupported algorithms are refused.
    let r = app.get(&app.acct("/licenses/nope"), &app.admin()).await;
    assert!(r.headers.contains_key("keygen-signature"));
    let r = app
        .client
        .get(app.url(&app.acct("/me")))
        .bearer_auth(&app.admin_token)
        .header("keygen-accept-signature", "algorithm=\"md5\"")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let r = app
        .client
        .get(app.url(&app.acct("/me")))
        .bearer_auth(&app.admin_token)
        .header("keygen-accept-signature", "algorithm=\"rsa-sha256\"")
        .send()
        .await
        .unwrap();
    assert!(r.headers()["keygen-signature"].to_str().unwrap().contains("rsa-sha256"));
    // An unauthenticated caller cannot make the server spend RSA: its 401 is signed Ed25519.
    let r = app
        .client
        .get(app.url(&app.acct("/licenses")))
        .header("keygen-accept-signature", "algorithm=\"rsa-sha256\"")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    assert!(r.headers()["keygen-signature"].to_str().unwrap().contains("algorithm=\"ed25519\""));
}

/// The client crate refuses a license file once its TTL has passed, and one issued after the
/// local clock's "now" (a clock set back).
#[tokio::test]
async fn client_crate_rejects_expired_files_and_rolled_back_clocks() {
    let app = spawn_app().await;
    let (_, _, license, key) = app.license_fixture(json!({})).await;
    let r = app
        .post(
            &app.acct(&format!("/licenses/{license}/actions/check-out")),
            &app.admin(),
            json!({"meta": {"ttl": 3600, "encrypt": true}}),
        )
        .await;
    assert_eq!(r.status, reqwest::StatusCode::OK, "{}", r.text);
    let cert = r.attr("certificate").as_str().unwrap().to_string();
    let pk = licensor_client::PublicKey::parse(&public_key_hex(&app).await).unwrap();
    let file =
        licensor_client::file::verify(&cert, &pk, Some(licensor_client::file::decryption_key(&key, None))).unwrap();
    let now = chrono::Utc::now();
    file.check_time(now).unwrap();
    assert!(matches!(file.check_time(now + chrono::Duration::hours(2)), Err(licensor_client::Error::Expired(_))));
    assert_eq!(file.check_time(now - chrono::Duration::hours(1)), Err(licensor_client::Error::ClockRollback));
    let clock_dir = tempfile::tempdir().unwrap();
    let guard = licensor_client::clock::ClockGuard::new(clock_dir.path().join("clock"));
    guard.observe(now, file.issued).unwrap();
    assert_eq!(guard.observe(now - chrono::Duration::days(2), file.issued), Err(licensor_client::Error::ClockRollback));
    // Wrong license key: cannot decrypt. Flipped bit in the body: does not verify.
    assert_eq!(
        licensor_client::file::verify(&cert, &pk, Some(licensor_client::file::decryption_key("wrong", None)))
            .unwrap_err(),
        licensor_client::Error::Decrypt
    );
    let lines: Vec<&str> = cert.lines().collect();
    let mut body = lines[1].as_bytes().to_vec();
    body[10] = if body[10] == b'A' { b'B' } else { b'A' };
    let tampered = cert.replacen(lines[1], std::str::from_utf8(&body).unwrap(), 1);
    assert!(
        licensor_client::file::verify(&tampered, &pk, Some(licensor_client::file::decryption_key(&key, None))).is_err()
    );
}

/// A machine file is bound to its machine: verification takes the fingerprint the product
/// computes and refuses a file issued for another, plain or encrypted, in the client crate and
/// in `licensor verify`.
#[tokio::test]
async fn machine_files_verify_only_on_their_machine() {
    use licensor_client::file::verify_machine;
    let app = spawn_app().await;
    let (_, _, license, key) = app.license_fixture(json!({"floating": true, "maxMachines": 2})).await;
    let pk = licensor_client::PublicKey::parse(&public_key_hex(&app).await).unwrap();
    let body = json!({"data": {"type": "machines", "attributes": {"fingerprint": "machine-a"},
        "relationships": {"license": {"data": {"type": "licenses", "id": license}}}}});
    let m = app.post(&app.acct("/machines"), &app.admin(), body).await.id();
    for encrypt in [false, true] {
        let path = app.acct(&format!("/machines/{m}/actions/check-out"));
        let r = app.post(&path, &app.admin(), json!({"meta": {"encrypt": encrypt}})).await;
        assert_eq!(r.status, reqwest::StatusCode::OK, "{}", r.text);
        let cert = r.attr("certificate").as_str().unwrap().to_string();
        let file = verify_machine(&cert, &pk, &key, "machine-a").unwrap();
        assert_eq!(file.attributes()["fingerprint"], "machine-a");
        let elsewhere = verify_machine(&cert, &pk, &key, "machine-b").unwrap_err();
        let expected = if encrypt { licensor_client::Error::Decrypt } else { licensor_client::Error::WrongMachine };
        assert_eq!(elsewhere, expected, "encrypt: {encrypt}");
        if !encrypt {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("machine.lic");
            std::fs::write(&path, &cert).unwrap();
            let hex = public_key_hex(&app).await;
            let verify = |extra: &[&str]| {
                let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_licensor"));
                cmd.args(["verify", "--public-key", &hex]).args(extra).arg(&path);
                cmd.output().unwrap()
            };
            assert!(verify(&["--fingerprint", "machine-a"]).status.success());
            let out = verify(&["--fingerprint", "machine-b"]);
            assert!(!out.status.success());
            assert!(String::from_utf8_lossy(&out.stderr).contains("another machine"), "{out:?}");
            let out = verify(&[]);
            assert!(String::from_utf8_lossy(&out.stderr).contains("--fingerprint"), "{out:?}");
        }
    }
}

/// A captured answer is only good for the request it answered, and only for a while: the
/// client crate checks the signed date's age and that a validation carries the nonce sent and
/// the key asked about.
#[tokio::test]
async fn a_signed_validation_is_fresh_and_bound_to_its_request() {
    use licensor_client::response::{check_validation, verify_fresh, SignedResponse};
    let app = spawn_app().await;
    let (_, _, _, key) = app.license_fixture(json!({})).await;
    let path = app.acct("/licenses/actions/validate-key");
    let resp = app
        .client
        .post(app.url(&path))
        .header("content-type", "application/vnd.api+json")
        .body(json!({"meta": {"key": key, "nonce": 4242}}).to_string())
        .send()
        .await
        .unwrap();
    let headers = resp.headers().clone();
    let body = resp.bytes().await.unwrap();
    let signed = SignedResponse {
        method: "POST",
        path_and_query: &path,
        host: &app.addr.to_string(),
        signature_header: headers["keygen-signature"].to_str().unwrap(),
        date: headers["date"].to_str().unwrap(),
        body: &body,
    };
    let pk = licensor_client::PublicKey::parse(&public_key_hex(&app).await).unwrap();
    let now = chrono::Utc::now();
    let minute = chrono::Duration::minutes(1);
    verify_fresh(&signed, &pk, now, minute).unwrap();
    assert!(matches!(
        verify_fresh(&signed, &pk, now + chrono::Duration::hours(1), minute),
        Err(licensor_client::Error::Expired(_))
    ));
    assert_eq!(
        verify_fresh(&signed, &pk, now - chrono::Duration::hours(1), minute),
        Err(licensor_client::Error::ClockRollback)
    );
    check_validation(&body, &key, 4242).unwrap();
    assert!(check_validation(&body, &key, 1).is_err(), "another nonce");
    assert!(check_validation(&body, "ANOTHER-KEY", 4242).is_err(), "another license");
}
