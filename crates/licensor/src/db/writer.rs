//! SQLite's inline write path: hot write transactions run on one read-write connection of
//! the process's own, on the task of whichever request leads the next commit, several at once.
//!
//! Why inline: sqlx runs each SQLite statement on a worker thread of the connection and hands
//! the rows back through channels. An activation is eight statements, so sixteen thread
//! wake-ups, and under load the futex wake-ups and context switches were a third of the
//! server's CPU (perf, 2026-12-06). The pooled connections also took turns writing, so each
//! found its page cache stale (another connection had written since) and read its pages again.
//! Here a transaction costs no thread switch, and the one connection that writes keeps its cache.
//!
//! Why several per commit (group commit): each commit writes every page it changed to the WAL
//! again, and writes the WAL index, so a dozen small activations that each touch the same
//! table's last page, the same index pages and the same counters wrote those pages a dozen
//! times. Requests queue their transaction ([`Job`]); the request that gets the process's
//! write turn ([`super::write_turn`]) runs every queued transaction in one SQLite
//! transaction, each under its own savepoint (a refusal or an error undoes only its own
//! writes), commits once and hands every request its outcome. Nobody learns an outcome before
//! the commit that makes it durable: if the commit fails, every request of the batch gets the
//! error, refusals included (a refusal may have counted another request's uncommitted write).
//!
//! The write turn is taken first, so within the process the connection is never contended and
//! `BEGIN IMMEDIATE` finds SQLite's lock free unless another process (a second server on the
//! file) holds it: then the leader waits asynchronously and tries again, never blocking its
//! thread on SQLite's busy handler.

use std::borrow::Cow;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use sqlx::error::{DatabaseError, ErrorKind};
use tokio::sync::oneshot;

use super::SqliteDb;

/// The writer connection (opened on first use), the transactions waiting for the next
/// commit, and how many it committed.
#[derive(Default)]
pub(super) struct Writer {
    conn: Mutex<Option<rusqlite::Connection>>,
    queue: Mutex<Vec<Box<dyn Job>>>,
    next_id: AtomicU64,
    /// Commits, and the transactions they carried (`/metrics`).
    commits: AtomicU64,
    transactions: AtomicU64,
    /// Transactions committed since the last checkpoint was started.
    written: AtomicU64,
    checkpointing: Arc<AtomicBool>,
    /// The current second (high bits) and the commits made in it (low 20 bits).
    this_second: AtomicU64,
    /// Until when (ms) writes count as many ([`SqliteDb::writes_are_many`]).
    many_until: AtomicI64,
    /// Whether the batch running wrote a license notice (migration 0022's triggers): set by the
    /// connection's update hook, which sees the rows triggers insert too.
    noticed: Arc<AtomicBool>,
}

impl std::fmt::Debug for Writer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Writer").field("written", &self.written).finish_non_exhaustive()
    }
}

/// Commits in one second from which the readers stop mapping the file (see
/// `SqliteDb::read_inline`), for the next two seconds.
const MANY_WRITES: u64 = 50;

/// Transactions between two checkpoints. The writer does not checkpoint as it commits (that
/// would stall the task's thread for milliseconds every thousand pages); a background task
/// does, on a pooled connection, in the write turn, without blocking readers.
const CHECKPOINT_EVERY: u64 = 1024;

/// The most transactions one commit carries: each of them waits for the whole batch.
const MOST_PER_COMMIT: usize = 32;

