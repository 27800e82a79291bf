//! The `licensor` command: serve, setup, migrate.

use anyhow::Context;
use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};
use licensor::config::{file, DatabaseArgs};

// JSON:API documents are many small allocations; mimalloc serves them markedly faster than
// glibc's allocator under contention (see BENCHMARKS.md).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(name = "licensor", version, about = "Self-hosted software-licensing server")]
struct Cli {
    /// A TOML file of settings (keys are flag names); flags and environment variables win over it.
    #[arg(long, global = true, env = "LICENSOR_CONFIG")]
    config: Option<std::path::PathBuf>,
    /// Log lines as text for people, or one JSON object per line for log shippers.
    #[arg(long, global = true, env = "LICENSOR_LOG_FORMAT", default_value = "text")]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Subcommand)]
enum Command {
    /// Run the HTTP server (migrations run first; an empty database gets a `default` account).
    Serve {
        #[command(flatten)]
        serve: Box<licensor::config::ServeArgs>,
        #[command(flatten)]
        db: DatabaseArgs,
    },
    /// Create an account with its signing keys and first admin; prints one JSON object.
    Setup {
        #[arg(long)]
        account: String,
        #[arg(long)]
        email: String,
        #[arg(long, env = "LICENSOR_SETUP_PASSWORD", hide_env_values = true)]
        password: String,
        #[command(flatten)]
        db: DatabaseArgs,
    },
    /// Re-seal every account's private keys under a new master key, in one transaction. Stop
    /// the nodes first (they hold the old key) and start them with the new one.
    RotateMasterKey {
        /// Where to write the new key (64 hex characters, mode 0600); must not exist. Required
        /// when the current key comes from LICENSOR_MASTER_KEY; by default the new key replaces
        /// `<data-dir>/master.key`.
        #[arg(long)]
        new_key_file: Option<std::path::PathBuf>,
        #[command(flatten)]
        db: DatabaseArgs,
    },
    /// Ask a running server whether it is ready (`GET /readyz`): exits 0 when it answers 200,
    /// 1 otherwise. For container and systemd health probes.
    Healthcheck {
        /// The server's address; a wildcard listen address is reached on loopback.
        #[arg(long, env = "LICENSOR_LISTEN", default_value = "127.0.0.1:8080")]
        listen: std::net::SocketAddr,
        /// Give up after this long.
        #[arg(long, default_value = "5s", value_parser = licensor::config::parse_duration)]
        timeout: std::time::Duration,
        /// The server's certificate, when it serves HTTPS: the check speaks TLS and trusts
        /// exactly this certificate.
        #[arg(long, env = "LICENSOR_TLS_CERT")]
        tls_cert: Option<std::path::PathBuf>,
    },
    /// Copy the running SQLite database, consistently, to a new file (mode 0600). The copy is
    /// useless without the master key: keep that too (separately).
    Backup {
        /// The backup file to write; must not exist.
        #[arg(long)]
        to: std::path::PathBuf,
        #[command(flatten)]
        db: DatabaseArgs,
    },
    /// Put a backup in place of the SQLite database (every node stopped): checks it is intact
    /// and opens with the master key, keeps the replaced database as `*.before-restore-*`.
    Restore {
        /// The backup file.
        #[arg(long)]
        from: std::path::PathBuf,
        #[command(flatten)]
        db: DatabaseArgs,
    },
    /// Apply database migrations and exit.
    Migrate {
        #[command(flatten)]
        db: DatabaseArgs,
    },
    /// Print an account's public keys (what vendors embed in their products) as JSON.
    Keys {
        /// Account id or slug.
        #[arg(long)]
        account: String,
        #[command(flatten)]
        db: DatabaseArgs,
    },
    /// Verify a signed license key, a license or machine file, or an offline activation file,
    /// offline; prints what it carries as JSON, exits 1 if it does not verify.
    Verify {
        /// The account's public key: Ed25519 hex, an RSA PEM, or a file holding either.
        #[arg(long)]
        public_key: String,
        /// Scheme of a signed key (ED25519_SIGN, RSA_2048_PKCS1_PSS_SIGN_V2, …).
        #[arg(long, default_value = "ED25519_SIGN")]
        scheme: String,
        /// License key, to decrypt an encrypted license or machine file.
        #[arg(long)]
        license_key: Option<String>,
        /// Machine fingerprint: required for a machine file, which must name this machine (and,
        /// when encrypted, is decrypted with it).
        #[arg(long)]
        fingerprint: Option<String>,
        /// Deployment ID an activation file must be bound to.
        #[arg(long)]
        deployment: Option<String>,
        /// A file path, `-` for stdin, or a license key itself.
        input: String,
    },
    /// Check the configuration: prints every `serve` setting, its value (secrets redacted) and
    /// where it came from; exits 1 if a value is invalid.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// The product side of air-gapped activation, on the offline machine.
    #[command(subcommand)]
    Offline(Offline),
}

#[derive(Subcommand)]
enum ConfigCommand {
    /// Print the effective `serve` configuration.
    Check {
        #[command(flatten)]
        serve: Box<licensor::config::ServeArgs>,
        #[command(flatten)]
        db: DatabaseArgs,
    },
}

#[derive(Subcommand)]
enum Offline {
    /// Print this installation's deployment ID (created on first use).
    DeploymentId {
        #[arg(long)]
        dir: std::path::PathBuf,
        /// Four capital letters starting new deployment IDs.
        #[arg(long, default_value = "LCSR")]
        prefix: String,
    },
    /// Verify a license file from the activation server and install it.
    Install {
        #[arg(long)]
        dir: std::path::PathBuf,
        #[arg(long)]
        public_key: String,
        file: std::path::PathBuf,
    },
    /// Print the current license information (the product's `GET /admin/license`).
    Info {
        #[arg(long)]
        dir: std::path::PathBuf,
        #[arg(long)]
        public_key: String,
    },
    /// Forget the installed license (after `/deactivation` on the activation server).
    Remove {
        #[arg(long)]
        dir: std::path::PathBuf,
    },
}

fn init_tracing(format: LogFormat) {
    use tracing_subscriber::EnvFilter;
    let filter =
        EnvFilter::try_from_env("LICENSOR_LOG").unwrap_or_else(|_| EnvFilter::new("info,sqlx=warn,tower_http=warn"));
    let fmt = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    match format {
        LogFormat::Text => fmt.init(),
        // Fields flattened to the top level, the span list left out: one flat object a line.
        LogFormat::Json => fmt.json().flatten_event(true).with_current_span(false).with_span_list(false).init(),
    }
}

/// Without TLS there is nothing to reload, but `systemctl reload` still sends SIGHUP, whose
/// default action would end the process (and systemd counts that as a clean exit, so it would
/// not restart it). Log it instead.
fn ignore_hangups() {
    #[cfg(unix)]
    if let Ok(mut hup) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) {
        tokio::spawn(async move {
            while hup.recv().await.is_some() {
                tracing::info!("SIGHUP: nothing to reload without --tls-cert");
            }
        });
    }
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        if let Ok(mut s) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            s.recv().await;
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
    tracing::info!("shutting down");
}

