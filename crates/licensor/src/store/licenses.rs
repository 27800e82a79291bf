//! Licenses. Reads return a [`License`] that already carries what rendering and validation
//! need (policy rules, machine and user counts, whether the owner is banned), in one query.

use sqlx::types::Json;
use uuid::Uuid;

use crate::db::{BeginWrite, Db};
use crate::db_run;
use crate::error::Result;
use crate::events::Raised;
use crate::model::{License, LicenseTerms, Listing, Page};

/// The columns of a [`License`] and the joins they need, `$validated` giving the last
/// validation. (Licenses stay the outer loop: the policy's rules come from a subquery, not a
/// join the planner could reorder, which sorted every license of an account to show a page of
/// them.)
macro_rules! license_columns {
    ($validated:expr) => {
        concat!(
            "SELECT l.id, l.account_id, l.product_id, l.policy_id, l.owner_id, l.group_id, l.key, l.name, l.expiry, l.suspended, l.protected, l.uses, \
             l.max_machines, l.max_processes, l.max_users, l.max_cores, l.max_uses, l.max_memory, l.max_disk, ",
            $validated,
            " AS last_validated_at, l.last_check_out_at, l.last_check_in_at, l.metadata, l.created_at, l.updated_at, \
             (SELECT p.rules FROM policies p WHERE p.id = l.policy_id) AS policy_rules, \
             l.machines_count, l.machines_cores, l.users_count, \
             (u.banned_at IS NOT NULL) AS owner_banned, l.machines_memory, l.machines_disk \
             FROM licenses l LEFT JOIN users u ON u.id = l.owner_id "
        )
    };
}

macro_rules! select_view {
    ($($where:expr),+) => {
        concat!(
            license_columns!("v.at"),
            "LEFT JOIN license_validations v ON v.license_id = l.id ",
            $($where),+
        )
    };
}

const FIND_BY_ID: &str = select_view!("WHERE l.account_id = $1 AND l.id = $2");
const FIND_BY_KEY: &str = select_view!("WHERE l.account_id = $1 AND l.key = $2");

/// A license by id, rendered in full. On SQLite it reads inline (see `SqliteDb::read_inline`).
pub async fn find(db: &Db, account: Uuid, id: Uuid) -> Result<Option<License>> {
    match db {
        Db::Sqlite(sqlite) => Ok(sqlite.read_inline(|conn| {
            use rusqlite::OptionalExtension;
            conn.prepare_cached(FIND_BY_ID)?.query_row(rusqlite::params![account, id], from_sqlite_row).optional()
        })?),
        Db::Postgres(pool) => {
            Ok(sqlx::query_as::<_, License>(FIND_BY_ID).bind(account).bind(id).fetch_optional(pool).await?)
        }
    }
}

/// The owner of each of `ids` (the account's licenses among them), in one query.
pub async fn owners(db: &Db, account: Uuid, ids: &[Uuid]) -> Result<Vec<(Uuid, Option<Uuid>)>> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    Ok(match db {
        Db::Sqlite(sqlite) => {
            const SQL: &str = "SELECT id, owner_id FROM licenses WHERE account_id = $1 \
                AND id IN (SELECT unhex(value) FROM json_each($2))";
            sqlx::query_as(SQL).bind(account).bind(super::sqlite_ids(ids)).fetch_all(&sqlite.pool).await?
        }
        Db::Postgres(pool) => {
            const SQL: &str = "SELECT id, owner_id FROM licenses WHERE account_id = $1 AND id = ANY($2)";
            sqlx::query_as(SQL).bind(account).bind(ids).fetch_all(pool).await?
        }
    })
}

/// A license by key, rendered in full. On SQLite it reads inline (see `SqliteDb::read_inline`).
pub async fn find_by_key(db: &Db, account: Uuid, key: &str) -> Result<Option<License>> {
    by_key(db, FIND_BY_KEY, account, key).await
}

/// The validation's own lookup by key: as [`find_by_key`], but without the last validation,
/// which the validation replaces with its own instant (one join fewer on the hot path).
pub async fn find_to_validate(db: &Db, account: Uuid, key: &str) -> Result<Option<License>> {
    by_key(db, TO_VALIDATE, account, key).await
}

const TO_VALIDATE: &str = concat!(license_columns!("CAST(NULL AS BIGINT)"), "WHERE l.account_id = $1 AND l.key = $2");

/// [`find_to_validate`], and on SQLite the license's machines too when `machines` says the
/// validation needs them, in the same read transaction: one snapshot, and one lock on the
/// write-ahead log's index instead of two (most of a scoped validation's extra cost). On
/// PostgreSQL only the license: its machines would be a second statement anyway, better read
/// after the caller's access is checked.
pub async fn find_to_validate_with_machines(
    db: &Db,
    account: Uuid,
    key: &str,
    machines: impl FnOnce(&License) -> bool,
) -> Result<Option<(License, Option<Vec<super::machines::Activation>>)>> {
    let Db::Sqlite(sqlite) = db else {
        return Ok(by_key(db, TO_VALIDATE, account, key).await?.map(|l| (l, None)));
    };
    Ok(sqlite.read_inline(|conn| {
        let mut statement = conn.prepare_cached(TO_VALIDATE)?;
        let mut rows = statement.query(rusqlite::params![account, key])?;
        let Some(row) = rows.next()? else { return Ok(None) };
        let license = from_sqlite_row(row)?;
        // `rows` is not done yet, so its read transaction is still open: the machines come
        // from the same snapshot.
        let activations = if machines(&license) {
            Some(super::machines::activations_inline(conn, account, license.id)?)
        } else {
            None
        };
        Ok(Some((license, activations)))
    })?)
}