/// A queued transaction, type-erased so one batch can hold different kinds.
trait Job: Send {
    /// Tells it from the other queued transactions.
    fn id(&self) -> u64;
    /// Whether its request stopped waiting (it is then skipped, as if never queued).
    fn abandoned(&self) -> bool;
    /// Runs it in the batch's transaction; `true` keeps its writes.
    fn run(&mut self, tx: &rusqlite::Transaction<'_>) -> bool;
    /// Hands its request the outcome once the batch's fate is known: `failed` is why the
    /// batch did not commit.
    fn finish(self: Box<Self>, failed: Option<&Failure>);
}

/// A transaction and where its outcome goes.
struct Pending<F, T, R> {
    id: u64,
    f: Option<F>,
    out: Option<rusqlite::Result<Result<T, R>>>,
    send: oneshot::Sender<Result<Result<T, R>, sqlx::Error>>,
}

impl<F, T, R> Job for Pending<F, T, R>
where
    F: FnOnce(&rusqlite::Transaction<'_>) -> rusqlite::Result<Result<T, R>> + Send,
    T: Send,
    R: Send,
{
    fn id(&self) -> u64 {
        self.id
    }

    fn abandoned(&self) -> bool {
        self.send.is_closed()
    }

    fn run(&mut self, tx: &rusqlite::Transaction<'_>) -> bool {
        let Some(f) = self.f.take() else { return false };
        // A panic is this transaction's own failure (its savepoint is undone), not that of the
        // request that happens to lead the commit, nor of the rest of the batch.
        let out = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| f(tx))).unwrap_or_else(|panic| {
            let what = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_default();
            Err(rusqlite::Error::ToSqlConversionFailure(format!("the transaction panicked: {what}").into()))
        });
        let keep = matches!(out, Ok(Ok(_)));
        self.out = Some(out);
        keep
    }

    fn finish(self: Box<Self>, failed: Option<&Failure>) {
        let outcome = match (self.out, failed) {
            // Its own error first: that is what the request did wrong.
            (Some(Err(e)), _) => Err(to_sqlx(e)),
            (_, Some(failure)) => Err(failure.to_sqlx()),
            (Some(Ok(out)), None) => Ok(out),
            (None, None) => Err(sqlx::Error::PoolClosed),
        };
        // The request may have stopped waiting meanwhile.
        let _ = self.send.send(outcome);
    }
}

/// How an attempt to begin a batch went.
enum Step {
    /// The batch ran: its transactions, and why it did not commit if it did not.
    Ran(Vec<Box<dyn Job>>, Option<Failure>),
    /// Another process holds SQLite's write lock.
    Busy,
    /// The writer cannot begin a transaction.
    Failed(Failure),
}

/// Why a batch did not commit, given to each of its requests as an error of its own.
#[derive(Debug)]
struct Failure {
    code: Option<std::os::raw::c_int>,
    message: String,
}

impl Failure {
    fn of(e: &rusqlite::Error) -> Failure {
        match e {
            rusqlite::Error::SqliteFailure(f, message) => {
                Failure { code: Some(f.extended_code), message: message.clone().unwrap_or_else(|| f.to_string()) }
            }
            other => Failure { code: None, message: other.to_string() },
        }
    }

    fn to_sqlx(&self) -> sqlx::Error {
        match self.code {
            Some(code) => sqlx::Error::Database(Box::new(InlineError { code, message: self.message.clone() })),
            None => sqlx::Error::Protocol(format!("SQLite: {}", self.message)),
        }
    }
}