async fn run(cli: Cli, matches: &clap::ArgMatches, loaded: &file::Loaded) -> anyhow::Result<()> {
    match cli.command {
        Command::Config(ConfigCommand::Check { serve, db: _ }) => config_check(matches, loaded, &serve),
        Command::Serve { serve, db } => {
            let open_files = licensor::server::raise_open_file_limit();
            // Held while serving: `licensor restore` will not replace the file under us.
            let _lock = db.sqlite_path().map(|p| licensor::backup::hold_shared(&p)).transpose()?;
            let pool = db.connect().await?;
            let master = db.master_key(&pool).await?;
            licensor::bootstrap::ensure_keys(&pool, &master).await?;
            if let Some(path) = licensor::bootstrap::first_run(&pool, &master, &db.data_dir).await? {
                println!(
                    "Created account \"default\" and its admin; credentials and an admin token are in {}",
                    path.display()
                );
            }
            let listener = tokio::net::TcpListener::bind(serve.listen)
                .await
                .with_context(|| format!("cannot listen on {}", serve.listen))?;
            let metrics = match serve.metrics_listen {
                Some(addr) => Some(
                    tokio::net::TcpListener::bind(addr).await.with_context(|| format!("cannot listen on {addr}"))?,
                ),
                None => None,
            };
            let limits = serve.limits().within_file_limit(open_files);
            tracing::info!(
                address = %listener.local_addr()?,
                engine = pool.engine(),
                max_connections = limits.max,
                open_files,
                "licensor listening"
            );
            let mut state =
                licensor::state::AppState::with_default_account(pool.clone(), master, serve.account.clone())
                    .with_rate_limits(serve.rate_limits())
                    .with_webhooks(serve.webhooks())
                    .with_tls(serve.tls_cert.is_some());
            if serve.no_console {
                state = state.without_console();
            }
            if !serve.metrics {
                state = state.without_request_metrics();
            }
            let options = licensor::app::Options { limits, metrics };
            match (&serve.tls_cert, &serve.tls_key) {
                (Some(cert), Some(key)) => {
                    let tls = licensor::tls::Tls::new(cert, key)?;
                    tls.watch();
                    tracing::info!(cert = %cert.display(), "serving HTTPS");
                    licensor::app::serve_with(listener, tls, state, options, shutdown_signal()).await?;
                }
                _ => {
                    ignore_hangups();
                    licensor::app::serve_with(listener, licensor::server::Plain, state, options, shutdown_signal())
                        .await?
                }
            }
            pool.close().await;
            Ok(())
        }
        Command::Setup { account, email, password, db } => {
            let pool = db.connect().await?;
            let master = db.master_key(&pool).await?;
            let created = licensor::bootstrap::create_account(&pool, &master, &account, &email, &password).await?;
            println!(
                "{}",
                serde_json::json!({
                    "account_id": created.account.id,
                    "account_slug": created.account.slug,
                    "user_id": created.admin.id,
                })
            );
            pool.close().await;
            Ok(())
        }
        Command::RotateMasterKey { new_key_file, db } => {
            let pool = db.connect().await?;
            let old = db.master_key(&pool).await?;
            let default_path = db.master_key_path();
            let (target, replaces_default) = match (new_key_file, &db.master_key) {
                (Some(path), _) => (path, false),
                (None, None) => (default_path.with_extension("key.new"), true),
                (None, Some(_)) => anyhow::bail!("the master key comes from LICENSOR_MASTER_KEY: pass --new-key-file"),
            };
            if target.exists() {
                anyhow::bail!("{} exists: move it away first", target.display());
            }
            let new = licensor::crypto::MasterKey::generate();
            // The new key is on disk before any account is sealed with it.
            licensor::fsutil::write_private(&target, new.to_hex().as_bytes())?;
            let n = licensor::bootstrap::rotate_master_key(&pool, &old, &new).await?;
            pool.close().await;
            if replaces_default {
                std::fs::rename(&target, &default_path)
                    .with_context(|| format!("cannot move {} to {}", target.display(), default_path.display()))?;
                println!("re-sealed the keys of {n} accounts; {} holds the new master key", default_path.display());
            } else {
                println!(
                    "re-sealed the keys of {n} accounts; {} holds the new master key: start every node with it",
                    target.display()
                );
            }
            Ok(())
        }
        Command::Healthcheck { listen, timeout, tls_cert } => {
            let status = tokio::time::timeout(timeout, readyz(listen, tls_cert.as_deref()))
                .await
                .map_err(|_| anyhow::anyhow!("no answer from {listen} within {timeout:?}"))??;
            println!("{status}");
            if !status.contains(" 200 ") {
                std::process::exit(1);
            }
            Ok(())
        }
        Command::Backup { to, db } => {
            let pool = db.open().await?;
            let bytes = licensor::backup::backup(&pool, &to).await?;
            pool.close().await;
            println!(
                "backed up to {} ({bytes} bytes); it opens only with this database's master key: keep that too",
                to.display()
            );
            Ok(())
        }
        Command::Restore { from, db } => {
            let path = db
                .sqlite_path()
                .context("restore replaces an SQLite database; for PostgreSQL use pg_restore (docs/operations.md)")?;
            let master = db.known_master_key()?;
            if master.is_none() {
                eprintln!("warning: no master key (LICENSOR_MASTER_KEY or <data-dir>/master.key): not checked");
            }
            let done = licensor::backup::restore(&from, &path, master.as_ref()).await?;
            println!(
                "restored {} ({} accounts, {} licenses) to {}{}",
                from.display(),
                done.accounts,
                done.licenses,
                path.display(),
                done.previous.map(|p| format!("; the database it replaced is {}", p.display())).unwrap_or_default()
            );
            Ok(())
        }
        Command::Migrate { db } => {
            let pool = db.connect().await?;
            println!("migrations applied ({})", pool.engine());
            pool.close().await;
            Ok(())
        }
        Command::Keys { account, db } => {
            let pool = db.connect().await?;
            let row = licensor::store::accounts::find(&pool, &account)
                .await?
                .with_context(|| format!("no account {account}"))?;
            println!(
                "{}",
                serde_json::json!({
                    "account_id": row.id,
                    "ed25519": row.ed25519_public,
                    "rsa": row.rsa_public,
                    "ecdsa": row.ecdsa_public,
                })
            );
            pool.close().await;
            Ok(())
        }
        Command::Verify { public_key, scheme, license_key, fingerprint, deployment, input } => {
            let key = public_key_arg(&public_key)?;
            let text = match input.as_str() {
                "-" => std::io::read_to_string(std::io::stdin())?,
                path if std::path::Path::new(path).is_file() => std::fs::read_to_string(path)?,
                literal => literal.to_string(),
            };
            println!(
                "{}",
                verify(&key, &text, &scheme, license_key.as_deref(), fingerprint.as_deref(), deployment.as_deref())?
            );
            Ok(())
        }
        Command::Offline(cmd) => offline(cmd),
    }
}

