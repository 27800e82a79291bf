//! Creating accounts: `licensor setup`, and the first start on an empty database.

use std::path::Path;

use anyhow::{bail, Context};
use uuid::Uuid;

use crate::auth::{self, NewToken};
use crate::crypto::{self, MasterKey};
use crate::db::Db;
use crate::store::accounts::{self, AccountRow};
use crate::store::users::{self, UserRow};
use crate::time;

/// Account slugs: lowercase letters, digits and dashes, starting with a letter or digit, and
/// never a UUID (ids and slugs share one path segment).
pub fn valid_slug(slug: &str) -> bool {
    let mut chars = slug.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_lowercase() || c.is_ascii_digit())
        && slug.len() <= 64
        && slug.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && Uuid::parse_str(slug).is_err()
}

/// An email address in the common dot-atom form: `local@domain.tld`, the local part of RFC
/// 5322 `atext` and single dots, the domain of letter/digit/dash labels, 254 bytes at most. No
/// quotes, backslashes, spaces or control characters, so an address is safe inside the JSON
/// datasets of signed keys and in any log line.
pub fn valid_email(email: &str) -> bool {
    const ATEXT: &[u8] = b"!#$%&'*+-/=?^_`{|}~";
    let Some((local, domain)) = email.rsplit_once('@') else { return false };
    let dot_atoms = |s: &str, ok: &dyn Fn(u8) -> bool| {
        !s.is_empty() && s.split('.').all(|atom| !atom.is_empty() && atom.bytes().all(ok))
    };
    let labels_ok = domain.split('.').all(|l| l.len() <= 63 && !l.starts_with('-') && !l.ends_with('-'));
    email.len() <= 254
        && local.len() <= 64
        && dot_atoms(local, &|b| b.is_ascii_alphanumeric() || ATEXT.contains(&b))
        && dot_atoms(domain, &|b| b.is_ascii_alphanumeric() || b == b'-')
        && domain.contains('.')
        && labels_ok
}

pub struct CreatedAccount {
    pub account: AccountRow,
    pub admin: UserRow,
}

/// Creates an account with fresh signing keys and its first admin.
pub async fn create_account(
    db: &Db,
    master: &MasterKey,
    slug: &str,
    email: &str,
    password: &str,
) -> anyhow::Result<CreatedAccount> {
    if !valid_slug(slug) {
        bail!("invalid slug {slug:?}: use lowercase letters, digits and dashes");
    }
    if !valid_email(email) {
        bail!("invalid email {email:?}");
    }
    if password.len() < 8 {
        bail!("password must be at least 8 characters");
    }
    if accounts::find(db, slug).await?.is_some() {
        bail!("account slug {slug:?} is already taken");
    }
    let id = Uuid::new_v4();
    let keys = crypto::keys::generate_account_keys(master, id).await?;
    let now = time::now_ms();
    let account = AccountRow {
        id,
        slug: slug.to_string(),
        name: slug.to_string(),
        // Unlike Keygen, closed by default: nobody signs up or licenses themselves until the
        // operator opens the account (`PATCH /accounts/{id}` with `protected: false`).
        protected: true,
        ed25519_public: keys.ed25519_public_hex,
        ed25519_secret: keys.ed25519_sealed,
        rsa_public: keys.rsa_public_pem,
        rsa_secret: keys.rsa_sealed,
        ecdsa_public: Some(keys.ecdsa_public_pem),
        ecdsa_secret: Some(keys.ecdsa_sealed),
        created_at: now,
        updated_at: now,
    };
    accounts::insert(db, &account).await.map_err(|e| match e {
        crate::error::Error::Database(ref d) if crate::db::is_unique_violation(d) => {
            anyhow::anyhow!("account slug {slug:?} is already taken")
        }
        other => anyhow::anyhow!(other),
    })?;
    let admin = UserRow {
        id: Uuid::new_v4(),
        account_id: id,
        email: email.to_lowercase(),
        password_hash: Some(crypto::secrets::hash_password(password.to_string()).await?),
        first_name: None,
        last_name: None,
        role: "admin".into(),
        group_id: None,
        banned_at: None,
        metadata: crate::store::empty_metadata(),
        created_at: now,
        updated_at: now,
    };
    users::insert(db, &admin).await.context("cannot create the admin user")?;
    Ok(CreatedAccount { account, admin })
}

/// On an empty database, creates account `default` with an admin and an admin token, and
/// writes them to a 0600 file in `data_dir`. Returns that file's path when it did so.
/// Gives accounts created by an older version the keys added since (ECDSA P-256). Safe to run
/// on several nodes at once: a key is only set where none is.
pub async fn ensure_keys(db: &Db, master: &MasterKey) -> anyhow::Result<()> {
    for id in accounts::without_ecdsa(db).await? {
        let (public, sealed) = crypto::keys::generate_ecdsa_key(master, id)?;
        accounts::set_ecdsa(db, id, &public, &sealed).await?;
    }
    Ok(())
}

pub async fn first_run(db: &Db, master: &MasterKey, data_dir: &Path) -> anyhow::Result<Option<std::path::PathBuf>> {
    if accounts::count(db).await? > 0 {
        return Ok(None);
    }
    let password = crypto::secrets::generate_token("pw");
    let email = "admin@licensor.local";
    let created = match create_account(db, master, "default", email, &password).await {
        Ok(c) => c,
        // Another node sharing the database won the race: nothing to do.
        Err(_) if accounts::count(db).await? > 0 => return Ok(None),
        Err(e) => return Err(e),
    };
    let (_, token) =
        auth::issue_token(db, created.account.id, "user", created.admin.id, "admin", NewToken::default()).await?;
    let path = data_dir.join("initial-credentials.json");
    let body = serde_json::json!({
        "account_id": created.account.id,
        "account_slug": created.account.slug,
        "user_id": created.admin.id,
        "email": email,
        "password": password,
        "admin_token": token,
    });
    crate::fsutil::write_private(&path, serde_json::to_string_pretty(&body)?.as_bytes())?;
    Ok(Some(path))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slugs_and_emails() {
        assert!(valid_slug("acme"));
        assert!(valid_slug("acme-2"));
        assert!(!valid_slug("Acme"));
        assert!(!valid_slug("-acme"));
        assert!(!valid_slug(""));
        assert!(!valid_slug(&Uuid::new_v4().to_string()));
        assert!(valid_email("a@b.co"));
        assert!(!valid_email("a@b"));
        assert!(!valid_email("ab.co"));
        assert!(!valid_email("a b@c.co"));
        assert!(valid_email("first.o'neil+tag@mail.example.com"));
        for bad in [
            "a\"b@c.co",
            "a@b@c.co",
            "a\\b@c.co",
            "a..b@c.co",
            ".a@c.co",
            "a@-c.co",
            "a@c..co",
            "a\u{7}@c.co",
            "\"x\",\"tier\":\"enterprise@evil.co",
        ] {
            assert!(!valid_email(bad), "{bad}");
        }
    }
}
