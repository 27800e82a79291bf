//! Machines (activations) and the limit checks that must hold under concurrency.

use std::convert::Infallible;

use uuid::Uuid;

use crate::db::{BeginWrite, Db};
use crate::db_run;
use crate::error::Result;
use crate::events::Raised;
use crate::model::{
    ActivationLimits, ActivationRefusal, Decide, License, LicenseTerms, Listing, Machine, Page, Uniqueness, Usage,
};
use crate::ratelimit::{ExactHit, Verdict};

macro_rules! select {
    ($where:literal) => {
        concat!(
            "SELECT m.id, m.account_id, m.license_id, m.fingerprint, m.name, m.ip, m.hostname, m.platform, m.cores, m.memory, m.disk, m.owner_id, m.group_id, \
             m.max_processes, m.last_heartbeat_at, m.last_check_out_at, m.metadata, m.created_at, m.updated_at, l.product_id, l.policy_id, p.rules AS policy_rules \
             FROM machines m JOIN licenses l ON l.id = m.license_id JOIN policies p ON p.id = l.policy_id ",
            $where
        )
    };
}

const FIND: &str = select!("WHERE m.account_id = $1 AND m.id = $2");
const FIND_BY_FINGERPRINT: &str =
    select!("WHERE m.account_id = $1 AND m.fingerprint = $2 ORDER BY m.created_at ASC LIMIT 1");

pub async fn find(db: &Db, account: Uuid, id: Uuid) -> Result<Option<Machine>> {
    Ok(db_run!(db, |pool| sqlx::query_as::<_, Machine>(FIND).bind(account).bind(id).fetch_optional(pool).await?))
}

/// Finds by UUID, else by fingerprint (oldest first, as Keygen's alias lookup does).
pub async fn find_by_id_or_fingerprint(db: &Db, account: Uuid, id: &str) -> Result<Option<Machine>> {
    if let Ok(uuid) = Uuid::parse_str(id) {
        if let Some(m) = find(db, account, uuid).await? {
            return Ok(Some(m));
        }
    }
    Ok(db_run!(db, |pool| sqlx::query_as::<_, Machine>(FIND_BY_FINGERPRINT)
        .bind(account)
        .bind(id)
        .fetch_optional(pool)
        .await?))
}

const ON_LICENSE: &str = select!("WHERE m.account_id = $1 AND m.license_id = $2 AND m.fingerprint = $3");

/// The machine with `fingerprint` on `license`, if activated.
pub async fn find_on_license(db: &Db, account: Uuid, license: Uuid, fingerprint: &str) -> Result<Option<Machine>> {
    Ok(db_run!(db, |pool| sqlx::query_as::<_, Machine>(ON_LICENSE)
        .bind(account)
        .bind(license)
        .bind(fingerprint)
        .fetch_optional(pool)
        .await?))
}

// The account is checked on the license row: a condition on `m.account_id` tempts planners into the
// (account_id, fingerprint) index, which visits every machine of the account.
const FOR_LICENSE: &str = select!("WHERE l.account_id = $1 AND m.license_id = $2 ORDER BY m.created_at ASC");

/// What a validation reads of each machine of its license: no metadata or policy to decode.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Activation {
    pub id: Uuid,
    pub fingerprint: String,
    pub owner_id: Option<Uuid>,
    pub cores: Option<i64>,
    pub memory: Option<i64>,
    pub disk: Option<i64>,
    pub max_processes: Option<i64>,
    pub last_heartbeat_at: Option<i64>,
    pub created_at: i64,
}

/// The machines of a license as validation needs them, oldest first. On SQLite it reads
/// inline (see `SqliteDb::read_inline`).
pub async fn activations(db: &Db, account: Uuid, license: Uuid) -> Result<Vec<Activation>> {
    match db {
        Db::Sqlite(sqlite) => Ok(sqlite.read_inline(|conn| activations_inline(conn, account, license))?),
        Db::Postgres(pool) => {
            // The account is checked on the license row, as in `FOR_LICENSE`.
            const SQL: &str = "SELECT m.id, m.fingerprint, m.owner_id, m.cores, m.memory, m.disk, m.max_processes, \
                m.last_heartbeat_at, m.created_at FROM machines m JOIN licenses l ON l.id = m.license_id \
                WHERE l.account_id = $1 AND m.license_id = $2 ORDER BY m.created_at ASC";
            Ok(sqlx::query_as::<_, Activation>(SQL).bind(account).bind(license).fetch_all(pool).await?)
        }
    }
}