/// The columns of a [`LicenseTerms`], in its order, bound to (account, id).
macro_rules! terms_of {
    ($tail:expr) => {
        concat!(
            "SELECT l.policy_id, l.product_id, l.owner_id, (u.banned_at IS NOT NULL) AS owner_banned, l.key, \
             l.expiry, l.suspended, l.protected, l.max_machines, l.max_cores, l.max_memory, l.max_disk, \
             l.max_processes, (SELECT p.rules FROM policies p WHERE p.id = l.policy_id) AS policy_rules \
             FROM licenses l LEFT JOIN users u ON u.id = l.owner_id WHERE l.account_id = $1 AND l.id = $2",
            $tail
        )
    };
}

/// A license's terms under an activation's lock: on PostgreSQL the row lock an `UPDATE`
/// would take, without writing a row (on SQLite the transaction holds the file's lock).
pub(super) const TERMS_LOCKED: &str = terms_of!(" FOR NO KEY UPDATE OF l");
const TERMS: &str = terms_of!("");

/// A license's terms on the SQLite writer's transaction.
pub(super) fn terms_inline(
    tx: &rusqlite::Transaction<'_>,
    account: Uuid,
    id: Uuid,
) -> rusqlite::Result<Option<LicenseTerms>> {
    use rusqlite::OptionalExtension;
    let row = |r: &rusqlite::Row<'_>| -> rusqlite::Result<LicenseTerms> {
        let policy_id = r.get(0)?;
        let policy_rules = super::parse_rules(policy_id, r.get_ref(13)?.as_str()?)
            .map_err(|e| rusqlite::Error::FromSqlConversionFailure(13, rusqlite::types::Type::Text, Box::new(e)))?;
        Ok(LicenseTerms {
            policy_id,
            product_id: r.get(1)?,
            owner_id: r.get(2)?,
            owner_banned: r.get(3)?,
            key: r.get(4)?,
            expiry: r.get(5)?,
            suspended: r.get(6)?,
            protected: r.get(7)?,
            max_machines: r.get(8)?,
            max_cores: r.get(9)?,
            max_memory: r.get(10)?,
            max_disk: r.get(11)?,
            max_processes: r.get(12)?,
            policy_rules,
        })
    };
    tx.prepare_cached(TERMS)?.query_row(rusqlite::params![account, id], row).optional()
}

/// Runs `sql`, a license query taking (account, key), inline on SQLite.
async fn by_key(db: &Db, sql: &'static str, account: Uuid, key: &str) -> Result<Option<License>> {
    match db {
        Db::Sqlite(sqlite) => Ok(sqlite.read_inline(|conn| {
            use rusqlite::OptionalExtension;
            conn.prepare_cached(sql)?.query_row(rusqlite::params![account, key], from_sqlite_row).optional()
        })?),
        Db::Postgres(pool) => {
            Ok(sqlx::query_as::<_, License>(sql).bind(account).bind(key).fetch_optional(pool).await?)
        }
    }
}

/// Maps a row of `select_view!` read through `rusqlite` (columns in the macro's order).
fn from_sqlite_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<License> {
    let json = |i: usize| -> rusqlite::Result<serde_json::Value> {
        let text: String = r.get(i)?;
        serde_json::from_str(&text)
            .map_err(|e| rusqlite::Error::FromSqlConversionFailure(i, rusqlite::types::Type::Text, Box::new(e)))
    };
    let rules = super::parse_rules(r.get(3)?, r.get_ref(25)?.as_str()?)
        .map_err(|e| rusqlite::Error::FromSqlConversionFailure(25, rusqlite::types::Type::Text, Box::new(e)))?;
    Ok(License {
        id: r.get(0)?,
        account_id: r.get(1)?,
        product_id: r.get(2)?,
        policy_id: r.get(3)?,
        owner_id: r.get(4)?,
        group_id: r.get(5)?,
        key: r.get(6)?,
        name: r.get(7)?,
        expiry: r.get(8)?,
        suspended: r.get(9)?,
        protected: r.get(10)?,
        uses: r.get(11)?,
        max_machines: r.get(12)?,
        max_processes: r.get(13)?,
        max_users: r.get(14)?,
        max_cores: r.get(15)?,
        max_uses: r.get(16)?,
        max_memory: r.get(17)?,
        max_disk: r.get(18)?,
        last_validated_at: r.get(19)?,
        last_check_out_at: r.get(20)?,
        last_check_in_at: r.get(21)?,
        metadata: Json(json(22)?),
        created_at: r.get(23)?,
        updated_at: r.get(24)?,
        policy_rules: rules,
        machines_count: r.get(26)?,
        machines_cores: r.get(27)?,
        users_count: r.get(28)?,
        owner_banned: r.get(29)?,
        machines_memory: r.get(30)?,
        machines_disk: r.get(31)?,
    })
}

const FIND_ANY_BY_KEY: &str = select_view!("WHERE l.key = $1 ORDER BY l.created_at, l.id LIMIT 2");

/// Licenses with `key` in any account, oldest first (at most two: enough to tell that a key is
/// held in more than one account).
pub async fn find_any_by_key(db: &Db, key: &str) -> Result<Vec<License>> {
    Ok(db_run!(db, |pool| sqlx::query_as::<_, License>(FIND_ANY_BY_KEY).bind(key).fetch_all(pool).await?))
}

/// Finds by UUID first, then by key (Keygen's id alias for licenses).
pub async fn find_by_id_or_key(db: &Db, account: Uuid, id: &str) -> Result<Option<License>> {
    if let Ok(uuid) = Uuid::parse_str(id) {
        if let Some(l) = find(db, account, uuid).await? {
            return Ok(Some(l));
        }
    }
    find_by_key(db, account, id).await
}

