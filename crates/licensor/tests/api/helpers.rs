//! Test harness: a real Licensor on 127.0.0.1:0, over SQLite in a temp dir, or over PostgreSQL
//! in a fresh schema when `LICENSOR_TEST_DATABASE_URL` is set; plus actors that talk to it.

use std::net::SocketAddr;

use licensor::crypto::MasterKey;
use licensor::db::Db;
use licensor::state::AppState;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use tokio::sync::oneshot;

pub const PASSWORD: &str = "correct horse battery";

pub struct TestApp {
    pub addr: SocketAddr,
    pub db: Db,
    /// The server's state (to tell it of writes made behind its back, through `db`).
    pub state: AppState,
    pub master: MasterKey,
    /// The master key in hex, for spawning more nodes on the same database.
    pub master_hex: String,
    pub account_id: String,
    pub slug: String,
    pub admin_email: String,
    pub admin_token: String,
    pub client: reqwest::Client,
    shutdown: Option<oneshot::Sender<()>>,
    server: Option<tokio::task::JoinHandle<()>>,
    /// Where the database lives, for spawning more nodes on it.
    pub database_url: String,
    pub schema: Option<String>,
    _dir: tempfile::TempDir,
}

/// A database for one test: (url, schema).
pub async fn test_database(dir: &std::path::Path) -> (String, Option<String>) {
    match std::env::var("LICENSOR_TEST_DATABASE_URL") {
        Ok(url) if !url.is_empty() => (url, Some(format!("t_{}", uuid::Uuid::new_v4().simple()))),
        _ => (format!("sqlite:{}", dir.join("licensor.db").display()), None),
    }
}

pub async fn spawn_app() -> TestApp {
    spawn_app_with(licensor::ratelimit::Config::default()).await
}

/// A server with these rate limits (none in [`spawn_app`]).
pub async fn spawn_app_with(limits: licensor::ratelimit::Config) -> TestApp {
    spawn_app_configured(limits, licensor::webhooks::Config::default()).await
}

/// A server that delivers webhooks to loopback receivers, retrying quickly.
pub async fn spawn_webhook_app() -> TestApp {
    spawn_app_configured(licensor::ratelimit::Config::default(), fast_webhooks()).await
}

/// Webhook settings for tests: loopback receivers allowed, a 10 ms back-off unit, 3 retries.
pub fn fast_webhooks() -> licensor::webhooks::Config {
    licensor::webhooks::Config {
        allow_insecure: true,
        timeout: std::time::Duration::from_secs(2),
        retries: 3,
        backoff_unit: std::time::Duration::from_millis(10),
        ..Default::default()
    }
}

/// A server with these rate limits and webhook settings.
pub async fn spawn_app_configured(
    limits: licensor::ratelimit::Config,
    webhooks: licensor::webhooks::Config,
) -> TestApp {
    if std::env::var("TEST_LOG").is_ok() {
        let _ = tracing_subscriber::fmt().with_env_filter("info,licensor=debug").with_test_writer().try_init();
    }
    let dir = tempfile::tempdir().expect("temp dir");
    let (database_url, schema) = test_database(dir.path()).await;
    let db = Db::connect(&database_url, schema.as_deref()).await.expect("connect");
    db.migrate().await.expect("migrate");
    let master_hex = hex::encode(rand::random::<[u8; 32]>());
    let master = MasterKey::from_hex(&master_hex).expect("master key");
    let slug = format!("acme-{}", &uuid::Uuid::new_v4().simple().to_string()[..8]);
    let admin_email = format!("admin@{slug}.example");
    let created =
        licensor::bootstrap::create_account(&db, &master, &slug, &admin_email, PASSWORD).await.expect("account");
    let (_, admin_token) =
        licensor::auth::issue_token(&db, created.account.id, "user", created.admin.id, "admin", Default::default())
            .await
            .expect("token");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = oneshot::channel::<()>();
    let state = AppState::with_default_account(db.clone(), master.clone(), Some(created.account.id.to_string()))
        .with_rate_limits(limits)
        .with_webhooks(webhooks);
    let server_state = state.clone();
    let server = tokio::spawn(async move {
        licensor::app::serve(listener, server_state, async {
            let _ = rx.await;
        })
        .await
        .expect("serve");
    });
    TestApp {
        addr,
        db,
        state,
        master,
        master_hex,
        account_id: created.account.id.to_string(),
        slug,
        admin_email,
        admin_token,
        client: reqwest::Client::new(),
        shutdown: Some(tx),
        server: Some(server),
        database_url,
        schema,
        _dir: dir,
    }
}

