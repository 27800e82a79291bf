//! Time-based one-time passwords (RFC 6238) as authenticator apps compute them: HMAC-SHA1,
//! six digits, 30-second steps, a 20-byte secret shown in base32 inside an `otpauth://` URI.
//! Pure: the caller keeps the secret (sealed) and the last step used.

/// Digits of a code.
pub const DIGITS: u32 = 6;
/// Seconds a code lasts.
pub const PERIOD: i64 = 30;
/// Seconds a code is still taken for after its step ended, as Keygen allows (a code typed as
/// the phone turned over); none ahead.
const DRIFT_BEHIND: i64 = 10;

const BASE32: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";

/// A new random secret.
pub fn new_secret() -> [u8; 20] {
    rand::random()
}

/// RFC 4648 base32 without padding, as `otpauth` URIs carry secrets.
pub fn base32(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len().div_ceil(5) * 8);
    for chunk in bytes.chunks(5) {
        let mut buf = [0u8; 5];
        buf[..chunk.len()].copy_from_slice(chunk);
        let n = u64::from_be_bytes([0, 0, 0, buf[0], buf[1], buf[2], buf[3], buf[4]]);
        let chars = (chunk.len() * 8).div_ceil(5);
        for i in 0..chars {
            out.push(BASE32[((n >> (35 - i * 5)) & 31) as usize] as char);
        }
    }
    out
}

/// HMAC-SHA1 (RFC 2104) over SHA-1 from `sha1_smol`, which the dependency tree already holds.
fn hmac_sha1(key: &[u8], message: &[u8]) -> [u8; 20] {
    const BLOCK: usize = 64;
    let mut k = [0u8; BLOCK];
    if key.len() > BLOCK {
        k[..20].copy_from_slice(&sha1_smol::Sha1::from(key).digest().bytes());
    } else {
        k[..key.len()].copy_from_slice(key);
    }
    let (mut inner, mut outer) = (sha1_smol::Sha1::new(), sha1_smol::Sha1::new());
    inner.update(&k.map(|b| b ^ 0x36));
    inner.update(message);
    outer.update(&k.map(|b| b ^ 0x5c));
    outer.update(&inner.digest().bytes());
    outer.digest().bytes()
}

/// The code of `step` (HOTP, RFC 4226, with the step as counter).
pub fn code_at(secret: &[u8], step: i64, digits: u32) -> u32 {
    let mac = hmac_sha1(secret, &step.to_be_bytes());
    let offset = (mac[19] & 0x0f) as usize;
    let binary = u32::from_be_bytes([mac[offset] & 0x7f, mac[offset + 1], mac[offset + 2], mac[offset + 3]]);
    binary % 10u32.pow(digits)
}

/// The 30-second step `unix_seconds` falls in.
pub fn step_of(unix_seconds: i64) -> i64 {
    unix_seconds.div_euclid(PERIOD)
}

/// The step `code` is valid for at `unix_seconds` (within the allowed drift), if any, and
/// only a step after `last_used`: a code seen once is not taken again.
pub fn verify(secret: &[u8], code: &str, unix_seconds: i64, last_used: Option<i64>) -> Option<i64> {
    let code = code.trim();
    if code.len() != DIGITS as usize || !code.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let given: u32 = code.parse().ok()?;
    (step_of(unix_seconds - DRIFT_BEHIND)..=step_of(unix_seconds))
        .filter(|step| last_used.is_none_or(|used| *step > used))
        // Every candidate is computed, so the time taken does not say which one matched.
        .fold(None, |found, step| {
            let matches = crate::crypto::secrets::secrets_equal(
                format!("{:0width$}", code_at(secret, step, DIGITS), width = DIGITS as usize).as_bytes(),
                format!("{given:0width$}", width = DIGITS as usize).as_bytes(),
            );
            found.or(matches.then_some(step))
        })
}

/// The `otpauth://` URI an authenticator app scans, shaped as Keygen's: `issuer`, the user's
/// `label` (their email, `:` made `_`), URL-encoded; SHA-1, six digits and 30 s are the
/// defaults apps assume, so they are left out.
pub fn uri(secret: &[u8], issuer: &str, label: &str) -> String {
    let enc = |s: &str| -> String {
        s.bytes()
            .map(|b| {
                if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                    (b as char).to_string()
                } else {
                    format!("%{b:02X}")
                }
            })
            .collect()
    };
    let label = label.trim_end().replace(':', "_");
    format!("otpauth://totp/{}:{}?secret={}&issuer={}", enc(issuer), enc(&label), base32(secret), enc(issuer))
}

#[cfg(test)]
mod tests {
    use super::*;

    const RFC_SECRET: &[u8] = b"12345678901234567890";

    #[test]
    fn rfc_6238_vectors() {
        // RFC 6238 appendix B, SHA-1, 8 digits; their last six digits are the 6-digit codes.
        for (t, expected) in [
            (59, 94287082),
            (1111111109, 7081804),
            (1111111111, 14050471),
            (1234567890, 89005924),
            (2000000000, 69279037),
            (20000000000, 65353130),
        ] {
            assert_eq!(code_at(RFC_SECRET, step_of(t), 8), expected, "t={t}");
            assert_eq!(code_at(RFC_SECRET, step_of(t), 6), expected % 1_000_000, "t={t}");
        }
    }

    #[test]
    fn codes_are_taken_once_within_the_drift() {
        let now = 1_700_000_030; // 20 s into its step (1_700_000_010 is a step's first second)
        let code = format!("{:06}", code_at(RFC_SECRET, step_of(now), 6));
        let step = verify(RFC_SECRET, &code, now, None).expect("valid now");
        assert_eq!(step, step_of(now));
        assert_eq!(verify(RFC_SECRET, &code, now + 15, None), Some(step), "5 s into the next step");
        assert_eq!(verify(RFC_SECRET, &code, now + 25, None), None, "15 s into the next step");
        assert_eq!(verify(RFC_SECRET, &code, now - 30, None), None, "none ahead");
        assert_eq!(verify(RFC_SECRET, &code, now, Some(step)), None, "already used");
        assert_eq!(verify(RFC_SECRET, "12345", now, None), None);
        assert_eq!(verify(RFC_SECRET, "abcdef", now, None), None);
    }

    #[test]
    fn secrets_are_shown_in_base32() {
        assert_eq!(base32(b"foobar"), "MZXW6YTBOI");
        assert_eq!(base32(RFC_SECRET), "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ");
        let u = uri(RFC_SECRET, "Licensor", "ann@example.com");
        assert_eq!(
            u,
            "otpauth://totp/Licensor:ann%40example.com?secret=GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ&issuer=Licensor"
        );
    }
}
