//! `licensor-bench`: seeds a database with N licenses, starts the real `licensor serve` binary
//! on it, and drives, in one run with the same connection count: `GET /v1/ping` (unsigned), a
//! signed 401 (the floor of any signed answer), `POST …/licenses/actions/validate-key`, the
//! same on a fleet of 10,000 licenses (the same working set at every size), activation,
//! validate-key on the activated licenses, and the same validations scoped to an activated
//! fingerprint (what SDKs send). Prints req/s, p50, p99 and the CPU the server (and, on PostgreSQL, the database) spent per request, then
//! issue 17's targets as ratios measured in the run: validate-key against the signed 401, its
//! CPU against ping + one Ed25519 signature + 30 µs, the scope's extra cost, and the server's
//! memory. On PostgreSQL it then validates on a second node of the same database and on SQLite
//! seeded alike, and prints PostgreSQL's throughput against SQLite's. Run it with `scripts/bench`.

mod console;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::Parser;
use licensor::crypto::MasterKey;
use licensor::db::Db;
use licensor::service::licenses::{self as issuance, NewLicense};
use serde_json::json;

#[derive(Parser)]
struct Args {
    /// Licenses to seed.
    #[arg(long, default_value_t = 100_000)]
    licenses: usize,
    /// Concurrent connections for every phase.
    #[arg(long, default_value_t = 64)]
    connections: usize,
    /// Seconds per measured phase (after a 2 s warm-up).
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    /// Database URL (default: a fresh SQLite file in a temp dir).
    #[arg(long)]
    database_url: Option<String>,
    /// The `licensor` binary to benchmark (default: target/release/licensor).
    #[arg(long)]
    server: Option<PathBuf>,
    /// Instead of the usual phases: what rate limiting and request metrics cost. Two servers on
    /// the seeded database, one with both off and one with both on (limits counted on every
    /// request but set too high to refuse), validate-key and ping interleaved off, on, off, on.
    #[arg(long)]
    operations: bool,
    /// Instead of the usual phases: what webhooks cost. validate-key and activation with no
    /// endpoint, then with one endpoint (subscribed to license.created, machine.created and
    /// machine.deleted, a local receiver answering 204), twice over, on one server started with
    /// `--no-webhook-delivery`; after each activation phase a second node on the same database
    /// sends the deliveries, and its CPU per delivery is measured apart.
    #[arg(long)]
    webhooks: bool,
    /// Instead of the usual phases: how long the admin console's pages take (overview, license
    /// list and search, a license) on the seeded database.
    #[arg(long)]
    console: bool,
    /// Runs the server under valgrind's callgrind and prints, for each phase, the instructions
    /// the server executed per request in its measured window: a count the machine's noise
    /// does not move, to compare two builds or two phases. Slow (about 50 times): use a few
    /// thousand licenses, a few connections and seconds. Counts user space only (no kernel).
    #[arg(long)]
    instructions: bool,
    /// With `--instructions`: keep callgrind's dumps in this directory (`cg.<pid>.<n>`, one per
    /// measured phase in order) for `callgrind_annotate`, instead of a temporary directory.
    #[arg(long, requires = "instructions")]
    callgrind_dir: Option<PathBuf>,
}

/// Rate limits that count every request and refuse none: what the counting costs.
const COUNTED_NEVER_REFUSED: &str = "1000000000/1s,1000000000/1m";

/// A running `licensor serve`: the process, its pid, its base URL.
struct Server {
    child: tokio::process::Child,
    pid: Option<u32>,
    base: String,
}

