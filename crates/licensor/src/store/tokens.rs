//! API tokens. Only the SHA-256 digest of a token is stored.

use uuid::Uuid;

use crate::db::{BeginWrite, Db};
use crate::db_run;
use crate::error::Result;
use crate::events::Raised;
use crate::model::{Listing, Page, Token};

const FIND_BY_DIGEST: &str = "SELECT id, account_id, bearer_type, bearer_id, digest, kind, name, expiry, max_activations, activations, max_deactivations, deactivations, created_at, updated_at FROM tokens WHERE digest = $1";

/// Looks a token up by digest, across accounts: the caller checks the account matches.
/// The token with this digest, in any account. On SQLite it reads inline (see
/// `SqliteDb::read_inline`): every request that carries a token reads it.
pub async fn find_by_digest(db: &Db, digest: &str) -> Result<Option<Token>> {
    match db {
        Db::Sqlite(sqlite) => Ok(sqlite.read_inline(|conn| {
            use rusqlite::OptionalExtension;
            conn.prepare_cached(FIND_BY_DIGEST)?
                .query_row([digest], |r| {
                    Ok(Token {
                        id: r.get(0)?,
                        account_id: r.get(1)?,
                        bearer_type: r.get(2)?,
                        bearer_id: r.get(3)?,
                        digest: r.get(4)?,
                        kind: r.get(5)?,
                        name: r.get(6)?,
                        expiry: r.get(7)?,
                        max_activations: r.get(8)?,
                        activations: r.get(9)?,
                        max_deactivations: r.get(10)?,
                        deactivations: r.get(11)?,
                        created_at: r.get(12)?,
                        updated_at: r.get(13)?,
                    })
                })
                .optional()
        })?),
        Db::Postgres(pool) => Ok(sqlx::query_as::<_, Token>(FIND_BY_DIGEST).bind(digest).fetch_optional(pool).await?),
    }
}

const FIND: &str = "SELECT id, account_id, bearer_type, bearer_id, digest, kind, name, expiry, max_activations, activations, max_deactivations, deactivations, created_at, updated_at FROM tokens WHERE account_id = $1 AND id = $2";

pub async fn find(db: &Db, account: Uuid, id: Uuid) -> Result<Option<Token>> {
    Ok(db_run!(db, |pool| sqlx::query_as::<_, Token>(FIND).bind(account).bind(id).fetch_optional(pool).await?))
}

const LIST: &str = "SELECT id, account_id, bearer_type, bearer_id, digest, kind, name, expiry, max_activations, activations, max_deactivations, deactivations, created_at, updated_at FROM tokens \
    WHERE account_id = $1 AND ($2 IS NULL OR bearer_id = $2) AND ($3 IS NULL OR bearer_type = $3) ORDER BY created_at DESC, id DESC LIMIT $4 OFFSET $5";
const COUNT: &str = "SELECT COUNT(*) FROM tokens WHERE account_id = $1 AND ($2 IS NULL OR bearer_id = $2) AND ($3 IS NULL OR bearer_type = $3)";

pub async fn list(
    db: &Db,
    account: Uuid,
    bearer: Option<Uuid>,
    bearer_type: Option<&str>,
    page: Page,
) -> Result<Listing<Token>> {
    db_run!(db, |pool| {
        let rows = sqlx::query_as::<_, Token>(LIST)
            .bind(account)
            .bind(bearer)
            .bind(bearer_type)
            .bind(page.limit())
            .bind(page.offset())
            .fetch_all(pool)
            .await?;
        let total =
            sqlx::query_scalar::<_, i64>(COUNT).bind(account).bind(bearer).bind(bearer_type).fetch_one(pool).await?;
        Ok(Listing { rows, total })
    })
}

const INSERT: &str = "INSERT INTO tokens (id, account_id, bearer_type, bearer_id, digest, kind, name, expiry, max_activations, activations, max_deactivations, deactivations, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)";

pub async fn insert(db: &Db, t: &Token, events: &[Raised]) -> Result<()> {
    db_run!(db, |pool| {
        let mut tx = pool.begin_write().await?;
        sqlx::query(INSERT)
            .bind(t.id)
            .bind(t.account_id)
            .bind(&t.bearer_type)
            .bind(t.bearer_id)
            .bind(&t.digest)
            .bind(&t.kind)
            .bind(&t.name)
            .bind(t.expiry)
            .bind(t.max_activations)
            .bind(t.activations)
            .bind(t.max_deactivations)
            .bind(t.deactivations)
            .bind(t.created_at)
            .bind(t.updated_at)
            .execute(&mut *tx)
            .await?;
        crate::write_events!(tx, t.account_id, events);
        tx.commit().await?;
    });
    Ok(())
}

const REGENERATE: &str =
    "UPDATE tokens SET digest = $3, expiry = $4, updated_at = $5 WHERE account_id = $1 AND id = $2";

pub async fn regenerate(
    db: &Db,
    account: Uuid,
    id: Uuid,
    digest: &str,
    expiry: Option<i64>,
    now: i64,
    events: &[Raised],
) -> Result<()> {
    db_run!(db, |pool| {
        let mut tx = pool.begin_write().await?;
        sqlx::query(REGENERATE).bind(account).bind(id).bind(digest).bind(expiry).bind(now).execute(&mut *tx).await?;
        crate::write_events!(tx, account, events);
        tx.commit().await?;
    });
    Ok(())
}

pub async fn delete(db: &Db, account: Uuid, id: Uuid, events: &[Raised]) -> Result<()> {
    db_run!(db, |pool| {
        let mut tx = pool.begin_write().await?;
        sqlx::query("DELETE FROM tokens WHERE account_id = $1 AND id = $2")
            .bind(account)
            .bind(id)
            .execute(&mut *tx)
            .await?;
        crate::write_events!(tx, account, events);
        tx.commit().await?;
    });
    Ok(())
}