/// `GET /readyz` on `listen` over HTTP/1.1 (in TLS trusting `tls_cert`, when given); returns
/// the status line.
async fn readyz(mut listen: std::net::SocketAddr, tls_cert: Option<&std::path::Path>) -> anyhow::Result<String> {
    use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
    async fn ask(mut s: impl AsyncRead + AsyncWrite + Unpin, host: &str) -> anyhow::Result<String> {
        s.write_all(format!("GET /readyz HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n").as_bytes()).await?;
        let mut buf = Vec::new();
        // A TLS peer closing without close_notify still sent its answer.
        let _ = s.read_to_end(&mut buf).await;
        Ok(String::from_utf8_lossy(&buf).lines().next().unwrap_or("").to_string())
    }
    if listen.ip().is_unspecified() {
        listen.set_ip(if listen.is_ipv4() {
            std::net::Ipv4Addr::LOCALHOST.into()
        } else {
            std::net::Ipv6Addr::LOCALHOST.into()
        });
    }
    let tcp = tokio::net::TcpStream::connect(listen).await.with_context(|| format!("cannot connect to {listen}"))?;
    let host = listen.to_string();
    match tls_cert {
        None => ask(tcp, &host).await,
        Some(cert) => {
            let name = rustls::pki_types::ServerName::IpAddress(listen.ip().into());
            let tls = licensor::tls::pinned_client(cert)?.connect(name, tcp).await.context("TLS handshake failed")?;
            ask(tls, &host).await
        }
    }
}