/// Filters for listing licenses; `None` means "any".
#[derive(Debug, Default, Clone)]
pub struct LicenseFilter {
    pub product: Option<Uuid>,
    pub policy: Option<Uuid>,
    pub owner: Option<Uuid>,
    /// Owner or attached user.
    pub user: Option<Uuid>,
    pub group: Option<Uuid>,
    pub suspended: Option<bool>,
    /// Expiry before this instant (expired as of now).
    pub expired_before: Option<i64>,
    pub only: Option<Uuid>,
    /// The status to match (`domain::license::status`), and the instants that rule reads:
    /// now, when EXPIRING begins, when INACTIVE begins.
    pub status: Option<(String, [i64; 3])>,
    /// A key (exact), an owner's email (exact), or else text in the name or the metadata.
    pub search: Option<String>,
    /// Only licenses older than this (`created_at`, `id`): the next page by keyset, which
    /// costs the same however deep.
    pub before: Option<(i64, Uuid)>,
    /// Count at most this many (and one more, meaning "more").
    pub count_up_to: Option<i64>,
    /// `metadata[key] = value`: the key's value, as text (`true`, `42`, `gold`), equals it.
    pub metadata: Vec<(String, String)>,
    /// Oldest first.
    pub ascending: bool,
}

/// Pushes the conditions of `f` (after `WHERE l.account_id = …`) onto a query over `l`, `u`
/// (owner) and `v` (validations). Only the filters given become SQL, so each list runs the
/// statement its filters need and the planner can use the index that serves it; a generic
/// `($n IS NULL OR …)` statement scans the table whatever is asked.
macro_rules! push_conditions {
    ($qb:expr, $f:expr, $text:expr, $sqlite:expr) => {{
        let (qb, f) = (&mut $qb, $f);
        $crate::push_metadata!(qb, "l.metadata", &f.metadata, $sqlite);
        if let Some(v) = f.product {
            qb.push(" AND l.product_id = ").push_bind(v);
        }
        if let Some(v) = f.policy {
            qb.push(" AND l.policy_id = ").push_bind(v);
        }
        if let Some(v) = f.owner {
            qb.push(" AND l.owner_id = ").push_bind(v);
        }
        if let Some(v) = f.user {
            qb.push(" AND (l.owner_id = ").push_bind(v);
            qb.push(" OR EXISTS (SELECT 1 FROM license_users x WHERE x.license_id = l.id AND x.user_id = ")
                .push_bind(v);
            qb.push("))");
        }
        if let Some(v) = f.group {
            qb.push(" AND l.group_id = ").push_bind(v);
        }
        if let Some(v) = f.suspended {
            qb.push(" AND l.suspended = ").push_bind(v);
        }
        if let Some(v) = f.expired_before {
            qb.push(" AND l.expiry < ").push_bind(v);
        }
        if let Some(v) = f.only {
            qb.push(" AND l.id = ").push_bind(v);
        }
        if let Some((created, id)) = f.before {
            qb.push(" AND (l.created_at < ").push_bind(created);
            qb.push(" OR (l.created_at = ").push_bind(created);
            qb.push(" AND l.id < ").push_bind(id).push("))");
        }
        if let Some(pattern) = $text {
            qb.push(" AND (LOWER(l.name) LIKE ").push_bind(pattern.clone());
            qb.push(" OR LOWER(CAST(l.metadata AS TEXT)) LIKE ").push_bind(pattern.clone()).push(")");
        }
        if let Some((status, [now, soon, stale])) = f.status.clone() {
            // What the status implies, in indexable terms, before the exact rule.
            match status.as_str() {
                "EXPIRED" => {
                    qb.push(" AND l.expiry < ").push_bind(now);
                }
                "EXPIRING" => {
                    qb.push(" AND l.expiry >= ").push_bind(now).push(" AND l.expiry < ").push_bind(soon);
                }
                "SUSPENDED" => {
                    qb.push(" AND l.suspended = ").push_bind(true);
                }
                "BANNED" => {
                    qb.push(" AND u.banned_at IS NOT NULL");
                }
                _ => {}
            }
            qb.push(" AND (");
            push_status!(qb, now, soon, stale);
            qb.push(") = ").push_bind(status);
        }
    }};
}

/// Pushes `domain::license::status` as SQL over `l`, `u` (owner) and `v` (validations), given
/// now and the instants EXPIRING and INACTIVE begin.
macro_rules! push_status {
    ($qb:expr, $now:expr, $soon:expr, $stale:expr) => {{
        let stale: i64 = $stale;
        $qb.push("CASE WHEN u.banned_at IS NOT NULL THEN 'BANNED' WHEN l.suspended THEN 'SUSPENDED' WHEN l.expiry < ")
            .push_bind($now)
            .push(" THEN 'EXPIRED' WHEN l.expiry < ")
            .push_bind($soon)
            .push(" THEN 'EXPIRING' WHEN l.created_at < ")
            .push_bind(stale)
            .push(" AND COALESCE(v.at, 0) < ")
            .push_bind(stale)
            .push(" AND COALESCE(l.last_check_out_at, 0) < ")
            .push_bind(stale)
            .push(" AND COALESCE(l.last_check_in_at, 0) < ")
            .push_bind(stale)
            .push(" THEN 'INACTIVE' ELSE 'ACTIVE' END");
    }};
}

