//! Creating accounts: `licensor setup`, and the first start on an empty database.

use std::path::Path;

use anyhow::{bail, Context};
use uuid::Uuid;

use crate::auth::{self, NewToken};
use crate::crypto::{self, MasterKey};
use crate::db::Db;
use crate::domain::account;
use crate::model::{Account, User};
use crate::store::users;
use crate::store::{accounts, settings};
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
    users::insert(db, &admin, &[]).await.context("cannot create the admin user")?;
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
    // The file outlives its use: its token lapses after a day (the password makes more), and
    // the docs tell operators to delete the file once they have stored what it holds.
    let expiry = time::now_ms() + time::DAY;
    let opts = NewToken { name: Some("first run".into()), expiry: Some(expiry), ..NewToken::default() };
    let (_, token) = auth::issue_token(db, created.account.id, "user", created.admin.id, "admin", opts).await?;
    let path = data_dir.join("initial-credentials.json");
    let body = serde_json::json!({
        "account_id": created.account.id,
        "account_slug": created.account.slug,
        "user_id": created.admin.id,
        "email": email,
        "password": password,
        "admin_token": token,
        "admin_token_expiry": time::iso(expiry),
        "note": "Store the password and delete this file. The token expires after a day; POST /v1/tokens with the email and password makes another.",
    });
    crate::fsutil::write_private(&path, serde_json::to_string_pretty(&body)?.as_bytes())?;
    Ok(Some(path))
}

/// The setting holding a known text sealed with the master key.
const MASTER_CHECK: &str = "master_key_check";
const CHECK_TEXT: &[u8] = b"licensor master key check";

fn wrong_master_key() -> anyhow::Error {
    anyhow::anyhow!(
        "the master key does not open this database's account keys: it is not the key the database was \
         created with. Set LICENSOR_MASTER_KEY (or restore <data-dir>/master.key) to that key; if a \
         `licensor rotate-master-key` was interrupted, <data-dir>/master.key.new holds the new one"
    )
}

/// Refuses to go on with a master key that does not open this database: every account-scoped
/// request would fail, and keys sealed under it would be lost to the real one. The first start
/// with a database from before the check tests an account's keys, then records the check.
pub async fn check_master_key(db: &Db, master: &MasterKey) -> anyhow::Result<()> {
    if let Some(sealed) = settings::get(db, MASTER_CHECK).await? {
        return master.open(&sealed, MASTER_CHECK.as_bytes()).map(|_| ()).map_err(|_| wrong_master_key());
    }
    if let Some(k) = accounts::sealed_keys(db).await?.first() {
        crypto::AccountKeys::unseal(master, k.id, &k.ed25519, &k.rsa).map_err(|_| wrong_master_key())?;
    }
    settings::insert(db, MASTER_CHECK, &master.seal(CHECK_TEXT, MASTER_CHECK.as_bytes())?).await?;
    // Another node may have recorded a check first: it must be ours too.
    let sealed = settings::get(db, MASTER_CHECK).await?.unwrap_or_default();
    master.open(&sealed, MASTER_CHECK.as_bytes()).map(|_| ()).map_err(|_| wrong_master_key())
}

/// Re-seals every account's private keys and every second factor's secret under `new`
/// (opened with `old`) and records `new`'s check, in one transaction. Run it with the nodes
/// stopped: they hold the old key.
pub async fn rotate_master_key(db: &Db, old: &MasterKey, new: &MasterKey) -> anyhow::Result<usize> {
    check_master_key(db, old).await?;
    let mut resealed = Vec::new();
    for k in accounts::sealed_keys(db).await? {
        let aad = k.id.as_bytes();
        let reseal = |sealed: &[u8]| -> anyhow::Result<Vec<u8>> { new.seal(&old.open(sealed, aad)?, aad) };
        resealed.push(accounts::SealedKeys {
            id: k.id,
            ed25519: reseal(&k.ed25519)?,
            rsa: reseal(&k.rsa)?,
            ecdsa: k.ecdsa.as_deref().map(reseal).transpose()?,
        });
    }
    let mut factors = Vec::new();
    for (id, sealed) in crate::store::second_factors::all_sealed(db).await? {
        let aad = id.as_bytes();
        factors.push((id, new.seal(&old.open(&sealed, aad)?, aad)?));
    }
    let check = new.seal(CHECK_TEXT, MASTER_CHECK.as_bytes())?;
    if !accounts::reseal_all(db, &resealed, &factors, MASTER_CHECK, &check).await? {
        bail!("accounts or second factors were created during the rotation; nothing was changed, run it again");
    }
    Ok(resealed.len())
}
