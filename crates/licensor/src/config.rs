//! Server settings: every one a CLI flag and a `LICENSOR_` environment variable.

use std::path::PathBuf;

use clap::Args;

#[derive(Clone, Args)]
pub struct DatabaseArgs {
    /// Database URL: `sqlite:PATH` (default: an SQLite file in the data folder) or
    /// `postgres://USER@HOST/DB` for several nodes sharing one database.
    #[arg(long, env = "LICENSOR_DATABASE_URL")]
    pub database_url: Option<String>,

    /// PostgreSQL schema to use (created if missing). Lets several deployments share a database.
    #[arg(long, env = "LICENSOR_DATABASE_SCHEMA")]
    pub database_schema: Option<String>,

    /// Folder for the SQLite database, the generated master key and first-run credentials.
    #[arg(long, env = "LICENSOR_DATA_DIR", default_value = "licensor-data")]
    pub data_dir: PathBuf,

    /// 64 hex characters sealing account private keys at rest. Every node sharing a database
    /// must use the same key. When unset, one is generated into `<data-dir>/master.key`.
    #[arg(long, env = "LICENSOR_MASTER_KEY", hide_env_values = true)]
    pub master_key: Option<String>,
}

impl DatabaseArgs {
    pub fn database_url(&self) -> String {
        self.database_url.clone().unwrap_or_else(|| format!("sqlite:{}", self.data_dir.join("licensor.db").display()))
    }

    /// Where the generated master key lives when none is given.
    pub fn master_key_path(&self) -> PathBuf {
        self.data_dir.join("master.key")
    }

    /// The master key for `db`: the one given, else `<data-dir>/master.key`, created only for a
    /// database that holds no account yet (a lost key is an error, never silently replaced),
    /// and checked to open the database's keys.
    pub async fn master_key(&self, db: &crate::db::Db) -> anyhow::Result<crate::crypto::MasterKey> {
        let path = self.master_key_path();
        let key = match &self.master_key {
            Some(hex) => crate::crypto::MasterKey::from_hex(hex)?,
            None if path.exists() => crate::crypto::MasterKey::load(&path)?,
            None if crate::store::accounts::count(db).await? > 0 => anyhow::bail!(
                "{} is missing, and this database holds accounts sealed with it: restore the file or set \
                 LICENSOR_MASTER_KEY; a new key could not open them",
                path.display()
            ),
            None => crate::crypto::MasterKey::load_or_create(&path)?,
        };
        crate::bootstrap::check_master_key(db, &key).await?;
        Ok(key)
    }

    pub async fn connect(&self) -> anyhow::Result<crate::db::Db> {
        // The data folder holds the master key, first-run credentials and (by default) the
        // database: the server's user alone may read it. A missing one is created private
        // when something is first written there.
        if self.data_dir.exists() {
            crate::fsutil::private_dir(&self.data_dir)?;
        }
        let db = crate::db::Db::connect(&self.database_url(), self.database_schema.as_deref()).await?;
        db.migrate().await?;
        Ok(db)
    }
}
