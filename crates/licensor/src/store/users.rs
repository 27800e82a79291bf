//! Users: admins and end users of an account.

use uuid::Uuid;

use crate::db::{BeginWrite, Db};
use crate::db_run;
use crate::error::Result;
use crate::events::Raised;
use crate::model::{Listing, Page, User};

const FIND_BY_ID: &str = "SELECT id, account_id, email, password_hash, first_name, last_name, role, group_id, banned_at, metadata, created_at, updated_at FROM users WHERE account_id = $1 AND id = $2";
const FIND_BY_EMAIL: &str = "SELECT id, account_id, email, password_hash, first_name, last_name, role, group_id, banned_at, metadata, created_at, updated_at FROM users WHERE account_id = $1 AND email = $2";

/// A user by id. On SQLite it reads inline (see `SqliteDb::read_inline`): every request a
/// user's token makes reads its user.
pub async fn find(db: &Db, account: Uuid, id: Uuid) -> Result<Option<User>> {
    match db {
        Db::Sqlite(sqlite) => Ok(sqlite.read_inline(|conn| {
            use rusqlite::OptionalExtension;
            conn.prepare_cached(FIND_BY_ID)?
                .query_row(rusqlite::params![account, id], |r| {
                    Ok(User {
                        id: r.get(0)?,
                        account_id: r.get(1)?,
                        email: r.get(2)?,
                        password_hash: r.get(3)?,
                        first_name: r.get(4)?,
                        last_name: r.get(5)?,
                        role: r.get(6)?,
                        group_id: r.get(7)?,
                        banned_at: r.get(8)?,
                        metadata: crate::model::Json(super::sqlite_json(r, 9)?),
                        created_at: r.get(10)?,
                        updated_at: r.get(11)?,
                    })
                })
                .optional()
        })?),
        Db::Postgres(pool) => {
            Ok(sqlx::query_as::<_, User>(FIND_BY_ID).bind(account).bind(id).fetch_optional(pool).await?)
        }
    }
}

pub async fn find_by_email(db: &Db, account: Uuid, email: &str) -> Result<Option<User>> {
    Ok(db_run!(db, |pool| sqlx::query_as::<_, User>(FIND_BY_EMAIL)
        .bind(account)
        .bind(email.to_lowercase())
        .fetch_optional(pool)
        .await?))
}

/// The users whose email's local part is `name` (what a user name login names), at most two:
/// enough to tell one from several.
pub async fn find_by_name(db: &Db, account: Uuid, name: &str) -> Result<Vec<User>> {
    const SQL: &str = "SELECT id, account_id, email, password_hash, first_name, last_name, role, group_id, banned_at, metadata, created_at, updated_at \
         FROM users WHERE account_id = $1 AND email LIKE $2 ESCAPE '\\' LIMIT 2";
    // A local part holds no '@'; with none in the name, `name@%` matches exactly the emails
    // whose local part is `name` (LIKE's wildcards in it matched literally; emails are stored
    // lowercased).
    if name.contains('@') {
        return Ok(Vec::new());
    }
    let name = name.to_lowercase();
    let pattern = format!("{}@%", name.replace('\\', "\\\\").replace('%', "\\%").replace('_', "\\_"));
    Ok(db_run!(db, |pool| sqlx::query_as::<_, User>(SQL).bind(account).bind(&pattern).fetch_all(pool).await?))
}

/// Finds by UUID, else by email (Keygen's id alias for users).
pub async fn find_by_id_or_email(db: &Db, account: Uuid, id: &str) -> Result<Option<User>> {
    if let Ok(uuid) = Uuid::parse_str(id) {
        if let Some(u) = find(db, account, uuid).await? {
            return Ok(Some(u));
        }
    }
    find_by_email(db, account, id).await
}

/// Filters for listing users; `None` means "any".
#[derive(Debug, Default)]
pub struct UserFilter {
    pub role: Option<String>,
    pub group: Option<Uuid>,
    pub product: Option<Uuid>,
    /// Restrict to one user (a user may only list itself).
    pub only: Option<Uuid>,
    pub narrow: super::Narrow,
}