/// [`activations`] on an SQLite connection, in its current read transaction if one is open.
pub(super) fn activations_inline(
    conn: &rusqlite::Connection,
    account: Uuid,
    license: Uuid,
) -> rusqlite::Result<Vec<Activation>> {
    // The account is checked on the machine row, which needs no descent into the licenses; the
    // unary `+` keeps SQLite's planner on the (license_id, created_at) index, off the
    // (account_id, fingerprint) and (account_id, created_at) ones, which visit every machine of
    // the account (see `FOR_LICENSE`).
    const SQL: &str = "SELECT id, fingerprint, owner_id, cores, memory, disk, max_processes, last_heartbeat_at, \
        created_at FROM machines WHERE +account_id = $1 AND license_id = $2 ORDER BY created_at ASC";
    conn.prepare_cached(SQL)?
        .query_map(rusqlite::params![account, license], |r| {
            Ok(Activation {
                id: r.get(0)?,
                fingerprint: r.get(1)?,
                owner_id: r.get(2)?,
                cores: r.get(3)?,
                memory: r.get(4)?,
                disk: r.get(5)?,
                max_processes: r.get(6)?,
                last_heartbeat_at: r.get(7)?,
                created_at: r.get(8)?,
            })
        })?
        .collect()
}

/// Every machine of a license, in full (a license rarely has many). On SQLite it reads inline
/// (see `SqliteDb::read_inline`).
pub async fn for_license(db: &Db, account: Uuid, license: Uuid) -> Result<Vec<Machine>> {
    match db {
        Db::Sqlite(sqlite) => Ok(sqlite.read_inline(|conn| {
            conn.prepare_cached(FOR_LICENSE)?
                .query_map(rusqlite::params![account, license], from_sqlite_row)?
                .collect::<rusqlite::Result<Vec<_>>>()
        })?),
        Db::Postgres(pool) => {
            Ok(sqlx::query_as::<_, Machine>(FOR_LICENSE).bind(account).bind(license).fetch_all(pool).await?)
        }
    }
}

/// Maps a row of `select!` read through `rusqlite` (columns in the macro's order).
fn from_sqlite_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Machine> {
    use super::sqlite_json as json;
    Ok(Machine {
        id: r.get(0)?,
        account_id: r.get(1)?,
        license_id: r.get(2)?,
        fingerprint: r.get(3)?,
        name: r.get(4)?,
        ip: r.get(5)?,
        hostname: r.get(6)?,
        platform: r.get(7)?,
        cores: r.get(8)?,
        memory: r.get(9)?,
        disk: r.get(10)?,
        owner_id: r.get(11)?,
        group_id: r.get(12)?,
        max_processes: r.get(13)?,
        last_heartbeat_at: r.get(14)?,
        last_check_out_at: r.get(15)?,
        metadata: sqlx::types::Json(json(r, 16)?),
        created_at: r.get(17)?,
        updated_at: r.get(18)?,
        product_id: r.get(19)?,
        policy_id: r.get(20)?,
        policy_rules: super::parse_rules(r.get(20)?, r.get_ref(21)?.as_str()?)
            .map_err(|e| rusqlite::Error::FromSqlConversionFailure(21, rusqlite::types::Type::Text, Box::new(e)))?,
    })
}

#[derive(Debug, Default, Clone)]
pub struct MachineFilter {
    pub license: Option<Uuid>,
    pub fingerprint: Option<String>,
    pub owner: Option<Uuid>,
    pub product: Option<Uuid>,
    pub policy: Option<Uuid>,
    pub group: Option<Uuid>,
    /// Machines of licenses this user owns or is attached to.
    pub user: Option<Uuid>,
    pub narrow: super::Narrow,
}

