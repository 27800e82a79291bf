//! User use cases with rules of their own: an account always keeps an admin, so deleting or
//! demoting its last one is refused (Keygen's `ACCOUNT_ADMINS_REQUIRED`); a password changes
//! with the old one, and signs the user out of every other token.

use crate::auth::Principal;
use crate::crypto::secrets;
use crate::db::{is_unique_violation, Db};
use crate::error::{Error, Result, Source};
use crate::events::Raised;
use crate::model::User;
use crate::store::users::{self, Tokens};

fn admins_required() -> Error {
    Error::Invalid {
        detail: "account must have at least 1 admin user".into(),
        code: "ACCOUNT_ADMINS_REQUIRED".into(),
        location: Source::Pointer("/data/relationships/account".into()),
    }
}

/// Saves `after` (the user as read, `before`, with changes) for `p`; an admin who stops being
/// one must leave another. A new password revokes the user's tokens but the one `p` came with.
/// An email another user has is `EMAIL_TAKEN`.
pub async fn save(db: &Db, p: &Principal, before: &User, after: &User) -> Result<()> {
    let demoted = before.role == "admin" && after.role != "admin";
    let tokens = if before.password_hash != after.password_hash {
        Tokens::Revoke { except: p.token.as_ref().map(|t| t.id) }
    } else {
        Tokens::Keep
    };
    let event = match (before.banned_at, after.banned_at) {
        (None, Some(_)) => "user.banned",
        (Some(_), None) => "user.unbanned",
        _ => "user.updated",
    };
    match users::update_keeping_an_admin(db, after, demoted, tokens, &[Raised::user(event, after)]).await {
        Ok(true) => Ok(()),
        Ok(false) => Err(admins_required()),
        Err(Error::Database(e)) if is_unique_violation(&e) => {
            Err(Error::invalid_attr("email", "has already been taken", "EMAIL_TAKEN"))
        }
        Err(e) => Err(e),
    }
}

/// Creates `u`: its email must be valid and not another user's (`EMAIL_INVALID`, `EMAIL_TAKEN`).
pub async fn create(db: &Db, u: &User) -> Result<()> {
    if !crate::domain::account::valid_email(&u.email) {
        return Err(Error::invalid_attr("email", "must be a valid email", "EMAIL_INVALID"));
    }
    users::insert(db, u, &[Raised::user("user.created", u)])
        .await
        .map_err(|e| crate::error::taken(e, "email", "EMAIL_TAKEN"))
}

/// Deletes `u` with its tokens; an admin must leave another.
pub async fn delete(db: &Db, u: &User) -> Result<()> {
    if users::delete(db, u.account_id, u.id, u.role == "admin", &[Raised::user("user.deleted", u)]).await? {
        Ok(())
    } else {
        Err(admins_required())
    }
}

/// The shortest password accepted.
pub const MIN_PASSWORD: usize = 8;

/// The stored hash of a new password, once it is long enough (`PASSWORD_TOO_SHORT`): the one
/// check every way of setting a password goes through.
pub async fn password_hash(password: String) -> Result<String> {
    if password.len() < MIN_PASSWORD {
        return Err(Error::Invalid {
            detail: format!("is too short (minimum is {MIN_PASSWORD} characters)").into(),
            code: "PASSWORD_TOO_SHORT".into(),
            location: Source::Pointer("/data/attributes/password".into()),
        });
    }
    Ok(secrets::hash_password(password).await?)
}

/// Sets `u`'s password for an administrator (no old password asked); every token of `u`'s is
/// revoked, so whoever held the old password is signed out.
pub async fn reset_password(db: &Db, p: &Principal, u: &User, new: String) -> Result<User> {
    if !p.is_admin() {
        return Err(Error::access_denied());
    }
    set_password(db, p, u, new).await
}

/// Changes `u`'s password for the user themself, who must give the current one (`401`
/// otherwise, also when the user has none); every other token of theirs is revoked.
pub async fn update_password(db: &Db, p: &Principal, u: &User, old: &str, new: String) -> Result<User> {
    if p.user_id() != Some(u.id) {
        return Err(Error::access_denied());
    }
    let ok = secrets::verify_password(old.to_string(), u.password_hash.clone()).await?;
    if u.password_hash.is_none() || !ok {
        return Err(Error::Unauthorized {
            detail: "oldPassword is not valid".into(),
            code: None,
            location: Source::None,
        });
    }
    set_password(db, p, u, new).await
}

async fn set_password(db: &Db, p: &Principal, u: &User, new: String) -> Result<User> {
    let mut after = u.clone();
    after.password_hash = Some(password_hash(new).await?);
    after.updated_at = crate::time::now_ms();
    save(db, p, u, &after).await?;
    Ok(after)
}

/// How long a password-reset token may be redeemed (Keygen's 24 hours).
pub const RESET_TOKEN_TTL: i64 = 24 * 3600 * 1000;

/// `POST /passwords`: when `email` is a user of `account`, issues a reset token (replacing any
/// earlier one) and raises `user.password-reset` carrying it, for the vendor to send. Answers
/// the same whether or not the user exists, so the answer tells nothing about who does.
pub async fn request_password_reset(db: &Db, account: uuid::Uuid, email: &str) -> Result<()> {
    let Some(u) = users::find_by_email(db, account, &email.trim().to_lowercase()).await? else { return Ok(()) };
    // 24 random bytes, in hex, and Keygen's version suffix.
    let token = format!("{}v3", hex::encode(rand::random::<[u8; 24]>()));
    let digest = secrets::token_digest(&token);
    users::set_reset_token(db, &u, &digest, crate::time::now_ms(), &[Raised::password_reset(&u, &token)]).await
}

/// `POST /users/{id}/actions/reset-password`: sets a new password with the reset token the
/// user was sent. A token that is not the user's outstanding one is "not found" (as an
/// unknown user is); one older than [`RESET_TOKEN_TTL`] is 401. Spends the token and revokes
/// every token of the user.
/// `named` is the user as the request named them (id or email), for the "not found".
pub async fn reset_password_with_token(
    db: &Db,
    account: &crate::model::Account,
    u: &User,
    named: &str,
    token: &str,
    new: String,
) -> Result<User> {
    // A customer with no password yet may not set one this way on a protected account.
    if account.protected && u.role == "user" && u.password_hash.is_none() {
        return Err(Error::access_denied());
    }
    let hash = password_hash(new).await?;
    let now = crate::time::now_ms();
    let mut after = u.clone();
    after.password_hash = Some(hash.clone());
    after.updated_at = now;
    let digest = secrets::token_digest(token);
    let events = [Raised::user("user.updated", &after)];
    match users::redeem_reset_token(db, u, &digest, now - RESET_TOKEN_TTL, &hash, now, &events).await? {
        users::Redeemed::Done => Ok(after),
        users::Redeemed::Unknown => Err(Error::not_found("user", named)),
        users::Redeemed::Expired => Err(Error::Unauthorized {
            detail: "is expired".into(),
            code: None,
            location: Source::Pointer("/meta/passwordResetToken".into()),
        }),
    }
}
