//! Policies and their attached entitlements.

use uuid::Uuid;

use crate::db::{BeginWrite, Db};
use crate::db_run;
use crate::error::Result;
use crate::events::Raised;
use crate::model::{Listing, Page, Policy};

const FIND: &str = "SELECT id, account_id, product_id, name, rules, metadata, created_at, updated_at FROM policies WHERE account_id = $1 AND id = $2";

/// A policy by id. On SQLite it reads inline (see `SqliteDb::read_inline`): every license
/// creation reads it.
pub async fn find(db: &Db, account: Uuid, id: Uuid) -> Result<Option<Policy>> {
    match db {
        Db::Sqlite(sqlite) => Ok(sqlite.read_inline(|conn| {
            use rusqlite::OptionalExtension;
            conn.prepare_cached(FIND)?
                .query_row(rusqlite::params![account, id], |r| {
                    let rules = super::parse_rules(r.get(0)?, r.get_ref(4)?.as_str()?).map_err(|e| {
                        rusqlite::Error::FromSqlConversionFailure(4, rusqlite::types::Type::Text, Box::new(e))
                    })?;
                    Ok(Policy {
                        id: r.get(0)?,
                        account_id: r.get(1)?,
                        product_id: r.get(2)?,
                        name: r.get(3)?,
                        rules: sqlx::types::Json(rules.0.as_ref().clone()),
                        metadata: sqlx::types::Json(super::sqlite_json(r, 5)?),
                        created_at: r.get(6)?,
                        updated_at: r.get(7)?,
                    })
                })
                .optional()
        })?),
        Db::Postgres(pool) => Ok(sqlx::query_as::<_, Policy>(FIND).bind(account).bind(id).fetch_optional(pool).await?),
    }
}

pub async fn list(db: &Db, account: Uuid, product: Option<Uuid>, page: Page) -> Result<Listing<Policy>> {
    list_narrowed(db, account, product, &super::Narrow::default(), page).await
}

/// [`list`], narrowed by metadata and ordered as asked.
pub async fn list_narrowed(
    db: &Db,
    account: Uuid,
    product: Option<Uuid>,
    narrow: &super::Narrow,
    page: Page,
) -> Result<Listing<Policy>> {
    let sqlite = matches!(db, Db::Sqlite(_));
    db_run!(db, |pool| {
        let mut qb = sqlx::QueryBuilder::new(
            "SELECT id, account_id, product_id, name, rules, metadata, created_at, updated_at FROM policies p WHERE p.account_id = ",
        );
        qb.push_bind(account);
        if let Some(v) = product {
            qb.push(" AND p.product_id = ").push_bind(v);
        }
        crate::push_metadata!(qb, "p.metadata", &narrow.metadata, sqlite);
        qb.push(narrow.order_by("p.created_at", "p.id"));
        qb.push(" LIMIT ").push_bind(page.limit()).push(" OFFSET ").push_bind(page.offset());
        let rows = qb.build_query_as::<Policy>().fetch_all(pool).await?;
        let mut qb = sqlx::QueryBuilder::new("SELECT COUNT(*) FROM policies p WHERE p.account_id = ");
        qb.push_bind(account);
        if let Some(v) = product {
            qb.push(" AND p.product_id = ").push_bind(v);
        }
        crate::push_metadata!(qb, "p.metadata", &narrow.metadata, sqlite);
        let total = qb.build_query_scalar::<i64>().fetch_one(pool).await?;
        Ok(Listing { rows, total })
    })
}

const INSERT: &str = "INSERT INTO policies (id, account_id, product_id, name, rules, metadata, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)";

pub async fn insert(db: &Db, p: &Policy, events: &[Raised]) -> Result<()> {
    db_run!(db, |pool| {
        let mut tx = pool.begin_write().await?;
        sqlx::query(INSERT)
            .bind(p.id)
            .bind(p.account_id)
            .bind(p.product_id)
            .bind(&p.name)
            .bind(&p.rules)
            .bind(&p.metadata)
            .bind(p.created_at)
            .bind(p.updated_at)
            .execute(&mut *tx)
            .await?;
        crate::write_events!(tx, p.account_id, events);
        tx.commit().await?;
    });
    Ok(())
}