async fn start(
    server: &std::path::Path,
    url: &str,
    schema: Option<&str>,
    data_dir: &std::path::Path,
    master_hex: &str,
    env: &[(&str, &str)],
    client: &reqwest::Client,
) -> anyhow::Result<Server> {
    let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
    let mut cmd = match CALLGRIND.get() {
        Some(dir) => {
            let mut cmd = tokio::process::Command::new("valgrind");
            cmd.arg("--tool=callgrind").arg(format!("--callgrind-out-file={}/cg.%p", dir.display())).arg(server);
            cmd
        }
        None => tokio::process::Command::new(server),
    };
    cmd.arg("serve")
        .env("LICENSOR_LISTEN", format!("127.0.0.1:{port}"))
        .env("LICENSOR_DATABASE_URL", url)
        .env("LICENSOR_DATA_DIR", data_dir)
        .env("LICENSOR_MASTER_KEY", master_hex)
        .env("LICENSOR_LOG", "warn")
        .kill_on_drop(true);
    if let Some(s) = schema {
        cmd.env("LICENSOR_DATABASE_SCHEMA", s);
    }
    for (k, v) in env {
        cmd.env(k, v);
    }
    let child = cmd.spawn().context("cannot start licensor")?;
    let pid = child.id();
    let base = format!("http://127.0.0.1:{port}");
    // Under callgrind the server starts about 50 times slower.
    let attempts = if CALLGRIND.get().is_some() { 2400 } else { 200 };
    for _ in 0..attempts {
        if client.get(format!("{base}/v1/ping")).send().await.is_ok_and(|r| r.status().is_success()) {
            return Ok(Server { child, pid, base });
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    bail!("server did not come up")
}

/// Sends one validation (`body`, already JSON) to `url`: whether it answered VALID.
async fn post_validation(c: &reqwest::Client, url: String, body: String) -> bool {
    match c.post(url).header("content-type", "application/vnd.api+json").body(body).send().await {
        Ok(r) => valid(r).await,
        Err(_) => false,
    }
}

/// Licenses in the `validate fleet` phase's working set.
const FLEET: usize = 10_000;

/// One validate-key phase against `base`.
async fn validate_phase(
    name: &'static str,
    pid: Option<u32>,
    base: &str,
    account: uuid::Uuid,
    keys: Arc<Vec<String>>,
    client: &reqwest::Client,
    args: &Args,
) -> Phase {
    let validate_url = format!("{base}/v1/accounts/{account}/licenses/actions/validate-key");
    let c = client.clone();
    drive(name, pid, args.connections, args.seconds, move |conn, i| {
        let (c, u) = (c.clone(), validate_url.clone());
        let key = keys[(conn * 7919 + i * 104_729) % keys.len()].clone();
        async move {
            // Keys are hex and dashes: nothing to escape. The load generator's own CPU is shared
            // with the server, so it builds no JSON tree per request.
            let body = format!(r#"{{"meta":{{"key":"{key}"}}}}"#);
            post_validation(&c, u, body).await
        }
    })
    .await
}

/// A signed answer that reads nothing: an unauthenticated `GET …/licenses` is a 401 carrying
/// `Keygen-Signature`, the floor of any signed response.
async fn signed_401_phase(
    pid: Option<u32>,
    base: &str,
    account: uuid::Uuid,
    client: &reqwest::Client,
    args: &Args,
) -> Phase {
    let url = format!("{base}/v1/accounts/{account}/licenses");
    let c = client.clone();
    drive("signed 401", pid, args.connections, args.seconds, move |_, _| {
        let (c, u) = (c.clone(), url.clone());
        async move {
            c.get(u).send().await.is_ok_and(|r| {
                r.status() == reqwest::StatusCode::UNAUTHORIZED && r.headers().contains_key("keygen-signature")
            })
        }
    })
    .await
}

/// The CPU one Ed25519 signature of a response's signing string costs here, in µs: the
/// signed floor the validation budget is stated against.
fn ed25519_us(master: &MasterKey, account: &licensor::model::Account) -> anyhow::Result<f64> {
    use licensor::crypto::sign::{sign, SigAlg};
    let keys = licensor::crypto::AccountKeys::for_account(master, account)?;
    let data = format!(
        "(request-target): post /v1/accounts/{}/licenses/actions/validate-key\nhost: 127.0.0.1:8080\n\
         date: Sun, 06 Dec 2026 14:00:00 GMT\ndigest: sha-256=47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=",
        account.id
    );
    const N: u32 = 20_000;
    for _ in 0..1000 {
        sign(&keys, SigAlg::Ed25519, data.as_bytes())?;
    }
    let start = Instant::now();
    for _ in 0..N {
        std::hint::black_box(sign(&keys, SigAlg::Ed25519, std::hint::black_box(data.as_bytes()))?);
    }
    Ok(start.elapsed().as_secs_f64() * 1e6 / f64::from(N))
}

async fn ping_phase(name: &'static str, pid: Option<u32>, base: &str, client: &reqwest::Client, args: &Args) -> Phase {
    let ping_url = format!("{base}/v1/ping");
    let c = client.clone();
    drive(name, pid, args.connections, args.seconds, move |_, _| {
        let (c, u) = (c.clone(), ping_url.clone());
        async move { c.get(u).send().await.is_ok_and(|r| r.status().is_success()) }
    })
    .await
}

/// `--operations`: validate-key with rate limits and request metrics off, then on, twice over.
async fn operations(
    server: &std::path::Path,
    url: &str,
    schema: Option<&str>,
    master_hex: &str,
    account: uuid::Uuid,
    keys: Arc<Vec<String>>,
    args: &Args,
) -> anyhow::Result<()> {
    let client = reqwest::Client::builder().pool_max_idle_per_host(args.connections).build()?;
    let (dir_off, dir_on) = (tempfile::tempdir()?, tempfile::tempdir()?);
    let off_env = [
        ("LICENSOR_RATE_LIMITS", "off"),
        ("LICENSOR_ADDRESS_RATE_LIMITS", "off"),
        ("LICENSOR_LOGIN_RATE_LIMIT", "off"),
        ("LICENSOR_PASSWORD_CHANGE_RATE_LIMIT", "off"),
        ("LICENSOR_LICENSE_CHANGE_RATE_LIMIT", "off"),
        ("LICENSOR_METRICS", "false"),
    ];
    let on_env = [
        ("LICENSOR_RATE_LIMITS", COUNTED_NEVER_REFUSED),
        ("LICENSOR_ADDRESS_RATE_LIMITS", COUNTED_NEVER_REFUSED),
        ("LICENSOR_METRICS", "true"),
    ];
    let mut off = start(server, url, schema, dir_off.path(), master_hex, &off_env, &client).await?;
    let mut on = start(server, url, schema, dir_on.path(), master_hex, &on_env, &client).await?;
    println!(
        "connections: {}, {} s per phase; off = no rate limits, no request metrics",
        args.connections, args.seconds
    );
    let mut phases = Vec::new();
    for (off_name, on_name) in [("validate off 1", "validate on 1"), ("validate off 2", "validate on 2")] {
        phases.push(validate_phase(off_name, off.pid, &off.base, account, keys.clone(), &client, args).await);
        phases.push(validate_phase(on_name, on.pid, &on.base, account, keys.clone(), &client, args).await);
    }
    phases.push(ping_phase("ping off", off.pid, &off.base, &client, args).await);
    phases.push(ping_phase("ping on", on.pid, &on.base, &client, args).await);
    println!();
    for p in &phases {
        p.print();
    }
    let sum = |names: [&str; 2], f: &dyn Fn(&Phase) -> f64| {
        phases.iter().filter(|p| names.contains(&p.name)).map(f).sum::<f64>() / 2.0
    };
    let rps = |p: &Phase| p.rps();
    let cpu = |p: &Phase| p.per_request_us(p.server_cpu);
    let (off_rps, on_rps) =
        (sum(["validate off 1", "validate off 2"], &rps), sum(["validate on 1", "validate on 2"], &rps));
    let (off_cpu, on_cpu) =
        (sum(["validate off 1", "validate off 2"], &cpu), sum(["validate on 1", "validate on 2"], &cpu));
    println!();
    println!("validate-key throughput, on / off:     {:.3}", on_rps / off_rps);
    println!(
        "validate-key server CPU us/req, off → on: {off_cpu:.1} → {on_cpu:.1} ({:+.1}%)",
        (on_cpu / off_cpu - 1.0) * 100.0
    );
    let _ = off.child.kill().await;
    let _ = on.child.kill().await;
    Ok(())
}

struct Phase {
    name: &'static str,
    requests: usize,
    errors: usize,
    elapsed: Duration,
    latencies_us: Vec<u32>,
    /// CPU seconds the server process and this load generator used during the measured window.
    server_cpu: f64,
    client_cpu: f64,
    /// CPU seconds every `postgres` process on this machine used in the window (0 when the
    /// database is SQLite, inside the server).
    database_cpu: f64,
    /// Instructions the server executed in the window (`--instructions`).
    instructions: Option<u64>,
}

impl Phase {
    fn rps(&self) -> f64 {
        self.requests as f64 / self.elapsed.as_secs_f64()
    }
    fn pct(&self, p: f64) -> f64 {
        if self.latencies_us.is_empty() {
            return 0.0;
        }
        let i = ((self.latencies_us.len() as f64 - 1.0) * p).round() as usize;
        self.latencies_us[i] as f64 / 1000.0
    }
    fn print(&self) {
        let database = if self.database_cpu > 0.0 {
            format!("  postgres {:>5.1} us/req", self.per_request_us(self.database_cpu))
        } else {
            String::new()
        };
        println!(
            "{:<14} {:>8.0} req/s  p50 {:>6.2} ms  p99 {:>6.2} ms  server {:>5.1} us/req{database}  client {:>5.1} us/req  ({} requests, {} errors){}",
            self.name,
            self.rps(),
            self.pct(0.50),
            self.pct(0.99),
            self.per_request_us(self.server_cpu),
            self.per_request_us(self.client_cpu),
            self.requests,
            self.errors,
            self.instructions
                .map(|n| format!("  server {:.0} instructions/req", n as f64 / self.requests.max(1) as f64))
                .unwrap_or_default()
        );
    }
    fn per_request_us(&self, cpu_seconds: f64) -> f64 {
        cpu_seconds * 1e6 / self.requests.max(1) as f64
    }
}

/// CPU seconds (user + system) a process has used so far, from `/proc/{pid}/stat`; 0 where
/// there is no procfs.
fn cpu_seconds(pid: Option<u32>) -> f64 {
    let path = pid.map_or_else(|| "/proc/self/stat".to_string(), |p| format!("/proc/{p}/stat"));
    let Ok(stat) = std::fs::read_to_string(path) else { return 0.0 };
    // Fields after the parenthesised command name; utime and stime are fields 14 and 15.
    let Some(rest) = stat.rsplit_once(')').map(|(_, r)| r) else { return 0.0 };
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| fields.get(i).and_then(|f| f.parse::<f64>().ok()).unwrap_or(0.0);
    // In USER_HZ ticks, which Linux fixes at 100 for userspace on every architecture.
    (ticks(11) + ticks(12)) / 100.0
}

/// Whether the benchmarked database is PostgreSQL (whose processes' CPU is then measured).
static ON_POSTGRES: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// `--instructions`: where callgrind writes its counts (set once, before any server starts).
static CALLGRIND: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();

/// Runs `callgrind_control` with `arg` on `pid` (a server started under callgrind).
async fn callgrind_control(arg: &str, pid: u32) -> anyhow::Result<()> {
    let status = tokio::process::Command::new("callgrind_control")
        .arg(arg)
        .arg(pid.to_string())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .await
        .context("callgrind_control (valgrind) not found")?;
    if !status.success() {
        bail!("callgrind_control {arg} {pid} failed");
    }
    Ok(())
}

/// Dumps the counts since the last zeroing and returns the instructions executed.
async fn callgrind_dump(pid: u32) -> anyhow::Result<u64> {
    let dir = CALLGRIND.get().context("not under callgrind")?;
    callgrind_control("--dump", pid).await?;
    // The newest dump of this process: `cg.<pid>.<n>`.
    let prefix = format!("cg.{pid}.");
    let newest = std::fs::read_dir(dir)?
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let name = e.file_name().into_string().ok()?;
            let n: u64 = name.strip_prefix(&prefix)?.parse().ok()?;
            Some((n, e.path()))
        })
        .max_by_key(|(n, _)| *n)
        .context("no callgrind dump")?;
    let text = std::fs::read_to_string(&newest.1)?;
    text.lines()
        .find_map(|l| l.strip_prefix("summary: ").or_else(|| l.strip_prefix("totals: ")))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .context("a callgrind dump without totals")
}

/// CPU seconds used so far by every process named `postgres` (server and backends): what a
/// PostgreSQL-backed run costs the database, measured like the server's.
fn postgres_cpu_seconds() -> f64 {
    if !ON_POSTGRES.load(std::sync::atomic::Ordering::Relaxed) {
        return 0.0;
    }
    let Ok(entries) = std::fs::read_dir("/proc") else { return 0.0 };
    entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| std::fs::read_to_string(format!("/proc/{pid}/comm")).is_ok_and(|c| c.trim() == "postgres"))
        .map(|pid| cpu_seconds(Some(pid)))
        .sum()
}