/// How many of the account's licenses have each status, in one pass over them.
pub async fn status_counts(db: &Db, account: Uuid, [now, soon, stale]: [i64; 3]) -> Result<Vec<(String, i64)>> {
    db_run!(db, |pool| {
        let mut qb = sqlx::QueryBuilder::new("SELECT status, COUNT(*) FROM (SELECT ");
        push_status!(qb, now, soon, stale);
        qb.push(
            " AS status FROM licenses l LEFT JOIN users u ON u.id = l.owner_id \
             LEFT JOIN license_validations v ON v.license_id = l.id WHERE l.account_id = ",
        )
        .push_bind(account)
        .push(") s GROUP BY status");
        Ok(qb.build_query_as::<(String, i64)>().fetch_all(pool).await?)
    })
}

/// Licenses matching `f`, newest first. A search is a key (that license), an owner's email
/// (their licenses), or else text in the name or the metadata. `total` is exact unless
/// `f.count_up_to` caps it (then it stops at the cap + 1, which says "more than").
pub async fn list(db: &Db, account: Uuid, f: &LicenseFilter, page: Page) -> Result<Listing<License>> {
    let mut f = f.clone();
    let mut text = None;
    if let Some(search) = f.search.take().filter(|s| !s.is_empty()) {
        if let Some(l) = find_by_key(db, account, &search).await? {
            f.only = Some(f.only.map_or(l.id, |o| if o == l.id { o } else { Uuid::nil() }));
        } else if let Some(u) = super::users::find_by_email(db, account, &search).await? {
            f.owner = Some(f.owner.map_or(u.id, |o| if o == u.id { o } else { Uuid::nil() }));
        } else {
            // LIKE's own wildcards in the text are matched literally by escaping them away.
            text = Some(format!("%{}%", search.to_lowercase().replace(['%', '_'], "")));
        }
    }
    // The count reads the owner and the validation only when the status rule needs them.
    let joins = if f.status.is_some() {
        "FROM licenses l LEFT JOIN users u ON u.id = l.owner_id LEFT JOIN license_validations v ON v.license_id = l.id "
    } else {
        "FROM licenses l "
    };
    let sqlite = matches!(db, Db::Sqlite(_));
    db_run!(db, |pool| {
        let mut qb = sqlx::QueryBuilder::new(select_view!("WHERE l.account_id = "));
        qb.push_bind(account);
        push_conditions!(qb, &f, &text, sqlite);
        qb.push(if f.ascending { " ORDER BY l.created_at, l.id" } else { " ORDER BY l.created_at DESC, l.id DESC" });
        qb.push(" LIMIT ").push_bind(page.limit());
        qb.push(" OFFSET ").push_bind(page.offset());
        let rows = qb.build_query_as::<License>().fetch_all(pool).await?;
        // A first page that is not full holds every match: nothing left to count.
        if f.before.is_none() && page.offset() == 0 && (rows.len() as i64) < page.limit() {
            let total = rows.len() as i64;
            return Ok(Listing { rows, total });
        }

        // The count is of the whole list, whichever page this is.
        let whole = LicenseFilter { before: None, ..f.clone() };
        let mut qb = sqlx::QueryBuilder::new("SELECT COUNT(*) FROM (SELECT 1 ");
        qb.push(joins).push("WHERE l.account_id = ").push_bind(account);
        push_conditions!(qb, &whole, &text, sqlite);
        if let Some(cap) = f.count_up_to {
            qb.push(" LIMIT ").push_bind(cap + 1);
        }
        qb.push(") matching");
        let total: i64 = qb.build_query_scalar().fetch_one(pool).await?;
        Ok(Listing { rows, total })
    })
}

const INSERT: &str = "INSERT INTO licenses (id, account_id, product_id, policy_id, owner_id, group_id, key, name, expiry, suspended, protected, uses, \
    max_machines, max_processes, max_users, max_cores, max_uses, max_memory, max_disk, last_check_out_at, last_check_in_at, metadata, created_at, updated_at) \
    VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20, $21, $22, $23, $24)";