/// `--public-key`: the key itself or a file holding it.
fn public_key_arg(arg: &str) -> anyhow::Result<licensor_client::PublicKey> {
    let text = if std::path::Path::new(arg).is_file() { std::fs::read_to_string(arg)? } else { arg.to_string() };
    Ok(licensor_client::PublicKey::parse(&text)?)
}

fn verify(
    key: &licensor_client::PublicKey,
    text: &str,
    scheme: &str,
    license_key: Option<&str>,
    fingerprint: Option<&str>,
    deployment: Option<&str>,
) -> anyhow::Result<serde_json::Value> {
    use licensor_client::{file, key as signed_key, opswat};
    let now = chrono::Utc::now();
    let t = text.trim();
    if t.starts_with("-----BEGIN LICENSE FILE-----") || t.starts_with("-----BEGIN MACHINE FILE-----") {
        let decrypt = license_key.map(|k| file::decryption_key(k, fingerprint));
        let f = file::verify(t, key, decrypt)?;
        if f.kind == file::Kind::Machine {
            // A machine file proves nothing on another machine: the fingerprint is required.
            let fp = fingerprint
                .ok_or_else(|| anyhow::anyhow!("a machine file is bound to a machine: pass --fingerprint"))?;
            f.check_machine(fp)?;
        }
        f.check_time(now)?;
        return Ok(serde_json::json!({ "kind": format!("{:?}", f.kind).to_lowercase(), "document": f.document }));
    }
    if t.lines().any(|l| l.starts_with("payload:")) {
        let p = opswat::verify(t, key, deployment)?;
        p.check_time(now)?;
        return Ok(serde_json::to_value(p)?);
    }
    let data = signed_key::verify(t, signed_key::Scheme::parse(scheme)?, key)?;
    Ok(serde_json::from_slice(&data).unwrap_or_else(|_| serde_json::json!(String::from_utf8_lossy(&data))))
}