/// ` AND …` for each filter given (and none for those not: a generic `($n IS NULL OR …)`
/// statement can use no index).
macro_rules! push_machine_conditions {
    ($qb:expr, $f:expr, $sqlite:expr) => {{
        let (qb, f) = (&mut $qb, $f);
        if let Some(v) = f.license {
            qb.push(" AND m.license_id = ").push_bind(v);
        }
        if let Some(v) = &f.fingerprint {
            qb.push(" AND m.fingerprint = ").push_bind(v.clone());
        }
        if let Some(v) = f.owner {
            qb.push(" AND m.owner_id = ").push_bind(v);
        }
        if let Some(v) = f.product {
            qb.push(" AND l.product_id = ").push_bind(v);
        }
        if let Some(v) = f.policy {
            qb.push(" AND l.policy_id = ").push_bind(v);
        }
        if let Some(v) = f.group {
            qb.push(" AND m.group_id = ").push_bind(v);
        }
        if let Some(v) = f.user {
            qb.push(" AND (m.owner_id = ").push_bind(v).push(" OR l.owner_id = ").push_bind(v);
            qb.push(" OR m.license_id IN (SELECT license_id FROM license_users WHERE user_id = ")
                .push_bind(v)
                .push("))");
        }
        $crate::push_metadata!(qb, "m.metadata", &f.narrow.metadata, $sqlite);
    }};
}

pub async fn list(db: &Db, account: Uuid, f: &MachineFilter, page: Page) -> Result<Listing<Machine>> {
    let sqlite = matches!(db, Db::Sqlite(_));
    db_run!(db, |pool| {
        let mut qb = sqlx::QueryBuilder::new(select!("WHERE m.account_id = "));
        qb.push_bind(account);
        push_machine_conditions!(qb, f, sqlite);
        qb.push(f.narrow.order_by("m.created_at", "m.id"));
        qb.push(" LIMIT ").push_bind(page.limit()).push(" OFFSET ").push_bind(page.offset());
        let rows = qb.build_query_as::<Machine>().fetch_all(pool).await?;
        let mut qb = sqlx::QueryBuilder::new(
            "SELECT COUNT(*) FROM machines m JOIN licenses l ON l.id = m.license_id WHERE m.account_id = ",
        );
        qb.push_bind(account);
        push_machine_conditions!(qb, f, sqlite);
        let total = qb.build_query_scalar::<i64>().fetch_one(pool).await?;
        Ok(Listing { rows, total })
    })
}

/// What the machines a limit counts already hold: the license's (the owner's, under
/// PER_USER leasing) but the one being changed. Bound to (license, per owner, owner, excluded
/// machine); the group's to (group, excluded machine).
macro_rules! others {
    ($what:literal) => {
        concat!(
            "SELECT ",
            $what,
            " FROM machines WHERE license_id = $1 AND ($4 IS NULL OR id <> $4) \
             AND ($2 = FALSE OR owner_id = $3 OR (owner_id IS NULL AND $3 IS NULL))"
        )
    };
}
const MACHINES_OTHERS: &str = others!("COUNT(*)");
const CORES_OTHERS: &str = others!("CAST(COALESCE(SUM(cores), 0) AS BIGINT)");
const MEMORY_OTHERS: &str = others!("CAST(COALESCE(SUM(memory), 0) AS BIGINT)");
const DISK_OTHERS: &str = others!("CAST(COALESCE(SUM(disk), 0) AS BIGINT)");
const GROUP_OTHERS: &str = "SELECT COUNT(*) FROM machines WHERE group_id = $1 AND ($2 IS NULL OR id <> $2)";

