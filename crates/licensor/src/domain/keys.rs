//! Signed license keys in Keygen's encodings (see `shared/reference/keygen.md` §4).
//!
//! V2 schemes and Ed25519: `key/<b64url(seed)>.<b64url(sig)>`, the signature over the ASCII
//! string `key/<b64url(seed)>`. V1 RSA schemes: `<b64url(seed)>.<b64url(sig)>`, signed over the
//! raw seed. base64url keeps its `=` padding, as Ruby's `urlsafe_encode64` does.

use base64::engine::general_purpose::URL_SAFE;
use base64::Engine;
use ed25519_dalek::Signer;
use rand::rngs::OsRng;
use rsa::signature::{RandomizedSigner, SignatureEncoding};
use serde_json::json;
use sha2::Sha256;

use crate::crypto::{AccountKeys, MasterKey};
use crate::error::{Error, Result};
use crate::store::accounts::AccountRow;
use crate::store::licenses::LicenseRow;
use crate::store::policies::PolicyRow;
use crate::time;

/// PSS salt length Keygen uses: the maximum for a 2048-bit key and SHA-256 (256 − 32 − 2).
const PSS_SALT_LEN: usize = 222;

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
    let seed = match seed {
        Some(s) => render_template(s, account, policy, license, owner_email),
        None => default_seed(account, policy, license, owner_email),
    };
    let keys = AccountKeys::unseal(master, account.id, &account.ed25519_secret, &account.rsa_secret)?;
    let enc = URL_SAFE.encode(seed.as_bytes());
    let signing_data = format!("key/{enc}");
    let key = match scheme {
        "ED25519_SIGN" => {
            format!("{signing_data}.{}", URL_SAFE.encode(keys.ed25519.sign(signing_data.as_bytes()).to_bytes()))
        }
        "RSA_2048_PKCS1_SIGN_V2" => {
            let signer = rsa::pkcs1v15::SigningKey::<Sha256>::new(keys.rsa);
            format!("{signing_data}.{}", URL_SAFE.encode(signer.sign(signing_data.as_bytes()).to_bytes()))
        }
        "RSA_2048_PKCS1_PSS_SIGN_V2" => {
            let signer = rsa::pss::SigningKey::<Sha256>::new_with_salt_len(keys.rsa, PSS_SALT_LEN);
            format!(
                "{signing_data}.{}",
                URL_SAFE.encode(signer.sign_with_rng(&mut OsRng, signing_data.as_bytes()).to_bytes())
            )
        }
        "RSA_2048_PKCS1_SIGN" => {
            let signer = rsa::pkcs1v15::SigningKey::<Sha256>::new(keys.rsa);
            format!("{enc}.{}", URL_SAFE.encode(signer.sign(seed.as_bytes()).to_bytes()))
        }
        "RSA_2048_PKCS1_PSS_SIGN" => {
            let signer = rsa::pss::SigningKey::<Sha256>::new_with_salt_len(keys.rsa, PSS_SALT_LEN);
            format!("{enc}.{}", URL_SAFE.encode(signer.sign_with_rng(&mut OsRng, seed.as_bytes()).to_bytes()))
        }
        other => return Err(unsupported(other)),
    };
    Ok(key)
}
