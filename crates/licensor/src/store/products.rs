//! Products.

use uuid::Uuid;

use crate::db::{BeginWrite, Db};
use crate::db_run;
use crate::error::Result;
use crate::events::Raised;
use crate::model::{Listing, Page, Product};

const FIND: &str = "SELECT id, account_id, name, code, distribution_strategy, url, platforms, metadata, created_at, updated_at FROM products WHERE account_id = $1 AND (id = $2 OR code = $3)";

/// Finds by UUID or by code.
pub async fn find(db: &Db, account: Uuid, id: &str) -> Result<Option<Product>> {
    let uuid = Uuid::parse_str(id).ok();
    Ok(db_run!(db, |pool| sqlx::query_as::<_, Product>(FIND)
        .bind(account)
        .bind(uuid)
        .bind(id)
        .fetch_optional(pool)
        .await?))
}

/// Lists products; `only` restricts to one (what a product or license may see).
pub async fn list(db: &Db, account: Uuid, only: Option<Uuid>, page: Page) -> Result<Listing<Product>> {
    list_narrowed(db, account, only, &super::Narrow::default(), page).await
}

/// [`list`], narrowed by metadata and ordered as asked.
pub async fn list_narrowed(
    db: &Db,
    account: Uuid,
    only: Option<Uuid>,
    narrow: &super::Narrow,
    page: Page,
) -> Result<Listing<Product>> {
    let sqlite = matches!(db, Db::Sqlite(_));
    db_run!(db, |pool| {
        let mut qb = sqlx::QueryBuilder::new(
            "SELECT id, account_id, name, code, distribution_strategy, url, platforms, metadata, created_at, updated_at \
             FROM products p WHERE p.account_id = ",
        );
        qb.push_bind(account);
        if let Some(v) = only {
            qb.push(" AND p.id = ").push_bind(v);
        }
        crate::push_metadata!(qb, "p.metadata", &narrow.metadata, sqlite);
        qb.push(narrow.order_by("p.created_at", "p.id"));
        qb.push(" LIMIT ").push_bind(page.limit()).push(" OFFSET ").push_bind(page.offset());
        let rows = qb.build_query_as::<Product>().fetch_all(pool).await?;
        let mut qb = sqlx::QueryBuilder::new("SELECT COUNT(*) FROM products p WHERE p.account_id = ");
        qb.push_bind(account);
        if let Some(v) = only {
            qb.push(" AND p.id = ").push_bind(v);
        }
        crate::push_metadata!(qb, "p.metadata", &narrow.metadata, sqlite);
        let total = qb.build_query_scalar::<i64>().fetch_one(pool).await?;
        Ok(Listing { rows, total })
    })
}

const INSERT: &str = "INSERT INTO products (id, account_id, name, code, distribution_strategy, url, platforms, metadata, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)";

const IN_RANGE: &str = "SELECT id, account_id, name, code, distribution_strategy, url, platforms, metadata, created_at, updated_at FROM products \
    WHERE account_id = $1 AND id BETWEEN $2 AND $3 AND ($4 IS NULL OR id = $4) ORDER BY created_at DESC, id DESC LIMIT 1";

/// The account's product whose id lies in `lo..=hi` (and is `only`, when given): the lookup by
/// a legacy key, through the primary key.
pub async fn find_in_range(
    db: &Db,
    account: Uuid,
    (lo, hi): (Uuid, Uuid),
    only: Option<Uuid>,
) -> Result<Option<Product>> {
    Ok(db_run!(db, |pool| sqlx::query_as::<_, Product>(IN_RANGE)
        .bind(account)
        .bind(lo)
        .bind(hi)
        .bind(only)
        .fetch_optional(pool)
        .await?))
}

const BY_NAME: &str = "SELECT id, account_id, name, code, distribution_strategy, url, platforms, metadata, created_at, updated_at FROM products \
    WHERE account_id = $1 AND name = $2 AND ($3 IS NULL OR id = $3) ORDER BY created_at DESC, id DESC LIMIT 1";