/// Inserts unless the license's group already holds `group_max` licenses; the count and the
/// insert run in one transaction holding the group's row lock, so the cap holds across nodes.
/// With `pool_of` (a pooled policy), the license takes the pool's newest key, which leaves the
/// pool in the same transaction; `events` are made from the license as written.
pub async fn insert_within_group(
    db: &Db,
    l: &License,
    group_max: Option<i64>,
    pool_of: Option<Uuid>,
    events: impl Fn(&License) -> Vec<Raised> + Send + 'static,
) -> Result<Inserted, sqlx::Error> {
    const LOCK_GROUP: &str = "UPDATE groups SET updated_at = updated_at WHERE id = $1";
    const COUNT: &str = "SELECT COUNT(*) FROM licenses WHERE group_id = $1";
    const DROP_KEY: &str = "DELETE FROM keys WHERE id = $1";
    // Racing creations on PostgreSQL each take a different key (one another's are locked and
    // skipped); SQLite's write transactions run one at a time.
    let newest_key = match db {
        Db::Sqlite(_) => "SELECT id, key FROM keys WHERE policy_id = $1 ORDER BY created_at DESC, id DESC LIMIT 1",
        Db::Postgres(_) => {
            "SELECT id, key FROM keys WHERE policy_id = $1 ORDER BY created_at DESC, id DESC LIMIT 1 FOR UPDATE SKIP LOCKED"
        }
    };
    let mut l = l.clone();
    let pool = match db {
        Db::Sqlite(sqlite) => {
            // The license moves into the transaction and back: another request's task may run
            // it (group commit).
            let written = sqlite
                .write_inline(move |tx| {
                    use rusqlite::OptionalExtension;
                    // The transaction holds SQLite's one write lock: no group row lock needed.
                    if let (Some(group), Some(max)) = (l.group_id, group_max) {
                        let count: i64 = tx.prepare_cached(COUNT)?.query_row([group], |r| r.get(0))?;
                        if count + 1 > max {
                            return Ok(Err(Inserted::GroupFull));
                        }
                    }
                    if let Some(policy) = pool_of {
                        let taken: Option<(Uuid, String)> = tx
                            .prepare_cached(newest_key)?
                            .query_row([policy], |r| Ok((r.get(0)?, r.get(1)?)))
                            .optional()?;
                        let Some((id, key)) = taken else { return Ok(Err(Inserted::PoolEmpty)) };
                        tx.prepare_cached(DROP_KEY)?.execute([id])?;
                        l.key = key;
                    }
                    insert_inline(tx, &l)?;
                    super::events::write_inline(tx, l.account_id, &events(&l))?;
                    Ok(Ok(l.key))
                })
                .await?;
            return Ok(match written {
                Ok(key) => Inserted::Yes(key),
                Err(refused) => refused,
            });
        }
        Db::Postgres(pool) => pool,
    };
    {
        let mut tx = pool.begin_write().await?;
        if let (Some(group), Some(max)) = (l.group_id, group_max) {
            sqlx::query(LOCK_GROUP).bind(group).execute(&mut *tx).await?;
            let count = sqlx::query_scalar::<_, i64>(COUNT).bind(group).fetch_one(&mut *tx).await?;
            if count + 1 > max {
                tx.rollback().await?;
                return Ok(Inserted::GroupFull);
            }
        }
        if let Some(policy) = pool_of {
            let Some((id, key)) =
                sqlx::query_as::<_, (Uuid, String)>(newest_key).bind(policy).fetch_optional(&mut *tx).await?
            else {
                tx.rollback().await?;
                return Ok(Inserted::PoolEmpty);
            };
            sqlx::query(DROP_KEY).bind(id).execute(&mut *tx).await?;
            l.key = key;
        }
        sqlx::query(INSERT)
            .bind(l.id)
            .bind(l.account_id)
            .bind(l.product_id)
            .bind(l.policy_id)
            .bind(l.owner_id)
            .bind(l.group_id)
            .bind(&l.key)
            .bind(&l.name)
            .bind(l.expiry)
            .bind(l.suspended)
            .bind(l.protected)
            .bind(l.uses)
            .bind(l.max_machines)
            .bind(l.max_processes)
            .bind(l.max_users)
            .bind(l.max_cores)
            .bind(l.max_uses)
            .bind(l.max_memory)
            .bind(l.max_disk)
            .bind(l.last_check_out_at)
            .bind(l.last_check_in_at)
            .bind(&l.metadata)
            .bind(l.created_at)
            .bind(l.updated_at)
            .execute(&mut *tx)
            .await?;
        crate::write_events!(tx, l.account_id, &events(&l));
        tx.commit().await?;
    }
    Ok(Inserted::Yes(l.key))
}

/// [`INSERT`] of `l` on a transaction of SQLite's inline writer.
fn insert_inline(tx: &rusqlite::Transaction<'_>, l: &License) -> rusqlite::Result<()> {
    let metadata = l.metadata.0.to_string();
    let values: [&dyn rusqlite::ToSql; 24] = [
        &l.id,
        &l.account_id,
        &l.product_id,
        &l.policy_id,
        &l.owner_id,
        &l.group_id,
        &l.key,
        &l.name,
        &l.expiry,
        &l.suspended,
        &l.protected,
        &l.uses,
        &l.max_machines,
        &l.max_processes,
        &l.max_users,
        &l.max_cores,
        &l.max_uses,
        &l.max_memory,
        &l.max_disk,
        &l.last_check_out_at,
        &l.last_check_in_at,
        &metadata,
        &l.created_at,
        &l.updated_at,
    ];
    super::sqlite_execute(tx, INSERT, &values).map(drop)
}

/// What [`insert_within_group`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Inserted {
    /// Inserted, with this key (the pool's, when it came from one).
    Yes(String),
    /// The group holds its `maxLicenses` already.
    GroupFull,
    /// The policy's pool has no key left.
    PoolEmpty,
}

/// Licenses in a group.
pub async fn count_in_group(db: &Db, group: Uuid) -> Result<i64> {
    const SQL: &str = "SELECT COUNT(*) FROM licenses WHERE group_id = $1";
    Ok(db_run!(db, |pool| sqlx::query_scalar::<_, i64>(SQL).bind(group).fetch_one(pool).await?))
}

/// Each mutable column is written only when its flag is set, so a change never carries along
/// stale copies of the columns it did not touch. A changed expiry is written only over the
/// expiry it was computed from (renewals and transfers read it first).
const UPDATE: &str = "UPDATE licenses SET \
    product_id = CASE WHEN $3 THEN $4 ELSE product_id END, \
    policy_id = CASE WHEN $3 THEN $5 ELSE policy_id END, \
    group_id = CASE WHEN $6 THEN $7 ELSE group_id END, \
    name = CASE WHEN $8 THEN $9 ELSE name END, \
    expiry = CASE WHEN $10 THEN $11 ELSE expiry END, \
    suspended = CASE WHEN $13 THEN $14 ELSE suspended END, \
    protected = CASE WHEN $15 THEN $16 ELSE protected END, \
    max_machines = CASE WHEN $17 THEN $18 ELSE max_machines END, \
    max_processes = CASE WHEN $19 THEN $20 ELSE max_processes END, \
    max_users = CASE WHEN $21 THEN $22 ELSE max_users END, \
    max_cores = CASE WHEN $23 THEN $24 ELSE max_cores END, \
    max_uses = CASE WHEN $25 THEN $26 ELSE max_uses END, \
    max_memory = CASE WHEN $27 THEN $28 ELSE max_memory END, \
    max_disk = CASE WHEN $29 THEN $30 ELSE max_disk END, \
    last_check_out_at = CASE WHEN $31 THEN $32 ELSE last_check_out_at END, \
    last_check_in_at = CASE WHEN $33 THEN $34 ELSE last_check_in_at END, \
    metadata = CASE WHEN $35 THEN $36 ELSE metadata END, \
    updated_at = $37 \
    WHERE account_id = $1 AND id = $2 AND (NOT $10 OR expiry IS NOT DISTINCT FROM $12)";