/// Runs `make_request` from `connections` concurrent loops for `warmup + seconds`.
async fn drive<F, Fut>(
    name: &'static str,
    server_pid: Option<u32>,
    connections: usize,
    seconds: u64,
    make_request: F,
) -> Phase
where
    F: Fn(usize, usize) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = bool> + Send,
{
    let make_request = Arc::new(make_request);
    let warmup_end = Instant::now() + Duration::from_secs(2);
    let end = warmup_end + Duration::from_secs(seconds);
    let mut tasks = Vec::new();
    let callgrind = server_pid.filter(|_| CALLGRIND.get().is_some());
    let cpu_marks = tokio::spawn(async move {
        tokio::time::sleep_until(warmup_end.into()).await;
        if let Some(pid) = callgrind {
            if let Err(e) = callgrind_control("--zero", pid).await {
                eprintln!("{name}: {e:#}");
            }
        }
        let start = (cpu_seconds(server_pid), cpu_seconds(None), postgres_cpu_seconds());
        tokio::time::sleep_until(end.into()).await;
        let cpu = (cpu_seconds(server_pid) - start.0, cpu_seconds(None) - start.1, postgres_cpu_seconds() - start.2);
        let instructions = match callgrind {
            Some(pid) => callgrind_dump(pid).await.map_err(|e| eprintln!("{name}: {e:#}")).ok(),
            None => None,
        };
        (cpu, instructions)
    });
    for c in 0..connections {
        let f = make_request.clone();
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            let mut errors = 0;
            let mut i = 0;
            loop {
                let start = Instant::now();
                if start >= end {
                    break;
                }
                let ok = f(c, i).await;
                i += 1;
                if start >= warmup_end {
                    lat.push(start.elapsed().as_micros() as u32);
                    if !ok {
                        errors += 1;
                    }
                }
            }
            (lat, errors)
        }));
    }
    let mut latencies_us = Vec::new();
    let mut errors = 0;
    for t in tasks {
        let (lat, e) = t.await.unwrap_or_default();
        latencies_us.extend(lat);
        errors += e;
    }
    latencies_us.sort_unstable();
    let ((server_cpu, client_cpu, database_cpu), instructions) = cpu_marks.await.unwrap_or_default();
    Phase {
        name,
        requests: latencies_us.len(),
        errors,
        elapsed: Duration::from_secs(seconds),
        latencies_us,
        server_cpu,
        client_cpu,
        database_cpu,
        instructions,
    }
}

