//! The database handle: one enum over the two engines Licensor runs on.
//!
//! SQL is written once with `$N` placeholders (SQLite's driver binds `$N` by number too) and run
//! through [`db_run!`], which expands the same body once per engine. Where the dialects differ a
//! store function matches on [`Db`] explicitly and says why.

use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use anyhow::Context;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{PgPool, SqlitePool};

static SQLITE_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");
static POSTGRES_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/postgres");

#[derive(Clone, Debug)]
pub enum Db {
    Sqlite(SqlitePool),
    Postgres(PgPool),
}

/// Runs `$body` with `$pool` bound to the live engine's pool; the body is compiled once per engine.
#[macro_export]
macro_rules! db_run {
    ($db:expr, |$pool:ident| $body:expr) => {
        match $db {
            $crate::db::Db::Sqlite($pool) => $body,
            $crate::db::Db::Postgres($pool) => $body,
        }
    };
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
                .max_connections(16)
                .acquire_timeout(Duration::from_secs(10))
                .connect_with(options)
                .await
                .context("cannot connect to PostgreSQL")?;
            Ok(Db::Postgres(pool))
        } else {
            let path = url.strip_prefix("sqlite://").or_else(|| url.strip_prefix("sqlite:")).unwrap_or(url);
            if let Some(parent) = Path::new(path).parent() {
                if !parent.as_os_str().is_empty() {
                    std::fs::create_dir_all(parent).with_context(|| format!("cannot create {}", parent.display()))?;
                }
            }
            let options = SqliteConnectOptions::new()
                .filename(path)
                .create_if_missing(true)
                .journal_mode(SqliteJournalMode::Wal)
                .synchronous(SqliteSynchronous::Normal)
                .foreign_keys(true)
                .busy_timeout(Duration::from_secs(30));
            let pool = SqlitePoolOptions::new()
                .max_connections(8)
                .acquire_timeout(Duration::from_secs(30))
                .connect_with(options)
                .await
                .with_context(|| format!("cannot open SQLite database {path}"))?;
            Ok(Db::Sqlite(pool))
        }
    }

    pub async fn migrate(&self) -> anyhow::Result<()> {
        match self {
            Db::Sqlite(pool) => SQLITE_MIGRATIONS.run(pool).await?,
            Db::Postgres(pool) => POSTGRES_MIGRATIONS.run(pool).await?,
        }
        Ok(())
    }

    pub fn engine(&self) -> &'static str {
        match self {
            Db::Sqlite(_) => "sqlite",
            Db::Postgres(_) => "postgres",
        }
    }

    pub async fn close(&self) {
        db_run!(self, |pool| pool.close().await)
    }
}

/// True when `err` is a unique-constraint violation, on either engine.
pub fn is_unique_violation(err: &sqlx::Error) -> bool {
    matches!(err, sqlx::Error::Database(e) if e.is_unique_violation())
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
