//! The database handle: one enum over the two engines Licensor runs on.
//!
//! SQL is written once with `$N` placeholders (SQLite's driver binds `$N` by number too) and run
//! through [`db_run!`], which expands the same body once per engine. Where the dialects differ a
//! store function matches on [`Db`] explicitly and says why.

use std::cell::RefCell;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{PgPool, SqlitePool};

mod writer;

static SQLITE_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");
static POSTGRES_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/postgres");

#[derive(Clone, Debug)]
pub enum Db {
    Sqlite(SqliteDb),
    Postgres(PgPool),
}

/// SQLite: the sqlx pool for everything, the file's path for [`SqliteDb::read_inline`], and the
/// connection of [`SqliteDb::write_inline`].
#[derive(Clone, Debug)]
pub struct SqliteDb {
    pub pool: SqlitePool,
    path: Arc<PathBuf>,
    writer: Arc<writer::Writer>,
}

/// Runs `$body` with `$pool` bound to the live engine's pool; the body is compiled once per engine.
#[macro_export]
macro_rules! db_run {
    ($db:expr, |$pool:ident| $body:expr) => {
        match $db {
            $crate::db::Db::Sqlite(sqlite) => {
                let $pool = &sqlite.pool;
                $body
            }
            $crate::db::Db::Postgres($pool) => $body,
        }
    };
}

/// Begins a transaction that writes.
///
/// On SQLite it takes the write lock at once (`BEGIN IMMEDIATE`), waiting out other writers
/// within the busy timeout. A deferred transaction that reads before its first write cannot
/// wait: if another connection wrote meanwhile, SQLite answers `SQLITE_BUSY` on the upgrade at
/// once, busy timeout or not, and the request failed with a 500. On PostgreSQL it is `BEGIN`.
///
/// On SQLite the writers of this process also take turns ([`write_turn`]) before they ask
/// SQLite for the lock: SQLite makes a writer that finds the lock taken sleep and poll (1 ms,
/// then 2, 5, 10, … up to 100 ms between tries), so under concurrent writes most of a
/// transaction's wait was sleeping past the moment the lock came free, and every retry cost a
/// wake-up. A queue in the process hands the turn over the moment the last writer commits.
/// Other processes on the same file (a second server, `licensor backup`) still meet the busy
/// timeout.
pub trait BeginWrite {
    type Database: sqlx::Database;
    fn begin_write(&self) -> impl std::future::Future<Output = Result<WriteTx<Self::Database>, sqlx::Error>> + Send;
}

/// A write transaction, holding this process's write turn on SQLite until it ends. Statements
/// run on `&mut *tx` as on a `sqlx::Transaction`.
pub struct WriteTx<DB: sqlx::Database> {
    tx: sqlx::Transaction<'static, DB>,
    _turn: Option<WriteTurn>,
}

impl<DB: sqlx::Database> WriteTx<DB> {
    pub async fn commit(self) -> Result<(), sqlx::Error> {
        self.tx.commit().await
    }

    pub async fn rollback(self) -> Result<(), sqlx::Error> {
        self.tx.rollback().await
    }
}

impl<DB: sqlx::Database> std::ops::Deref for WriteTx<DB> {
    type Target = DB::Connection;
    fn deref(&self) -> &DB::Connection {
        &self.tx
    }
}

impl<DB: sqlx::Database> std::ops::DerefMut for WriteTx<DB> {
    fn deref_mut(&mut self) -> &mut DB::Connection {
        &mut self.tx
    }
}

impl BeginWrite for SqlitePool {
    type Database = sqlx::Sqlite;
    async fn begin_write(&self) -> Result<WriteTx<sqlx::Sqlite>, sqlx::Error> {
        let turn = write_turn(self).await?;
        let tx = self.begin_with("BEGIN IMMEDIATE").await?;
        Ok(WriteTx { tx, _turn: Some(turn) })
    }
}

