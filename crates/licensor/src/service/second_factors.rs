//! Second factors (TOTP) as Keygen has them: one per user, set up with the user's password,
//! enabled with a first code; once enabled, password logins need a code too (`auth`).

use crate::auth::{matching_step, otp_invalid, verify_code};
use crate::crypto::MasterKey;
use crate::db::{is_unique_violation, Db};
use crate::domain::totp;
use crate::error::{Error, Result, Source};
use crate::events::Raised;
use crate::model::{SecondFactor, User};
use crate::store::second_factors;
use crate::time;

/// The issuer authenticator apps show for Licensor's codes.
pub const ISSUER: &str = "Licensor";

fn one_per_user() -> Error {
    Error::Conflict { detail: "The request could not be completed because of a conflict".into(), code: None }
}

/// The user's second factor, if any.
pub async fn of_user(db: &Db, user: &User) -> Result<Option<SecondFactor>> {
    second_factors::of_user(db, user.account_id, user.id).await
}

/// The secret (base32) and `otpauth://` URI of a factor, for its owner to scan.
pub fn shown(master: &MasterKey, f: &SecondFactor, user: &User) -> Result<(String, String)> {
    let secret = master.open(&f.secret, f.id.as_bytes()).map_err(Error::Internal)?;
    Ok((totp::base32(&secret), totp::uri(&secret, ISSUER, &user.email)))
}

/// Checks a code for `f` (taking its step), or Keygen's 401 `OTP_INVALID` at `/meta/otp`.
async fn require_code(db: &Db, master: &MasterKey, f: &SecondFactor, code: Option<&str>) -> Result<()> {
    match code {
        Some(code) if verify_code(db, master, f, code).await? => Ok(()),
        _ => Err(otp_invalid()),
    }
}

/// Sets up a second factor for `user`. A user with an enabled one proves it with a code;
/// otherwise with their password. One per user: a second is a 409 (after the proof, as Keygen
/// answers; the code is checked but not used up, since nothing is created with it).
pub async fn create(
    db: &Db,
    master: &MasterKey,
    user: &User,
    password: Option<&str>,
    otp: Option<&str>,
) -> Result<SecondFactor> {
    match of_user(db, user).await?.filter(|f| f.enabled) {
        Some(enabled) => {
            if otp.map(|code| matching_step(master, &enabled, code)).transpose()?.flatten().is_none() {
                return Err(otp_invalid());
            }
            return Err(one_per_user());
        }
        None => {
            let ok = crate::crypto::secrets::verify_password(
                password.unwrap_or_default().to_string(),
                user.password_hash.clone(),
            )
            .await?;
            if !ok || password.is_none_or(str::is_empty) {
                return Err(Error::Unauthorized {
                    detail: "password must be valid".into(),
                    code: Some("PASSWORD_INVALID".into()),
                    location: Source::Pointer("/meta/password".into()),
                });
            }
        }
    }
    let now = time::now_ms();
    let id = uuid::Uuid::new_v4();
    let secret = totp::new_secret();
    let f = SecondFactor {
        id,
        account_id: user.account_id,
        user_id: user.id,
        secret: master.seal(&secret, id.as_bytes()).map_err(Error::Internal)?,
        enabled: false,
        last_verified_step: None,
        created_at: now,
        updated_at: now,
    };
    match second_factors::insert(db, &f, &[Raised::second_factor("second-factor.created", &f)]).await {
        Ok(()) => Ok(f),
        Err(e) if is_unique_violation(&e) => Err(one_per_user()),
        Err(e) => Err(e.into()),
    }
}

/// Enables or disables `f`, proven with a code of this factor (enabled or not yet).
pub async fn set_enabled(
    db: &Db,
    master: &MasterKey,
    mut f: SecondFactor,
    enabled: bool,
    otp: Option<&str>,
) -> Result<SecondFactor> {
    require_code(db, master, &f, otp).await?;
    f.enabled = enabled;
    f.updated_at = time::now_ms();
    let event = if enabled { "second-factor.enabled" } else { "second-factor.disabled" };
    second_factors::set_enabled(db, &f, &[Raised::second_factor(event, &f)]).await?;
    Ok(f)
}

/// Deletes `f`; while it is enabled, only with one of its codes.
pub async fn delete(db: &Db, master: &MasterKey, f: &SecondFactor, otp: Option<&str>) -> Result<()> {
    if f.enabled {
        require_code(db, master, f, otp).await?;
    }
    second_factors::delete(db, f, &[Raised::second_factor("second-factor.deleted", f)]).await
}
