//! Upgrading a database that already holds licenses: the migrations that reshape tables carry
//! the data across (0006 derives the counts, 0007 moves the validation instants), and the
//! triggers count from then on.

use licensor::db::Db;
use licensor::store::licenses;
use serde_json::json;
use uuid::Uuid;

/// Runs one statement on whichever engine `db` is.
macro_rules! exec {
    ($db:expr, $sql:expr $(, $bind:expr)*) => {
        match $db {
            Db::Sqlite(s) => sqlx::query($sql)$(.bind($bind))*.execute(&s.pool).await.map(|_| ()),
            Db::Postgres(p) => sqlx::query($sql)$(.bind($bind))*.execute(p).await.map(|_| ()),
        }
        .expect($sql)
    };
}

/// Applies only the migrations numbered below `before`, as an older release would have.
async fn migrate_below(db: &Db, before: &str) {
    let source = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("migrations").join(db.engine());
    let old = tempfile::tempdir().unwrap();
    for entry in std::fs::read_dir(source).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        if name.as_str() < before {
            std::fs::copy(&path, old.path().join(&name)).unwrap();
        }
    }
    let migrator = sqlx::migrate::Migrator::new(old.path()).await.unwrap();
    match db {
        Db::Sqlite(s) => migrator.run(&s.pool).await.unwrap(),
        Db::Postgres(p) => migrator.run(p).await.unwrap(),
    }
}

#[tokio::test]
async fn license_counts_and_validation_instants_survive_the_upgrade() {
    let dir = tempfile::tempdir().unwrap();
    let (url, schema) = crate::helpers::test_database(dir.path()).await;
    let db = Db::connect(&url, schema.as_deref()).await.unwrap();
    migrate_below(&db, "0006").await;

    let [account, product, policy, u1, u2, validated, fresh] = [(); 7].map(|_| Uuid::new_v4());
    exec!(&db, "INSERT INTO accounts (id, slug, name, ed25519_public, ed25519_secret, rsa_public, rsa_secret, created_at, updated_at) \
        VALUES ($1, $2, 'Upgrade', 'k', $3, 'k', $3, 0, 0)", account, format!("up-{}", account.simple()), vec![0u8]);
    exec!(
        &db,
        "INSERT INTO products (id, account_id, name, created_at, updated_at) VALUES ($1, $2, 'App', 0, 0)",
        product,
        account
    );
    exec!(&db, "INSERT INTO policies (id, account_id, product_id, name, rules, created_at, updated_at) VALUES ($1, $2, $3, 'P', $4, 0, 0)",
        policy, account, product, sqlx::types::Json(json!({})));
    for (user, email) in [(u1, "one@example.com"), (u2, "two@example.com")] {
        exec!(
            &db,
            "INSERT INTO users (id, account_id, email, role, created_at, updated_at) VALUES ($1, $2, $3, 'user', 0, 0)",
            user,
            account,
            email
        );
    }
    for (license, key, at) in [(validated, "UPGRADE-ONE", Some(1234i64)), (fresh, "UPGRADE-TWO", None)] {
        exec!(&db, "INSERT INTO licenses (id, account_id, product_id, policy_id, key, last_validated_at, created_at, updated_at) \
            VALUES ($1, $2, $3, $4, $5, $6, 0, 0)", license, account, product, policy, key, at);
    }
    for (license, fingerprint, cores) in [(validated, "a", Some(4i64)), (validated, "b", None), (fresh, "c", Some(2))] {
        exec!(&db, "INSERT INTO machines (id, account_id, license_id, fingerprint, cores, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, 0, 0)",
            Uuid::new_v4(), account, license, fingerprint, cores);
    }
    for user in [u1, u2] {
        exec!(
            &db,
            "INSERT INTO license_users (account_id, license_id, user_id, created_at) VALUES ($1, $2, $3, 0)",
            account,
            validated,
            user
        );
    }

    db.migrate().await.unwrap();
    let read = |id| {
        let db = &db;
        async move {
            let l = licenses::find(db, account, id).await.unwrap().unwrap();
            (l.machines_count, l.machines_cores, l.users_count, l.last_validated_at)
        }
    };
    assert_eq!(read(validated).await, (2, 4, 2, Some(1234)));
    assert_eq!(read(fresh).await, (1, 2, 0, None));

    // From here the triggers keep count, through cascades and moves too.
    exec!(&db, "DELETE FROM users WHERE id = $1", u1);
    exec!(&db, "UPDATE machines SET license_id = $1 WHERE fingerprint = 'a'", fresh);
    assert_eq!(read(validated).await, (1, 0, 1, Some(1234)));
    assert_eq!(read(fresh).await, (2, 6, 0, None));

    if let (Db::Postgres(pool), Some(schema)) = (&db, schema) {
        sqlx::raw_sql(&format!("DROP SCHEMA IF EXISTS \"{schema}\" CASCADE")).execute(pool).await.unwrap();
    }
    db.close().await;
}

/// SQLite's license notices (migration 0022) fire on a real change to any column of a license
/// or a machine, and on none for a no-op: their conditions must name every column, including
/// columns a later migration adds.
#[tokio::test]
async fn sqlite_license_notices_name_every_column() {
    let dir = tempfile::tempdir().unwrap();
    let (url, schema) = crate::helpers::test_database(dir.path()).await;
    let db = Db::connect(&url, schema.as_deref()).await.unwrap();
    db.migrate().await.unwrap();
    let Db::Sqlite(s) = &db else { return };
    for (table, trigger) in [("licenses", "licenses_noticed"), ("machines", "machines_noticed")] {
        let sql: String = sqlx::query_scalar("SELECT sql FROM sqlite_master WHERE type = 'trigger' AND name = $1")
            .bind(trigger)
            .fetch_one(&s.pool)
            .await
            .unwrap();
        let columns: Vec<String> =
            sqlx::query_scalar("SELECT name FROM pragma_table_info($1)").bind(table).fetch_all(&s.pool).await.unwrap();
        assert!(columns.len() > 10, "{table}: {columns:?}");
        let condition = &sql[..sql.find("BEGIN").unwrap()];
        for column in columns {
            for side in ["OLD", "NEW"] {
                let named = condition.split(|c: char| !(c.is_alphanumeric() || c == '_' || c == '.'));
                assert!(
                    named.into_iter().any(|w| w == format!("{side}.{column}")),
                    "{trigger} does not compare {side}.{column}"
                );
            }
        }
    }
}
