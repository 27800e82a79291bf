//! Signed license keys in Keygen's encodings (see `shared/reference/keygen.md` §4).
//!
//! V2 schemes, Ed25519 and ECDSA: `key/<b64url(seed)>.<b64url(sig)>`, the signature over the
//! ASCII string `key/<b64url(seed)>` (ECDSA signatures DER). V1 RSA schemes:
//! `<b64url(seed)>.<b64url(sig)>`, signed over the raw seed. `RSA_2048_PKCS1_ENCRYPT`:
//! `b64url(RSA private-encrypt(seed))`, seed ≤ 245 bytes. `RSA_2048_JWT_RS256`: a JWT over the
//! claims. base64url keeps its `=` padding, as Ruby's `urlsafe_encode64` does (JWT parts do not).

use base64::engine::general_purpose::{URL_SAFE, URL_SAFE_NO_PAD};
use base64::Engine;
use serde_json::json;

use crate::crypto::sign::{self, SigAlg};
use crate::crypto::{AccountKeys, MasterKey};
use crate::error::{Error, Result};
use crate::store::accounts::AccountRow;
use crate::store::licenses::LicenseRow;
use crate::store::policies::PolicyRow;
use crate::time;

/// The default seed embedded in a signed key.
pub fn default_seed(
    account: &AccountRow,
    policy: &PolicyRow,
    license: &LicenseRow,
    owner_email: Option<&str>,
) -> String {
    let user = license.owner_id.map(|id| json!({ "id": id, "email": owner_email }));
    json!({
        "account": { "id": account.id },
        "product": { "id": policy.product_id },
        "policy": { "id": policy.id, "duration": policy.rules.0.duration },
        "user": user,
        "license": { "id": license.id, "created": time::iso(license.created_at), "expiry": time::iso_opt(license.expiry) },
    })
    .to_string()
}

/// Fills `{{…}}` template variables in a caller-supplied seed.
pub fn render_template(
    seed: &str,
    account: &AccountRow,
    policy: &PolicyRow,
    license: &LicenseRow,
    owner_email: Option<&str>,
) -> String {
    let vars = [
        ("{{id}}", license.id.to_string()),
        ("{{account}}", account.id.to_string()),
        ("{{product}}", policy.product_id.to_string()),
        ("{{policy}}", policy.id.to_string()),
        ("{{user}}", license.owner_id.map(|u| u.to_string()).unwrap_or_default()),
        ("{{email}}", owner_email.unwrap_or_default().to_string()),
        ("{{created}}", time::iso(license.created_at)),
        ("{{expiry}}", time::iso_opt(license.expiry).unwrap_or_default()),
        ("{{duration}}", policy.rules.0.duration.map(|d| d.to_string()).unwrap_or_default()),
    ];
    vars.iter().fold(seed.to_string(), |s, (k, v)| s.replace(k, v))
}

fn unsupported(scheme: &str) -> Error {
    Error::invalid_attr("scheme", format!("{scheme} is not supported by this server yet"), "SCHEME_NOT_SUPPORTED")
}

/// The default seed of `RSA_2048_PKCS1_ENCRYPT` (small: the whole seed must fit one RSA block).
fn encrypt_seed(policy: &PolicyRow, license: &LicenseRow) -> String {
    json!({
        "id": license.id,
        "created": time::iso(license.created_at),
        "duration": policy.rules.0.duration,
        "expiry": time::iso_opt(license.expiry),
    })
    .to_string()
}

/// The default claims of `RSA_2048_JWT_RS256`.
fn jwt_claims(account: &AccountRow, license: &LicenseRow) -> serde_json::Value {
    let mut claims = json!({
        "jti": uuid::Uuid::new_v4(),
        "iss": "https://keygen.sh",
        "aud": account.id,
        "sub": license.id,
        "iat": license.created_at / 1000,
        "nbf": license.created_at / 1000,
    });
    if let Some(e) = license.expiry {
        claims["exp"] = json!(e / 1000);
    }
    claims
}

/// Produces the key for a license under a signing scheme.
pub fn sign_key(
    scheme: &str,
    account: &AccountRow,
    master: &MasterKey,
    policy: &PolicyRow,
    license: &LicenseRow,
    seed: Option<&str>,
    owner_email: Option<&str>,
) -> Result<String> {
    let template = seed.map(|s| render_template(s, account, policy, license, owner_email));
    let keys = AccountKeys::for_account(master, account)?;
    match scheme {
        "RSA_2048_PKCS1_ENCRYPT" => {
            let seed = template.unwrap_or_else(|| encrypt_seed(policy, license));
            if seed.len() > 245 {
                return Err(Error::invalid_attr(
                    "key",
                    "is too long for RSA_2048_PKCS1_ENCRYPT (maximum is 245 bytes)",
                    "KEY_TOO_LONG",
                ));
            }
            let block = keys
                .rsa
                .sign(rsa::Pkcs1v15Sign::new_unprefixed(), seed.as_bytes())
                .map_err(|e| Error::Internal(anyhow::anyhow!("RSA private-encrypt failed: {e}")))?;
            return Ok(URL_SAFE.encode(block));
        }
        "RSA_2048_JWT_RS256" => {
            let claims = match template {
                Some(t) => match serde_json::from_str::<serde_json::Value>(&t) {
                    Ok(v @ serde_json::Value::Object(_)) => v,
                    _ => {
                        return Err(Error::invalid_attr(
                            "key",
                            "must be a valid JSON claims object for RSA_2048_JWT_RS256",
                            "KEY_JWT_CLAIMS_INVALID",
                        ))
                    }
                },
                None => jwt_claims(account, license),
            };
            let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"RS256","typ":"JWT"}"#);
            let payload = URL_SAFE_NO_PAD.encode(claims.to_string());
            let signing_input = format!("{header}.{payload}");
            let sig = sign::sign(&keys, SigAlg::RsaSha256, signing_input.as_bytes())?;
            return Ok(format!("{signing_input}.{}", URL_SAFE_NO_PAD.encode(sig)));
        }
        _ => {}
    }
    let seed = template.unwrap_or_else(|| default_seed(account, policy, license, owner_email));
    let enc = URL_SAFE.encode(seed.as_bytes());
    let signing_data = format!("key/{enc}");
    let (signed, v2, alg) = match scheme {
        "ED25519_SIGN" => (signing_data.as_bytes(), true, SigAlg::Ed25519),
        "ECDSA_P256_SIGN" => (signing_data.as_bytes(), true, SigAlg::EcdsaP256),
        "RSA_2048_PKCS1_SIGN_V2" => (signing_data.as_bytes(), true, SigAlg::RsaSha256),
        "RSA_2048_PKCS1_PSS_SIGN_V2" => (signing_data.as_bytes(), true, SigAlg::RsaPssSha256),
        "RSA_2048_PKCS1_SIGN" => (seed.as_bytes(), false, SigAlg::RsaSha256),
        "RSA_2048_PKCS1_PSS_SIGN" => (seed.as_bytes(), false, SigAlg::RsaPssSha256),
        other => return Err(unsupported(other)),
    };
    let sig = URL_SAFE.encode(sign::sign(&keys, alg, signed)?);
    let key = if v2 { format!("{signing_data}.{sig}") } else { format!("{enc}.{sig}") };
    Ok(key)
}
