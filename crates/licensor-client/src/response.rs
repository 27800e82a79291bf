//! Signed API responses: `Keygen-Signature: keyid="…", algorithm="…", signature="…",
//! headers="(request-target) host date digest"` over
//! `(request-target): <method> <path?query>\nhost: …\ndate: …\ndigest: sha-256=<b64>`.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use sha2::{Digest, Sha256};

use crate::public_key::{Algorithm, PublicKey};
use crate::{malformed, Error, Result};

/// What the client saw: the request it sent and the response's headers and body.
pub struct SignedResponse<'a> {
    pub method: &'a str,
    /// Path and query exactly as requested, e.g. `/v1/accounts/acme/licenses/actions/validate-key`.
    pub path_and_query: &'a str,
    pub host: &'a str,
    /// The `Keygen-Signature` header.
    pub signature_header: &'a str,
    /// The `Date` header.
    pub date: &'a str,
    pub body: &'a [u8],
}

/// Verifies the signature, the body's digest, and that the answer is fresh: its signed `Date`
/// within `max_age` of `now` (a captured answer replayed later fails, `Expired`), and not from
/// the future beyond the clock skew (`ClockRollback`).
pub fn verify_fresh(
    r: &SignedResponse<'_>,
    public_key: &PublicKey,
    now: chrono::DateTime<chrono::Utc>,
    max_age: chrono::Duration,
) -> Result<()> {
    verify(r, public_key)?;
    let date = chrono::DateTime::parse_from_rfc2822(r.date)
        .map_err(|_| malformed("Date is not an HTTP date"))?
        .with_timezone(&chrono::Utc);
    if date > now + crate::file::CLOCK_SKEW {
        return Err(Error::ClockRollback);
    }
    if now - date > max_age {
        return Err(Error::Expired(date.to_rfc3339()));
    }
    Ok(())
}

/// Checks that a verified validation answer is the one asked for: its `meta.nonce` the nonce
/// sent, and its license the key validated. A VALID answer for another key, or an old one with
/// another nonce, is refused (`Malformed`).
pub fn check_validation(body: &[u8], key: &str, nonce: i64) -> Result<()> {
    let doc: serde_json::Value = serde_json::from_slice(body).map_err(|_| malformed("body is not JSON"))?;
    if doc["meta"]["nonce"].as_i64() != Some(nonce) {
        return Err(malformed("the answer carries another nonce"));
    }
    if doc["data"]["attributes"]["key"].as_str() != Some(key) {
        return Err(malformed("the answer is about another license"));
    }
    Ok(())
}

/// Verifies the signature and that the body matches the signed digest. Says nothing of when
/// the answer was given: see [`verify_fresh`].
pub fn verify(r: &SignedResponse<'_>, public_key: &PublicKey) -> Result<()> {
    let mut algorithm = None;
    let mut signature = None;
    for part in r.signature_header.split(',') {
        let (k, v) = part.trim().split_once('=').ok_or_else(|| malformed("signature header"))?;
        let v = v.trim().trim_matches('"');
        match k.trim() {
            "algorithm" => algorithm = Some(v),
            "signature" => signature = Some(v),
            "headers" if v != "(request-target) host date digest" => {
                return Err(Error::Unsupported(format!("signed headers {v}")))
            }
            _ => {}
        }
    }
    let alg = Algorithm::parse(algorithm.ok_or_else(|| malformed("signature algorithm missing"))?)?;
    let sig =
        STANDARD.decode(signature.ok_or_else(|| malformed("signature missing"))?).map_err(|_| Error::BadSignature)?;
    let digest = format!("sha-256={}", STANDARD.encode(Sha256::digest(r.body)));
    let data = format!(
        "(request-target): {} {}\nhost: {}\ndate: {}\ndigest: {digest}",
        r.method.to_lowercase(),
        r.path_and_query,
        r.host,
        r.date
    );
    public_key.verify(alg, data.as_bytes(), &sig)
}

/// A webhook as its receiver got it. Webhooks are signed as responses are, over `post`, the
/// endpoint URL's path and query, and the endpoint URL's host name (without the port).
pub struct SignedWebhook<'a> {
    /// Path and query of the endpoint URL, e.g. `/hooks/keygen`.
    pub path_and_query: &'a str,
    /// Host name of the endpoint URL, e.g. `hooks.example.com`.
    pub host: &'a str,
    /// The `Keygen-Signature` header.
    pub signature_header: &'a str,
    /// The `Date` header.
    pub date: &'a str,
    pub body: &'a [u8],
}

/// Verifies a webhook's signature, its body's digest and its freshness (see [`verify_fresh`]).
/// Deliveries are at least once: de-duplicate on `data.meta.idempotencyToken` (the same for
/// every delivery and retry of one event), or on `data.id` per delivery.
pub fn verify_webhook(
    w: &SignedWebhook<'_>,
    public_key: &PublicKey,
    now: chrono::DateTime<chrono::Utc>,
    max_age: chrono::Duration,
) -> Result<()> {
    let r = SignedResponse {
        method: "post",
        path_and_query: w.path_and_query,
        host: w.host,
        signature_header: w.signature_header,
        date: w.date,
        body: w.body,
    };
    verify_fresh(&r, public_key, now, max_age)
}