/// Measures what the license (and group) already hold that `limits` ask about, on the
/// transaction that holds their locks; machine `exclude` (the one being changed) is left out.
macro_rules! measure {
    ($tx:expr, $m:expr, $limits:expr, $exclude:expr) => {{
        let (m, limits, exclude): (&Machine, &ActivationLimits, Option<Uuid>) = ($m, $limits, $exclude);
        let sum = |sql: &'static str| {
            sqlx::query_scalar::<_, i64>(sql).bind(m.license_id).bind(limits.per_owner).bind(m.owner_id).bind(exclude)
        };
        let mut usage = Usage::default();
        if limits.max_machines.is_some() {
            usage.machines = Some(sum(MACHINES_OTHERS).fetch_one(&mut *$tx).await?);
        }
        if limits.max_cores.is_some() {
            usage.cores = Some(sum(CORES_OTHERS).fetch_one(&mut *$tx).await?);
        }
        if limits.max_memory.is_some() {
            usage.memory = Some(sum(MEMORY_OTHERS).fetch_one(&mut *$tx).await?);
        }
        if limits.max_disk.is_some() {
            usage.disk = Some(sum(DISK_OTHERS).fetch_one(&mut *$tx).await?);
        }
        if let Some((group, _)) = limits.group_machines {
            usage.group_machines =
                Some(sqlx::query_scalar::<_, i64>(GROUP_OTHERS).bind(group).bind(exclude).fetch_one(&mut *$tx).await?);
        }
        usage
    }};
}

/// [`measure!`] on a transaction of SQLite's inline writer, for a new machine.
fn measure_inline(tx: &rusqlite::Transaction<'_>, m: &Machine, limits: &ActivationLimits) -> rusqlite::Result<Usage> {
    let exclude: Option<Uuid> = None;
    let sum = |sql: &str| -> rusqlite::Result<i64> {
        super::sqlite_query_row(tx, sql, &[&m.license_id, &limits.per_owner, &m.owner_id, &exclude], |r| r.get(0))
    };
    let mut usage = Usage::default();
    if limits.max_machines.is_some() {
        usage.machines = Some(sum(MACHINES_OTHERS)?);
    }
    if limits.max_cores.is_some() {
        usage.cores = Some(sum(CORES_OTHERS)?);
    }
    if limits.max_memory.is_some() {
        usage.memory = Some(sum(MEMORY_OTHERS)?);
    }
    if limits.max_disk.is_some() {
        usage.disk = Some(sum(DISK_OTHERS)?);
    }
    if let Some((group, _)) = limits.group_machines {
        usage.group_machines = Some(super::sqlite_query_row(tx, GROUP_OTHERS, &[&group, &exclude], |r| r.get(0))?);
    }
    Ok(usage)
}