fn offline(cmd: Offline) -> anyhow::Result<()> {
    use licensor_client::product::LicenseDir;
    let now = chrono::Utc::now();
    match cmd {
        Offline::DeploymentId { dir, prefix } => {
            println!("{}", licensor_client::product::deployment_id(&dir, &prefix)?);
        }
        Offline::Install { dir, public_key, file } => {
            let text = std::fs::read_to_string(&file).with_context(|| format!("cannot read {}", file.display()))?;
            let p = LicenseDir::new(dir, public_key_arg(&public_key)?, "LCSR").install(&text, now)?;
            println!("{}", serde_json::json!({ "success": true, "license": p.license, "expiration": p.expiration() }));
        }
        Offline::Info { dir, public_key } => {
            println!("{}", LicenseDir::new(dir, public_key_arg(&public_key)?, "LCSR").info(now)?);
        }
        Offline::Remove { dir } => licensor_client::product::remove(&dir)?,
    }
    Ok(())
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    // Before any thread exists: the config file and `*_FILE` variables become environment
    // variables, so clap applies one precedence to all of them.
    let loaded = match file::load(file::config_path(&args).as_deref(), &known_variables()) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::exit(2);
        }
    };
    let matches = Cli::command().get_matches();
    let cli = match Cli::from_arg_matches(&matches) {
        Ok(cli) => cli,
        Err(e) => e.exit(),
    };
    init_tracing(cli.log_format);
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("tokio runtime");
    if let Err(e) = runtime.block_on(run(cli, &matches, &loaded)) {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}

/// Every environment variable a command reads.
fn known_variables() -> std::collections::BTreeSet<String> {
    fn walk(cmd: &clap::Command, out: &mut std::collections::BTreeSet<String>) {
        for a in cmd.get_arguments() {
            if let Some(env) = a.get_env() {
                out.insert(env.to_string_lossy().into_owned());
            }
        }
        for sub in cmd.get_subcommands() {
            walk(sub, out);
        }
    }
    let mut out = std::collections::BTreeSet::new();
    walk(&Cli::command(), &mut out);
    out
}

/// Settings whose values are never printed.
const SECRETS: &[&str] = &["master_key", "password"];

/// `licensor config check`: every setting of `serve` with its value and where it came from.
fn config_check(
    matches: &clap::ArgMatches,
    loaded: &file::Loaded,
    serve: &licensor::config::ServeArgs,
) -> anyhow::Result<()> {
    let root = Cli::command();
    let check_cmd =
        root.find_subcommand("config").and_then(|c| c.find_subcommand("check")).context("no config check command")?;
    let sub =
        matches.subcommand_matches("config").and_then(|m| m.subcommand_matches("check")).context("not config check")?;
    println!("# licensor serve settings: flag > environment > *_FILE > config file > default");
    if let Some(p) = &loaded.path {
        println!("# config file: {}", p.display());
    }
    let args = root.get_arguments().chain(check_cmd.get_arguments());
    for arg in args {
        let id = arg.get_id().as_str();
        if ["help", "version", "config"].contains(&id) {
            continue;
        }
        let m = if root.get_arguments().any(|a| a.get_id() == id) { matches } else { sub };
        let value: Option<String> =
            m.get_raw(id).map(|vals| vals.map(|v| v.to_string_lossy().into_owned()).collect::<Vec<_>>().join(","));
        let env = arg.get_env().map(|e| e.to_string_lossy().into_owned());
        let origin = match m.value_source(id) {
            Some(clap::parser::ValueSource::CommandLine) => "flag".to_string(),
            Some(clap::parser::ValueSource::EnvVariable) => {
                let env = env.clone().unwrap_or_default();
                match loaded.origins.get(&env) {
                    Some(file::Origin::File) => "config file".into(),
                    Some(file::Origin::SecretFile) => format!("{env}_FILE"),
                    None => env,
                }
            }
            Some(clap::parser::ValueSource::DefaultValue) => "default".into(),
            _ => "unset".into(),
        };
        let shown = match value {
            None => "(unset)".to_string(),
            Some(_) if SECRETS.contains(&id) => "\"(redacted)\"".to_string(),
            Some(v) if id == "database_url" => format!("{:?}", file::redact_url(&v)),
            Some(v) => format!("{v:?}"),
        };
        println!("{:<28} = {:<40} # {origin}", id.replace('_', "-"), shown);
    }
    // What can be checked without starting: the TLS files load.
    if let (Some(cert), Some(key)) = (&serve.tls_cert, &serve.tls_key) {
        licensor::tls::Tls::new(cert, key)?;
    }
    eprintln!("configuration OK");
    Ok(())
}
