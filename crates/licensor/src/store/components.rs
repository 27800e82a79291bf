//! Machine components (hardware fingerprints below the machine).

use uuid::Uuid;

use crate::db::{BeginWrite, Db};
use crate::db_run;
use crate::error::Result;
use crate::events::Raised;
use crate::model::{Component, Listing, Metadata, Page, Uniqueness};

macro_rules! select {
    ($where:literal) => {
        concat!(
            "SELECT id, account_id, machine_id, fingerprint, name, metadata, created_at, updated_at FROM components ",
            $where
        )
    };
}

const FIND: &str = select!("WHERE account_id = $1 AND id = $2");

pub async fn find(db: &Db, account: Uuid, id: Uuid) -> Result<Option<Component>> {
    Ok(db_run!(db, |pool| sqlx::query_as::<_, Component>(FIND).bind(account).bind(id).fetch_optional(pool).await?))
}

pub async fn fingerprints_for_machine(db: &Db, machine: Uuid) -> Result<Vec<String>> {
    const SQL: &str = "SELECT fingerprint FROM components WHERE machine_id = $1";
    Ok(db_run!(db, |pool| sqlx::query_scalar::<_, String>(SQL).bind(machine).fetch_all(pool).await?))
}

const LIST: &str = select!(
    "WHERE account_id = $1 AND ($2 IS NULL OR machine_id = $2) AND ($3 IS NULL OR machine_id IN (SELECT id FROM machines WHERE license_id = $3)) \
     ORDER BY created_at DESC, id DESC LIMIT $4 OFFSET $5"
);
const COUNT: &str = "SELECT COUNT(*) FROM components WHERE account_id = $1 AND ($2 IS NULL OR machine_id = $2) AND ($3 IS NULL OR machine_id IN (SELECT id FROM machines WHERE license_id = $3))";

pub async fn list(
    db: &Db,
    account: Uuid,
    machine: Option<Uuid>,
    license: Option<Uuid>,
    page: Page,
) -> Result<Listing<Component>> {
    db_run!(db, |pool| {
        let rows = sqlx::query_as::<_, Component>(LIST)
            .bind(account)
            .bind(machine)
            .bind(license)
            .bind(page.limit())
            .bind(page.offset())
            .fetch_all(pool)
            .await?;
        let total =
            sqlx::query_scalar::<_, i64>(COUNT).bind(account).bind(machine).bind(license).fetch_one(pool).await?;
        Ok(Listing { rows, total })
    })
}

const INSERT: &str = "INSERT INTO components (id, account_id, machine_id, fingerprint, name, metadata, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)";

/// The insert of one component, bound, for either engine (activation inserts them too).
pub(super) fn insert_query<'q, DB: sqlx::Database>(c: &'q Component) -> sqlx::query::Query<'q, DB, DB::Arguments<'q>>
where
    Uuid: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    String: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    Metadata: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    i64: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
{
    sqlx::query(INSERT)
        .bind(c.id)
        .bind(c.account_id)
        .bind(c.machine_id)
        .bind(&c.fingerprint)
        .bind(&c.name)
        .bind(&c.metadata)
        .bind(c.created_at)
        .bind(c.updated_at)
}

/// [`insert_query`] on a transaction of SQLite's inline writer.
pub(super) fn insert_inline(tx: &rusqlite::Transaction<'_>, c: &Component) -> rusqlite::Result<()> {
    let metadata = c.metadata.0.to_string();
    let values: [&dyn rusqlite::ToSql; 8] =
        [&c.id, &c.account_id, &c.machine_id, &c.fingerprint, &c.name, &metadata, &c.created_at, &c.updated_at];
    super::sqlite_execute(tx, INSERT, &values).map(drop)
}

