//! Token and password handling.
//!
//! Tokens are 256 random bits, shown once, stored as their SHA-256 digest: a database leak does
//! not leak usable tokens, and lookup stays an indexed equality on the digest. Passwords are
//! argon2id hashes, computed off the async runtime.

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use rand::rngs::OsRng;
use rand::RngCore;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// The token prefixes Keygen's v3 tokens carry; clients sometimes branch on them.
pub fn token_prefix(bearer_type: &str, role: &str) -> &'static str {
    match (bearer_type, role) {
        ("product", _) => "prod",
        ("license", _) => "activ",
        (_, "admin") => "admin",
        (_, "developer") => "dev",
        (_, "sales-agent") => "sales",
        (_, "support-agent") => "spprt",
        (_, "read-only") => "read",
        _ => "user",
    }
}

/// A fresh raw token, `<prefix>-<64 hex>v3`.
pub fn generate_token(prefix: &str) -> String {
    let mut bytes = [0u8; 32];
    OsRng.fill_bytes(&mut bytes);
    format!("{prefix}-{}v3", hex::encode(bytes))
}

/// What the database keeps of a token.
pub fn token_digest(raw: &str) -> String {
    hex::encode(Sha256::digest(raw.as_bytes()))
}

/// Constant-time equality for secrets of possibly different lengths.
pub fn secrets_equal(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && bool::from(a.ct_eq(b))
}

pub async fn hash_password(password: String) -> anyhow::Result<String> {
    // Shares the password-check slots (below); setting a password is rare enough to just wait.
    let _slot = PASSWORD_SLOTS.acquire().await?;
    tokio::task::spawn_blocking(move || {
        let salt = SaltString::generate(&mut OsRng);
        Argon2::default()
            .hash_password(password.as_bytes(), &salt)
            .map(|h| h.to_string())
            .map_err(|e| anyhow::anyhow!("password hashing failed: {e}"))
    })
    .await?
}

/// Checks `password` against a stored hash. With no stored hash the check still burns the same
/// time against a dummy hash, so response timing does not reveal which emails exist.
pub async fn verify_password(password: String, stored: Option<String>) -> crate::error::Result<bool> {
    let _slot = password_slot().await?;
    Ok(tokio::task::spawn_blocking(move || {
        let dummy = dummy_hash();
        let (hash, real) = match &stored {
            Some(h) => (h.as_str(), true),
            None => (dummy.as_str(), false),
        };
        let Ok(parsed) = PasswordHash::new(hash) else {
            return false;
        };
        let ok = Argon2::default().verify_password(password.as_bytes(), &parsed).is_ok();
        ok && real
    })
    .await
    .unwrap_or(false))
}

/// Argon2 is meant to be costly (about 19 MiB and tens of milliseconds per check). Run freely,
/// a flood of password logins would take every core and a blocking thread each; capped at half
/// the cores, validations keep the rest. Checks beyond [`MAX_WAITING`] are refused at once
/// (429) rather than queued for longer than a client waits.
static PASSWORD_SLOTS: std::sync::LazyLock<tokio::sync::Semaphore> = std::sync::LazyLock::new(|| {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    tokio::sync::Semaphore::new((cores / 2).max(1))
});
static WAITING: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
const MAX_WAITING: u64 = 256;

/// Password checks waiting for a slot now.
pub fn password_checks_waiting() -> u64 {
    WAITING.load(std::sync::atomic::Ordering::Relaxed)
}

async fn password_slot() -> crate::error::Result<tokio::sync::SemaphorePermit<'static>> {
    use std::sync::atomic::Ordering;
    if WAITING.fetch_add(1, Ordering::Relaxed) >= MAX_WAITING {
        WAITING.fetch_sub(1, Ordering::Relaxed);
        return Err(crate::error::Error::TooManyRequests {
            detail: "Too many password checks are in progress; retry shortly, or authenticate with a token".into(),
            retry_after: 1,
        });
    }
    let permit = PASSWORD_SLOTS.acquire().await;
    WAITING.fetch_sub(1, Ordering::Relaxed);
    permit.map_err(|_| crate::error::Error::Internal(anyhow::anyhow!("password check slots closed")))
}

fn dummy_hash() -> String {
    static DUMMY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    DUMMY
        .get_or_init(|| {
            let salt = SaltString::generate(&mut OsRng);
            Argon2::default().hash_password(b"licensor-dummy", &salt).map(|h| h.to_string()).unwrap_or_default()
        })
        .clone()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_prefixed_random_and_digested() {
        let a = generate_token("admin");
        let b = generate_token("admin");
        assert!(a.starts_with("admin-") && a.ends_with("v3"));
        assert_eq!(a.len(), "admin-".len() + 64 + 2);
        assert_ne!(a, b);
        assert_eq!(token_digest(&a).len(), 64);
        assert_ne!(token_digest(&a), token_digest(&b));
    }

    #[test]
    fn secret_comparison() {
        assert!(secrets_equal(b"abc", b"abc"));
        assert!(!secrets_equal(b"abc", b"abd"));
        assert!(!secrets_equal(b"abc", b"abcd"));
    }

    #[tokio::test]
    async fn passwords_verify_only_with_the_right_hash() {
        let h = hash_password("hunter22".into()).await.unwrap();
        assert!(h.starts_with("$argon2id$"));
        assert!(verify_password("hunter22".into(), Some(h.clone())).await.unwrap());
        assert!(!verify_password("hunter23".into(), Some(h)).await.unwrap());
        assert!(!verify_password("hunter22".into(), None).await.unwrap());
    }
}