/// What [`seed`] made: the account, an admin token, the floating policy, the license keys.
struct Seeded {
    account: licensor::model::Account,
    token: String,
    policy: licensor::model::Policy,
    keys: Arc<Vec<String>>,
}

/// Seeds one account, product and floating policy, and `n` licenses, on `db`.
async fn seed(db: &Db, master: &MasterKey, n: usize) -> anyhow::Result<Seeded> {
    let seed_start = Instant::now();
    let created =
        licensor::bootstrap::create_account(db, master, "bench", "bench@example.com", "bench-password").await?;
    let (_, token) =
        licensor::auth::issue_token(db, created.account.id, "user", created.admin.id, "admin", Default::default())
            .await?;
    let product = licensor::model::Product {
        id: uuid::Uuid::new_v4(),
        account_id: created.account.id,
        name: "Bench".into(),
        code: None,
        distribution_strategy: None,
        url: None,
        platforms: None,
        metadata: licensor::model::empty_metadata(),
        created_at: licensor::time::now_ms(),
        updated_at: licensor::time::now_ms(),
    };
    licensor::store::products::insert(db, &product, &[]).await?;
    // MIXED: the activation phases authenticate with the license's own key, as SDKs do.
    let mut rules = licensor::model::PolicyRules {
        floating: true,
        max_machines: Some(1_000_000),
        authentication_strategy: licensor::model::AuthenticationStrategy::Mixed,
        ..Default::default()
    };
    rules.normalize_and_validate().map_err(|e| anyhow::anyhow!("{e}"))?;
    let policy = licensor::model::Policy {
        id: uuid::Uuid::new_v4(),
        account_id: created.account.id,
        product_id: product.id,
        name: "Bench".into(),
        rules: sqlx_json(rules),
        metadata: licensor::model::empty_metadata(),
        created_at: licensor::time::now_ms(),
        updated_at: licensor::time::now_ms(),
    };
    licensor::store::policies::insert(db, &policy, &[]).await?;
    let keys: Arc<Vec<String>> = {
        let mut keys = Vec::with_capacity(n);
        let mut handles = Vec::new();
        let per = n.div_ceil(4);
        for w in 0..4 {
            let (db, account, master, policy) = (db.clone(), created.account.clone(), master.clone(), policy.clone());
            let admin = licensor::auth::user_principal(created.admin.clone()).map_err(|e| anyhow::anyhow!("{e}"))?;
            let n = per.min(n.saturating_sub(w * per));
            handles.push(tokio::spawn(async move {
                let mut out = Vec::with_capacity(n);
                for _ in 0..n {
                    let l = issuance::issue(&db, &account, &master, &policy, NewLicense::default(), &admin)
                        .await
                        .map_err(|e| anyhow::anyhow!("{e}"))?;
                    out.push(l.key);
                }
                anyhow::Ok(out)
            }));
        }
        for h in handles {
            keys.extend(h.await??);
        }
        Arc::new(keys)
    };
    println!(
        "seeded {} licenses in {:.1} s ({} database)",
        keys.len(),
        seed_start.elapsed().as_secs_f64(),
        db.engine()
    );
    Ok(Seeded { account: created.account, token, policy, keys })
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let dir = tempfile::tempdir()?;
    let url = args.database_url.clone().unwrap_or_else(|| format!("sqlite:{}", dir.path().join("bench.db").display()));
    let master_hex = hex::encode(rand::random::<[u8; 32]>());
    let master = MasterKey::from_hex(&master_hex)?;
    ON_POSTGRES.store(url.starts_with("postgres"), std::sync::atomic::Ordering::Relaxed);
    if args.instructions {
        let dumps = args.callgrind_dir.clone().unwrap_or_else(|| dir.path().join("callgrind"));
        std::fs::create_dir_all(&dumps)?;
        let _ = CALLGRIND.set(std::path::absolute(dumps)?);
    }
    let schema = url.starts_with("postgres").then(|| format!("bench_{}", uuid::Uuid::new_v4().simple()));
    let db = Db::connect(&url, schema.as_deref()).await?;
    db.migrate().await?;

    let Seeded { account: seeded_account, token, policy, keys } = seed(&db, &master, args.licenses).await?;
    db.close().await;

    // Start the real server.
    let server = args.server.clone().unwrap_or_else(|| PathBuf::from("target/release/licensor"));
    if !server.exists() {
        bail!("{} not found: build it with `cargo build --release -p licensor`", server.display());
    }
    let account = seeded_account.id;
    if args.operations {
        return operations(&server, &url, schema.as_deref(), &master_hex, account, keys, &args).await;
    }
    if args.webhooks {
        return webhooks(&server, &url, schema.as_deref(), &master_hex, account, keys, token, &args).await;
    }
    let client = reqwest::Client::builder().pool_max_idle_per_host(args.connections).build()?;
    if args.console {
        let db = Db::connect(&url, schema.as_deref()).await?;
        let some = licensor::store::licenses::find_by_key(&db, account, &keys[keys.len() / 2]).await?;
        db.close().await;
        let license = some.context("a seeded license")?;
        let s = start(&server, &url, schema.as_deref(), dir.path(), &master_hex, &[], &client).await?;
        return console::run(s, &keys[keys.len() / 2], &license, keys.len()).await;
    }
    // Every load generator request comes from one address and credential: count them all, as a
    // server does, but let none be refused (real clients are many).
    let env =
        [("LICENSOR_RATE_LIMITS", COUNTED_NEVER_REFUSED), ("LICENSOR_ADDRESS_RATE_LIMITS", COUNTED_NEVER_REFUSED)];
    let Server { mut child, pid: server_pid, base } =
        start(&server, &url, schema.as_deref(), dir.path(), &master_hex, &env, &client).await?;
    println!(
        "connections: {}, {} s per phase, {} cores",
        args.connections,
        args.seconds,
        std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1)
    );

    let ping = ping_phase("ping", server_pid, &base, &client, &args).await;
    let signed = signed_401_phase(server_pid, &base, account, &client, &args).await;
    let validate = validate_phase("validate-key", server_pid, &base, account, keys.clone(), &client, &args).await;
    // Right after the validation load: the process's own memory, and the resident total with
    // the database pages it has mapped.
    let memory = [("RssAnon", "own (anonymous)"), ("VmRSS", "resident with mapped pages")].map(|(field, what)| {
        let kib = server_pid
            .and_then(|p| std::fs::read_to_string(format!("/proc/{p}/status")).ok())
            .and_then(|s| s.lines().find(|l| l.starts_with(field))?.split_whitespace().nth(1)?.parse::<f64>().ok());
        format!("{what} {:.1} MB", kib.unwrap_or(0.0) / 1024.0)
    });
    // The same working set at every `--licenses`: only the table's size differs between two
    // runs, so this phase is what "flat with size" compares (the warm-up reads each key a few
    // times, as a fleet validating on a schedule does).
    let fleet_keys = Arc::new(keys[..FLEET.min(keys.len())].to_vec());
    let fleet = validate_phase("validate fleet", server_pid, &base, account, fleet_keys, &client, &args).await;

    let token = Arc::new(token);
    // Activated (key, fingerprint) pairs, for the scoped validation phase.
    let activated: Arc<std::sync::Mutex<Vec<(String, String)>>> = Arc::default();
    let activate = activate_phase(
        "activate",
        server_pid,
        &base,
        account,
        keys.clone(),
        activated.clone(),
        &client,
        &args,
        args.connections,
    )
    .await;

    // What SDKs send: validate-key scoped to this machine's fingerprint (reads the machines too).
    let pairs: Arc<Vec<(String, String)>> = Arc::new(activated.lock().map(|v| v.clone()).unwrap_or_default());
    if pairs.is_empty() {
        bail!("no activation succeeded: nothing to validate with a scope ({} errors)", activate.errors);
    }
    // The same licenses unscoped, right before: the scope's cost is the difference between two
    // phases on the same rows in the same database state (the activations' WAL included).
    let activated_keys = Arc::new(pairs.iter().map(|(key, _)| key.clone()).collect::<Vec<_>>());
    let unscoped = validate_phase("validate-key 2", server_pid, &base, account, activated_keys, &client, &args).await;
    let validate_url = format!("{base}/v1/accounts/{account}/licenses/actions/validate-key");
    let c = client.clone();
    let scoped = drive("validate+scope", server_pid, args.connections, args.seconds, move |conn, i| {
        let (c, u) = (c.clone(), validate_url.clone());
        let (key, fingerprint) = pairs[(conn * 7919 + i * 104_729) % pairs.len().max(1)].clone();
        async move {
            let body = format!(r#"{{"meta":{{"key":"{key}","scope":{{"fingerprint":"{fingerprint}"}}}}}}"#);
            post_validation(&c, u, body).await
        }
    })
    .await;

    // License creation by an admin token, as a vendor's billing integration does.
    let licenses_url = format!("{base}/v1/accounts/{account}/licenses");
    let body = json!({"data": {"type": "licenses",
        "relationships": {"policy": {"data": {"type": "policies", "id": policy.id}}}}})
    .to_string();
    let (c, creator) = (client.clone(), token.clone());
    let create = drive("create license", server_pid, args.connections, args.seconds, move |_, _| {
        let (c, u, t, body) = (c.clone(), licenses_url.clone(), creator.clone(), body.clone());
        async move {
            c.post(u)
                .bearer_auth(t.as_str())
                .header("content-type", "application/vnd.api+json")
                .body(body)
                .send()
                .await
                .is_ok_and(|r| r.status().as_u16() == 201)
        }
    })
    .await;

    let mixed = if args.instructions {
        None
    } else {
        Some(mixed_phase(&base, account, keys.clone(), &token, &client, &args).await)
    };

    println!();
    ping.print();
    signed.print();
    validate.print();
    fleet.print();
    activate.print();
    unscoped.print();
    scoped.print();
    create.print();
    if let Some(mixed) = &mixed {
        mixed.print();
    }
    println!();
    let cpu = |p: &Phase| p.per_request_us(p.server_cpu);
    let ed25519 = ed25519_us(&master, &seeded_account)?;
    println!("validate-key / signed 401 throughput ratio: {:.2} (target 0.70 or more)", validate.rps() / signed.rps());
    println!(
        "validate-key server CPU: {:.1} us; budget ping {:.1} + one Ed25519 signature {:.1} + 30 = {:.1} us",
        cpu(&validate),
        cpu(&ping),
        ed25519,
        cpu(&ping) + ed25519 + 30.0
    );
    println!(
        "validate+scope - validate-key 2 (the same licenses, unscoped) server CPU: {:.1} us (target 10 or less)",
        cpu(&scoped) - cpu(&unscoped)
    );
    let per_request = |p: &Phase| p.instructions.map(|n| n as f64 / p.requests.max(1) as f64);
    if let (Some(with), Some(without)) = (per_request(&scoped), per_request(&unscoped)) {
        println!(
            "validate+scope - validate-key 2 server instructions: {:.0} per request ({:+.1}%)",
            with - without,
            100.0 * (with / without - 1.0)
        );
    }
    println!(
        "validate fleet ({} licenses, the same at every size): {:.1} us server CPU (target: at 1,000,000 licenses within 1.1 x of 100,000's)",
        FLEET.min(keys.len()),
        cpu(&fleet)
    );
    println!("server memory after validate-key: {}", memory.join(", "));
    for p in [&activate, &create] {
        println!("{}: {:.0} req/s, {:.1} us server CPU (target 5000 or more, 200 or less)", p.name, p.rps(), cpu(p));
    }
    println!("validate-key / ping throughput ratio: {:.2}", validate.rps() / ping.rps());
    println!("activate / ping throughput ratio:     {:.2}", activate.rps() / ping.rps());
    println!("validate+scope / ping ratio:          {:.2}", scoped.rps() / ping.rps());
    // Under callgrind the comparison's servers would run slowed down too: their ratios would mean
    // nothing.
    if ON_POSTGRES.load(std::sync::atomic::Ordering::Relaxed) && CALLGRIND.get().is_none() {
        versus_sqlite(&server, &url, schema.as_deref(), &master, &master_hex, account, keys, &validate, &env, &args)
            .await?;
    }
    let _ = child.kill().await;
    Ok(())
}