/// Writes the columns `after` changed from `before` (the row as read), and nothing else: a
/// concurrent suspension, renewal or usage change to other columns survives. `Ok(false)` when
/// the expiry changed underneath (the caller's computation is stale), or the license is gone.
pub async fn update(db: &Db, before: &License, after: &License, events: &[Raised]) -> Result<()> {
    if update_if_current(db, before, after, events).await? {
        Ok(())
    } else {
        Err(crate::error::Error::conflict(
            "the license changed while this request was processed; retry",
            "LICENSE_CONFLICT",
        ))
    }
}

/// [`update`], answering `false` instead of an error when the write did not apply.
pub async fn update_if_current(db: &Db, before: &License, after: &License, events: &[Raised]) -> Result<bool> {
    let n = db_run!(db, |pool| {
        let mut tx = pool.begin_write().await?;
        let n = sqlx::query(UPDATE)
            .bind(after.account_id)
            .bind(after.id)
            .bind(before.policy_id != after.policy_id || before.product_id != after.product_id)
            .bind(after.product_id)
            .bind(after.policy_id)
            .bind(before.group_id != after.group_id)
            .bind(after.group_id)
            .bind(before.name != after.name)
            .bind(&after.name)
            .bind(before.expiry != after.expiry)
            .bind(after.expiry)
            .bind(before.expiry)
            .bind(before.suspended != after.suspended)
            .bind(after.suspended)
            .bind(before.protected != after.protected)
            .bind(after.protected)
            .bind(before.max_machines != after.max_machines)
            .bind(after.max_machines)
            .bind(before.max_processes != after.max_processes)
            .bind(after.max_processes)
            .bind(before.max_users != after.max_users)
            .bind(after.max_users)
            .bind(before.max_cores != after.max_cores)
            .bind(after.max_cores)
            .bind(before.max_uses != after.max_uses)
            .bind(after.max_uses)
            .bind(before.max_memory != after.max_memory)
            .bind(after.max_memory)
            .bind(before.max_disk != after.max_disk)
            .bind(after.max_disk)
            .bind(before.last_check_out_at != after.last_check_out_at)
            .bind(after.last_check_out_at)
            .bind(before.last_check_in_at != after.last_check_in_at)
            .bind(after.last_check_in_at)
            .bind(before.metadata.0 != after.metadata.0)
            .bind(&after.metadata)
            .bind(after.updated_at)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        if n == 1 {
            crate::write_events!(tx, after.account_id, events);
        }
        tx.commit().await?;
        n
    });
    Ok(n == 1)
}