/// Inserts a machine if `decide` admits it. Measuring and inserting run in one transaction
/// that first takes the license's row lock (PostgreSQL; on SQLite the transaction holds the
/// file's write lock), so concurrent activations, from any number of nodes, are serialised per
/// license and the limits hold exactly. Under that lock the license's terms are read again:
/// `limits` were drawn from `license`, a copy read earlier (by authentication, perhaps from a
/// node's cache), and if its terms changed since, nothing is decided on them
/// ([`Activated::Changed`]).
/// Uniqueness wider than the license also locks the account row, a group limit the group row.
pub async fn activate(
    db: &Db,
    basis: Basis<'_>,
    m: &Machine,
    components: &[crate::model::Component],
    events: &[Raised],
    count: Option<&ExactHit>,
) -> Result<Activated> {
    let Basis { license, limits, decide } = basis;
    const LOCK_GROUP: &str = "UPDATE groups SET updated_at = updated_at WHERE id = $1";

    let pool = match db {
        Db::Sqlite(sqlite) => {
            // The transaction holds SQLite's one write lock from `BEGIN IMMEDIATE`: nothing else
            // can change the license, the account or the group before it commits, so the row
            // locks (PostgreSQL's way) would only cost a statement each. The change count goes
            // in the same commit; a refused activation still counts (its savepoint is undone).
            // Owned copies: another request's task may run the transaction (group commit).
            let (terms, m, components, limits, events, count) =
                (license.terms(), m.clone(), components.to_vec(), limits.clone(), events.to_vec(), count.cloned());
            let Ok(activated) = sqlite
                .write_inline(move |tx| {
                    if let Some(hit) = &count {
                        let verdict = hit.verdict(super::rate_limits::add_inline(
                            tx,
                            &hit.bucket,
                            hit.window_start,
                            hit.expires_at,
                            1,
                        )?);
                        if !verdict.allowed {
                            return Ok(Ok(Activated::OverRate(verdict)));
                        }
                    }
                    if super::licenses::terms_inline(tx, m.account_id, m.license_id)?.is_none_or(|now| now != terms) {
                        return Ok(Ok(Activated::Changed));
                    }
                    tx.execute_batch("SAVEPOINT activation")?;
                    let activated = match activate_inline(tx, &m, &components, &limits, decide, &events)? {
                        Ok(()) => Activated::Yes,
                        Err(refusal) => {
                            tx.execute_batch("ROLLBACK TO activation")?;
                            Activated::Refused(refusal)
                        }
                    };
                    tx.execute_batch("RELEASE activation")?;
                    Ok(Ok::<_, Infallible>(activated))
                })
                .await?;
            return Ok(activated);
        }
        Db::Postgres(pool) => pool,
    };
    if let Some(hit) = count {
        let verdict = hit.verdict(super::rate_limits::add(db, &hit.bucket, hit.window_start, hit.expires_at, 1).await?);
        if !verdict.allowed {
            return Ok(Activated::OverRate(verdict));
        }
    }
    let mut tx = pool.begin_write().await?;
    let terms = sqlx::query_as::<_, LicenseTerms>(super::licenses::TERMS_LOCKED)
        .bind(m.account_id)
        .bind(m.license_id)
        .fetch_optional(&mut *tx)
        .await?;
    if terms.is_none_or(|now| now != license.terms()) {
        tx.rollback().await?;
        return Ok(Activated::Changed);
    }
    if !matches!(limits.uniqueness, Uniqueness::License)
        || !matches!(limits.component_uniqueness, None | Some(Uniqueness::License))
    {
        sqlx::query(super::LOCK_ACCOUNT).bind(m.account_id).execute(&mut *tx).await?;
    }
    if let Some((group, _)) = limits.group_machines {
        sqlx::query(LOCK_GROUP).bind(group).execute(&mut *tx).await?;
    }
    let (sql, first, scope) = taken_query(limits.uniqueness, m);
    let q = sqlx::query_scalar::<_, i64>(sql).bind(first).bind(&m.fingerprint);
    let taken = match scope {
        Some(scope) => q.bind(scope),
        None => q,
    }
    .fetch_one(&mut *tx)
    .await?;
    let mut component_taken = None;
    if let Some((sql, id)) = super::components::taken_query(limits.component_uniqueness, m.license_id) {
        for (i, c) in components.iter().enumerate() {
            let q = sqlx::query_scalar::<_, i64>(sql).bind(m.account_id).bind(&c.fingerprint);
            let q = match id {
                Some(id) => q.bind(id),
                None => q,
            };
            if q.fetch_one(&mut *tx).await? > 0 {
                component_taken = Some(i);
                break;
            }
        }
    }
    let mut usage = measure!(tx, m, limits, None);
    usage.fingerprint_taken = taken > 0;
    usage.component_taken = component_taken;
    if let Err(refusal) = decide(&usage, limits, m) {
        tx.rollback().await?;
        return Ok(Activated::Refused(refusal));
    }
    sqlx::query(INSERT)
        .bind(m.id)
        .bind(m.account_id)
        .bind(m.license_id)
        .bind(&m.fingerprint)
        .bind(&m.name)
        .bind(&m.ip)
        .bind(&m.hostname)
        .bind(&m.platform)
        .bind(m.cores)
        .bind(m.memory)
        .bind(m.disk)
        .bind(m.owner_id)
        .bind(m.group_id)
        .bind(m.max_processes)
        .bind(m.last_heartbeat_at)
        .bind(m.last_check_out_at)
        .bind(&m.metadata)
        .bind(m.created_at)
        .bind(m.updated_at)
        .execute(&mut *tx)
        .await?;
    for c in components {
        super::components::insert_query(c).execute(&mut *tx).await?;
    }
    if let Some(token) = limits.activation_token {
        if sqlx::query(CONSUME).bind(token).execute(&mut *tx).await?.rows_affected() == 0 {
            tx.rollback().await?;
            return Ok(Activated::Refused(ActivationRefusal::ActivationsLimit));
        }
    }
    crate::write_events!(tx, m.account_id, events);
    tx.commit().await?;
    Ok(Activated::Yes)
}

