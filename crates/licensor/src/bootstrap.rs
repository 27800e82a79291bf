//! Creating accounts: `licensor setup`, and the first start on an empty database.

use std::path::Path;

use anyhow::{bail, Context};
use uuid::Uuid;

use crate::auth::{self, NewToken};
use crate::crypto::{self, MasterKey};
use crate::db::Db;
use crate::domain::account;
use crate::model::{Account, User};
use crate::store::accounts;
use crate::store::users;
use crate::time;

pub struct CreatedAccount {
    pub account: Account,
    pub admin: User,
}

/// Creates an account with fresh signing keys and its first admin.
pub async fn create_account(
    db: &Db,
    master: &MasterKey,
    slug: &str,
    email: &str,
    password: &str,
) -> anyhow::Result<CreatedAccount> {
    if !account::valid_slug(slug) {
        bail!("invalid slug {slug:?}: use lowercase letters, digits and dashes");
    }
    if !account::valid_email(email) {
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
    let account = Account {
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
    let admin = User {
        id: Uuid::new_v4(),
        account_id: id,
        email: email.to_lowercase(),
        password_hash: Some(crypto::secrets::hash_password(password.to_string()).await?),
        first_name: None,
        last_name: None,
        role: "admin".into(),
        group_id: None,
        banned_at: None,
        metadata: crate::model::empty_metadata(),
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