/// The account's newest product called `name` (and `only`, when given).
pub async fn find_by_name(db: &Db, account: Uuid, name: &str, only: Option<Uuid>) -> Result<Option<Product>> {
    Ok(db_run!(db, |pool| sqlx::query_as::<_, Product>(BY_NAME)
        .bind(account)
        .bind(name)
        .bind(only)
        .fetch_optional(pool)
        .await?))
}

/// Every product of the account (or only `only`), newest first, read in pages.
pub async fn all(db: &Db, account: Uuid, only: Option<Uuid>) -> Result<Vec<Product>> {
    super::collect_pages(|page| list(db, account, only, page)).await
}

pub async fn insert(db: &Db, p: &Product, events: &[Raised]) -> Result<(), sqlx::Error> {
    insert_keyed(db, p, None, events).await.map(|_| ())
}

/// Inserts `p`; with `key_range`, only when no other product of the account has an id in it
/// (its legacy key chosen, `domain::projection::id_with_legacy_key`), checked under the
/// account's lock so two such creations cannot both take a key. Returns whether it inserted.
pub async fn insert_keyed(
    db: &Db,
    p: &Product,
    key_range: Option<(Uuid, Uuid)>,
    events: &[Raised],
) -> Result<bool, sqlx::Error> {
    db_run!(db, |pool| {
        let mut tx = pool.begin_write().await?;
        if let Some(range) = key_range {
            if crate::key_range_taken!(tx, "products", p.account_id, range) {
                tx.rollback().await?;
                return Ok(false);
            }
        }
        sqlx::query(INSERT)
            .bind(p.id)
            .bind(p.account_id)
            .bind(&p.name)
            .bind(&p.code)
            .bind(&p.distribution_strategy)
            .bind(&p.url)
            .bind(&p.platforms)
            .bind(&p.metadata)
            .bind(p.created_at)
            .bind(p.updated_at)
            .execute(&mut *tx)
            .await?;
        crate::write_events!(tx, p.account_id, events);
        tx.commit().await?;
    });
    Ok(true)
}

const UPDATE: &str = "UPDATE products SET name = $3, code = $4, distribution_strategy = $5, url = $6, platforms = $7, metadata = $8, updated_at = $9 WHERE account_id = $1 AND id = $2";

pub async fn update(db: &Db, p: &Product, events: &[Raised]) -> Result<(), sqlx::Error> {
    db_run!(db, |pool| {
        let mut tx = pool.begin_write().await?;
        sqlx::query(UPDATE)
            .bind(p.account_id)
            .bind(p.id)
            .bind(&p.name)
            .bind(&p.code)
            .bind(&p.distribution_strategy)
            .bind(&p.url)
            .bind(&p.platforms)
            .bind(&p.metadata)
            .bind(p.updated_at)
            .execute(&mut *tx)
            .await?;
        crate::write_events!(tx, p.account_id, events);
        tx.commit().await?;
    });
    Ok(())
}

/// Deletes a product with everything under it and the tokens it bears.
pub async fn delete(db: &Db, account: Uuid, id: Uuid, events: &[Raised]) -> Result<()> {
    db_run!(db, |pool| {
        let mut tx = pool.begin_write().await?;
        sqlx::query("DELETE FROM tokens WHERE account_id = $1 AND (bearer_id = $2 OR bearer_id IN (SELECT id FROM licenses WHERE product_id = $2))")
            .bind(account)
            .bind(id)
            .execute(&mut *tx)
            .await?;
        sqlx::query("DELETE FROM products WHERE account_id = $1 AND id = $2")
            .bind(account)
            .bind(id)
            .execute(&mut *tx)
            .await?;
        crate::write_events!(tx, account, events);
        tx.commit().await?;
    });
    Ok(())
}
