//! Who is calling: credentials in, an authenticated [`Principal`] out.
//!
//! Keygen's bearers are users (admins among them), products, and licenses (by key or by
//! license token). Authorization decisions are methods on [`Principal`], so every surface asks
//! the same questions.

use uuid::Uuid;

use crate::db::Db;
use crate::error::{Error, Result};
use crate::license_cache::LicenseCache;
use crate::model::{Account, License, Product, SecondFactor, Token, User};
use crate::store::{licenses, products, second_factors, tokens, users};
use crate::{crypto, time};

/// Credentials as presented.
pub enum Credential {
    Token(String),
    License(String),
    Password(String, String),
}

#[derive(Debug, Clone)]
pub enum Bearer {
    /// A user with an administrative role.
    Admin(User),
    User(User),
    Product(Product),
    License(Box<License>),
}

#[derive(Debug, Clone)]
pub struct Principal {
    pub bearer: Bearer,
    /// The token used, when the caller authenticated with one.
    pub token: Option<Token>,
}

pub const ADMIN_ROLES: &[&str] = &["admin", "developer"];

impl Principal {
    /// A license acting for itself, as a license key that authenticated makes it.
    pub fn of_license(l: License) -> Principal {
        Principal { bearer: Bearer::License(Box::new(l)), token: None }
    }

    pub fn is_admin(&self) -> bool {
        matches!(self.bearer, Bearer::Admin(_))
    }

    pub fn product_id(&self) -> Option<Uuid> {
        match &self.bearer {
            Bearer::Product(p) => Some(p.id),
            _ => None,
        }
    }

    pub fn user_id(&self) -> Option<Uuid> {
        match &self.bearer {
            Bearer::User(u) | Bearer::Admin(u) => Some(u.id),
            _ => None,
        }
    }

    pub fn license(&self) -> Option<&License> {
        match &self.bearer {
            Bearer::License(l) => Some(l),
            _ => None,
        }
    }

    /// Refuses a license bearer what Keygen's default license permissions leave out:
    /// `account.read`, `product.read`, `policy.read` and `user.read`. A license reads itself,
    /// its machines, processes, components, entitlements and group, nothing of the catalog.
    pub fn reads_catalog(&self) -> Result<()> {
        if self.license().is_some() {
            return Err(Error::access_denied());
        }
        Ok(())
    }

    /// The bearer's (type, id) as tokens record it.
    pub fn bearer_ref(&self) -> (&'static str, Uuid) {
        match &self.bearer {
            Bearer::Admin(u) | Bearer::User(u) => ("user", u.id),
            Bearer::Product(p) => ("product", p.id),
            Bearer::License(l) => ("license", l.id),
        }
    }
}

/// Reads the `Authorization` header: `Bearer`/`Token`, `License`, or HTTP Basic (`token:…`,
/// `license:…`, a bare token as user name, or email:password).
pub fn parse_authorization(headers: &axum::http::HeaderMap) -> Result<Option<Credential>> {
    let Some(value) = headers.get(axum::http::header::AUTHORIZATION) else {
        return Ok(None);
    };
    let value =
        value.to_str().map_err(|_| Error::unauthorized("Authorization header is malformed", "TOKEN_INVALID"))?;
    let (scheme, rest) = value.split_once(' ').unwrap_or((value, ""));
    let rest = rest.trim();
    match scheme.to_ascii_lowercase().as_str() {
        "bearer" | "token" if !rest.is_empty() => Ok(Some(Credential::Token(rest.to_string()))),
        "license" if !rest.is_empty() => Ok(Some(Credential::License(rest.to_string()))),
        "basic" => {
            use base64::Engine;
            let decoded = base64::engine::general_purpose::STANDARD
                .decode(rest)
                .ok()
                .and_then(|b| String::from_utf8(b).ok())
                .ok_or_else(|| Error::unauthorized("Basic credentials are malformed", "TOKEN_INVALID"))?;
            let (user, pass) = decoded.split_once(':').unwrap_or((decoded.as_str(), ""));
            Ok(Some(match (user, pass) {
                ("token", t) => Credential::Token(t.to_string()),
                ("license", k) => Credential::License(k.to_string()),
                (t, "") => Credential::Token(t.to_string()),
                (email, password) => Credential::Password(email.to_string(), password.to_string()),
            }))
        }
        _ => Err(Error::unauthorized("Authorization header is malformed", "TOKEN_INVALID")),
    }
}

