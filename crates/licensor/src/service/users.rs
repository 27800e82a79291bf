//! User use cases with a rule of their own: an account always keeps an admin, so deleting or
//! demoting its last one is refused (Keygen's `ACCOUNT_ADMINS_REQUIRED`).

use crate::db::{is_unique_violation, Db};
use crate::error::{Error, Result, Source};
use crate::model::User;
use crate::store::users;

fn admins_required() -> Error {
    Error::Invalid {
        detail: "account must have at least 1 admin user".into(),
        code: "ACCOUNT_ADMINS_REQUIRED".into(),
        location: Source::Pointer("/data/relationships/account".into()),
    }
}

/// Saves `after` (the user as read, `before`, with changes); an admin who stops being one must
/// leave another. An email another user has is `EMAIL_TAKEN`.
pub async fn save(db: &Db, before: &User, after: &User) -> Result<()> {
    let demoted = before.role == "admin" && after.role != "admin";
    match users::update_keeping_an_admin(db, after, demoted).await {
        Ok(true) => Ok(()),
        Ok(false) => Err(admins_required()),
        Err(Error::Database(e)) if is_unique_violation(&e) => {
            Err(Error::invalid_attr("email", "has already been taken", "EMAIL_TAKEN"))
        }
        Err(e) => Err(e),
    }
}

/// Deletes `u` with its tokens; an admin must leave another.
pub async fn delete(db: &Db, u: &User) -> Result<()> {
    if users::delete(db, u.account_id, u.id, u.role == "admin").await? {
        Ok(())
    } else {
        Err(admins_required())
    }
}