pub async fn delete(db: &Db, account: Uuid, id: Uuid, events: &[Raised]) -> Result<()> {
    db_run!(db, |pool| {
        let mut tx = pool.begin_write().await?;
        crate::write_events!(tx, account, events);
        sqlx::query("DELETE FROM tokens WHERE account_id = $1 AND bearer_id = $2")
            .bind(account)
            .bind(id)
            .execute(&mut *tx)
            .await?;
        sqlx::query("DELETE FROM licenses WHERE account_id = $1 AND id = $2")
            .bind(account)
            .bind(id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
    });
    Ok(())
}

/// Changes the usage count by `delta` in one statement that also enforces `0 ≤ uses ≤ max`, so
/// it holds under concurrency and across nodes. Returns the new count, or `None` when the
/// change would cross a bound. `max` of `None` means unlimited.
/// `events` says what to raise given the new count, in the same transaction.
pub async fn add_uses(
    db: &Db,
    account: Uuid,
    id: Uuid,
    delta: i64,
    max: Option<i64>,
    now: i64,
    events: impl FnOnce(i64) -> Vec<Raised>,
) -> Result<Option<i64>> {
    const SQL: &str = "UPDATE licenses SET uses = uses + $3, updated_at = $5 WHERE account_id = $1 AND id = $2 \
        AND uses + $3 >= 0 AND uses + $3 <= 2147483647 AND ($4 IS NULL OR uses + $3 <= $4) RETURNING uses";
    Ok(db_run!(db, |pool| {
        let mut tx = pool.begin_write().await?;
        let uses = sqlx::query_scalar::<_, i64>(SQL)
            .bind(account)
            .bind(id)
            .bind(delta)
            .bind(max)
            .bind(now)
            .fetch_optional(&mut *tx)
            .await?;
        if let Some(uses) = uses {
            crate::write_events!(tx, account, &events(uses));
        }
        tx.commit().await?;
        uses
    }))
}

pub async fn reset_uses(db: &Db, account: Uuid, id: Uuid, now: i64, events: &[Raised]) -> Result<()> {
    const SQL: &str = "UPDATE licenses SET uses = 0, updated_at = $3 WHERE account_id = $1 AND id = $2";
    db_run!(db, |pool| {
        let mut tx = pool.begin_write().await?;
        sqlx::query(SQL).bind(account).bind(id).bind(now).execute(&mut *tx).await?;
        crate::write_events!(tx, account, events);
        tx.commit().await?;
    });
    Ok(())
}

/// Records validations in bulk: each license gets the latest instant seen. Never moves the
/// timestamp backwards, so nodes flushing out of order cannot undo each other. One statement
/// per chunk (not per license): on a busy node this runs with thousands of entries a second.
/// Chunks are cut from the entries in key order, so each one writes few, adjacent pages.
pub async fn touch_validated(db: &Db, touches: &[(Uuid, i64)]) -> Result<()> {
    // The two engines pass arrays differently: SQLite as JSON (ids as hex, the column is a
    // BLOB), PostgreSQL as native arrays. A license deleted since its validation is skipped:
    // its row would violate the foreign key.
    const SQLITE: &str = "INSERT INTO license_validations (license_id, at) \
        SELECT t.id, t.at FROM (SELECT unhex(json_extract(value, '$[0]')) AS id, json_extract(value, '$[1]') AS at FROM json_each($1)) AS t \
        WHERE EXISTS (SELECT 1 FROM licenses l WHERE l.id = t.id) \
        ON CONFLICT (license_id) DO UPDATE SET at = excluded.at WHERE license_validations.at < excluded.at";
    const POSTGRES: &str = "INSERT INTO license_validations (license_id, at) \
        SELECT t.id, t.at FROM unnest($1::uuid[], $2::bigint[]) AS t(id, at) \
        WHERE EXISTS (SELECT 1 FROM licenses l WHERE l.id = t.id) \
        ON CONFLICT (license_id) DO UPDATE SET at = excluded.at WHERE license_validations.at < excluded.at";
    let mut touches = touches.to_vec();
    touches.sort_unstable();
    for chunk in touches.chunks(1000) {
        let _turn = db.write_turn().await?;
        match db {
            Db::Sqlite(sqlite) => {
                let pool = &sqlite.pool;
                let json: Vec<(String, i64)> = chunk.iter().map(|(id, at)| (hex::encode(id.as_bytes()), *at)).collect();
                let json = serde_json::to_string(&json).map_err(anyhow::Error::from)?;
                sqlx::query(SQLITE).bind(json).execute(pool).await?;
            }
            Db::Postgres(pool) => {
                let ids: Vec<Uuid> = chunk.iter().map(|(id, _)| *id).collect();
                let ats: Vec<i64> = chunk.iter().map(|(_, at)| *at).collect();
                sqlx::query(POSTGRES).bind(ids).bind(ats).execute(pool).await?;
            }
        }
    }
    Ok(())
}

/// Sets the expiry only while it is unset: the first qualifying event of an expiration basis
/// (first validation, activation, use) starts the clock once, even when nodes race.
pub async fn start_expiry_clock(db: &Db, account: Uuid, id: Uuid, expiry: i64) -> Result<()> {
    const SQL: &str = "UPDATE licenses SET expiry = $3 WHERE account_id = $1 AND id = $2 AND expiry IS NULL";
    let _turn = db.write_turn().await?;
    db_run!(db, |pool| sqlx::query(SQL).bind(account).bind(id).bind(expiry).execute(pool).await?.rows_affected());
    Ok(())
}

/// The users attached to a license (not its owner).
pub async fn user_ids(db: &Db, account: Uuid, license: Uuid) -> Result<Vec<Uuid>> {
    const SQL: &str = "SELECT user_id FROM license_users WHERE account_id = $1 AND license_id = $2";
    Ok(db_run!(db, |pool| sqlx::query_scalar::<_, Uuid>(SQL).bind(account).bind(license).fetch_all(pool).await?))
}

/// Attaches users unless that would take the license past `max_total` users (the owner
/// included), checked
/// and written in one transaction holding the license's lock. Returns false when over the limit.
pub async fn attach_users(
    db: &Db,
    account: Uuid,
    license: Uuid,
    users: &[Uuid],
    max_total: Option<i64>,
    now: i64,
    events: &[Raised],
) -> Result<bool> {
    const LOCK: &str = "UPDATE licenses SET updated_at = $3 WHERE account_id = $1 AND id = $2";
    const INSERT: &str = "INSERT INTO license_users (account_id, license_id, user_id, created_at) VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING";
    // The owner counts as a user, as Keygen counts them.
    const COUNT: &str = "SELECT (SELECT COUNT(*) FROM license_users WHERE license_id = $1) \
        + (SELECT CASE WHEN owner_id IS NULL THEN 0 ELSE 1 END FROM licenses WHERE id = $1)";
    db_run!(db, |pool| {
        let mut tx = pool.begin_write().await?;
        sqlx::query(LOCK).bind(account).bind(license).bind(now).execute(&mut *tx).await?;
        for u in users {
            sqlx::query(INSERT).bind(account).bind(license).bind(u).bind(now).execute(&mut *tx).await?;
        }
        let total = sqlx::query_scalar::<_, i64>(COUNT).bind(license).fetch_one(&mut *tx).await?;
        if max_total.is_some_and(|max| total > max) {
            tx.rollback().await?;
            return Ok(false);
        }
        crate::write_events!(tx, account, events);
        tx.commit().await?;
    });
    Ok(true)
}

/// Sets (or clears) a license's owner. A new owner is one more user, so with `max_total` the
/// count of attached users plus the owner is checked under the license lock; false when over.
pub async fn set_owner(
    db: &Db,
    l: &License,
    owner: Option<Uuid>,
    max_total: Option<i64>,
    join_group: Option<(Uuid, Option<i64>)>,
    now: i64,
    events: &[Raised],
) -> Result<OwnerSet> {
    const LOCK: &str = "UPDATE licenses SET updated_at = $3 WHERE account_id = $1 AND id = $2";
    const ATTACHED: &str = "SELECT COUNT(*) FROM license_users WHERE license_id = $1";
    const SET: &str = "UPDATE licenses SET owner_id = $3 WHERE account_id = $1 AND id = $2";
    const LOCK_GROUP: &str = "UPDATE groups SET updated_at = updated_at WHERE id = $1";
    const IN_GROUP: &str = "SELECT COUNT(*) FROM licenses WHERE group_id = $1";
    const JOIN: &str = "UPDATE licenses SET group_id = $3 WHERE account_id = $1 AND id = $2 AND group_id IS NULL";
    let (account, license) = (l.account_id, l.id);
    db_run!(db, |pool| {
        let mut tx = pool.begin_write().await?;
        sqlx::query(LOCK).bind(account).bind(license).bind(now).execute(&mut *tx).await?;
        if let (Some(max), Some(_)) = (max_total, owner) {
            let attached = sqlx::query_scalar::<_, i64>(ATTACHED).bind(license).fetch_one(&mut *tx).await?;
            if attached + 1 > max {
                tx.rollback().await?;
                return Ok(OwnerSet::UsersFull);
            }
        }
        if let Some((group, max)) = join_group {
            sqlx::query(LOCK_GROUP).bind(group).execute(&mut *tx).await?;
            if let Some(max) = max {
                let count = sqlx::query_scalar::<_, i64>(IN_GROUP).bind(group).fetch_one(&mut *tx).await?;
                if count + 1 > max {
                    tx.rollback().await?;
                    return Ok(OwnerSet::GroupFull(max));
                }
            }
            sqlx::query(JOIN).bind(account).bind(license).bind(group).execute(&mut *tx).await?;
        }
        sqlx::query(SET).bind(account).bind(license).bind(owner).execute(&mut *tx).await?;
        crate::write_events!(tx, account, events);
        tx.commit().await?;
    });
    Ok(OwnerSet::Done)
}

/// What [`set_owner`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OwnerSet {
    Done,
    /// The owner would take the license past its users.
    UsersFull,
    /// The owner's group, which the license would join, holds its `maxLicenses` already.
    GroupFull(i64),
}