fn token_invalid() -> Error {
    Error::unauthorized(
        "Token format is invalid (make sure that you're providing a token value and that it's formatted correctly)",
        "TOKEN_INVALID",
    )
}

/// Authenticates `credential` against `account`. Credentials of another account are invalid
/// here, exactly as unknown ones are.
/// `cache`: the node's license cache, which license keys are looked up in first.
pub async fn authenticate(
    db: &Db,
    cache: Option<&LicenseCache>,
    account: &Account,
    credential: Credential,
) -> Result<Principal> {
    match credential {
        Credential::Token(raw) => authenticate_token(db, account, &raw).await,
        Credential::License(key) => authenticate_license_key(db, cache, account, &key).await,
        Credential::Password(..) => Err(token_invalid()),
    }
}

async fn authenticate_token(db: &Db, account: &Account, raw: &str) -> Result<Principal> {
    let token = find_token(db, raw).await?;
    token_principal(db, account, token).await
}

/// The token `raw` stands for, in whichever account; surfaces with no account in the URL learn
/// the account from it. Pass the row to [`token_principal`] to authenticate.
pub async fn find_token(db: &Db, raw: &str) -> Result<Token> {
    if Uuid::parse_str(raw).is_ok() {
        return Err(Error::unauthorized(
            "Token format is invalid (make sure that you're providing a token value, not a token's UUID identifier)",
            "TOKEN_FORMAT_INVALID",
        ));
    }
    let digest = crypto::secrets::token_digest(raw);
    let token = tokens::find_by_digest(db, &digest).await?.ok_or_else(token_invalid)?;
    // The lookup was by digest; compare again in constant time so a prefix match of an index
    // probe can never stand in for equality.
    if !crypto::secrets::secrets_equal(token.digest.as_bytes(), digest.as_bytes()) {
        return Err(token_invalid());
    }
    Ok(token)
}

/// The principal `token` authenticates in `account`; another account's token is invalid here.
pub async fn token_principal(db: &Db, account: &Account, token: Token) -> Result<Principal> {
    if token.account_id != account.id {
        return Err(token_invalid());
    }
    if token.expiry.is_some_and(|e| e < time::now_ms()) {
        return Err(Error::unauthorized("Token is expired", "TOKEN_EXPIRED"));
    }
    let bearer = match token.bearer_type.as_str() {
        "user" => {
            let user = users::find(db, account.id, token.bearer_id).await?.ok_or_else(token_invalid)?;
            user_bearer(user)?
        }
        "product" => Bearer::Product(
            products::find(db, account.id, &token.bearer_id.to_string()).await?.ok_or_else(token_invalid)?,
        ),
        "license" => {
            let license = licenses::find(db, account.id, token.bearer_id).await?.ok_or_else(token_invalid)?;
            token_license_stands(&license)?;
            Bearer::License(Box::new(license))
        }
        _ => return Err(token_invalid()),
    };
    Ok(noted(Principal { bearer, token: Some(token) }))
}

/// Notes `p` as the current request's caller, for the event log's whodunnit.
fn noted(p: Principal) -> Principal {
    let (kind, id) = match &p.bearer {
        Bearer::Admin(u) | Bearer::User(u) => ("users", u.id),
        Bearer::Product(pr) => ("products", pr.id),
        Bearer::License(l) => ("licenses", l.id),
    };
    crate::events::note_caller(crate::events::Whodunnit { kind, id });
    p
}

