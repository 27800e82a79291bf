//! SQLite's inline write path: hot write transactions run whole on the calling task, on one
//! read-write connection of the process's own.
//!
//! Why: sqlx runs each SQLite statement on a worker thread of the connection and hands the
//! rows back through channels. An activation is eight statements, so sixteen thread wake-ups,
//! and under load the futex wake-ups and context switches were a third of the server's CPU
//! (perf, 2026-12-06). The pooled connections also took turns writing, so each found its page
//! cache stale (another connection had written since) and read its pages again. Here a
//! transaction costs no thread switch, and the one connection that writes keeps its cache.
//!
//! The process's write turn ([`super::write_turn`]) is taken first, so within the process the
//! connection is never contended and `BEGIN IMMEDIATE` finds SQLite's lock free unless another
//! process (a second server on the file) holds it: then the task waits asynchronously and
//! tries again, never blocking its thread on SQLite's busy handler.

use std::borrow::Cow;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use sqlx::error::{DatabaseError, ErrorKind};

use super::SqliteDb;

/// The writer connection (opened on first use) and how many transactions it committed.
#[derive(Debug, Default)]
pub(super) struct Writer {
    conn: Mutex<Option<rusqlite::Connection>>,
    commits: AtomicU64,
    checkpointing: Arc<AtomicBool>,
    /// The current second (high bits) and the commits made in it (low 20 bits).
    this_second: AtomicU64,
    /// Until when (ms) writes count as many ([`SqliteDb::writes_are_many`]).
    many_until: AtomicI64,
}

/// Commits in one second from which the readers stop mapping the file (see
/// `SqliteDb::read_inline`), for the next two seconds.
const MANY_WRITES: u64 = 50;

/// Commits between two checkpoints. The writer does not checkpoint as it commits (that
/// would stall the task's thread for milliseconds every thousand pages); a background task
/// does, on a pooled connection, in the write turn, without blocking readers.
const CHECKPOINT_EVERY: u64 = 256;

impl SqliteDb {
    /// Runs `f` in a write transaction on the inline writer: committed when it returns
    /// `Ok(Ok(_))`, rolled back when it returns a refusal (`Ok(Err(_))`) or fails. Only for
    /// short transactions of indexed statements (the request waits on its own thread).
    pub async fn write_inline<T, R>(
        &self,
        f: impl FnOnce(&rusqlite::Transaction<'_>) -> rusqlite::Result<Result<T, R>>,
    ) -> Result<Result<T, R>, sqlx::Error> {
        let _turn = super::write_turn(&self.pool).await?;
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut f = Some(f);
        loop {
            let attempt = {
                let mut guard = self.writer.conn.lock().unwrap_or_else(|e| e.into_inner());
                if guard.is_none() {
                    *guard = Some(self.open_writer().map_err(to_sqlx)?);
                }
                let conn = guard.as_mut().ok_or(sqlx::Error::PoolClosed)?;
                let begun = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate);
                match begun {
                    Ok(tx) => {
                        let run = f.take().ok_or(sqlx::Error::PoolClosed)?;
                        Some(match run(&tx) {
                            Ok(Ok(v)) => tx.commit().map(|()| Ok(v)),
                            Ok(Err(refused)) => tx.rollback().map(|()| Err(refused)),
                            // Dropping the transaction rolls it back.
                            Err(e) => Err(e),
                        })
                    }
                    Err(e) if is_busy(&e) && Instant::now() < deadline => None,
                    Err(e) => Some(Err(e)),
                }
            };
            match attempt {
                Some(out) => {
                    if out.as_ref().is_ok_and(Result::is_ok) {
                        self.count_commit();
                    }
                    return out.map_err(to_sqlx);
                }
                // Another process holds SQLite's write lock.
                None => tokio::time::sleep(Duration::from_millis(2)).await,
            }
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
        conn.execute_batch(
            "PRAGMA foreign_keys = ON; PRAGMA synchronous = NORMAL; PRAGMA busy_timeout = 0; \
             PRAGMA wal_autocheckpoint = 0;",
        )?;
        conn.set_prepared_statement_cache_capacity(64);
        Ok(conn)
    }

    /// Whether the inline writer has been committing many transactions a second lately.
    pub(super) fn writes_are_many(&self) -> bool {
        crate::time::now_ms() < self.writer.many_until.load(Ordering::Relaxed)
    }

    fn count_commit(&self) {
        let now = crate::time::now_ms();
        let second = u64::try_from(now / 1000).unwrap_or(0);
        let seen = self.writer.this_second.load(Ordering::Relaxed);
        if seen >> 20 != second {
            self.writer.this_second.store((second << 20) | 1, Ordering::Relaxed);
        } else if (self.writer.this_second.fetch_add(1, Ordering::Relaxed) & 0xF_FFFF) + 1 >= MANY_WRITES {
            self.writer.many_until.store(now + 2000, Ordering::Relaxed);
        }
        if !(self.writer.commits.fetch_add(1, Ordering::Relaxed) + 1).is_multiple_of(CHECKPOINT_EVERY)
            || self.writer.checkpointing.swap(true, Ordering::AcqRel)
        {
            return;
        }
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

impl Writer {
    pub(super) fn new() -> Arc<Writer> {
        Arc::new(Writer::default())
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
    match e {
        rusqlite::Error::SqliteFailure(f, message) => {
            let message = message.unwrap_or_else(|| f.to_string());
            sqlx::Error::Database(Box::new(InlineError { code: f.extended_code, message }))
        }
        other => sqlx::Error::Protocol(format!("SQLite: {other}")),
    }
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
}