macro_rules! push_user_conditions {
    ($qb:expr, $f:expr, $sqlite:expr) => {{
        let (qb, f) = (&mut $qb, $f);
        if let Some(v) = &f.role {
            qb.push(" AND u.role = ").push_bind(v.clone());
        }
        if let Some(v) = f.group {
            qb.push(" AND u.group_id = ").push_bind(v);
        }
        if let Some(v) = f.only {
            qb.push(" AND u.id = ").push_bind(v);
        }
        if let Some(v) = f.product {
            qb.push(" AND EXISTS (SELECT 1 FROM licenses l WHERE l.product_id = ").push_bind(v);
            qb.push(" AND (l.owner_id = u.id OR EXISTS (SELECT 1 FROM license_users lu WHERE lu.license_id = l.id AND lu.user_id = u.id)))");
        }
        $crate::push_metadata!(qb, "u.metadata", &f.narrow.metadata, $sqlite);
    }};
}

pub async fn list(db: &Db, account: Uuid, f: &UserFilter, page: Page) -> Result<Listing<User>> {
    let sqlite = matches!(db, Db::Sqlite(_));
    db_run!(db, |pool| {
        let mut qb = sqlx::QueryBuilder::new(
            "SELECT id, account_id, email, password_hash, first_name, last_name, role, group_id, banned_at, metadata, created_at, updated_at \
             FROM users u WHERE u.account_id = ",
        );
        qb.push_bind(account);
        push_user_conditions!(qb, f, sqlite);
        qb.push(f.narrow.order_by("u.created_at", "u.id"));
        qb.push(" LIMIT ").push_bind(page.limit()).push(" OFFSET ").push_bind(page.offset());
        let rows = qb.build_query_as::<User>().fetch_all(pool).await?;
        let mut qb = sqlx::QueryBuilder::new("SELECT COUNT(*) FROM users u WHERE u.account_id = ");
        qb.push_bind(account);
        push_user_conditions!(qb, f, sqlite);
        let total = qb.build_query_scalar::<i64>().fetch_one(pool).await?;
        Ok(Listing { rows, total })
    })
}

const INSERT: &str = "INSERT INTO users (id, account_id, email, password_hash, first_name, last_name, role, group_id, banned_at, metadata, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)";

pub async fn insert(db: &Db, u: &User, events: &[Raised]) -> Result<(), sqlx::Error> {
    db_run!(db, |pool| {
        let mut tx = pool.begin_write().await?;
        sqlx::query(INSERT)
            .bind(u.id)
            .bind(u.account_id)
            .bind(&u.email)
            .bind(&u.password_hash)
            .bind(&u.first_name)
            .bind(&u.last_name)
            .bind(&u.role)
            .bind(u.group_id)
            .bind(u.banned_at)
            .bind(&u.metadata)
            .bind(u.created_at)
            .bind(u.updated_at)
            .execute(&mut *tx)
            .await?;
        crate::write_events!(tx, u.account_id, events);
        tx.commit().await?;
    });
    Ok(())
}

const UPDATE: &str = "UPDATE users SET email = $3, password_hash = $4, first_name = $5, last_name = $6, role = $7, group_id = $8, banned_at = $9, metadata = $10, updated_at = $11 WHERE account_id = $1 AND id = $2";

pub async fn update(db: &Db, u: &User) -> Result<(), sqlx::Error> {
    let _turn = db.write_turn().await?;
    db_run!(db, |pool| sqlx::query(UPDATE)
        .bind(u.account_id)
        .bind(u.id)
        .bind(&u.email)
        .bind(&u.password_hash)
        .bind(&u.first_name)
        .bind(&u.last_name)
        .bind(&u.role)
        .bind(u.group_id)
        .bind(u.banned_at)
        .bind(&u.metadata)
        .bind(u.updated_at)
        .execute(pool)
        .await?
        .rows_affected());
    Ok(())
}

