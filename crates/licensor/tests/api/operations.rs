//! What an operator relies on when running Licensor: private data files, connection limits and
//! timeouts, health, metrics, rate limits, backups, shutdown (docs/operations.md).

use std::os::unix::fs::PermissionsExt;

use crate::helpers::*;

fn mode(path: &std::path::Path) -> u32 {
    std::fs::metadata(path).unwrap_or_else(|e| panic!("{}: {e}", path.display())).permissions().mode() & 0o777
}

/// The SQLite files hold license keys, which are credentials: private whatever the umask, and
/// an existing data folder others could read is tightened on start.
#[tokio::test]
async fn the_data_folder_and_database_are_private() {
    let tmp = tempfile::tempdir().unwrap();
    let open = tmp.path().join("open");
    std::fs::create_dir(&open).unwrap();
    std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o755)).unwrap();
    let fresh = tmp.path().join("new/nested");
    for dir in [&open, &fresh] {
        let (server, _, _) = start_server(dir, &[]).await;
        assert_eq!(mode(dir), 0o700, "{}", dir.display());
        for file in ["licensor.db", "licensor.db-wal", "licensor.db-shm", "master.key"] {
            assert_eq!(mode(&dir.join(file)), 0o600, "{file}");
        }
        drop(server);
    }
    // A database made readable behind the server's back is tightened on the next start.
    std::fs::set_permissions(open.join("licensor.db"), std::fs::Permissions::from_mode(0o644)).unwrap();
    std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o755)).unwrap();
    let (_server, _, _) = start_server(&open, &[]).await;
    assert_eq!(mode(&open), 0o700);
    assert_eq!(mode(&open.join("licensor.db")), 0o600);
}