/// On PostgreSQL, issue 17's comparison in the same run: validate-key on a second node of the
/// same database (its own cache, warmed in the warm-up), then on SQLite seeded alike.
#[allow(clippy::too_many_arguments)]
async fn versus_sqlite(
    server: &std::path::Path,
    url: &str,
    schema: Option<&str>,
    master: &MasterKey,
    master_hex: &str,
    account: uuid::Uuid,
    keys: Arc<Vec<String>>,
    first: &Phase,
    env: &[(&str, &str)],
    args: &Args,
) -> anyhow::Result<()> {
    let client = reqwest::Client::builder().pool_max_idle_per_host(args.connections).build()?;
    let node_dir = tempfile::tempdir()?;
    let second = start(server, url, schema, node_dir.path(), master_hex, env, &client).await?;
    let node2 = validate_phase("validate-key node 2", second.pid, &second.base, account, keys, &client, args).await;
    drop(second);

    let sqlite_dir = tempfile::tempdir()?;
    let sqlite_url = format!("sqlite:{}", sqlite_dir.path().join("bench.db").display());
    let db = Db::connect(&sqlite_url, None).await?;
    db.migrate().await?;
    let seeded = seed(&db, master, args.licenses).await?;
    db.close().await;
    let on_sqlite = start(server, &sqlite_url, None, sqlite_dir.path(), master_hex, env, &client).await?;
    let sqlite = validate_phase(
        "validate-key SQLite",
        on_sqlite.pid,
        &on_sqlite.base,
        seeded.account.id,
        seeded.keys,
        &client,
        args,
    )
    .await;
    println!();
    node2.print();
    sqlite.print();
    println!();
    println!(
        "validate-key on PostgreSQL / on SQLite: {:.2} (node 1), {:.2} (node 2) (target 0.70 or more)",
        first.rps() / sqlite.rps(),
        node2.rps() / sqlite.rps()
    );
    Ok(())
}