/// Users in a group.
pub async fn count_in_group(db: &Db, group: Uuid) -> Result<i64> {
    const SQL: &str = "SELECT COUNT(*) FROM users WHERE group_id = $1";
    Ok(db_run!(db, |pool| sqlx::query_scalar::<_, i64>(SQL).bind(group).fetch_one(pool).await?))
}

/// Locks the account row; with it held, "another admin remains" stays true until commit.
/// Admins of the account other than `$2`.
const OTHER_ADMINS: &str = "SELECT COUNT(*) FROM users WHERE account_id = $1 AND role = 'admin' AND id <> $2";

/// What a user's save does to the user's tokens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tokens {
    Keep,
    /// Revokes them all but this one (the one the request came with), or all.
    Revoke {
        except: Option<Uuid>,
    },
}

/// Saves `u`; when `keep_an_admin`, only if another admin remains, checked under the account's
/// lock so two admins demoting each other cannot both succeed. `Ok(false)` when refused.
/// `tokens` says which of the user's tokens go in the same transaction (a password change
/// signs the user out everywhere else).
pub async fn update_keeping_an_admin(
    db: &Db,
    u: &User,
    keep_an_admin: bool,
    tokens: Tokens,
    events: &[Raised],
) -> Result<bool> {
    const REVOKE: &str = "DELETE FROM tokens WHERE account_id = $1 AND bearer_id = $2 AND ($3 IS NULL OR id <> $3)";
    db_run!(db, |pool| {
        let mut tx = pool.begin_write().await?;
        if keep_an_admin {
            sqlx::query(super::LOCK_ACCOUNT).bind(u.account_id).execute(&mut *tx).await?;
            let others =
                sqlx::query_scalar::<_, i64>(OTHER_ADMINS).bind(u.account_id).bind(u.id).fetch_one(&mut *tx).await?;
            if others == 0 {
                tx.rollback().await?;
                return Ok(false);
            }
        }
        sqlx::query(UPDATE)
            .bind(u.account_id)
            .bind(u.id)
            .bind(&u.email)
            .bind(&u.password_hash)
            .bind(&u.first_name)
            .bind(&u.last_name)
            .bind(&u.role)
            .bind(u.group_id)
            .bind(u.banned_at)
            .bind(&u.metadata)
            .bind(u.updated_at)
            .execute(&mut *tx)
            .await?;
        if let Tokens::Revoke { except } = tokens {
            sqlx::query(REVOKE).bind(u.account_id).bind(u.id).bind(except).execute(&mut *tx).await?;
        }
        crate::write_events!(tx, u.account_id, events);
        tx.commit().await?;
        Ok(true)
    })
}

/// Deletes a user and the tokens it bears; when `keep_an_admin`, only if another admin remains
/// (checked under the account's lock). `Ok(false)` when refused.
pub async fn delete(db: &Db, account: Uuid, id: Uuid, keep_an_admin: bool, events: &[Raised]) -> Result<bool> {
    // Deleting the user updates the licenses it owns (owner set null) and, through the count
    // trigger, those it is attached to. Lock them before the user row, in the order license
    // writers (attach, activation) take them, so the two cannot deadlock on PostgreSQL; the
    // account after them, as activation takes it.
    const LOCK_LICENSES: &str = "UPDATE licenses SET updated_at = updated_at WHERE account_id = $1 \
        AND (owner_id = $2 OR id IN (SELECT license_id FROM license_users WHERE user_id = $2))";
    db_run!(db, |pool| {
        let mut tx = pool.begin_write().await?;
        sqlx::query(LOCK_LICENSES).bind(account).bind(id).execute(&mut *tx).await?;
        if keep_an_admin {
            sqlx::query(super::LOCK_ACCOUNT).bind(account).execute(&mut *tx).await?;
            let others = sqlx::query_scalar::<_, i64>(OTHER_ADMINS).bind(account).bind(id).fetch_one(&mut *tx).await?;
            if others == 0 {
                tx.rollback().await?;
                return Ok(false);
            }
        }
        sqlx::query("DELETE FROM tokens WHERE account_id = $1 AND bearer_id = $2")
            .bind(account)
            .bind(id)
            .execute(&mut *tx)
            .await?;
        sqlx::query("DELETE FROM users WHERE account_id = $1 AND id = $2")
            .bind(account)
            .bind(id)
            .execute(&mut *tx)
            .await?;
        crate::write_events!(tx, account, events);
        tx.commit().await?;
        Ok(true)
    })
}