/// The principal for a user who logged in with a password.
/// A license acting for itself through a surface that takes its key (the activation server),
/// recorded as the request's caller like any license that authenticated.
pub fn license_principal(license: License) -> Principal {
    noted(Principal::of_license(license))
}

pub fn user_principal(user: User) -> Result<Principal> {
    Ok(noted(Principal { bearer: user_bearer(user)?, token: None }))
}

fn user_bearer(user: User) -> Result<Bearer> {
    if user.banned_at.is_some() {
        return Err(Error::forbidden("User is banned", "USER_BANNED"));
    }
    Ok(if ADMIN_ROLES.contains(&user.role.as_str()) { Bearer::Admin(user) } else { Bearer::User(user) })
}

/// A license key, from the node's license cache when it holds a current copy (see
/// [`crate::license_cache`]: a change made on this node is seen at once, one made on another
/// node within the cache's bound), else from the database. Only a copy that stands is taken
/// from the cache: a refusal is read again, as validation does, so a license reinstated on
/// another node is not refused for the bound. Nothing is stored here: the cache keeps what
/// validations read twice, and a validation carrying its own key would count as two. The
/// copy lacks the last validation (`GET /me` reads the license again); an activation checks
/// it under its lock (`store::machines::activate`), so limits are never decided on a stale copy.
async fn authenticate_license_key(
    db: &Db,
    cache: Option<&LicenseCache>,
    account: &Account,
    key: &str,
) -> Result<Principal> {
    if let Some(Ok(license)) = cache.map(|c| c.lookup(account.id, key)) {
        if key_license_stands(&license).is_ok() {
            return Ok(noted(Principal::of_license(license.as_ref().clone())));
        }
    }
    let license = licenses::find_to_validate(db, account.id, key)
        .await?
        .ok_or_else(|| Error::unauthorized("License key is invalid", "LICENSE_INVALID"))?;
    key_license_stands(&license)?;
    Ok(noted(Principal::of_license(license)))
}

/// Whether `license`, read again, still stands as `p` acting for it needs (it may have been
/// suspended, may have expired or its owner been banned since `p` authenticated): the refusal
/// authentication would answer now. Whether its policy takes keys or tokens is not asked
/// again: surfaces that act for a license by its key without Keygen's authentication
/// (`license_principal`) never asked it. Bearers other than this license are not concerned.
pub fn license_still_stands(p: &Principal, license: &License) -> Result<()> {
    match (&p.bearer, &p.token) {
        (Bearer::License(me), None) if me.id == license.id => check_license_standing(license),
        (Bearer::License(me), Some(_)) if me.id == license.id => owner_stands(license),
        _ => Ok(()),
    }
}

/// A license key authenticates only for a license in good standing whose policy allows it.
fn key_license_stands(license: &License) -> Result<()> {
    check_license_standing(license)?;
    if !license.rules().allows_license_auth() {
        return Err(Error::forbidden("License key authentication is not allowed by policy", "LICENSE_NOT_ALLOWED"));
    }
    Ok(())
}

/// As in Keygen, a license's token is refused only for a banned owner or a policy without token
/// authentication: a suspended or expired license still acts with it (and learns its state by
/// validating).
fn token_license_stands(license: &License) -> Result<()> {
    owner_stands(license)?;
    if !license.rules().allows_token_auth() {
        return Err(Error::forbidden("Token authentication is not allowed by policy", "TOKEN_NOT_ALLOWED"));
    }
    Ok(())
}

/// A license acts for itself only while its owner, if any, is not banned.
fn owner_stands(license: &License) -> Result<()> {
    if license.owner_banned {
        return Err(Error::forbidden("User is banned", "USER_BANNED"));
    }
    Ok(())
}