/// One activation phase: `POST /machines` with new fingerprints on random licenses, each
/// authenticated with its own key (`Authorization: License …`, as SDKs activate), recording
/// what was activated.
#[allow(clippy::too_many_arguments)]
async fn activate_phase(
    name: &'static str,
    pid: Option<u32>,
    base: &str,
    account: uuid::Uuid,
    keys: Arc<Vec<String>>,
    record: Arc<std::sync::Mutex<Vec<(String, String)>>>,
    client: &reqwest::Client,
    args: &Args,
    connections: usize,
) -> Phase {
    let machines_url = format!("{base}/v1/accounts/{account}/machines");
    let c = client.clone();
    drive(name, pid, connections, args.seconds, move |conn, i| {
        let (c, u, record) = (c.clone(), machines_url.clone(), record.clone());
        let key = keys[(conn * 7919 + i * 104_729) % keys.len()].clone();
        async move {
            let fingerprint = format!("fp-{name}-{conn}-{i}");
            let body = json!({"data": {"type": "machines", "attributes": {"fingerprint": fingerprint},
                "relationships": {"license": {"data": {"type": "licenses", "id": key}}}}})
            .to_string();
            let ok = c
                .post(u)
                .header("authorization", format!("License {key}"))
                .header("content-type", "application/vnd.api+json")
                .body(body)
                .send()
                .await
                .is_ok_and(|r| r.status().as_u16() == 201);
            if ok {
                if let Ok(mut v) = record.lock() {
                    v.push((key, fingerprint));
                }
            }
            ok
        }
    })
    .await
}

