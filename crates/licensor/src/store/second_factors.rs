//! Second factors (TOTP): one per user.

use uuid::Uuid;

use crate::db::{BeginWrite, Db};
use crate::db_run;
use crate::error::Result;
use crate::events::Raised;
use crate::model::SecondFactor;

const COLUMNS: &str = "id, account_id, user_id, secret, enabled, last_verified_step, created_at, updated_at";

/// The user's second factor, if they have one.
pub async fn of_user(db: &Db, account: Uuid, user: Uuid) -> Result<Option<SecondFactor>> {
    let sql = format!("SELECT {COLUMNS} FROM second_factors WHERE account_id = $1 AND user_id = $2");
    Ok(db_run!(db, |pool| sqlx::query_as::<_, SecondFactor>(&sql)
        .bind(account)
        .bind(user)
        .fetch_optional(pool)
        .await?))
}

/// Every second factor's id and sealed secret (for `licensor rotate-master-key`).
pub async fn all_sealed(db: &Db) -> Result<Vec<(Uuid, Vec<u8>)>> {
    const SQL: &str = "SELECT id, secret FROM second_factors";
    Ok(db_run!(db, |pool| sqlx::query_as::<_, (Uuid, Vec<u8>)>(SQL).fetch_all(pool).await?))
}

/// Inserts a second factor; a user who has one already is a unique violation.
pub async fn insert(db: &Db, f: &SecondFactor, events: &[Raised]) -> Result<(), sqlx::Error> {
    let sql = format!("INSERT INTO second_factors ({COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)");
    db_run!(db, |pool| {
        let mut tx = pool.begin_write().await?;
        sqlx::query(&sql)
            .bind(f.id)
            .bind(f.account_id)
            .bind(f.user_id)
            .bind(&f.secret)
            .bind(f.enabled)
            .bind(f.last_verified_step)
            .bind(f.created_at)
            .bind(f.updated_at)
            .execute(&mut *tx)
            .await?;
        crate::write_events!(tx, f.account_id, events);
        tx.commit().await?;
    });
    Ok(())
}

pub async fn set_enabled(db: &Db, f: &SecondFactor, events: &[Raised]) -> Result<()> {
    const SQL: &str = "UPDATE second_factors SET enabled = $3, updated_at = $4 WHERE account_id = $1 AND id = $2";
    db_run!(db, |pool| {
        let mut tx = pool.begin_write().await?;
        sqlx::query(SQL).bind(f.account_id).bind(f.id).bind(f.enabled).bind(f.updated_at).execute(&mut *tx).await?;
        crate::write_events!(tx, f.account_id, events);
        tx.commit().await?;
    });
    Ok(())
}

pub async fn delete(db: &Db, f: &SecondFactor, events: &[Raised]) -> Result<()> {
    const SQL: &str = "DELETE FROM second_factors WHERE account_id = $1 AND id = $2";
    db_run!(db, |pool| {
        let mut tx = pool.begin_write().await?;
        crate::write_events!(tx, f.account_id, events);
        sqlx::query(SQL).bind(f.account_id).bind(f.id).execute(&mut *tx).await?;
        tx.commit().await?;
    });
    Ok(())
}

/// Takes `step` for the factor if no code of it or a later step was taken: the condition is
/// in the update, so of two requests racing with one code exactly one succeeds.
pub async fn take_step(db: &Db, f: &SecondFactor, step: i64) -> Result<bool> {
    const SQL: &str = "UPDATE second_factors SET last_verified_step = $3 \
        WHERE account_id = $1 AND id = $2 AND (last_verified_step IS NULL OR last_verified_step < $3)";
    let _turn = db.write_turn().await?;
    Ok(db_run!(db, |pool| sqlx::query(SQL)
        .bind(f.account_id)
        .bind(f.id)
        .bind(step)
        .execute(pool)
        .await?
        .rows_affected())
        == 1)
}
