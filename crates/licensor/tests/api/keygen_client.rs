//! Keygen's Rust SDK (`keygen-rs`), unmodified, against Licensor: validate, activate,
//! heartbeat, deactivate.

use keygen_rs::config::KeygenConfig;
use keygen_rs::license::{LicenseValidationRequest, LicenseValidationScope};
use serde_json::json;

use crate::helpers::*;

fn config(app: &TestApp, product: &str, key: &str) -> KeygenConfig {
    KeygenConfig {
        api_url: format!("http://{}", app.addr),
        account: app.account_id.clone(),
        product: product.to_string(),
        license_key: Some(key.to_string()),
        ..KeygenConfig::default()
    }
}

#[tokio::test]
async fn keygen_rs_validates_activates_pings_and_deactivates() {
    let app = spawn_app().await;
    let (product, _, _, key) = app
        .license_fixture(
            json!({"authenticationStrategy": "LICENSE", "heartbeatDuration": 600, "floating": true, "maxMachines": 2}),
        )
        .await;
    let cfg = config(&app, &product, &key);
    let fingerprint = "keygen-rs-machine".to_string();

    // Not yet activated: the SDK sees Keygen's code for it.
    let result =
        keygen_rs::validate_with_config(cfg.clone(), &LicenseValidationRequest::for_fingerprint(fingerprint.clone()))
            .await
            .expect("validate");
    assert!(!result.meta.valid);
    assert_eq!(result.meta.code, "NO_MACHINES");
    let license = result.license.expect("license returned with the result");
    assert_eq!(license.key, key);
    assert_eq!(license.max_machines, Some(2));

    let machine = license.activate(&fingerprint, &[]).await.expect("activate");
    assert_eq!(machine.fingerprint, fingerprint);

    let result =
        keygen_rs::validate_with_config(cfg.clone(), &LicenseValidationRequest::for_fingerprint(fingerprint.clone()))
            .await
            .expect("validate");
    assert!(result.meta.valid, "{:?}", result.meta);
    assert_eq!(result.meta.code, "VALID");

    let pinged = machine.ping().await.expect("ping");
    assert_eq!(pinged.id, machine.id);

    license.deactivate(&machine.id).await.expect("deactivate");
    let result =
        keygen_rs::validate_with_config(cfg.clone(), &LicenseValidationRequest::for_fingerprint(fingerprint.clone()))
            .await
            .expect("validate");
    assert_eq!(result.meta.code, "NO_MACHINES");

    // A wrong product scope is reported, not an error.
    let mut wrong = cfg.clone();
    wrong.product = uuid::Uuid::new_v4().to_string();
    let request =
        LicenseValidationRequest::new(LicenseValidationScope { fingerprint: Some(fingerprint), ..Default::default() });
    let result = keygen_rs::validate_with_config(wrong, &request).await.expect("validate");
    assert_eq!(result.meta.code, "PRODUCT_SCOPE_MISMATCH");
}

#[tokio::test]
async fn keygen_rs_sees_unknown_keys_as_not_found() {
    let app = spawn_app().await;
    let product = app.create_product("App").await;
    let cfg = config(&app, &product, "NO-SUCH-KEY");
    let result = keygen_rs::validate_with_config(cfg, &LicenseValidationRequest::default()).await.expect("validate");
    assert!(!result.meta.valid);
    assert_eq!(result.meta.code, "NOT_FOUND");
    assert!(result.license.is_none());
}