impl BeginWrite for PgPool {
    type Database = sqlx::Postgres;
    async fn begin_write(&self) -> Result<WriteTx<sqlx::Postgres>, sqlx::Error> {
        Ok(WriteTx { tx: self.begin().await?, _turn: None })
    }
}

/// This process's turn to write to the SQLite file behind `pool`, for writes outside
/// [`BeginWrite::begin_write`] (a single statement that writes); see there for why.
pub async fn write_turn(pool: &SqlitePool) -> Result<WriteTurn, sqlx::Error> {
    let file = turns_of(pool);
    // As long as SQLite's own busy timeout: a writer stuck longer is an error either way.
    match tokio::time::timeout(Duration::from_secs(30), file.turns.clone().acquire_owned()).await {
        Ok(Ok(permit)) => Ok(WriteTurn { _permit: permit, file, told: Default::default() }),
        _ => Err(sqlx::Error::PoolTimedOut),
    }
}

/// A turn to write ([`write_turn`]). When it ends, its writes committed or undone, whatever
/// watches the file's writes is told ([`watch_writes`]).
pub struct WriteTurn {
    _permit: tokio::sync::OwnedSemaphorePermit,
    file: Arc<FileTurns>,
    /// Whether [`WriteTurn::tell_watchers`] told them already (the turn's end then does not).
    told: std::sync::atomic::AtomicBool,
}

impl WriteTurn {
    /// Tells what watches the file's writes that writes ended. The turn's end tells them
    /// otherwise; call this only once the turn will write nothing more.
    pub fn tell_watchers(&self) {
        self.told.store(true, std::sync::atomic::Ordering::Relaxed);
        // Cloned out: a watcher may take a while (the license cache reads the notices).
        let watchers: Vec<_> = {
            let watchers = self.file.watchers.lock().unwrap_or_else(|e| e.into_inner());
            watchers.iter().filter_map(std::sync::Weak::upgrade).collect()
        };
        for watcher in watchers {
            watcher();
        }
    }

    /// The turn ends without writing anything a watcher cares about (nothing, or no license
    /// notice): its end tells the watchers nothing.
    pub fn wrote_nothing(&self) {
        self.told.store(true, std::sync::atomic::Ordering::Relaxed);
    }
}

impl Drop for WriteTurn {
    fn drop(&mut self) {
        if !*self.told.get_mut() {
            self.tell_watchers();
        }
    }
}

/// One SQLite file's queue of writers in this process, and what watches its writes.
struct FileTurns {
    path: PathBuf,
    turns: Arc<tokio::sync::Semaphore>,
    watchers: std::sync::Mutex<Vec<std::sync::Weak<dyn Fn() + Send + Sync>>>,
}

fn turns_of(pool: &SqlitePool) -> Arc<FileTurns> {
    static FILES: std::sync::OnceLock<std::sync::Mutex<Vec<Arc<FileTurns>>>> = std::sync::OnceLock::new();
    let options = pool.connect_options();
    let path = options.get_filename();
    let mut all = FILES.get_or_init(Default::default).lock().unwrap_or_else(|e| e.into_inner());
    match all.iter().find(|f| f.path == path) {
        Some(f) => f.clone(),
        None => {
            let f = Arc::new(FileTurns {
                path: path.to_path_buf(),
                turns: Arc::new(tokio::sync::Semaphore::new(1)),
                watchers: Default::default(),
            });
            all.push(f.clone());
            f
        }
    }
}

/// Calls `watcher` whenever a write turn on `pool`'s file ends in this process, for as long as
/// the caller keeps it; except a turn of the inline writer whose commit wrote no license notice
/// (it knows: an update hook sees the triggers' rows). The license cache reads the notices
/// there: a write made outside any request (a job, a test, a tool in the same process) is read
/// back at once too.
pub fn watch_writes(pool: &SqlitePool, watcher: &Arc<dyn Fn() + Send + Sync>) {
    let file = turns_of(pool);
    let mut watchers = file.watchers.lock().unwrap_or_else(|e| e.into_inner());
    watchers.retain(|w| w.strong_count() > 0);
    watchers.push(Arc::downgrade(watcher));
}

