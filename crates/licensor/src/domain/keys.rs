//! Signed license keys in Keygen's encodings (see `shared/reference/keygen.md` §4).
//!
//! V2 schemes and Ed25519: `key/<b64url(seed)>.<b64url(sig)>`, the signature over the ASCII
//! string `key/<b64url(seed)>`. V1 RSA schemes: `<b64url(seed)>.<b64url(sig)>`, signed over the
//! raw seed. base64url keeps its `=` padding, as Ruby's `urlsafe_encode64` does.

use base64::engine::general_purpose::URL_SAFE;
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
    let (signed, v2, alg) = match scheme {
        "ED25519_SIGN" => (signing_data.as_bytes(), true, SigAlg::Ed25519),
        "RSA_2048_PKCS1_SIGN_V2" => (signing_data.as_bytes(), true, SigAlg::RsaSha256),
        "RSA_2048_PKCS1_PSS_SIGN_V2" => (signing_data.as_bytes(), true, SigAlg::RsaPssSha256),
        "RSA_2048_PKCS1_SIGN" => (seed.as_bytes(), false, SigAlg::RsaSha256),
        "RSA_2048_PKCS1_PSS_SIGN" => (seed.as_bytes(), false, SigAlg::RsaPssSha256),
        other => return Err(unsupported(other)),
    };
    let sig = URL_SAFE.encode(sign::sign(&keys, alg, signed));
    let key = if v2 { format!("{signing_data}.{sig}") } else { format!("{enc}.{sig}") };
    Ok(key)
}