/// A license authenticating with its key must be in good standing: the checks validation runs
/// first, each a 403 with Keygen's code.
fn check_license_standing(license: &License) -> Result<()> {
    use crate::domain::validation::{revoked, ValidationCode};
    match revoked(license, time::now_ms()).map(|o| o.code) {
        None => Ok(()),
        Some(ValidationCode::Banned) => Err(Error::forbidden("License is banned", "LICENSE_BANNED")),
        Some(ValidationCode::Suspended) => Err(Error::forbidden("License is suspended", "LICENSE_SUSPENDED")),
        Some(_) => Err(Error::forbidden("License is expired", "LICENSE_EXPIRED")),
    }
}

/// Email + password login (HTTP Basic on `POST /tokens`). The refusals are Keygen's, each on
/// the `Authorization` header: `EMAIL_INVALID`, `PASSWORD_NOT_SUPPORTED` (a user without a
/// password), `PASSWORD_REQUIRED`, `PASSWORD_INVALID`. Like Keygen's they tell an unknown email
/// from a wrong password; the password is checked (against a dummy when there is no user) in
/// every case, so the time taken does not tell them apart too. The console and the licensing
/// surface show one message for all of them.
pub async fn password_login(ctx: &Login<'_>, account: &Account, email: &str, password: &str) -> Result<User> {
    let db = ctx.db;
    let user = users::find_by_email(db, account.id, email).await?;
    let ok =
        crypto::secrets::verify_password(password.to_string(), user.as_ref().and_then(|u| u.password_hash.clone()))
            .await?;
    let refused = |detail: &'static str, code: &'static str| Error::Unauthorized {
        detail: detail.into(),
        code: Some(code.into()),
        location: crate::error::Source::Header("Authorization".into()),
    };
    let u = match user {
        None => return Err(refused("email must be valid", "EMAIL_INVALID")),
        Some(u) if u.password_hash.is_none() => {
            return Err(refused("password is unsupported", "PASSWORD_NOT_SUPPORTED"))
        }
        Some(_) if password.is_empty() => return Err(refused("password is required", "PASSWORD_REQUIRED")),
        Some(u) => u,
    };
    // As Keygen, the second factor before the password: the answer to a wrong code does not
    // tell whether the password was right. The code's step is taken only once the password
    // is right too, so a wrong password does not use up the user's code.
    let mut code_step = None;
    if let Some(f) = second_factors::of_user(db, account.id, u.id).await?.filter(|f| f.enabled) {
        match ctx.otp {
            Otp::Given(None) => return Err(otp_error("second factor is required", "OTP_REQUIRED")),
            Otp::Given(Some(code)) => match matching_step(ctx.master, &f, code)? {
                Some(step) => code_step = Some((f, step)),
                None => return Err(otp_invalid()),
            },
            // Said only to whoever knows the password: a wrong one reads as wrong.
            Otp::Unavailable if ok => {
                return Err(Error::unauthorized(
                    "this user has a second factor: authenticate with a token",
                    "OTP_REQUIRED",
                ))
            }
            Otp::Unavailable => {}
        }
    }
    if !ok {
        return Err(refused("password must be valid", "PASSWORD_INVALID"));
    }
    if let Some((f, step)) = code_step {
        // Another login took this code in the meantime.
        if !second_factors::take_step(db, &f, step).await? {
            return Err(otp_invalid());
        }
    }
    if u.banned_at.is_some() {
        return Err(Error::forbidden("User is banned", "USER_BANNED"));
    }
    Ok(u)
}

/// What a password login needs besides the credentials: the database, the master key (a
/// second factor's secret is sealed with it) and the code the request carries, if it can.
pub struct Login<'a> {
    pub db: &'a Db,
    pub master: &'a crypto::MasterKey,
    pub otp: Otp<'a>,
}

/// A one-time code a login brings.
#[derive(Clone, Copy)]
pub enum Otp<'a> {
    /// The request has a place for it (`meta.otp`, the console's field), filled or not.
    Given(Option<&'a str>),
    /// It has none (HTTP Basic on the licensing surface): a user with a second factor must use
    /// a token there.
    Unavailable,
}