const INSERT: &str = "INSERT INTO machines (id, account_id, license_id, fingerprint, name, ip, hostname, platform, cores, memory, disk, owner_id, group_id, max_processes, \
    last_heartbeat_at, last_check_out_at, metadata, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19)";
const CONSUME: &str = "UPDATE tokens SET activations = activations + 1 WHERE id = $1 AND (max_activations IS NULL OR activations < max_activations)";

/// What an activation is decided on: a copy of the license, the limits drawn from it, and the
/// rule that weighs a machine against what the license already holds.
#[derive(Clone, Copy)]
pub struct Basis<'a> {
    pub license: &'a License,
    pub limits: &'a ActivationLimits,
    pub decide: Decide,
}

/// What [`activate`] did.
#[derive(Debug)]
pub enum Activated {
    Yes,
    Refused(ActivationRefusal),
    /// The license's change count is over its limit: nothing activated.
    OverRate(Verdict),
    /// The license's terms (see `License::terms`) are no longer those of the copy the
    /// activation was decided on, or it is gone: nothing activated (the change count, when
    /// asked for, was counted). Decide again on the license as it is now.
    Changed,
}

/// The count of machines already holding `m`'s fingerprint within `scope`, bound to
/// (first, fingerprint[, scope id]).
fn taken_query(scope: Uniqueness, m: &Machine) -> (&'static str, Uuid, Option<Uuid>) {
    const LICENSE: &str = "SELECT COUNT(*) FROM machines WHERE license_id = $1 AND fingerprint = $2";
    const ACCOUNT: &str = "SELECT COUNT(*) FROM machines WHERE account_id = $1 AND fingerprint = $2";
    const PRODUCT: &str = "SELECT COUNT(*) FROM machines m JOIN licenses l ON l.id = m.license_id WHERE m.account_id = $1 AND m.fingerprint = $2 AND l.product_id = $3";
    const POLICY: &str = "SELECT COUNT(*) FROM machines m JOIN licenses l ON l.id = m.license_id WHERE m.account_id = $1 AND m.fingerprint = $2 AND l.policy_id = $3";
    match scope {
        Uniqueness::License => (LICENSE, m.license_id, None),
        Uniqueness::Account => (ACCOUNT, m.account_id, None),
        Uniqueness::Product(p) => (PRODUCT, m.account_id, Some(p)),
        Uniqueness::Policy(p) => (POLICY, m.account_id, Some(p)),
    }
}

/// [`activate`]'s transaction on SQLite's inline writer: the same statements and decision.
fn activate_inline(
    tx: &rusqlite::Transaction<'_>,
    m: &Machine,
    components: &[crate::model::Component],
    limits: &ActivationLimits,
    decide: Decide,
    events: &[Raised],
) -> rusqlite::Result<std::result::Result<(), ActivationRefusal>> {
    use rusqlite::ToSql;
    // (first, fingerprint[, scope]): the shape of both taken queries.
    let count = |sql: &str, first: &Uuid, fingerprint: &str, scope: Option<Uuid>| -> rusqlite::Result<i64> {
        let values: &[&dyn ToSql] = match &scope {
            Some(scope) => &[first, &fingerprint, scope],
            None => &[first, &fingerprint],
        };
        super::sqlite_query_row(tx, sql, values, |r| r.get(0))
    };
    let (sql, first, scope) = taken_query(limits.uniqueness, m);
    let taken = count(sql, &first, &m.fingerprint, scope)?;
    let mut component_taken = None;
    if let Some((sql, id)) = super::components::taken_query(limits.component_uniqueness, m.license_id) {
        for (i, c) in components.iter().enumerate() {
            if count(sql, &m.account_id, &c.fingerprint, id)? > 0 {
                component_taken = Some(i);
                break;
            }
        }
    }
    let mut usage = measure_inline(tx, m, limits)?;
    usage.fingerprint_taken = taken > 0;
    usage.component_taken = component_taken;
    if let Err(refusal) = decide(&usage, limits, m) {
        return Ok(Err(refusal));
    }
    let metadata = m.metadata.0.to_string();
    let values: [&dyn ToSql; 19] = [
        &m.id,
        &m.account_id,
        &m.license_id,
        &m.fingerprint,
        &m.name,
        &m.ip,
        &m.hostname,
        &m.platform,
        &m.cores,
        &m.memory,
        &m.disk,
        &m.owner_id,
        &m.group_id,
        &m.max_processes,
        &m.last_heartbeat_at,
        &m.last_check_out_at,
        &metadata,
        &m.created_at,
        &m.updated_at,
    ];
    super::sqlite_execute(tx, INSERT, &values)?;
    for c in components {
        super::components::insert_inline(tx, c)?;
    }
    if let Some(token) = limits.activation_token {
        if tx.prepare_cached(CONSUME)?.execute([token])? == 0 {
            return Ok(Err(ActivationRefusal::ActivationsLimit));
        }
    }
    super::events::write_inline(tx, m.account_id, events)?;
    Ok(Ok(()))
}