thread_local! {
    /// Read-only connections of this thread, by database file (a few at most).
    static READERS: RefCell<Vec<Reader>> = const { RefCell::new(Vec::new()) };
}

/// A read-only connection of [`SqliteDb::read_inline`]: its file, and whether it maps it.
struct Reader {
    path: Arc<PathBuf>,
    conn: rusqlite::Connection,
    mapped: bool,
}

impl SqliteDb {
    /// A handle whose pool never connects, for unit tests of code that only looks at which
    /// engine it runs on.
    #[cfg(test)]
    pub fn lazy_for_tests() -> SqliteDb {
        let options = SqliteConnectOptions::new().filename("/nonexistent/unit-test.db");
        SqliteDb {
            pool: SqlitePoolOptions::new().connect_lazy_with(options),
            path: Arc::new(PathBuf::new()),
            writer: writer::Writer::new(),
        }
    }

    /// Runs a short read on a read-only connection owned by the current thread, inline.
    ///
    /// Why: sqlx runs every SQLite statement on a worker thread of its own and hands the rows
    /// back through channels, two thread switches per statement; on the validation hot path those
    /// switches cost more than the indexed lookup itself. A point read on a WAL database never
    /// waits for writers, so running it on the async worker is as cheap as any other small
    /// computation there. Only for single-row lookups by index; everything else goes through sqlx.
    pub fn read_inline<T>(&self, f: impl FnOnce(&rusqlite::Connection) -> rusqlite::Result<T>) -> anyhow::Result<T> {
        READERS.with(|cell| {
            let mut readers = cell.borrow_mut();
            let index = match readers.iter().position(|r| Arc::ptr_eq(&r.path, &self.path) || *r.path == *self.path) {
                Some(i) => i,
                None => {
                    let conn = rusqlite::Connection::open_with_flags(
                        &*self.path,
                        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
                    )
                    .with_context(|| format!("cannot open {} for reading", self.path.display()))?;
                    conn.busy_timeout(Duration::from_secs(5))?;
                    conn.set_prepared_statement_cache_capacity(32);
                    if readers.len() >= 4 {
                        readers.remove(0);
                    }
                    readers.push(Reader { path: self.path.clone(), conn, mapped: false });
                    readers.len() - 1
                }
            };
            let reader = &mut readers[index];
            // Map the file while writes are few: point reads then cost no read() system call.
            // While they are many, read with pread: SQLite drops a reader's whole map at its
            // next read after any write, and the unmapping (TLB shoot-downs on every core) and
            // the page faults after it cost more than reading the few pages again.
            let map = !self.writes_are_many();
            if reader.mapped != map {
                reader.conn.pragma_update(None, "mmap_size", if map { MAP_SIZE } else { 0 })?;
                reader.mapped = map;
            }
            Ok(f(&reader.conn)?)
        })
    }
}

/// How much of the database file a connection maps: the readers (see
/// [`SqliteDb::read_inline`]) and the inline writer.
const MAP_SIZE: i64 = 256 * 1024 * 1024;

/// Connections per node: `LICENSOR_DATABASE_POOL`, else the engine's default.
fn pool_size(default: u32) -> u32 {
    std::env::var("LICENSOR_DATABASE_POOL").ok().and_then(|v| v.parse().ok()).filter(|n| *n > 0).unwrap_or(default)
}

/// The file an SQLite URL names (`sqlite:PATH`, `sqlite://PATH` or a bare path); `None` for
/// PostgreSQL.
pub fn sqlite_path(url: &str) -> Option<PathBuf> {
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        return None;
    }
    let path = url.strip_prefix("sqlite://").or_else(|| url.strip_prefix("sqlite:")).unwrap_or(url);
    Some(PathBuf::from(path.split('?').next().unwrap_or(path)))
}