/// A response: status, headers and parsed body (Null when empty).
pub struct Res {
    pub status: StatusCode,
    pub headers: reqwest::header::HeaderMap,
    pub body: Value,
    pub text: String,
}

impl Res {
    /// The first error's `code` (or "" when none).
    pub fn code(&self) -> &str {
        self.body["errors"][0]["code"].as_str().unwrap_or("")
    }
    pub fn pointer(&self) -> &str {
        self.body["errors"][0]["source"]["pointer"].as_str().unwrap_or("")
    }
    pub fn id(&self) -> String {
        self.body["data"]["id"].as_str().expect("data.id").to_string()
    }
    pub fn attr(&self, name: &str) -> &Value {
        &self.body["data"]["attributes"][name]
    }
}

/// Who is making a request.
#[derive(Clone, Debug)]
pub enum As {
    Anonymous,
    Bearer(String),
    License(String),
    Basic(String, String),
}

impl As {
    fn authorize(&self, req: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        match self {
            As::Anonymous => req,
            As::Bearer(t) => req.bearer_auth(t),
            As::License(k) => req.header("authorization", format!("License {k}")),
            As::Basic(u, p) => req.basic_auth(u, Some(p)),
        }
    }
}

/// Reads a response into a [`Res`], failing the test on any 500.
async fn read(resp: reqwest::Response, path: &str) -> Res {
    let status = resp.status();
    let headers = resp.headers().clone();
    let text = resp.text().await.unwrap_or_default();
    let body = serde_json::from_str(&text).unwrap_or(Value::Null);
    assert_ne!(status, StatusCode::INTERNAL_SERVER_ERROR, "server error on {path}: {text}");
    Res { status, headers, body, text }
}