/// Whether any machine, in any account, has this id (ids are global keys).
pub async fn id_taken(db: &Db, id: Uuid) -> Result<bool> {
    const SQL: &str = "SELECT COUNT(*) FROM machines WHERE id = $1";
    let n = db_run!(db, |pool| sqlx::query_scalar::<_, i64>(SQL).bind(id).fetch_one(pool).await?);
    Ok(n > 0)
}

/// Takes the row lock of a machine's license. Whatever deletes a machine or changes its cores
/// takes it first: activation and process spawns lock the license before touching machines,
/// and the count trigger (migration 0006) updates the license after the machine row, so taking
/// the locks in the other order could deadlock on PostgreSQL.
const LOCK_MACHINE_LICENSE: &str = "UPDATE licenses SET updated_at = updated_at \
    WHERE account_id = $1 AND id = (SELECT license_id FROM machines WHERE account_id = $1 AND id = $2)";

const UPDATE: &str = "UPDATE machines SET name = $3, ip = $4, hostname = $5, platform = $6, cores = $7, memory = $8, disk = $9, owner_id = $10, group_id = $11, \
    max_processes = $12, metadata = $13, updated_at = $14 WHERE account_id = $1 AND id = $2";

/// Saves a machine's attributes and owner/group. With `limits`, the change is decided by
/// `decide` on what the license's other machines (the owner's, under PER_USER leasing) and the
/// group's other machines hold, measured under the license lock as at activation. Pass only the
/// limits of what changed, so lowering a limit never blocks renaming a machine.
pub async fn update(
    db: &Db,
    m: &Machine,
    limits: Option<(&ActivationLimits, Decide)>,
    events: &[Raised],
) -> Result<Result<(), ActivationRefusal>> {
    const LOCK_GROUP: &str = "UPDATE groups SET updated_at = updated_at WHERE id = $1";
    db_run!(db, |pool| {
        let mut tx = pool.begin_write().await?;
        sqlx::query(LOCK_MACHINE_LICENSE).bind(m.account_id).bind(m.id).execute(&mut *tx).await?;
        if let Some((limits, decide)) = limits {
            if let Some((group, _)) = limits.group_machines {
                sqlx::query(LOCK_GROUP).bind(group).execute(&mut *tx).await?;
            }
            let usage = measure!(tx, m, limits, Some(m.id));
            if let Err(refusal) = decide(&usage, limits, m) {
                tx.rollback().await?;
                return Ok(Err(refusal));
            }
        }
        sqlx::query(UPDATE)
            .bind(m.account_id)
            .bind(m.id)
            .bind(&m.name)
            .bind(&m.ip)
            .bind(&m.hostname)
            .bind(&m.platform)
            .bind(m.cores)
            .bind(m.memory)
            .bind(m.disk)
            .bind(m.owner_id)
            .bind(m.group_id)
            .bind(m.max_processes)
            .bind(&m.metadata)
            .bind(m.updated_at)
            .execute(&mut *tx)
            .await?;
        crate::write_events!(tx, m.account_id, events);
        tx.commit().await?;
    });
    Ok(Ok(()))
}