impl SqliteDb {
    /// Runs `f` in a write transaction on the inline writer, in a commit it may share with
    /// other requests' transactions: its writes are kept when it returns `Ok(Ok(_))`, undone
    /// when it returns a refusal (`Ok(Err(_))`) or fails, and the outcome is returned once the
    /// commit is known. Only for short transactions of indexed statements: the request that
    /// leads a commit runs the batch on its own thread. `f` owns what it needs, since another
    /// request's task may run it.
    pub async fn write_inline<F, T, R>(&self, f: F) -> Result<Result<T, R>, sqlx::Error>
    where
        F: FnOnce(&rusqlite::Transaction<'_>) -> rusqlite::Result<Result<T, R>> + Send + 'static,
        T: Send + 'static,
        R: Send + 'static,
    {
        let (send, mut outcome) = oneshot::channel();
        let id = self.writer.next_id.fetch_add(1, Ordering::Relaxed);
        self.writer.lock_queue().push(Box::new(Pending { id, f: Some(f), out: None, send }));
        loop {
            tokio::select! {
                biased;
                done = &mut outcome => return done.unwrap_or(Err(sqlx::Error::PoolClosed)),
                turn = super::write_turn(&self.pool) => match turn {
                    Ok(turn) => self.lead(&turn).await,
                    Err(e) => {
                        // Withdrawn if still queued; a leader that already took it will
                        // answer, and the answer must not be lost (it may have committed).
                        let withdrawn = {
                            let mut queue = self.writer.lock_queue();
                            let at = queue.iter().position(|job| job.id() == id);
                            at.map(|i| queue.remove(i))
                        };
                        if withdrawn.is_some() {
                            return Err(e);
                        }
                        return (&mut outcome).await.unwrap_or(Err(sqlx::Error::PoolClosed));
                    }
                },
            }
        }
    }

    /// With the write turn held: runs the oldest [`MOST_PER_COMMIT`] queued transactions in one
    /// commit. One commit per turn, so pooled writers waiting for the turn are not starved.
    async fn lead(&self, turn: &super::WriteTurn) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            {
                let mut guard = self.writer.conn.lock().unwrap_or_else(|e| e.into_inner());
                {
                    let mut queue = self.writer.lock_queue();
                    queue.retain(|job| !job.abandoned());
                    if queue.is_empty() {
                        // Another leader ran this request's transaction (or it was dropped).
                        turn.wrote_nothing();
                        return;
                    }
                }
                if guard.is_none() {
                    match self.open_writer() {
                        Ok(conn) => *guard = Some(conn),
                        Err(e) => return self.fail_queued(&Failure::of(&e)),
                    }
                }
                let Some(conn) = guard.as_mut() else { return };
                self.writer.noticed.store(false, Ordering::Release);
                let step = match conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate) {
                    Ok(tx) => {
                        let mut jobs = {
                            let mut queue = self.writer.lock_queue();
                            let n = queue.len().min(MOST_PER_COMMIT);
                            queue.drain(..n).collect::<Vec<_>>()
                        };
                        let ran = run_batch(tx, &mut jobs);
                        if let Ok(n) = ran {
                            self.count_commit(n);
                        }
                        Step::Ran(jobs, ran.err())
                    }
                    Err(e) if is_busy(&e) && Instant::now() < deadline => Step::Busy,
                    Err(e) => Step::Failed(Failure::of(&e)),
                };
                // A connection left inside a transaction (its rollback failed too), or that
                // cannot begin one, would fail every later batch: the next opens a new one.
                if !guard.as_ref().is_some_and(rusqlite::Connection::is_autocommit) || matches!(step, Step::Failed(_)) {
                    *guard = None;
                }
                match step {
                    Step::Ran(jobs, failed) => {
                        // Committed (or undone): what watches the file's writes hears of it
                        // before any request learns its outcome; a batch that wrote no
                        // license notice (a license created, a rate counted) changed nothing
                        // the license cache holds, and costs it no read.
                        if self.writer.noticed.swap(false, Ordering::AcqRel) {
                            turn.tell_watchers();
                        } else {
                            turn.wrote_nothing();
                        }
                        for job in jobs {
                            job.finish(failed.as_ref());
                        }
                        return;
                    }
                    Step::Busy => {}
                    Step::Failed(failure) => return self.fail_queued(&failure),
                }
            }
            // Another process holds SQLite's write lock.
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }

    /// Gives every queued transaction `failure` (the writer cannot begin).
    fn fail_queued(&self, failure: &Failure) {
        let jobs = std::mem::take(&mut *self.writer.lock_queue());
        for job in jobs {
            job.finish(Some(failure));
        }
    }

    /// Closes the inline writer's connection (a later write opens it again).
    pub(super) fn close_writer(&self) {
        let conn = self.writer.conn.lock().unwrap_or_else(|e| e.into_inner()).take();
        drop(conn);
    }

    fn open_writer(&self) -> rusqlite::Result<rusqlite::Connection> {
        let conn = rusqlite::Connection::open_with_flags(
            &*self.path,
            rusqlite::OpenFlags::SQLITE_OPEN_READ_WRITE | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )?;
        // As the pool's connections are set up (`Db::connect`), but never wait on the busy
        // handler: `write_inline` waits asynchronously instead.
        // Savepoints (one per transaction of a batch) copy each page they first change to a
        // sub-journal: in memory, not a temporary file written with a syscall per page. The
        // cache holds the indexes every write walks (2 MB by default: they were read again).
        // The file is mapped as the readers map it: the pages beyond the cache are read
        // without a `pread` each (activation 9–14%, license creation 16–19% less CPU, BENCHMARKS
        // fourteenth run), and a mapping adds nothing to the process's own memory. SQLite drops
        // a connection's map after another connection's write; this one makes nearly all of
        // them, so unlike the readers' (`SqliteDb::read_inline`) its map stays.
        conn.execute_batch(
            "PRAGMA foreign_keys = ON; PRAGMA synchronous = NORMAL; PRAGMA busy_timeout = 0; \
             PRAGMA wal_autocheckpoint = 0; PRAGMA temp_store = MEMORY; PRAGMA cache_size = -16384;",
        )?;
        conn.pragma_update(None, "mmap_size", super::MAP_SIZE)?;
        conn.set_prepared_statement_cache_capacity(64);
        let noticed = self.writer.noticed.clone();
        conn.update_hook(Some(move |_: rusqlite::hooks::Action, _: &str, table: &str, _: i64| {
            if table == "license_notices" {
                noticed.store(true, Ordering::Release);
            }
        }));
        Ok(conn)
    }

    /// The inline writer's commits and the transactions they carried, since the start.
    pub fn inline_commits(&self) -> (u64, u64) {
        (self.writer.commits.load(Ordering::Relaxed), self.writer.transactions.load(Ordering::Relaxed))
    }

    /// Whether the inline writer has been committing many transactions a second lately.
    pub(super) fn writes_are_many(&self) -> bool {
        crate::time::now_ms() < self.writer.many_until.load(Ordering::Relaxed)
    }

    /// Counts a commit of `n` transactions: for the readers' map, and for the checkpoint.
    fn count_commit(&self, n: usize) {
        let n = u64::try_from(n).unwrap_or(u64::MAX);
        self.writer.commits.fetch_add(1, Ordering::Relaxed);
        self.writer.transactions.fetch_add(n, Ordering::Relaxed);
        let now = crate::time::now_ms();
        let second = u64::try_from(now / 1000).unwrap_or(0);
        let seen = self.writer.this_second.load(Ordering::Relaxed);
        if seen >> 20 != second {
            self.writer.this_second.store((second << 20) | 1, Ordering::Relaxed);
        } else if (self.writer.this_second.fetch_add(1, Ordering::Relaxed) & 0xF_FFFF) + 1 >= MANY_WRITES {
            self.writer.many_until.store(now + 2000, Ordering::Relaxed);
        }
        if self.writer.written.fetch_add(n, Ordering::Relaxed) + n < CHECKPOINT_EVERY
            || self.writer.checkpointing.swap(true, Ordering::AcqRel)
        {
            return;
        }
        self.writer.written.store(0, Ordering::Relaxed);
        let (pool, checkpointing) = (self.pool.clone(), self.writer.checkpointing.clone());
        tokio::spawn(async move {
            // In the write turn, as SQLite's own checkpoint runs in the committing writer: a
            // checkpoint that writers outrun never catches up, and the WAL is reset only after
            // one that copied every frame, so under steady writes it would grow without end.
            let done = match super::write_turn(&pool).await {
                Ok(_turn) => sqlx::query("PRAGMA wal_checkpoint(PASSIVE)").execute(&pool).await.map(drop),
                Err(e) => Err(e),
            };
            if let Err(e) = done {
                tracing::warn!(error = %e, "WAL checkpoint failed");
            }
            checkpointing.store(false, Ordering::Release);
        });
    }
}