impl TestApp {
    /// Tells the server that the test wrote through `db`: on PostgreSQL its license cache then
    /// answers nothing until it has heard the change (a request that writes waits to hear it).
    pub fn wrote_behind_its_back(&self) {
        if let Some(cache) = &self.state.license_cache {
            cache.fence();
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    /// Path under this account: `acct("/licenses")` → `/v1/accounts/<id>/licenses`.
    pub fn acct(&self, path: &str) -> String {
        format!("/v1/accounts/{}{}", self.account_id, path)
    }

    pub fn admin(&self) -> As {
        As::Bearer(self.admin_token.clone())
    }

    pub async fn raw(&self, method: Method, path: &str, who: &As, body: Option<String>) -> Res {
        let mut req = self.client.request(method, self.url(path)).header("accept", "application/vnd.api+json");
        req = who.authorize(req);
        if let Some(b) = body {
            req = req.header("content-type", "application/vnd.api+json").body(b);
        }
        let resp = req.send().await.expect("request");
        read(resp, path).await
    }

    pub async fn req(&self, method: Method, path: &str, who: &As, body: Option<Value>) -> Res {
        self.raw(method, path, who, body.map(|b| b.to_string())).await
    }

    pub async fn get(&self, path: &str, who: &As) -> Res {
        self.req(Method::GET, path, who, None).await
    }
    pub async fn post(&self, path: &str, who: &As, body: Value) -> Res {
        self.req(Method::POST, path, who, Some(body)).await
    }
    pub async fn patch(&self, path: &str, who: &As, body: Value) -> Res {
        self.req(Method::PATCH, path, who, Some(body)).await
    }
    pub async fn put(&self, path: &str, who: &As, body: Value) -> Res {
        self.req(Method::PUT, path, who, Some(body)).await
    }
    pub async fn delete(&self, path: &str, who: &As) -> Res {
        self.req(Method::DELETE, path, who, None).await
    }

    // ---- fixtures ---------------------------------------------------------------------------

    pub async fn create_product(&self, name: &str) -> String {
        let r = self
            .post(
                &self.acct("/products"),
                &self.admin(),
                json!({"data": {"type": "products", "attributes": {"name": name}}}),
            )
            .await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
        r.id()
    }

    /// A policy with `attributes`. Unless they say otherwise it is unprotected, so the users
    /// of its licenses may act on them as Keygen lets them (accounts, and so policies, start
    /// protected here).
    pub async fn create_policy(&self, product: &str, attributes: Value) -> String {
        let mut attrs = json!({"name": "Policy", "protected": false});
        attrs.as_object_mut().unwrap().extend(attributes.as_object().cloned().unwrap_or_default());
        let r = self
            .post(
                &self.acct("/policies"),
                &self.admin(),
                json!({"data": {"type": "policies", "attributes": attrs, "relationships": {"product": {"data": {"type": "products", "id": product}}}}}),
            )
            .await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
        r.id()
    }

    /// Creates a license; returns (id, key).
    pub async fn create_license(&self, policy: &str, attributes: Value) -> (String, String) {
        let r = self
            .post(
                &self.acct("/licenses"),
                &self.admin(),
                json!({"data": {"type": "licenses", "attributes": attributes, "relationships": {"policy": {"data": {"type": "policies", "id": policy}}}}}),
            )
            .await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
        (r.id(), r.attr("key").as_str().unwrap().to_string())
    }

    pub async fn create_user(&self, email: &str) -> String {
        let r = self
            .post(
                &self.acct("/users"),
                &self.admin(),
                json!({"data": {"type": "users", "attributes": {"email": email, "password": PASSWORD}}}),
            )
            .await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
        r.id()
    }

    /// Attaches users to a license.
    pub async fn attach_users(&self, license: &str, users: &[&str]) {
        let data: Vec<Value> = users.iter().map(|u| json!({"type": "users", "id": u})).collect();
        let r =
            self.post(&self.acct(&format!("/licenses/{license}/users")), &self.admin(), json!({ "data": data })).await;
        assert!(r.status.is_success(), "{}", r.text);
    }
    /// Opens the account to self-registration (accounts are created protected).
    pub async fn open_account(&self) {
        let body = json!({"data": {"type": "accounts", "attributes": {"protected": false}}});
        let r = self.patch(&self.acct(""), &self.admin(), body).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    }

    /// `PATCH /{kind}/{id}` of these attributes, as an admin.
    pub async fn patch_attributes(&self, kind: &str, id: &str, attributes: Value) -> Res {
        let body = json!({"data": {"type": kind, "attributes": attributes}});
        self.patch(&self.acct(&format!("/{kind}/{id}")), &self.admin(), body).await
    }

    /// Makes `user` the owner of `license`.
    pub async fn set_owner(&self, license: &str, user: &str) {
        let path = self.acct(&format!("/licenses/{license}/owner"));
        let r = self.put(&path, &self.admin(), json!({"data": {"type": "users", "id": user}})).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    }

    /// Activates a machine with `fingerprint` on `license` (id or key), as an admin.
    pub async fn activate_machine(&self, license: &str, fingerprint: &str) -> Res {
        self.post(
            &self.acct("/machines"),
            &self.admin(),
            json!({"data": {"type": "machines", "attributes": {"fingerprint": fingerprint},
                "relationships": {"license": {"data": {"type": "licenses", "id": license}}}}}),
        )
        .await
    }

    /// A product, a policy with `policy_attrs`, and a license: (product, policy, license id, key).
    pub async fn license_fixture(&self, policy_attrs: Value) -> (String, String, String, String) {
        let product = self.create_product("App").await;
        let policy = self.create_policy(&product, policy_attrs).await;
        let (license, key) = self.create_license(&policy, json!({})).await;
        (product, policy, license, key)
    }

    /// A second account on the same server: (account id, its admin token).
    pub async fn other_account(&self, slug: &str) -> (String, As) {
        let other = licensor::bootstrap::create_account(
            &self.db,
            &self.master,
            slug,
            &format!("boss@{slug}.example"),
            PASSWORD,
        )
        .await
        .unwrap();
        let (_, token) = licensor::auth::issue_token(
            &self.db,
            other.account.id,
            "user",
            other.admin.id,
            "admin",
            Default::default(),
        )
        .await
        .unwrap();
        (other.account.id.to_string(), As::Bearer(token))
    }

    /// A request with any content type and a raw body (for surfaces other than JSON:API).
    pub async fn send(&self, method: Method, path: &str, who: &As, content_type: Option<&str>, body: &str) -> Res {
        let mut req = self.client.request(method, self.url(path));
        req = who.authorize(req);
        if let Some(ct) = content_type {
            req = req.header("content-type", ct);
        }
        let resp = req.body(body.to_string()).send().await.expect("request");
        read(resp, path).await
    }

    pub async fn stop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(server) = self.server.take() {
            let _ = server.await;
        }
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let (Some(schema), true) = (self.schema.clone(), self.database_url.starts_with("postgres")) {
            let url = self.database_url.clone();
            // Drop runs inside the test's runtime; use a thread with its own to clean up. That
            // blocks the runtime, so a failed test's server cannot finish its open transactions:
            // give up on the schema rather than wait for their locks forever.
            let _ = std::thread::spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
                rt.block_on(async move {
                    if let Ok(db) = Db::connect(&url, None).await {
                        if let Db::Postgres(pool) = &db {
                            let _ = sqlx::raw_sql(&format!(
                                "SET lock_timeout = '5s'; DROP SCHEMA IF EXISTS \"{schema}\" CASCADE"
                            ))
                            .execute(pool)
                            .await;
                        }
                        db.close().await;
                    }
                });
            })
            .join();
        }
    }
}

