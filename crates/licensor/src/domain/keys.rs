//! Signed license keys in Keygen's encodings.
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
use crate::model::{Account, License, Policy, Scheme};
use crate::time;
use uuid::Uuid;

/// The longest key, custom or signed. Keys are looked up through unique B-tree indexes, whose
/// entries PostgreSQL caps at about 2.7 kB; a longer key would fail there as a server error.
pub const MAX_KEY_LEN: usize = 2048;

pub fn key_too_long() -> Error {
    Error::invalid_attr("key", format!("is too long (maximum is {MAX_KEY_LEN} characters)"), "KEY_TOO_LONG")
}

/// Keys Keygen refuses because they would shadow routes.
const RESERVED_KEYS: &[&str] = &["actions", "action"];

pub fn check_custom_key(key: &str) -> Result<()> {
    if key.len() < 6 {
        return Err(Error::invalid_attr("key", "is too short (minimum is 6 characters)", "KEY_TOO_SHORT"));
    }
    if key.len() > MAX_KEY_LEN {
        return Err(key_too_long());
    }
    if RESERVED_KEYS.contains(&key.to_ascii_lowercase().as_str()) {
        return Err(Error::invalid_attr("key", "is reserved", "KEY_NOT_ALLOWED"));
    }
    if Uuid::parse_str(key).is_ok() {
        return Err(Error::invalid_attr(
            "key",
            "must not conflict with another license's identifier (UUID)",
            "KEY_CONFLICT",
        ));
    }
    Ok(())
}