/// Whether `user` owns or is attached to a license of `product`.
pub async fn in_product(db: &Db, user: Uuid, product: Uuid) -> Result<bool> {
    const SQL: &str = "SELECT COUNT(*) FROM licenses l WHERE l.product_id = $1 AND (l.owner_id = $2 \
        OR EXISTS (SELECT 1 FROM license_users lu WHERE lu.license_id = l.id AND lu.user_id = $2))";
    Ok(db_run!(db, |pool| sqlx::query_scalar::<_, i64>(SQL).bind(product).bind(user).fetch_one(pool).await?) > 0)
}

/// Records `digest` as the user's one outstanding password-reset token, issued at `now`
/// (replacing an earlier one).
pub async fn set_reset_token(db: &Db, u: &User, digest: &str, now: i64, events: &[Raised]) -> Result<()> {
    const SQL: &str =
        "UPDATE users SET password_reset_digest = $3, password_reset_sent_at = $4 WHERE account_id = $1 AND id = $2";
    db_run!(db, |pool| {
        let mut tx = pool.begin_write().await?;
        sqlx::query(SQL).bind(u.account_id).bind(u.id).bind(digest).bind(now).execute(&mut *tx).await?;
        crate::write_events!(tx, u.account_id, events);
        tx.commit().await?;
    });
    Ok(())
}

/// What redeeming a reset token did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Redeemed {
    Done,
    /// Not the user's outstanding token (or none is).
    Unknown,
    /// The user's token, issued before `not_before`.
    Expired,
}

/// Sets `u`'s password hash to `hash` if `digest` is the user's outstanding reset token and was
/// issued at or after `not_before`; the token is then spent and every token of the user
/// revoked, in one transaction (a token cannot be redeemed twice, even by racing requests).
pub async fn redeem_reset_token(
    db: &Db,
    u: &User,
    digest: &str,
    not_before: i64,
    hash: &str,
    now: i64,
    events: &[Raised],
) -> Result<Redeemed> {
    const SET: &str = "UPDATE users SET password_hash = $3, password_reset_digest = NULL, password_reset_sent_at = NULL, \
        updated_at = $4 WHERE account_id = $1 AND id = $2 AND password_reset_digest = $5 AND password_reset_sent_at >= $6";
    const ISSUED: &str =
        "SELECT password_reset_sent_at FROM users WHERE account_id = $1 AND id = $2 AND password_reset_digest = $3";
    const REVOKE: &str = "DELETE FROM tokens WHERE account_id = $1 AND bearer_id = $2";
    db_run!(db, |pool| {
        let mut tx = pool.begin_write().await?;
        let n = sqlx::query(SET)
            .bind(u.account_id)
            .bind(u.id)
            .bind(hash)
            .bind(now)
            .bind(digest)
            .bind(not_before)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        if n == 0 {
            let issued = sqlx::query_scalar::<_, Option<i64>>(ISSUED)
                .bind(u.account_id)
                .bind(u.id)
                .bind(digest)
                .fetch_optional(&mut *tx)
                .await?;
            tx.rollback().await?;
            return Ok(if issued.is_some() { Redeemed::Expired } else { Redeemed::Unknown });
        }
        sqlx::query(REVOKE).bind(u.account_id).bind(u.id).execute(&mut *tx).await?;
        crate::write_events!(tx, u.account_id, events);
        tx.commit().await?;
        Ok(Redeemed::Done)
    })
}