/// A `licensor serve` process, killed when dropped.
pub struct KillOnDrop(pub std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl TestApp {
    /// Starts the real binary on this test's database (no `--account`), waits until it answers,
    /// and returns it with its base URL.
    pub async fn serve_process(&self, data_dir: &std::path::Path) -> (KillOnDrop, String) {
        self.serve_process_with(data_dir, &[]).await
    }

    /// [`TestApp::serve_process`] with more environment variables.
    pub async fn serve_process_with(&self, data_dir: &std::path::Path, envs: &[(&str, &str)]) -> (KillOnDrop, String) {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_licensor"));
        cmd.arg("serve")
            .env("LICENSOR_LISTEN", format!("127.0.0.1:{port}"))
            .env("LICENSOR_DATABASE_URL", &self.database_url)
            .env("LICENSOR_DATA_DIR", data_dir)
            .env("LICENSOR_MASTER_KEY", &self.master_hex)
            .env_remove("LICENSOR_ACCOUNT")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null());
        if let Some(schema) = &self.schema {
            cmd.env("LICENSOR_DATABASE_SCHEMA", schema);
        }
        for (k, v) in envs {
            cmd.env(k, v);
        }
        let child = KillOnDrop(cmd.spawn().expect("spawn licensor"));
        let url = format!("http://127.0.0.1:{port}");
        for _ in 0..200 {
            if self.client.get(format!("{url}/v1/ping")).send().await.is_ok_and(|r| r.status().is_success()) {
                return (child, url);
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        panic!("{url} did not come up");
    }
}

/// Runs `licensor serve` on a free port with `args` after `serve` (as a shell command, under
/// `umask 022`, so file modes do not depend on the caller's umask) and waits until `/v1/ping`
/// answers: (process, base URL, port).
pub async fn start_server(data_dir: &std::path::Path, envs: &[(&str, &str)]) -> (KillOnDrop, String, u16) {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let mut cmd = std::process::Command::new("sh");
    cmd.arg("-c")
        .arg(format!("umask 022; exec '{}' serve", env!("CARGO_BIN_EXE_licensor")))
        .env("LICENSOR_LISTEN", format!("127.0.0.1:{port}"))
        .env("LICENSOR_DATA_DIR", data_dir)
        .env_remove("LICENSOR_DATABASE_URL")
        .env_remove("LICENSOR_DATABASE_SCHEMA")
        .env_remove("LICENSOR_MASTER_KEY")
        .env_remove("LICENSOR_ACCOUNT")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    for (k, v) in envs {
        cmd.env(k, v);
    }
    let child = KillOnDrop(cmd.spawn().expect("spawn licensor"));
    let url = format!("http://127.0.0.1:{port}");
    let client = reqwest::Client::new();
    if envs.iter().any(|(k, _)| *k == "LICENSOR_TLS_CERT") {
        // HTTPS: this client speaks none; a healthcheck of the listener will do.
        for _ in 0..300 {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return (child, url, port);
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        panic!("{url} did not come up");
    }
    for _ in 0..300 {
        if client.get(format!("{url}/v1/ping")).send().await.is_ok_and(|r| r.status().is_success()) {
            return (child, url, port);
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    panic!("{url} did not come up");
}
