//! Small filesystem helpers for files that hold secrets: the data folder, the SQLite files
//! (license keys are credentials) and the master key are for the server's user alone, whatever
//! the umask.

use std::io::Write;
use std::path::Path;

use anyhow::Context;

/// Writes `contents` to a new file only its owner can read (0600 on Unix).
pub fn write_private(path: &Path, contents: &[u8]) -> anyhow::Result<()> {
    if let Some(parent) = path.parent() {
        if !parent.as_os_str().is_empty() && !parent.exists() {
            private_dir(parent)?;
        }
    }
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(path).with_context(|| format!("cannot write {}", path.display()))?;
    file.write_all(contents)?;
    Ok(())
}

/// Creates `dir` (and missing parents) readable by its owner only (0700 on Unix); an existing
/// `dir` that others may read is tightened to 0700, with a log line saying so.
pub fn private_dir(dir: &Path) -> anyhow::Result<()> {
    if !dir.exists() {
        let mut builder = std::fs::DirBuilder::new();
        builder.recursive(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::DirBuilderExt;
            builder.mode(0o700);
        }
        builder.create(dir).with_context(|| format!("cannot create {}", dir.display()))?;
        // `mode` is filtered by the umask, which never adds bits: 0700 or tighter.
        return Ok(());
    }
    tighten(dir, 0o700)
}

/// Makes an existing file (or folder) `mode` when others may read it, and logs that it did.
pub fn tighten(path: &Path, mode: u32) -> anyhow::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let Ok(meta) = std::fs::metadata(path) else { return Ok(()) };
        let current = meta.permissions().mode() & 0o777;
        if current & 0o077 != 0 {
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
                .with_context(|| format!("cannot restrict {} to its owner", path.display()))?;
            tracing::warn!(path = %path.display(), from = format!("{current:o}"), to = format!("{mode:o}"),
                "restricted to its owner: it holds secrets");
        }
    }
    #[cfg(not(unix))]
    let _ = (path, mode);
    Ok(())
}

/// The SQLite database at `path`, made private before SQLite opens it: a new one is created
/// empty with mode 0600 (SQLite then gives its `-wal` and `-shm` files the same mode), and an
/// existing one and its companions are tightened to 0600.
pub fn private_database(path: &Path) -> anyhow::Result<()> {
    if !path.exists() {
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            options.mode(0o600);
        }
        match options.open(path) {
            Ok(_) => {}
            // Another process created it first: tighten it like any existing file.
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(e).with_context(|| format!("cannot create {}", path.display())),
        }
    }
    for suffix in ["", "-wal", "-shm", "-journal"] {
        let mut name = path.as_os_str().to_owned();
        name.push(suffix);
        tighten(Path::new(&name), 0o600)?;
    }
    Ok(())
}
