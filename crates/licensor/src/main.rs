//! The `licensor` command: serve, setup, migrate.

use std::net::SocketAddr;

use anyhow::Context;
use clap::{Parser, Subcommand};
use licensor::config::DatabaseArgs;

#[derive(Parser)]
#[command(name = "licensor", version, about = "Self-hosted software-licensing server")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the HTTP server (migrations run first; an empty database gets a `default` account).
    Serve {
        /// Address to listen on.
        #[arg(long, env = "LICENSOR_LISTEN", default_value = "127.0.0.1:8080")]
        listen: SocketAddr,
        /// Account (id or slug) served at `/v1/…` without the `accounts/{account}` segment, as
        /// self-hosted Keygen does. Defaults to the only account, when there is one.
        #[arg(long, env = "LICENSOR_ACCOUNT")]
        account: Option<String>,
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
    /// Apply database migrations and exit.
    Migrate {
        #[command(flatten)]
        db: DatabaseArgs,
    },
}

fn init_tracing() {
    use tracing_subscriber::EnvFilter;
    let filter =
        EnvFilter::try_from_env("LICENSOR_LOG").unwrap_or_else(|_| EnvFilter::new("info,sqlx=warn,tower_http=warn"));
    tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).init();
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

async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Serve { listen, account, db } => {
            let master = db.master_key()?;
            let pool = db.connect().await?;
            if let Some(path) = licensor::bootstrap::first_run(&pool, &master, &db.data_dir).await? {
                println!(
                    "Created account \"default\" and its admin; credentials and an admin token are in {}",
                    path.display()
                );
            }
            let listener =
                tokio::net::TcpListener::bind(listen).await.with_context(|| format!("cannot listen on {listen}"))?;
            tracing::info!(address = %listener.local_addr()?, engine = pool.engine(), "licensor listening");
            let state = licensor::app::AppState::with_default_account(pool.clone(), master, account);
            licensor::app::serve(listener, state, shutdown_signal()).await?;
            pool.close().await;
            Ok(())
        }
        Command::Setup { account, email, password, db } => {
            let master = db.master_key()?;
            let pool = db.connect().await?;
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
        Command::Migrate { db } => {
            let pool = db.connect().await?;
            println!("migrations applied ({})", pool.engine());
            pool.close().await;
            Ok(())
        }
    }
}

#[tokio::main]
async fn main() {
    init_tracing();
    let cli = Cli::parse();
    if let Err(e) = run(cli).await {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}