/// Deactivates (deletes) a machine, counting against a license token's `maxDeactivations` in
/// the same transaction. `None` when that allowance is spent; else whether the machine existed.
pub async fn deactivate(
    db: &Db,
    account: Uuid,
    id: Uuid,
    token: Option<Uuid>,
    events: &[Raised],
) -> Result<Option<bool>> {
    const CONSUME: &str = "UPDATE tokens SET deactivations = deactivations + 1 WHERE id = $1 AND (max_deactivations IS NULL OR deactivations < max_deactivations)";
    const DELETE: &str = "DELETE FROM machines WHERE account_id = $1 AND id = $2";
    db_run!(db, |pool| {
        let mut tx = pool.begin_write().await?;
        sqlx::query(LOCK_MACHINE_LICENSE).bind(account).bind(id).execute(&mut *tx).await?;
        if let Some(token) = token {
            if sqlx::query(CONSUME).bind(token).execute(&mut *tx).await?.rows_affected() == 0 {
                tx.rollback().await?;
                return Ok(None);
            }
        }
        let n = sqlx::query(DELETE).bind(account).bind(id).execute(&mut *tx).await?.rows_affected();
        if n == 1 {
            crate::write_events!(tx, account, events);
        }
        tx.commit().await?;
        Ok(Some(n == 1))
    })
}

pub async fn set_heartbeat(
    db: &Db,
    account: Uuid,
    id: Uuid,
    at: Option<i64>,
    now: i64,
    events: &[Raised],
) -> Result<()> {
    const SQL: &str = "UPDATE machines SET last_heartbeat_at = $3, updated_at = $4 WHERE account_id = $1 AND id = $2";
    db_run!(db, |pool| {
        let mut tx = pool.begin_write().await?;
        let n = sqlx::query(SQL).bind(account).bind(id).bind(at).bind(now).execute(&mut *tx).await?.rows_affected();
        if n == 1 {
            crate::write_events!(tx, account, events);
        }
        tx.commit().await?;
    });
    Ok(())
}

/// Monitored machines that may be dead (no heartbeat since `before`, or never pinged and
/// created before it), with their policy's rules, for the culler to judge.
pub async fn stale(
    db: &Db,
    before: i64,
    limit: i64,
) -> Result<Vec<(Uuid, Uuid, Option<i64>, i64, sqlx::types::Json<crate::model::PolicyRules>)>> {
    const SQL: &str = "SELECT m.id, m.account_id, m.last_heartbeat_at, m.created_at, pol.rules FROM machines m JOIN licenses l ON l.id = m.license_id \
        JOIN policies pol ON pol.id = l.policy_id WHERE COALESCE(m.last_heartbeat_at, m.created_at) < $1 ORDER BY COALESCE(m.last_heartbeat_at, m.created_at) LIMIT $2";
    Ok(db_run!(db, |pool| sqlx::query_as(SQL).bind(before).bind(limit).fetch_all(pool).await?))
}

/// Deletes a machine only if its heartbeat is still what the culler saw.
pub async fn delete_if_unchanged(
    db: &Db,
    account: Uuid,
    id: Uuid,
    seen: Option<i64>,
    events: &[Raised],
) -> Result<bool> {
    const SQL: &str =
        "DELETE FROM machines WHERE id = $1 AND ((last_heartbeat_at IS NULL AND $2 IS NULL) OR last_heartbeat_at = $2)";
    Ok(db_run!(db, |pool| {
        let mut tx = pool.begin_write().await?;
        sqlx::query(LOCK_MACHINE_LICENSE).bind(account).bind(id).execute(&mut *tx).await?;
        let n = sqlx::query(SQL).bind(id).bind(seen).execute(&mut *tx).await?.rows_affected();
        if n == 1 {
            crate::write_events!(tx, account, events);
        }
        tx.commit().await?;
        n
    }) == 1)
}

pub async fn set_checked_out(db: &Db, account: Uuid, id: Uuid, now: i64) -> Result<()> {
    const SQL: &str = "UPDATE machines SET last_check_out_at = $3, updated_at = $3 WHERE account_id = $1 AND id = $2";
    let _turn = db.write_turn().await?;
    db_run!(db, |pool| sqlx::query(SQL).bind(account).bind(id).bind(now).execute(pool).await?.rows_affected());
    Ok(())
}