impl Db {
    /// Opens `url` (`sqlite:PATH`, a bare file path, or `postgres://…`). `schema` confines a
    /// PostgreSQL connection to one schema (created if missing); tests use it for isolation.
    pub async fn connect(url: &str, schema: Option<&str>) -> anyhow::Result<Db> {
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            let mut options = PgConnectOptions::from_str(url).context("invalid PostgreSQL URL")?;
            if let Some(schema) = schema {
                if !schema.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                    anyhow::bail!("schema names may hold only letters, digits and '_'");
                }
                let setup = PgPoolOptions::new()
                    .max_connections(1)
                    .connect_with(options.clone())
                    .await
                    .context("cannot connect to PostgreSQL")?;
                let ddl = format!("CREATE SCHEMA IF NOT EXISTS \"{schema}\"");
                sqlx::raw_sql(&ddl).execute(&setup).await?;
                setup.close().await;
                options = options.options([("search_path", schema)]);
            }
            let pool = PgPoolOptions::new()
                .max_connections(pool_size(16))
                // A checked-out connection that turns out dead fails its query and is dropped;
                // pinging on every acquire would double the round trips of each request.
                .test_before_acquire(false)
                .acquire_timeout(Duration::from_secs(10))
                .connect_with(options)
                .await
                .context("cannot connect to PostgreSQL")?;
            Ok(Db::Postgres(pool))
        } else {
            let path = url.strip_prefix("sqlite://").or_else(|| url.strip_prefix("sqlite:")).unwrap_or(url);
            if path.contains(":memory:") || path.contains("mode=memory") {
                // Every pooled connection would get a database of its own.
                anyhow::bail!("in-memory SQLite is not supported; give a file path (a temp dir will do)");
            }
            if let Some(parent) = Path::new(path).parent() {
                // A folder the operator named may be shared (`/var/lib`): only a folder created
                // here is made private; the database files always are.
                if !parent.as_os_str().is_empty() && !parent.exists() {
                    crate::fsutil::private_dir(parent)?;
                }
            }
            crate::fsutil::private_database(Path::new(path))?;
            let options = SqliteConnectOptions::new()
                .filename(path)
                .create_if_missing(true)
                .journal_mode(SqliteJournalMode::Wal)
                .synchronous(SqliteSynchronous::Normal)
                .foreign_keys(true)
                .busy_timeout(Duration::from_secs(30));
            let pool = SqlitePoolOptions::new()
                .max_connections(pool_size(4))
                .test_before_acquire(false)
                .acquire_timeout(Duration::from_secs(30))
                .connect_with(options)
                .await
                .with_context(|| format!("cannot open SQLite database {path}"))?;
            Ok(Db::Sqlite(SqliteDb { pool, path: Arc::new(PathBuf::from(path)), writer: writer::Writer::new() }))
        }
    }

    /// On SQLite, this process's turn to write ([`write_turn`]), for a statement that writes
    /// outside a transaction; on PostgreSQL, nothing.
    pub async fn write_turn(&self) -> Result<Option<WriteTurn>, sqlx::Error> {
        match self {
            Db::Sqlite(s) => write_turn(&s.pool).await.map(Some),
            Db::Postgres(_) => Ok(None),
        }
    }

    pub async fn migrate(&self) -> anyhow::Result<()> {
        match self {
            Db::Sqlite(s) => SQLITE_MIGRATIONS.run(&s.pool).await?,
            Db::Postgres(pool) => POSTGRES_MIGRATIONS.run(pool).await?,
        }
        Ok(())
    }

    /// Whether this node can serve: the database answers within two seconds and every
    /// migration this binary knows has been applied. `Err` says why not.
    pub async fn readiness(&self) -> Result<(), String> {
        let migrator = match self {
            Db::Sqlite(_) => &SQLITE_MIGRATIONS,
            Db::Postgres(_) => &POSTGRES_MIGRATIONS,
        };
        let applied = async {
            db_run!(self, |pool| sqlx::query_scalar::<_, i64>("SELECT version FROM _sqlx_migrations WHERE success")
                .fetch_all(pool)
                .await)
        };
        let applied = match tokio::time::timeout(Duration::from_secs(2), applied).await {
            Ok(Ok(v)) => v,
            Ok(Err(e)) => return Err(format!("database error: {e}")),
            Err(_) => return Err("the database did not answer within 2 s".into()),
        };
        let missing: Vec<String> = migrator
            .iter()
            .filter(|m| !m.migration_type.is_down_migration() && !applied.contains(&m.version))
            .map(|m| m.version.to_string())
            .collect();
        if missing.is_empty() {
            Ok(())
        } else {
            Err(format!("migrations not applied: {}", missing.join(", ")))
        }
    }

    /// Refreshes the statistics the query planner chooses indexes by. Without them SQLite
    /// guesses, and guesses wrong on big tables: listing expired licenses walked a million rows
    /// by creation time instead of reading the few by the expiry index. `PRAGMA optimize`
    /// analyzes only the tables that changed enough, each on a sample (`analysis_limit`), so it
    /// costs milliseconds. PostgreSQL's autovacuum keeps its own statistics.
    pub async fn optimize(&self) -> anyhow::Result<()> {
        if let Db::Sqlite(s) = self {
            let analyzed: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM sqlite_master WHERE name = 'sqlite_stat1'")
                .fetch_one(&s.pool)
                .await?;
            // Before SQLite 3.46 `optimize` skips tables never analyzed: the first time, analyze.
            // One string, so the limit applies on the connection that analyzes.
            let sql = if analyzed == 0 {
                "PRAGMA analysis_limit = 1000; ANALYZE;"
            } else {
                "PRAGMA analysis_limit = 1000; PRAGMA optimize = 0x10002;"
            };
            sqlx::raw_sql(sql).execute(&s.pool).await?;
        }
        Ok(())
    }

    /// Pool connections: (open, idle, maximum).
    pub fn pool_usage(&self) -> (u32, u32, u32) {
        db_run!(self, |pool| (
            pool.size(),
            u32::try_from(pool.num_idle()).unwrap_or(u32::MAX),
            pool.options().get_max_connections()
        ))
    }

    pub fn engine(&self) -> &'static str {
        match self {
            Db::Sqlite(_) => "sqlite",
            Db::Postgres(_) => "postgres",
        }
    }

    pub async fn close(&self) {
        if let Db::Sqlite(s) = self {
            s.close_writer();
        }
        db_run!(self, |pool| pool.close().await)
    }
}

/// True when `err` is a unique-constraint violation, on either engine.
pub fn is_unique_violation(err: &sqlx::Error) -> bool {
    matches!(err, sqlx::Error::Database(e) if e.is_unique_violation())
}

/// True when `err` is PostgreSQL refusing text it cannot hold (a NUL character: SQLSTATE 22021,
/// or an untranslatable character: 22P05).
pub fn is_unstorable_text(err: &sqlx::Error) -> bool {
    matches!(err, sqlx::Error::Database(e) if matches!(e.code().as_deref(), Some("22021" | "22P05")))
}

/// True when `err` says the database was too busy to take the lock (SQLite) or the
/// transaction lost a serialization race (PostgreSQL): the caller may retry.
pub fn is_contention(err: &sqlx::Error) -> bool {
    match err {
        sqlx::Error::Database(e) => {
            let code = e.code();
            let code = code.as_deref().unwrap_or("");
            matches!(code, "5" | "6" | "517" | "40001" | "40P01")
        }
        _ => false,
    }
}