/// The default seed embedded in a signed key.
pub fn default_seed(account: &Account, policy: &Policy, license: &License, owner_email: Option<&str>) -> String {
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

/// Fills `{{…}}` template variables in a caller-supplied seed. Values are JSON-escaped (without
/// quotes), so a template such as `{"email":"{{email}}"}` stays one JSON string per variable
/// whatever the user wrote in their profile: a `"` in a value cannot add a member to the signed
/// document.
pub fn render_template(
    seed: &str,
    account: &Account,
    policy: &Policy,
    license: &License,
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
    vars.iter().fold(seed.to_string(), |s, (k, v)| s.replace(k, &json_escaped(v)))
}

/// `v` as the inside of a JSON string literal.
fn json_escaped(v: &str) -> String {
    let quoted = serde_json::Value::String(v.to_string()).to_string();
    quoted[1..quoted.len() - 1].to_string()
}

/// The first bytes of everything else an account key signs: Keygen's V2 keys, license and
/// machine files, and the signing string of responses (and of webhooks, which Keygen signs the
/// same way). Licensor's own offline formats (OPSWAT files, licensing codes, core/v1 license
/// texts) are signed with Ed25519 only, which never signs a raw key dataset.
pub const RESERVED_SIGNING_PREFIXES: &[&str] = &["key/", "license/", "machine/", "(request-target)"];

/// The DER prefixes of PKCS#1 `DigestInfo`s (MD5, SHA-1, SHA-224, SHA-256, SHA-384, SHA-512,
/// SHA-512/224, SHA-512/256): an `RSA_2048_PKCS1_ENCRYPT` block starting with one would be a
/// PKCS#1 v1.5 signature over any message of the caller's choosing. Those of the SHA-2 family
/// are not valid UTF-8 (0x86 follows an ASCII byte), so no JSON string can carry them; the
/// check keeps the guarantee from resting on that, and covers the ASCII-only MD5 and SHA-1.
const DIGEST_INFOS: &[&[u8]] = &[
    &[0x30, 0x20, 0x30, 0x0c, 0x06, 0x08, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x02, 0x05, 0x05, 0x00, 0x04, 0x10],
    &[0x30, 0x21, 0x30, 0x09, 0x06, 0x05, 0x2b, 0x0e, 0x03, 0x02, 0x1a, 0x05, 0x00, 0x04, 0x14],
    &[0x30, 0x2d, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x04, 0x05, 0x00, 0x04, 0x1c],
    SHA256_DIGEST_INFO,
    &[0x30, 0x41, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x02, 0x05, 0x00, 0x04, 0x30],
    &[0x30, 0x51, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x03, 0x05, 0x00, 0x04, 0x40],
    &[0x30, 0x2d, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x05, 0x05, 0x00, 0x04, 0x1c],
    &[0x30, 0x31, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x06, 0x05, 0x00, 0x04, 0x20],
];
const SHA256_DIGEST_INFO: &[u8] =
    &[0x30, 0x31, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x01, 0x05, 0x00, 0x04, 0x20];

/// Whether `scheme` signs the key dataset itself rather than `key/<base64 dataset>`: the V1 RSA
/// schemes, and the private-key "encryption" of `RSA_2048_PKCS1_ENCRYPT`.
fn signs_raw_dataset(scheme: Scheme) -> bool {
    matches!(scheme, Scheme::Rsa2048Pkcs1Sign | Scheme::Rsa2048Pkcs1PssSign | Scheme::Rsa2048Pkcs1Encrypt)
}

/// Whether `s` could be a JWT signing input (`base64url(header).base64url(claims)`, the bytes an
/// `RS256` signature covers): one dot, and a first part that decodes, padded or not, to a JSON
/// object, as every JWT verifier requires of the header.
fn jwt_signing_input_shaped(s: &str) -> bool {
    let mut parts = s.split('.');
    let (Some(header), Some(_claims), None) = (parts.next(), parts.next(), parts.next()) else {
        return false;
    };
    let decoded = URL_SAFE_NO_PAD.decode(header.trim_end_matches('=')).or_else(|_| URL_SAFE.decode(header));
    decoded.is_ok_and(|h| serde_json::from_slice::<serde_json::Value>(&h).is_ok_and(|v| v.is_object()))
}

/// Refuses a dataset that, signed as `scheme` signs it, would also verify as another format the
/// account key signs: the V1 RSA schemes sign the dataset's raw bytes with the same key and
/// algorithm as license files and responses. V2 schemes always sign `key/…`, which nothing else
/// begins with.
pub fn check_dataset(scheme: Scheme, dataset: &str) -> Result<()> {
    if !signs_raw_dataset(scheme) {
        return Ok(());
    }
    let reserved = RESERVED_SIGNING_PREFIXES.iter().any(|p| dataset.starts_with(p))
        || jwt_signing_input_shaped(dataset)
        || DIGEST_INFOS.iter().any(|d| dataset.as_bytes().starts_with(d));
    if reserved {
        return Err(Error::invalid_attr(
            "key",
            "is not allowed (it has the form of another document the account signs)",
            "KEY_NOT_ALLOWED",
        ));
    }
    Ok(())
}

fn unsupported(scheme: Scheme) -> Error {
    Error::invalid_attr("scheme", format!("{scheme} is not supported by this server yet"), "SCHEME_NOT_SUPPORTED")
}

/// The default seed of `RSA_2048_PKCS1_ENCRYPT` (small: the whole seed must fit one RSA block).
fn encrypt_seed(policy: &Policy, license: &License) -> String {
    json!({
        "id": license.id,
        "created": time::iso(license.created_at),
        "duration": policy.rules.0.duration,
        "expiry": time::iso_opt(license.expiry),
    })
    .to_string()
}

/// The default claims of `RSA_2048_JWT_RS256`.
fn jwt_claims(account: &Account, license: &License) -> serde_json::Value {
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
    scheme: Scheme,
    account: &Account,
    master: &MasterKey,
    policy: &Policy,
    license: &License,
    seed: Option<&str>,
    owner_email: Option<&str>,
) -> Result<String> {
    let template = seed.map(|s| render_template(s, account, policy, license, owner_email));
    if let Some(t) = &template {
        check_dataset(scheme, t)?;
    }
    let keys = AccountKeys::for_account(master, account)?;
    match scheme {
        Scheme::Rsa2048Pkcs1Encrypt => {
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
                // Blinded, like every RSA private-key operation here.
                .sign_with_rng(&mut rand::rngs::OsRng, rsa::Pkcs1v15Sign::new_unprefixed(), seed.as_bytes())
                .map_err(|e| Error::Internal(anyhow::anyhow!("RSA private-encrypt failed: {e}")))?;
            return Ok(URL_SAFE.encode(block));
        }
        Scheme::Rsa2048JwtRs256 => {
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
        Scheme::Ed25519Sign => (signing_data.as_bytes(), true, SigAlg::Ed25519),
        Scheme::EcdsaP256Sign => (signing_data.as_bytes(), true, SigAlg::EcdsaP256),
        Scheme::Rsa2048Pkcs1SignV2 => (signing_data.as_bytes(), true, SigAlg::RsaSha256),
        Scheme::Rsa2048Pkcs1PssSignV2 => (signing_data.as_bytes(), true, SigAlg::RsaPssSha256),
        Scheme::Rsa2048Pkcs1Sign => (seed.as_bytes(), false, SigAlg::RsaSha256),
        Scheme::Rsa2048Pkcs1PssSign => (seed.as_bytes(), false, SigAlg::RsaPssSha256),
        other @ (Scheme::LegacyEncrypt | Scheme::Rsa2048Pkcs1Encrypt | Scheme::Rsa2048JwtRs256) => {
            return Err(unsupported(other))
        }
    };
    let sig = URL_SAFE.encode(sign::sign(&keys, alg, signed)?);
    let key = if v2 { format!("{signing_data}.{sig}") } else { format!("{enc}.{sig}") };
    Ok(key)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raw_signed_datasets_cannot_take_another_formats_shape() {
        let others = [
            "key/eyJhIjoxfQ==",
            "license/eyJhIjoxfQ==",
            "machine/eyJhIjoxfQ==",
            "(request-target): get /v1/ping\nhost: h\ndate: d\ndigest: sha-256=x",
            "eyJhbGciOiJSUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiJ4In0",
            "eyJhbGciOiJSUzI1NiJ9.",
            "IHsiYWxnIjoiUlMyNTYifQ.e30",
        ];
        for scheme in [Scheme::Rsa2048Pkcs1Sign, Scheme::Rsa2048Pkcs1PssSign, Scheme::Rsa2048Pkcs1Encrypt] {
            for d in others {
                assert!(check_dataset(scheme, d).is_err(), "{scheme}: {d}");
            }
            for d in [r#"{"tier":"pro"}"#, "ACME-1234.5678", "a.b.c", "no dots", "lic/x", "1.5 release"] {
                assert!(check_dataset(scheme, d).is_ok(), "{scheme}: {d}");
            }
        }
        // V2 schemes sign `key/…` whatever the dataset.
        for d in others {
            assert!(check_dataset(Scheme::Ed25519Sign, d).is_ok());
        }
        assert!(String::from_utf8(SHA256_DIGEST_INFO.to_vec()).is_err());
        // SHA-1's DigestInfo is ASCII: a dataset may carry it, and is refused.
        let sha1 = String::from_utf8(DIGEST_INFOS[1].to_vec()).unwrap() + "01234567890123456789";
        assert!(check_dataset(Scheme::Rsa2048Pkcs1Encrypt, &sha1).is_err());
    }

    #[test]
    fn template_values_stay_inside_their_json_string() {
        assert_eq!(json_escaped(r#"a"b\c"#), r#"a\"b\\c"#);
        assert_eq!(json_escaped("line\nbreak"), r"line\nbreak");
        assert_eq!(json_escaped("plain@example.com"), "plain@example.com");
    }
}
