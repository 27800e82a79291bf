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

/// Verifies the signature and that the body matches the signed digest.
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
