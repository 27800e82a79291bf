//! Keygen's `second-factors` resource object.

use serde::Serialize;

use super::document::Resource;
use crate::model::SecondFactor;
use crate::time;

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SecondFactorAttributes {
    /// The base32 secret and its `otpauth://` URI, shown only until the factor is enabled
    /// (left out then, as Keygen leaves them out).
    #[serde(skip_serializing_if = "Option::is_none")]
    secret: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    uri: Option<String>,
    enabled: bool,
    created: String,
    updated: String,
}

/// `shown`: the secret (base32) and URI, when the caller may see them; `None` in events.
pub fn render(f: &SecondFactor, shown: Option<(String, String)>) -> Resource<SecondFactorAttributes> {
    let (secret, uri) = match shown {
        Some((s, u)) if !f.enabled => (Some(s), Some(u)),
        _ => (None, None),
    };
    let mut r = Resource::new(
        f.account_id,
        "second-factors",
        f.id,
        SecondFactorAttributes {
            secret,
            uri,
            enabled: f.enabled,
            created: time::iso(f.created_at),
            updated: time::iso(f.updated_at),
        },
    )
    .account(f.account_id)
    .one_at("user", "users", f.user_id, format!("/v1/accounts/{}/users/{}", f.account_id, f.user_id));
    r.links.path = format!("/v1/accounts/{}/users/{}/second-factors/{}", f.account_id, f.user_id, f.id);
    r
}