/// The query that counts components already holding a fingerprint within a uniqueness scope
/// wider than one machine, bound to (account, fingerprint[, scope id]); `None` for
/// UNIQUE_PER_MACHINE, which the table's own `UNIQUE (machine_id, fingerprint)` enforces.
pub(super) fn taken_query(scope: Option<Uniqueness>, license: Uuid) -> Option<(&'static str, Option<Uuid>)> {
    const ACCOUNT: &str = "SELECT COUNT(*) FROM components WHERE account_id = $1 AND fingerprint = $2";
    const PRODUCT: &str = "SELECT COUNT(*) FROM components c JOIN machines m ON m.id = c.machine_id \
        JOIN licenses l ON l.id = m.license_id WHERE c.account_id = $1 AND c.fingerprint = $2 AND l.product_id = $3";
    const POLICY: &str = "SELECT COUNT(*) FROM components c JOIN machines m ON m.id = c.machine_id \
        JOIN licenses l ON l.id = m.license_id WHERE c.account_id = $1 AND c.fingerprint = $2 AND l.policy_id = $3";
    const LICENSE: &str = "SELECT COUNT(*) FROM components c JOIN machines m ON m.id = c.machine_id \
        WHERE c.account_id = $1 AND c.fingerprint = $2 AND m.license_id = $3";
    Some(match scope? {
        Uniqueness::Account => (ACCOUNT, None),
        Uniqueness::Product(p) => (PRODUCT, Some(p)),
        Uniqueness::Policy(p) => (POLICY, Some(p)),
        Uniqueness::License => (LICENSE, Some(license)),
    })
}

/// Why a component was not added.
#[derive(Debug, PartialEq, Eq)]
pub enum Refusal {
    /// The fingerprint is taken within the policy's component uniqueness scope.
    Taken,
}

/// Adds a component to a machine, enforcing the component uniqueness scope. It takes the
/// license's row lock first, as activation does (and the account's for scopes wider than the
/// license), so two nodes adding the same fingerprint cannot both pass the check.
pub async fn insert(
    db: &Db,
    c: &Component,
    scope: Option<Uniqueness>,
    events: &[Raised],
) -> Result<Result<(), Refusal>> {
    const LOCK_LICENSE: &str = "UPDATE licenses SET updated_at = updated_at \
        WHERE account_id = $1 AND id = (SELECT license_id FROM machines WHERE account_id = $1 AND id = $2)";
    const LICENSE_OF: &str = "SELECT license_id FROM machines WHERE account_id = $1 AND id = $2";
    let inserted = db_run!(db, |pool| {
        let mut tx = pool.begin_write().await?;
        sqlx::query(LOCK_LICENSE).bind(c.account_id).bind(c.machine_id).execute(&mut *tx).await?;
        if !matches!(scope, None | Some(Uniqueness::License)) {
            sqlx::query(super::LOCK_ACCOUNT).bind(c.account_id).execute(&mut *tx).await?;
        }
        let license: Uuid =
            sqlx::query_scalar(LICENSE_OF).bind(c.account_id).bind(c.machine_id).fetch_one(&mut *tx).await?;
        if let Some((sql, id)) = taken_query(scope, license) {
            let q = sqlx::query_scalar::<_, i64>(sql).bind(c.account_id).bind(&c.fingerprint);
            let q = match id {
                Some(id) => q.bind(id),
                None => q,
            };
            if q.fetch_one(&mut *tx).await? > 0 {
                tx.rollback().await?;
                return Ok(Err(Refusal::Taken));
            }
        }
        let inserted = insert_query(c).execute(&mut *tx).await;
        match inserted {
            Err(e) if crate::db::is_unique_violation(&e) => {
                tx.rollback().await?;
                false
            }
            Err(e) => return Err(e.into()),
            Ok(_) => {
                crate::write_events!(tx, c.account_id, events);
                tx.commit().await?;
                true
            }
        }
    });
    Ok(if inserted { Ok(()) } else { Err(Refusal::Taken) })
}

pub async fn update(db: &Db, c: &Component, events: &[Raised]) -> Result<()> {
    const SQL: &str =
        "UPDATE components SET name = $3, metadata = $4, updated_at = $5 WHERE account_id = $1 AND id = $2";
    db_run!(db, |pool| {
        let mut tx = pool.begin_write().await?;
        sqlx::query(SQL)
            .bind(c.account_id)
            .bind(c.id)
            .bind(&c.name)
            .bind(&c.metadata)
            .bind(c.updated_at)
            .execute(&mut *tx)
            .await?;
        crate::write_events!(tx, c.account_id, events);
        tx.commit().await?;
    });
    Ok(())
}

pub async fn delete(db: &Db, account: Uuid, id: Uuid, events: &[Raised]) -> Result<()> {
    const SQL: &str = "DELETE FROM components WHERE account_id = $1 AND id = $2";
    db_run!(db, |pool| {
        let mut tx = pool.begin_write().await?;
        sqlx::query(SQL).bind(account).bind(id).execute(&mut *tx).await?;
        crate::write_events!(tx, account, events);
        tx.commit().await?;
    });
    Ok(())
}