fn otp_error(detail: &'static str, code: &'static str) -> Error {
    Error::Unauthorized {
        detail: detail.into(),
        code: Some(code.into()),
        location: crate::error::Source::Pointer("/meta/otp".into()),
    }
}

/// Keygen's 401 `OTP_INVALID` at `/meta/otp`.
pub fn otp_invalid() -> Error {
    otp_error("second factor must be valid", "OTP_INVALID")
}

/// The step `code` is the factor's code for now, if it is one not yet taken. Takes nothing:
/// see [`verify_code`].
pub fn matching_step(master: &crypto::MasterKey, f: &SecondFactor, code: &str) -> Result<Option<i64>> {
    let secret = master.open(&f.secret, f.id.as_bytes()).map_err(Error::Internal)?;
    Ok(crate::domain::totp::verify(&secret, code, time::now_ms() / 1000, f.last_verified_step))
}

/// Whether `code` is the factor's code now, taking its step (a code is good once).
pub async fn verify_code(db: &Db, master: &crypto::MasterKey, f: &SecondFactor, code: &str) -> Result<bool> {
    match matching_step(master, f, code)? {
        Some(step) => second_factors::take_step(db, f, step).await,
        None => Ok(false),
    }
}

/// A login by user name (`admin:pass`, as clients of the licensing surface send it): the user
/// whose email's local part is `name`, when exactly one is; then as [`password_login`].
pub async fn name_login(ctx: &Login<'_>, account: &Account, name: &str, password: &str) -> Result<User> {
    let found = users::find_by_name(ctx.db, account.id, name).await?;
    // No user, or several with that name: refused as an unknown email is, after the same
    // password check, so the answer's time does not tell which.
    let email = match found.as_slice() {
        [one] => one.email.clone(),
        _ => format!("{name}@invalid."),
    };
    password_login(ctx, account, &email, password).await
}

/// User tokens expire after two weeks unless asked otherwise, as Keygen's do.
const USER_TOKEN_TTL: i64 = 14 * time::DAY;
/// Admin tokens expire after 90 days unless asked otherwise (`expiry`, `null` for never).
/// Keygen's never expire by default; a forgotten admin token is the account, so Licensor's do.
const ADMIN_TOKEN_TTL: i64 = 90 * time::DAY;

/// The expiry a new token gets when its creator chose none.
pub fn default_token_expiry(bearer_type: &str, role: &str, now: i64) -> Option<i64> {
    match (bearer_type, role) {
        ("user", "user") => Some(now + USER_TOKEN_TTL),
        ("user", _) => Some(now + ADMIN_TOKEN_TTL),
        _ => None,
    }
}

/// Options for a new token.
#[derive(Debug, Default, Clone)]
pub struct NewToken {
    pub name: Option<String>,
    pub expiry: Option<i64>,
    pub max_activations: Option<i64>,
    pub max_deactivations: Option<i64>,
}

/// Issues a token for a bearer; returns the stored row and the raw secret (shown once).
pub async fn issue_token(
    db: &Db,
    account: Uuid,
    bearer_type: &str,
    bearer_id: Uuid,
    role: &str,
    opts: NewToken,
) -> Result<(Token, String)> {
    let raw = crypto::secrets::generate_token(crypto::secrets::token_prefix(bearer_type, role));
    let now = time::now_ms();
    let kind = match bearer_type {
        "product" => "product-token".to_string(),
        "license" => "activation-token".to_string(),
        _ => format!("{role}-token"),
    };
    let row = Token {
        id: Uuid::new_v4(),
        account_id: account,
        bearer_type: bearer_type.to_string(),
        bearer_id,
        digest: crypto::secrets::token_digest(&raw),
        kind,
        name: opts.name,
        expiry: opts.expiry,
        max_activations: opts.max_activations,
        activations: 0,
        max_deactivations: opts.max_deactivations,
        deactivations: 0,
        created_at: now,
        updated_at: now,
    };
    tokens::insert(db, &row, &[crate::events::Raised::token("token.generated", &row)]).await?;
    Ok((row, raw))
}