/// Runs `jobs` in `tx`, each under a savepoint, and commits: `Ok` counts those that ran,
/// `Err` is why nothing was kept.
fn run_batch(tx: rusqlite::Transaction<'_>, jobs: &mut [Box<dyn Job>]) -> Result<usize, Failure> {
    let step =
        |sql: &str| tx.prepare_cached(sql).and_then(|mut s| s.execute([])).map(drop).map_err(|e| Failure::of(&e));
    let mut ran = 0;
    for job in jobs.iter_mut() {
        if job.abandoned() {
            continue;
        }
        ran += 1;
        step("SAVEPOINT job")?;
        if !job.run(&tx) {
            // Fails if SQLite already undid the whole transaction (an I/O error, a full disk):
            // then nothing of the batch is kept.
            step("ROLLBACK TO job")?;
        }
        step("RELEASE job")?;
    }
    tx.commit().map(|()| ran).map_err(|e| Failure::of(&e))
}

impl Writer {
    pub(super) fn new() -> Arc<Writer> {
        Arc::new(Writer::default())
    }

    fn lock_queue(&self) -> std::sync::MutexGuard<'_, Vec<Box<dyn Job>>> {
        self.queue.lock().unwrap_or_else(|e| e.into_inner())
    }
}

fn is_busy(e: &rusqlite::Error) -> bool {
    matches!(e, rusqlite::Error::SqliteFailure(f, _)
        if matches!(f.code, rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked))
}