pub async fn detach_users(db: &Db, account: Uuid, license: Uuid, users: &[Uuid], events: &[Raised]) -> Result<()> {
    // The license first, as `attach_users` takes it (the count trigger updates it after each
    // delete; the other order could deadlock with an attach on PostgreSQL).
    const LOCK: &str = "UPDATE licenses SET updated_at = updated_at WHERE account_id = $1 AND id = $2";
    const SQL: &str = "DELETE FROM license_users WHERE account_id = $1 AND license_id = $2 AND user_id = $3";
    db_run!(db, |pool| {
        let mut tx = pool.begin_write().await?;
        sqlx::query(LOCK).bind(account).bind(license).execute(&mut *tx).await?;
        for u in users {
            sqlx::query(SQL).bind(account).bind(license).bind(u).execute(&mut *tx).await?;
        }
        crate::write_events!(tx, account, events);
        tx.commit().await?;
    });
    Ok(())
}

/// Whether `user` owns or is attached to `license`.
pub async fn has_user(db: &Db, license: &License, user: Uuid) -> Result<bool> {
    if license.owner_id == Some(user) {
        return Ok(true);
    }
    const SQL: &str = "SELECT COUNT(*) FROM license_users WHERE license_id = $1 AND user_id = $2";
    let n = db_run!(db, |pool| sqlx::query_scalar::<_, i64>(SQL).bind(license.id).bind(user).fetch_one(pool).await?);
    Ok(n > 0)
}

/// Licenses whose expiry falls in `from..until` and whose `event` for that expiry has not
/// been raised: (account, id, expiry), soonest first.
pub async fn expiring_between(
    db: &Db,
    event: &str,
    from: i64,
    until: i64,
    limit: i64,
) -> Result<Vec<(Uuid, Uuid, i64)>> {
    const SQL: &str = "SELECT account_id, id, expiry FROM licenses l WHERE expiry >= $1 AND expiry < $2 \
        AND NOT EXISTS (SELECT 1 FROM event_marks m WHERE m.resource_id = l.id AND m.event = $4 AND m.occurrence = l.expiry) \
        ORDER BY expiry LIMIT $3";
    Ok(db_run!(db, |pool| sqlx::query_as(SQL).bind(from).bind(until).bind(limit).bind(event).fetch_all(pool).await?))
}

/// Licenses of `policy` last checked in before `deadline` whose `event` for that check-in has
/// not been raised: (account, id, last check-in).
pub async fn checked_in_before(
    db: &Db,
    policy: Uuid,
    deadline: i64,
    event: &str,
    limit: i64,
) -> Result<Vec<(Uuid, Uuid, i64)>> {
    const SQL: &str = "SELECT account_id, id, last_check_in_at FROM licenses l WHERE policy_id = $1 AND last_check_in_at < $2 \
        AND NOT EXISTS (SELECT 1 FROM event_marks m WHERE m.resource_id = l.id AND m.event = $3 AND m.occurrence = l.last_check_in_at) \
        ORDER BY last_check_in_at LIMIT $4";
    Ok(db_run!(db, |pool| sqlx::query_as(SQL)
        .bind(policy)
        .bind(deadline)
        .bind(event)
        .bind(limit)
        .fetch_all(pool)
        .await?))
}