/// The product's newest policy named `p.name`, or `p` inserted as it. The lookup and the insert
/// run in one transaction holding the product's row lock, so callers racing on several nodes
/// agree on one policy instead of each creating its own.
pub async fn find_or_insert_named(db: &Db, p: &Policy) -> Result<Policy> {
    const LOCK_PRODUCT: &str = "UPDATE products SET updated_at = updated_at WHERE account_id = $1 AND id = $2";
    const BY_NAME: &str =
        "SELECT id, account_id, product_id, name, rules, metadata, created_at, updated_at FROM policies \
        WHERE account_id = $1 AND product_id = $2 AND name = $3 ORDER BY created_at DESC, id DESC LIMIT 1";
    Ok(db_run!(db, |pool| {
        let mut tx = pool.begin_write().await?;
        sqlx::query(LOCK_PRODUCT).bind(p.account_id).bind(p.product_id).execute(&mut *tx).await?;
        let found = sqlx::query_as::<_, Policy>(BY_NAME)
            .bind(p.account_id)
            .bind(p.product_id)
            .bind(&p.name)
            .fetch_optional(&mut *tx)
            .await?;
        let policy = match found {
            Some(existing) => existing,
            None => {
                sqlx::query(INSERT)
                    .bind(p.id)
                    .bind(p.account_id)
                    .bind(p.product_id)
                    .bind(&p.name)
                    .bind(&p.rules)
                    .bind(&p.metadata)
                    .bind(p.created_at)
                    .bind(p.updated_at)
                    .execute(&mut *tx)
                    .await?;
                p.clone()
            }
        };
        tx.commit().await?;
        policy
    }))
}

const UPDATE: &str =
    "UPDATE policies SET name = $3, rules = $4, metadata = $5, updated_at = $6 WHERE account_id = $1 AND id = $2";

pub async fn update(db: &Db, p: &Policy, events: &[Raised]) -> Result<()> {
    db_run!(db, |pool| {
        let mut tx = pool.begin_write().await?;
        sqlx::query(UPDATE)
            .bind(p.account_id)
            .bind(p.id)
            .bind(&p.name)
            .bind(&p.rules)
            .bind(&p.metadata)
            .bind(p.updated_at)
            .execute(&mut *tx)
            .await?;
        crate::write_events!(tx, p.account_id, events);
        tx.commit().await?;
    });
    Ok(())
}

pub async fn delete(db: &Db, account: Uuid, id: Uuid, events: &[Raised]) -> Result<()> {
    db_run!(db, |pool| {
        let mut tx = pool.begin_write().await?;
        sqlx::query(
            "DELETE FROM tokens WHERE account_id = $1 AND bearer_id IN (SELECT id FROM licenses WHERE policy_id = $2)",
        )
        .bind(account)
        .bind(id)
        .execute(&mut *tx)
        .await?;
        sqlx::query("DELETE FROM policies WHERE account_id = $1 AND id = $2")
            .bind(account)
            .bind(id)
            .execute(&mut *tx)
            .await?;
        crate::write_events!(tx, account, events);
        tx.commit().await?;
    });
    Ok(())
}

/// Policies that require check-ins, with their rules: (id, rules).
pub async fn requiring_check_in(db: &Db) -> Result<Vec<(Uuid, sqlx::types::Json<crate::model::PolicyRules>)>> {
    let sql = match db {
        Db::Sqlite(_) => "SELECT id, rules FROM policies WHERE json_extract(rules, '$.requireCheckIn') = 1",
        Db::Postgres(_) => "SELECT id, rules FROM policies WHERE (rules->>'requireCheckIn')::boolean",
    };
    Ok(db_run!(db, |pool| sqlx::query_as(sql).fetch_all(pool).await?))
}