/// A failure of the inline writer as the rest of the code knows database errors: a
/// constraint violation keeps its kind, so `is_unique_violation` and friends hold for both
/// write paths.
fn to_sqlx(e: rusqlite::Error) -> sqlx::Error {
    Failure::of(&e).to_sqlx()
}

#[derive(Debug)]
struct InlineError {
    code: std::os::raw::c_int,
    message: String,
}

impl std::fmt::Display for InlineError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for InlineError {}

impl DatabaseError for InlineError {
    fn message(&self) -> &str {
        &self.message
    }

    fn code(&self) -> Option<Cow<'_, str>> {
        Some(Cow::Owned(self.code.to_string()))
    }

    fn as_error(&self) -> &(dyn std::error::Error + Send + Sync + 'static) {
        self
    }

    fn as_error_mut(&mut self) -> &mut (dyn std::error::Error + Send + Sync + 'static) {
        self
    }

    fn into_error(self: Box<Self>) -> Box<dyn std::error::Error + Send + Sync + 'static> {
        self
    }

    fn kind(&self) -> ErrorKind {
        // SQLite's extended result codes, as sqlx's own SQLite driver maps them.
        match self.code {
            rusqlite::ffi::SQLITE_CONSTRAINT_UNIQUE | rusqlite::ffi::SQLITE_CONSTRAINT_PRIMARYKEY => {
                ErrorKind::UniqueViolation
            }
            rusqlite::ffi::SQLITE_CONSTRAINT_FOREIGNKEY => ErrorKind::ForeignKeyViolation,
            rusqlite::ffi::SQLITE_CONSTRAINT_NOTNULL => ErrorKind::NotNullViolation,
            rusqlite::ffi::SQLITE_CONSTRAINT_CHECK => ErrorKind::CheckViolation,
            _ => ErrorKind::Other,
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::db::{is_unique_violation, Db};

    #[tokio::test]
    async fn commits_rolls_back_refusals_and_keeps_constraint_kinds() {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::connect(&format!("sqlite:{}", dir.path().join("w.db").display()), None).await.unwrap();
        let Db::Sqlite(s) = &db else { panic!("SQLite expected") };
        let insert = |v: String| {
            move |tx: &rusqlite::Transaction<'_>| {
                tx.execute("INSERT INTO t (v) VALUES (?1)", [v]).map(|_| Ok::<(), ()>(()))
            }
        };
        let count = || s.read_inline(|c| c.query_row("SELECT COUNT(*) FROM t", [], |r| r.get::<_, i64>(0))).unwrap();
        s.write_inline(|tx| {
            tx.execute_batch("CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT UNIQUE)").map(Ok::<(), ()>)
        })
        .await
        .unwrap()
        .unwrap();

        // A refusal rolls back what the transaction wrote before it.
        let refused = s
            .write_inline(|tx| {
                tx.execute("INSERT INTO t (v) VALUES ('a')", [])?;
                Ok(Err::<(), _>("refused"))
            })
            .await
            .unwrap();
        assert_eq!(refused, Err("refused"));
        assert_eq!(count(), 0);

        s.write_inline(insert("a".into())).await.unwrap().unwrap();
        assert_eq!(count(), 1);
        // A constraint violation is the same kind of error as through sqlx.
        let e = s.write_inline(insert("a".into())).await.unwrap_err();
        assert!(is_unique_violation(&e), "{e:?}");
        assert_eq!(count(), 1);

        // Many commits a second turn the readers' map off for a while.
        assert!(!s.writes_are_many());
        for i in 0..120 {
            s.write_inline(insert(format!("v{i}"))).await.unwrap().unwrap();
        }
        assert!(s.writes_are_many());
        assert_eq!(count(), 121);
        db.close().await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_wal_stays_bounded_under_sustained_writes() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("wal.db");
        let db = Db::connect(&format!("sqlite:{}", file.display()), None).await.unwrap();
        let Db::Sqlite(s) = &db else { panic!("SQLite expected") };
        s.write_inline(|tx| tx.execute_batch("CREATE TABLE t (id INTEGER PRIMARY KEY, v BLOB)").map(Ok::<(), ()>))
            .await
            .unwrap()
            .unwrap();
        // Each commit appends at least one 4 KB page to the WAL: without checkpoints that
        // reset it, four times the checkpoint interval would leave it over 16 MB.
        let commits = 4 * super::CHECKPOINT_EVERY;
        for _ in 0..commits {
            s.write_inline(|tx| tx.execute("INSERT INTO t (v) VALUES (zeroblob(1000))", []).map(|_| Ok::<(), ()>(())))
                .await
                .unwrap()
                .unwrap();
        }
        let wal = std::fs::metadata(dir.path().join("wal.db-wal")).unwrap().len();
        assert!(wal > 0);
        assert!(wal < 10 * 1024 * 1024, "the WAL grew to {wal} bytes over {commits} commits");
        db.close().await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn queued_transactions_share_commits_and_keep_their_own_outcomes() {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::connect(&format!("sqlite:{}", dir.path().join("g.db").display()), None).await.unwrap();
        let Db::Sqlite(s) = &db else { panic!("SQLite expected") };
        s.write_inline(|tx| {
            tx.execute_batch("CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT UNIQUE)").map(Ok::<(), ()>)
        })
        .await
        .unwrap()
        .unwrap();
        let (commits_before, _) = s.inline_commits();

        // Hold the write turn while 96 transactions queue: a third insert a value of their own,
        // a third insert and then refuse, a third insert the same value (one of them wins).
        let turn = crate::db::write_turn(&s.pool).await.unwrap();
        let mut tasks = Vec::new();
        for i in 0..96 {
            let s = s.clone();
            tasks.push(tokio::spawn(async move {
                s.write_inline(move |tx| {
                    let v = if i % 3 == 2 { "same".to_owned() } else { format!("v{i}") };
                    tx.execute("INSERT INTO t (v) VALUES (?1)", [v])?;
                    Ok(if i % 3 == 1 { Err("refused") } else { Ok(i) })
                })
                .await
            }));
        }
        // One more that stops waiting before its turn: it must never run.
        let abandoned =
            s.write_inline(|tx| tx.execute("INSERT INTO t (v) VALUES ('abandoned')", []).map(|_| Ok::<(), ()>(())));
        assert!(tokio::time::timeout(std::time::Duration::from_millis(5), abandoned).await.is_err());
        while s.writer.lock_queue().len() < 97 {
            tokio::time::sleep(std::time::Duration::from_millis(1)).await;
        }
        drop(turn);

        let (mut kept, mut refused, mut taken) = (0, 0, 0);
        for (i, task) in tasks.into_iter().enumerate() {
            match task.await.unwrap() {
                Ok(Ok(n)) => {
                    assert_eq!(n, i);
                    kept += 1;
                }
                Ok(Err(r)) => {
                    assert_eq!((r, i % 3), ("refused", 1));
                    refused += 1;
                }
                Err(e) => {
                    assert!(is_unique_violation(&e), "{e:?}");
                    assert_eq!(i % 3, 2);
                    taken += 1;
                }
            }
        }
        assert_eq!((kept, refused, taken), (32 + 1, 32, 31));
        let rows = s.read_inline(|c| c.query_row("SELECT COUNT(*) FROM t", [], |r| r.get::<_, i64>(0))).unwrap();
        assert_eq!(rows, 33, "refused, failed and abandoned transactions keep nothing");
        let (commits, transactions) = s.inline_commits();
        assert_eq!(commits - commits_before, 3, "96 queued transactions, at most 32 per commit");
        assert_eq!(transactions, 97);
        db.close().await;
    }
}