/// Validations while activations go on, on the same server: what a busy node does. Its own
/// writes must not keep the license cache from answering.
struct Mixed {
    validations: Phase,
    activations: Phase,
    /// The license cache's hits and misses over the phase (warm-up included).
    hits: u64,
    misses: u64,
}

impl Mixed {
    fn print(&self) {
        let (v, a) = (&self.validations, &self.activations);
        let share = 100.0 * self.hits as f64 / (self.hits + self.misses).max(1) as f64;
        println!(
            "{:<14} {:>8.0} req/s  p50 {:>6.2} ms  p99 {:>6.2} ms  while {:.0} activations/s (p99 {:.2} ms); license cache hits {share:.1}% ({} of {})",
            v.name,
            v.rps(),
            v.pct(0.50),
            v.pct(0.99),
            a.rps(),
            a.pct(0.99),
            self.hits,
            self.hits + self.misses,
        );
    }
}

/// The license cache's hit and miss counters (`/metrics`; zero without a cache).
async fn cache_counters(client: &reqwest::Client, base: &str, token: &str) -> (u64, u64) {
    let text = match client.get(format!("{base}/metrics")).bearer_auth(token).send().await {
        Ok(r) => r.text().await.unwrap_or_default(),
        Err(_) => String::new(),
    };
    let counter =
        |name: &str| text.lines().find_map(|l| l.strip_prefix(name)).and_then(|v| v.trim().parse().ok()).unwrap_or(0);
    (counter("licensor_license_cache_hits_total "), counter("licensor_license_cache_misses_total "))
}

