//! Online backup and restore of the SQLite database (PostgreSQL has `pg_dump` and point-in-time
//! recovery; docs/operations.md).
//!
//! A backup is `VACUUM INTO`: one read transaction, so a consistent snapshot while the server
//! keeps writing (WAL readers never block writers), compacted into a plain database file. It is
//! useless without the master key that sealed its accounts' keys, which it does not contain.
//!
//! A running server holds a shared lock on `<database>.lock`; restore takes it exclusively, so
//! it refuses to swap the file under a live server.

use std::fs::File;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};

use crate::crypto::MasterKey;
use crate::db::Db;

/// The lock file beside the database at `db_path`.
fn lock_path(db_path: &Path) -> PathBuf {
    let mut name = db_path.as_os_str().to_owned();
    name.push(".lock");
    PathBuf::from(name)
}

/// Held by `licensor serve` for its life: a shared lock (several servers may share one SQLite
/// file), which `licensor restore` cannot take over.
pub struct ServerLock(#[allow(dead_code)] File);

pub fn hold_shared(db_path: &Path) -> anyhow::Result<ServerLock> {
    let path = lock_path(db_path);
    if let Some(dir) = db_path.parent().filter(|d| !d.as_os_str().is_empty() && !d.exists()) {
        crate::fsutil::private_dir(dir)?;
    }
    let file = open_lock(&path)?;
    match file.try_lock_shared() {
        Ok(()) => Ok(ServerLock(file)),
        Err(std::fs::TryLockError::WouldBlock) => {
            bail!("{} is locked: a restore is in progress", db_path.display())
        }
        Err(std::fs::TryLockError::Error(e)) => Err(e).with_context(|| format!("cannot lock {}", path.display())),
    }
}

fn open_lock(path: &Path) -> anyhow::Result<File> {
    let mut options = std::fs::OpenOptions::new();
    options.read(true).write(true).create(true).truncate(false);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    options.open(path).with_context(|| format!("cannot open {}", path.display()))
}

/// Writes a consistent copy of the running SQLite database to `to` (mode 0600); `to` must not
/// exist. Returns its size in bytes.
pub async fn backup(db: &Db, to: &Path) -> anyhow::Result<u64> {
    let Db::Sqlite(sqlite) = db else {
        bail!("backup copies SQLite databases; for PostgreSQL use pg_dump (docs/operations.md)")
    };
    if to.exists() {
        bail!("{} exists: choose a new file", to.display());
    }
    let target = to.to_str().with_context(|| format!("{} is not valid UTF-8", to.display()))?;
    // Created empty and private first: VACUUM INTO accepts an empty file, and keeps its mode.
    crate::fsutil::private_database(to)?;
    let result = sqlx::query("VACUUM INTO $1").bind(target).execute(&sqlite.pool).await;
    if let Err(e) = result {
        let _ = std::fs::remove_file(to);
        return Err(e).context("backup failed");
    }
    Ok(std::fs::metadata(to)?.len())
}

/// What a restore did.
pub struct Restored {
    pub accounts: i64,
    pub licenses: i64,
    /// Where the database it replaced now is, if there was one.
    pub previous: Option<PathBuf>,
}

/// Puts the backup `from` in place of the SQLite database at `db_path`, after checking that it
/// is intact, that `master` opens its keys, and that no server is using `db_path`. The database
/// it replaces is kept beside it as `<name>.before-restore-<unix time>`.
pub async fn restore(from: &Path, db_path: &Path, master: Option<&MasterKey>) -> anyhow::Result<Restored> {
    if !from.is_file() {
        bail!("{} is not a file", from.display());
    }
    // Check a private copy, never the backup itself (opening a database may write to it).
    let dir = db_path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    if !dir.exists() {
        crate::fsutil::private_dir(dir)?;
    }
    let staged =
        dir.join(format!("{}.restoring", db_path.file_name().and_then(|n| n.to_str()).unwrap_or("licensor.db")));
    let _ = std::fs::remove_file(&staged);
    crate::fsutil::private_database(&staged)?;
    std::fs::copy(from, &staged).with_context(|| format!("cannot copy {}", from.display()))?;
    let checked = check(&staged, master).await;
    let (accounts, licenses) = match checked {
        Ok(counts) => counts,
        Err(e) => {
            remove_database(&staged);
            return Err(e);
        }
    };

    let lock = open_lock(&lock_path(db_path))?;
    if let Err(e) = lock.try_lock() {
        remove_database(&staged);
        return Err(match e {
            std::fs::TryLockError::WouldBlock => {
                anyhow::anyhow!("a server is using {}: stop every node first", db_path.display())
            }
            std::fs::TryLockError::Error(e) => anyhow::Error::from(e).context("cannot lock the database"),
        });
    }
    let previous = if db_path.exists() {
        let stamp = crate::time::now_ms() / 1000;
        let mut kept = db_path.as_os_str().to_owned();
        kept.push(format!(".before-restore-{stamp}"));
        let kept = PathBuf::from(kept);
        for suffix in ["", "-wal", "-shm"] {
            let (mut a, mut b) = (db_path.as_os_str().to_owned(), kept.as_os_str().to_owned());
            a.push(suffix);
            b.push(suffix);
            if Path::new(&a).exists() {
                std::fs::rename(&a, &b).with_context(|| format!("cannot move {} aside", Path::new(&a).display()))?;
            }
        }
        Some(kept)
    } else {
        None
    };
    for suffix in ["-wal", "-shm"] {
        let mut s = staged.as_os_str().to_owned();
        s.push(suffix);
        let _ = std::fs::remove_file(Path::new(&s));
    }
    std::fs::rename(&staged, db_path).with_context(|| format!("cannot put the backup at {}", db_path.display()))?;
    if let Ok(d) = File::open(dir) {
        let _ = d.sync_all();
    }
    drop(lock);
    Ok(Restored { accounts, licenses, previous })
}

/// Opens the staged copy: intact, a Licensor database, sealed with `master` (when given).
async fn check(path: &Path, master: Option<&MasterKey>) -> anyhow::Result<(i64, i64)> {
    let url = format!("sqlite:{}", path.display());
    let db = Db::connect(&url, None).await.context("the backup is not an SQLite database")?;
    let result = async {
        let Db::Sqlite(s) = &db else { unreachable!("connected to a file") };
        let integrity: String = sqlx::query_scalar("PRAGMA integrity_check")
            .fetch_one(&s.pool)
            .await
            .context("the backup is not an SQLite database")?;
        if integrity != "ok" {
            bail!("the backup is damaged: {integrity}");
        }
        let accounts: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM accounts")
            .fetch_one(&s.pool)
            .await
            .context("the backup is not a Licensor database")?;
        let licenses: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM licenses").fetch_one(&s.pool).await?;
        if let Some(master) = master {
            crate::bootstrap::check_master_key(&db, master)
                .await
                .context("the backup was sealed with another master key")?;
        }
        // Checkpoint, so the single file holds everything before it is moved.
        sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)").execute(&s.pool).await?;
        Ok((accounts, licenses))
    }
    .await;
    db.close().await;
    result
}

fn remove_database(path: &Path) {
    for suffix in ["", "-wal", "-shm"] {
        let mut s = path.as_os_str().to_owned();
        s.push(suffix);
        let _ = std::fs::remove_file(Path::new(&s));
    }
}