/// validate-key on three quarters of the connections and activations on the rest, at once.
async fn mixed_phase(
    base: &str,
    account: uuid::Uuid,
    keys: Arc<Vec<String>>,
    token: &str,
    client: &reqwest::Client,
    args: &Args,
) -> Mixed {
    let writers = (args.connections / 4).max(1);
    let readers = args.connections.saturating_sub(writers).max(1);
    let before = cache_counters(client, base, token).await;
    let validate_url = format!("{base}/v1/accounts/{account}/licenses/actions/validate-key");
    let c = client.clone();
    let validation_keys = keys.clone();
    let validations = drive("validate+writes", None, readers, args.seconds, move |conn, i| {
        let (c, u) = (c.clone(), validate_url.clone());
        let key = validation_keys[(conn * 7919 + i * 104_729) % validation_keys.len()].clone();
        async move {
            let body = format!(r#"{{"meta":{{"key":"{key}"}}}}"#);
            post_validation(&c, u, body).await
        }
    });
    let record = Arc::default();
    let activations = activate_phase("mixed activate", None, base, account, keys, record, client, args, writers);
    let (validations, activations) = tokio::join!(validations, activations);
    let after = cache_counters(client, base, token).await;
    Mixed { validations, activations, hits: after.0.saturating_sub(before.0), misses: after.1.saturating_sub(before.1) }
}

/// `--webhooks`: validate-key and activation without and with one subscribed endpoint.
#[allow(clippy::too_many_arguments)]
async fn webhooks(
    server: &std::path::Path,
    url: &str,
    schema: Option<&str>,
    master_hex: &str,
    account: uuid::Uuid,
    keys: Arc<Vec<String>>,
    token: String,
    args: &Args,
) -> anyhow::Result<()> {
    let client = reqwest::Client::builder().pool_max_idle_per_host(args.connections).build()?;
    let dir = tempfile::tempdir()?;
    let env = [
        ("LICENSOR_RATE_LIMITS", COUNTED_NEVER_REFUSED),
        ("LICENSOR_ADDRESS_RATE_LIMITS", COUNTED_NEVER_REFUSED),
        ("LICENSOR_ALLOW_INSECURE_WEBHOOKS", "true"),
    ];
    // The measured node raises events but sends none. After each activation phase a second
    // node on the same database sends them, so what raising costs the API and what sending
    // costs are measured apart, neither taking the other's CPU.
    let api_env = [&env[..], &[("LICENSOR_NO_WEBHOOK_DELIVERY", "true")]].concat();
    let mut srv = start(server, url, schema, dir.path(), master_hex, &api_env, &client).await?;
    let worker_dir = tempfile::tempdir()?;
    let received = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let hook_url = format!("http://127.0.0.1:{}/hook", listener.local_addr()?.port());
    let counter = received.clone();
    let receiver = axum::Router::new().fallback(move |_body: String| {
        let counter = counter.clone();
        async move {
            counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            axum::http::StatusCode::NO_CONTENT
        }
    });
    tokio::spawn(async move {
        let _ = axum::serve(listener, receiver).await;
    });
    println!(
        "connections: {}, {} s per phase; one endpoint subscribed to license.created, machine.created, machine.deleted",
        args.connections, args.seconds
    );
    let token = Arc::new(token);
    let endpoints = format!("{}/v1/accounts/{account}/webhook-endpoints", srv.base);
    let mut phases = Vec::new();
    let mut delivery_us = Vec::new();
    let record: Arc<std::sync::Mutex<Vec<(String, String)>>> = Arc::default();
    let activate = |name: &'static str| {
        activate_phase(name, srv.pid, &srv.base, account, keys.clone(), record.clone(), &client, args, args.connections)
    };
    for names in [
        ["validate none 1", "activate none 1", "validate one 1", "activate one 1"],
        ["validate none 2", "activate none 2", "validate one 2", "activate one 2"],
    ] {
        phases.push(validate_phase(names[0], srv.pid, &srv.base, account, keys.clone(), &client, args).await);
        phases.push(activate(names[1]).await);
        let body = json!({"data": {"type": "webhook-endpoints", "attributes": {"url": hook_url,
            "subscriptions": ["license.created", "machine.created", "machine.deleted"]}}});
        let created: serde_json::Value = client
            .post(&endpoints)
            .bearer_auth(token.as_str())
            .header("content-type", "application/vnd.api+json")
            .body(body.to_string())
            .send()
            .await?
            .json()
            .await?;
        let id = created["data"]["id"]
            .as_str()
            .ok_or_else(|| anyhow::anyhow!("endpoint not created: {created}"))?
            .to_string();
        phases.push(validate_phase(names[2], srv.pid, &srv.base, account, keys.clone(), &client, args).await);
        let held = |r: &std::sync::Mutex<Vec<(String, String)>>| r.lock().map(|v| v.len()).unwrap_or(0);
        let (made_before, got_before) = (held(&record), received.load(std::sync::atomic::Ordering::Relaxed));
        let phase = activate(names[3]).await;
        // Every activation of the phase (warm-up too) raised one machine.created: a delivery
        // node sends them all, and its CPU is charged to them.
        let made = held(&record) - made_before;
        let got = || received.load(std::sync::atomic::Ordering::Relaxed) - got_before;
        let mut worker = start(server, url, schema, worker_dir.path(), master_hex, &env, &client).await?;
        let (drain_start, worker_cpu_before) = (Instant::now(), cpu_seconds(worker.pid));
        while got() < made && drain_start.elapsed() < Duration::from_secs(120) {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let per_delivery = (cpu_seconds(worker.pid) - worker_cpu_before) * 1e6 / got().max(1) as f64;
        let _ = worker.child.kill().await;
        println!(
            "{}: {made} activations; the delivery node then sent {} in {:.2} s ({:.0}/s), {per_delivery:.0} us of its CPU per delivery",
            names[3],
            got(),
            drain_start.elapsed().as_secs_f64(),
            got() as f64 / drain_start.elapsed().as_secs_f64()
        );
        delivery_us.push(per_delivery);
        phases.push(phase);
        client.delete(format!("{endpoints}/{id}")).bearer_auth(token.as_str()).send().await?;
    }
    println!();
    for p in &phases {
        p.print();
    }
    let mean = |names: [&str; 2], f: &dyn Fn(&Phase) -> f64| {
        phases.iter().filter(|p| names.contains(&p.name)).map(f).sum::<f64>() / 2.0
    };
    let rps = |p: &Phase| p.rps();
    let cpu = |p: &Phase| p.per_request_us(p.server_cpu);
    println!();
    for (what, none, one) in [
        ("validate-key", ["validate none 1", "validate none 2"], ["validate one 1", "validate one 2"]),
        ("activation", ["activate none 1", "activate none 2"], ["activate one 1", "activate one 2"]),
    ] {
        println!(
            "{what} (API node): throughput one endpoint / none {:.3}; server CPU us/req {:.1} → {:.1} ({:+.1}%)",
            mean(one, &rps) / mean(none, &rps),
            mean(none, &cpu),
            mean(one, &cpu),
            (mean(one, &cpu) / mean(none, &cpu) - 1.0) * 100.0
        );
    }
    let sending = delivery_us.iter().sum::<f64>() / delivery_us.len().max(1) as f64;
    let (none, one) =
        (mean(["activate none 1", "activate none 2"], &cpu), mean(["activate one 1", "activate one 2"], &cpu));
    println!(
        "activation with its delivery (API node + delivery node): server CPU us {none:.1} → {:.1} ({:+.1}%)",
        one + sending,
        ((one + sending) / none - 1.0) * 100.0
    );
    println!("deliveries received: {}", received.load(std::sync::atomic::Ordering::Relaxed));
    let _ = srv.child.kill().await;
    Ok(())
}

/// Whether a validation answered 200 with code VALID.
async fn valid(r: reqwest::Response) -> bool {
    r.status().is_success() && r.bytes().await.is_ok_and(|b| b.windows(7).any(|w| w == b"\"VALID\""))
}

fn sqlx_json<T>(v: T) -> licensor::store::Json<T> {
    licensor::store::Json(v)
}
