//! What an operator relies on when running Licensor: private data files, connection limits and
//! timeouts, health, metrics, rate limits, backups, shutdown (docs/operations.md).

use std::os::unix::fs::PermissionsExt;

use serde_json::json;

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

async fn connect_from(source: &str, port: u16) -> tokio::net::TcpStream {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind(format!("{source}:0").parse().unwrap()).unwrap();
    socket.connect(format!("127.0.0.1:{port}").parse().unwrap()).await.unwrap()
}

/// Reads until the server closes the connection; panics if it is still open after `within`.
async fn closed_within(stream: &mut tokio::net::TcpStream, within: std::time::Duration) -> Vec<u8> {
    use tokio::io::AsyncReadExt;
    let mut got = Vec::new();
    let read = tokio::time::timeout(within, async {
        let mut buf = [0u8; 4096];
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => got.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await;
    assert!(read.is_ok(), "still open after {within:?}");
    got
}

/// Idle clients, and clients that send half a request head, are disconnected after the idle
/// timeout; so is a keep-alive connection once its response is sent.
#[tokio::test]
async fn idle_and_slow_connections_are_closed() {
    use tokio::io::AsyncWriteExt;
    let tmp = tempfile::tempdir().unwrap();
    let (_server, _, port) = start_server(tmp.path(), &[("LICENSOR_IDLE_TIMEOUT", "1s")]).await;
    let started = std::time::Instant::now();
    let mut idle = connect_from("127.0.0.1", port).await;
    let mut slow = connect_from("127.0.0.1", port).await;
    slow.write_all(b"GET /v1/ping HTTP/1.1\r\nHost: x\r\n").await.unwrap();
    let mut kept = connect_from("127.0.0.1", port).await;
    kept.write_all(b"GET /v1/ping HTTP/1.1\r\nHost: x\r\n\r\n").await.unwrap();
    let answer = closed_within(&mut kept, std::time::Duration::from_secs(5)).await;
    assert!(String::from_utf8_lossy(&answer).starts_with("HTTP/1.1 200"), "{}", String::from_utf8_lossy(&answer));
    closed_within(&mut idle, std::time::Duration::from_secs(5)).await;
    closed_within(&mut slow, std::time::Duration::from_secs(5)).await;
    assert!(started.elapsed() >= std::time::Duration::from_millis(900), "closed before the timeout");
}

/// One client address holding more connections than the caps allow cannot lock others out:
/// its excess connections are closed at once, and another client is still answered.
#[tokio::test]
async fn a_client_holding_many_connections_cannot_starve_others() {
    let tmp = tempfile::tempdir().unwrap();
    let (server, url, port) = start_server(
        tmp.path(),
        &[
            ("LICENSOR_MAX_CONNECTIONS", "40"),
            ("LICENSOR_MAX_CONNECTIONS_PER_IP", "10"),
            ("LICENSOR_IDLE_TIMEOUT", "60s"),
        ],
    )
    .await;
    // The soft open-file limit was raised to the hard one.
    let limits = std::fs::read_to_string(format!("/proc/{}/limits", server.0.id())).unwrap();
    let line = limits.lines().find(|l| l.starts_with("Max open files")).unwrap();
    let fields: Vec<&str> = line.split_whitespace().collect();
    assert_eq!(fields[3], fields[4], "{line}");

    let mut held = Vec::new();
    for _ in 0..50 {
        held.push(connect_from("127.0.0.2", port).await);
    }
    // Ten are held open; the forty beyond the per-address cap were closed straight away.
    let mut closed = 0;
    for s in held.iter_mut().skip(10) {
        closed_within(s, std::time::Duration::from_secs(2)).await;
        closed += 1;
    }
    assert_eq!(closed, 40);
    let client = reqwest::Client::new();
    let r = tokio::time::timeout(std::time::Duration::from_secs(2), client.get(format!("{url}/v1/ping")).send())
        .await
        .expect("answered while another client holds connections")
        .unwrap();
    assert_eq!(r.status(), 200);
    // The first ten are still open: the cap closes excess connections, not earlier ones.
    use tokio::io::AsyncWriteExt;
    let first = &mut held[0];
    first.write_all(b"GET /v1/ping HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").await.unwrap();
    let answer = closed_within(first, std::time::Duration::from_secs(2)).await;
    assert!(String::from_utf8_lossy(&answer).starts_with("HTTP/1.1 200"));
}

#[tokio::test]
async fn health_and_readiness() {
    let app = spawn_app().await;
    let r = app.get("/healthz", &As::Anonymous).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.body["status"], "ok");
    let r = app.get("/readyz", &As::Anonymous).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.body["status"], "ok");

    // A schema behind this binary is not ready (a node started before `licensor migrate`).
    licensor::db_run!(&app.db, |pool| sqlx::query("DELETE FROM _sqlx_migrations WHERE version = 11")
        .execute(pool)
        .await
        .map(|_| ())
        .unwrap());
    let r = app.get("/readyz", &As::Anonymous).await;
    assert_eq!(r.status, 503, "{}", r.text);
    assert_eq!(r.body["reason"], "migrations not applied: 11");
}

#[tokio::test]
async fn the_healthcheck_command_asks_readyz() {
    let tmp = tempfile::tempdir().unwrap();
    let (server, _, port) = start_server(tmp.path(), &[]).await;
    let run = |port: u16| {
        std::process::Command::new(env!("CARGO_BIN_EXE_licensor"))
            .args(["healthcheck", "--listen", &format!("0.0.0.0:{port}"), "--timeout", "2s"])
            .env_remove("LICENSOR_LISTEN")
            .output()
            .unwrap()
    };
    let out = run(port);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("HTTP/1.1 200"));
    drop(server);
    assert!(!run(port).status.success(), "nothing listens any more");
}

/// `/metrics`: an admin's token on the main listener, anyone on the metrics listener; what a
/// validation, an activation and a request record.
#[tokio::test]
async fn metrics_count_requests_validations_and_activations() {
    let app = spawn_app().await;
    let (_, _, license, key) = app.license_fixture(json!({"floating": true, "maxMachines": 2})).await;
    let r = app.post(&app.acct("/licenses/actions/validate-key"), &As::Anonymous, json!({"meta": {"key": key}})).await;
    assert_eq!(r.body["meta"]["code"], "VALID", "{}", r.text);
    let r = app
        .post(
            &app.acct("/machines"),
            &app.admin(),
            json!({"data": {"type": "machines", "attributes": {"fingerprint": "fp-1"},
                "relationships": {"license": {"data": {"type": "licenses", "id": license}}}}}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    let r = app.delete(&app.acct(&format!("/machines/{}", r.id())), &app.admin()).await;
    assert_eq!(r.status, 204, "{}", r.text);

    let r = app.get("/metrics", &As::Anonymous).await;
    assert_eq!(r.status, 401);
    assert_eq!(r.code(), "TOKEN_MISSING");
    let r = app.get("/metrics", &As::License(key.clone())).await;
    assert_eq!(r.status, 401, "a license key is not an admin token: {}", r.text);
    let r = app.get("/metrics", &app.admin()).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let text = &r.text;
    assert!(text.contains("licensor_validations_total{code=\"VALID\"} 1\n"), "{text}");
    assert!(text.contains("licensor_machine_activations_total{surface=\"keygen\"} 1\n"), "{text}");
    let route = "surface=\"keygen\",route=\"/v1/accounts/{account}/licenses/actions/validate-key\",method=\"POST\",status=\"200\"";
    assert!(text.contains(&format!("licensor_http_request_duration_seconds_count{{{route}}} 1\n")), "{text}");
    assert!(text.contains("licensor_machine_deactivations_total{surface=\"keygen\"} 1\n"), "{text}");
    assert!(!text.contains(&key), "a key in the metrics");
    for gauge in ["licensor_db_connections_max ", "licensor_db_connections_open ", "licensor_db_connections_idle "] {
        assert!(text.contains(gauge), "{gauge} in {text}");
    }
    // The background jobs run at start (the cull) and every second (the flush).
    let mut text = String::new();
    for _ in 0..100 {
        text = app.get("/metrics", &app.admin()).await.text;
        if text.contains("licensor_background_job_runs_total{job=\"cull\",outcome=\"ok\"}") {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(text.contains("licensor_background_job_runs_total{job=\"cull\",outcome=\"ok\"}"), "{text}");
}

#[tokio::test]
async fn the_metrics_listener_needs_no_token() {
    let tmp = tempfile::tempdir().unwrap();
    let metrics_port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let addr = format!("127.0.0.1:{metrics_port}");
    let (_server, url, _) = start_server(tmp.path(), &[("LICENSOR_METRICS_LISTEN", &addr)]).await;
    let client = reqwest::Client::new();
    assert_eq!(client.get(format!("{url}/v1/ping")).send().await.unwrap().status(), 200);
    let r = client.get(format!("http://{addr}/metrics")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let text = r.text().await.unwrap();
    assert!(text.contains("route=\"/v1/ping\""), "{text}");
    assert_eq!(client.get(format!("{url}/metrics")).send().await.unwrap().status(), 401);
    // Only the operations routes are there.
    assert_eq!(client.get(format!("http://{addr}/v1/ping")).send().await.unwrap().status(), 404);
}

fn signal(child: &std::process::Child, sig: &str) {
    let ok = std::process::Command::new("kill").args([sig, &child.id().to_string()]).status().unwrap().success();
    assert!(ok, "kill {sig}");
}

/// `systemctl reload` sends SIGHUP. Without TLS there is nothing to reload, and the signal's
/// default action would have ended the server (which systemd counts as a clean exit).
#[tokio::test]
async fn sighup_without_tls_leaves_the_server_running() {
    let tmp = tempfile::tempdir().unwrap();
    let (mut server, url, _) = start_server(tmp.path(), &[]).await;
    signal(&server.0, "-HUP");
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert!(server.0.try_wait().unwrap().is_none(), "SIGHUP ended the server");
    let r = reqwest::get(format!("{url}/v1/ping")).await.unwrap();
    assert_eq!(r.status(), 200);
}

/// SIGTERM: the listener closes, a request already in flight is finished and answered, one that
/// outlasts the deadline is cut off, and the cull lease is handed back.
#[tokio::test]
async fn sigterm_drains_in_flight_requests_then_exits() {
    use tokio::io::AsyncWriteExt;
    let tmp = tempfile::tempdir().unwrap();
    let (mut server, _, port) = start_server(tmp.path(), &[("LICENSOR_SHUTDOWN_TIMEOUT", "3s")]).await;
    let body = r#"{"meta":{"key":"NOT-A-KEY"}}"#;
    let head = format!(
        "POST /v1/licenses/actions/validate-key HTTP/1.1\r\nHost: x\r\nContent-Type: application/vnd.api+json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    let mut finishing = connect_from("127.0.0.1", port).await;
    finishing.write_all(head.as_bytes()).await.unwrap();
    finishing.write_all(&body.as_bytes()[..5]).await.unwrap();
    let mut stalled = connect_from("127.0.0.1", port).await;
    stalled.write_all(head.as_bytes()).await.unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;

    let stopping = std::time::Instant::now();
    signal(&server.0, "-TERM");
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert!(tokio::net::TcpStream::connect(("127.0.0.1", port)).await.is_err(), "still accepting");
    finishing.write_all(&body.as_bytes()[5..]).await.unwrap();
    let answer = closed_within(&mut finishing, std::time::Duration::from_secs(2)).await;
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.contains("\"NOT_FOUND\""), "{answer}");

    let status = tokio::task::spawn_blocking(move || {
        for _ in 0..100 {
            if let Some(s) = server.0.try_wait().unwrap() {
                return s;
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        panic!("still running 5 s after SIGTERM");
    })
    .await
    .unwrap();
    assert!(status.success(), "{status}");
    let took = stopping.elapsed();
    assert!(took >= std::time::Duration::from_millis(2500), "the stalled request was not waited for: {took:?}");
    closed_within(&mut stalled, std::time::Duration::from_secs(1)).await;

    let db =
        licensor::db::Db::connect(&format!("sqlite:{}", tmp.path().join("licensor.db").display()), None).await.unwrap();
    let licensor::db::Db::Sqlite(s) = &db else { unreachable!() };
    let expires: i64 =
        sqlx::query_scalar("SELECT expires_at FROM job_leases WHERE name = 'cull'").fetch_one(&s.pool).await.unwrap();
    assert_eq!(expires, 0, "the cull lease was not handed back");
}

fn licensor_cli(args: &[&str], data_dir: &std::path::Path) -> (bool, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_licensor"))
        .args(args)
        .env("LICENSOR_DATA_DIR", data_dir)
        .env_remove("LICENSOR_DATABASE_URL")
        .env_remove("LICENSOR_DATABASE_SCHEMA")
        .env_remove("LICENSOR_MASTER_KEY")
        .output()
        .unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    (out.status.success(), text)
}

/// The PostgreSQL drill of docs/operations.md: `pg_dump` of the live schema under load,
/// `pg_restore` into a fresh database, and a node started on the copy answers every license it
/// holds as the original does. Runs when the suite runs on PostgreSQL.
#[tokio::test]
async fn postgres_dump_under_load_restores_the_same_validations() {
    let app = spawn_app().await;
    let (Some(schema), true) = (app.schema.clone(), app.database_url.starts_with("postgres")) else {
        eprintln!("SQLite run: the SQLite drill is backup_under_load_and_restore_validate_the_same");
        return;
    };
    let product = app.create_product("App").await;
    let policy = app.create_policy(&product, json!({"floating": true, "maxMachines": 3})).await;
    for i in 0..12 {
        let attrs = match i % 4 {
            0 => json!({"expiry": "2020-01-01T00:00:00Z"}),
            1 => json!({"suspended": true}),
            _ => json!({}),
        };
        app.create_license(&policy, attrs).await;
    }
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let load = {
        let (client, url, token, policy, stop) =
            (app.client.clone(), app.acct("/licenses"), app.admin_token.clone(), policy.clone(), stop.clone());
        let url = format!("http://{}{url}", app.addr);
        tokio::spawn(async move {
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let r = client
                    .post(&url)
                    .bearer_auth(&token)
                    .header("content-type", "application/vnd.api+json")
                    .body(
                        json!({"data": {"type": "licenses",
                        "relationships": {"policy": {"data": {"type": "policies", "id": policy}}}}})
                        .to_string(),
                    )
                    .send()
                    .await
                    .unwrap();
                assert_eq!(r.status(), 201);
            }
        })
    };
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    let tmp = tempfile::tempdir().unwrap();
    let dump = tmp.path().join("licensor.dump");
    let out = std::process::Command::new("pg_dump")
        .args(["--format=custom", "--schema", &schema, "--file", dump.to_str().unwrap(), &app.database_url])
        .output()
        .expect("pg_dump (Debian's postgresql-client)");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    load.await.unwrap();

    let fresh = format!("drill_{}", uuid::Uuid::new_v4().simple());
    let admin = sqlx::PgPool::connect(&app.database_url).await.unwrap();
    sqlx::query(&format!("CREATE DATABASE {fresh}")).execute(&admin).await.unwrap();
    let (base, _) = app.database_url.rsplit_once('/').unwrap();
    let restored_url = format!("{base}/{fresh}");
    let out = std::process::Command::new("pg_restore")
        .args(["--exit-on-error", "--dbname", &restored_url, dump.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));

    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let node = KillOnDrop(
        std::process::Command::new(env!("CARGO_BIN_EXE_licensor"))
            .arg("serve")
            .env("LICENSOR_LISTEN", format!("127.0.0.1:{port}"))
            .env("LICENSOR_DATABASE_URL", &restored_url)
            .env("LICENSOR_DATABASE_SCHEMA", &schema)
            .env("LICENSOR_DATA_DIR", tmp.path().join("data"))
            .env("LICENSOR_MASTER_KEY", &app.master_hex)
            .env("LICENSOR_RATE_LIMITS", "off")
            .env("LICENSOR_ADDRESS_RATE_LIMITS", "off")
            .env_remove("LICENSOR_ACCOUNT")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap(),
    );
    let restored = format!("http://127.0.0.1:{port}");
    for _ in 0..200 {
        if app.client.get(format!("{restored}/readyz")).send().await.is_ok_and(|r| r.status().is_success()) {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let copy = validations(&app.client, &restored, &app.admin_token, &app.account_id).await;
    let original: std::collections::HashMap<String, String> =
        validations(&app.client, &format!("http://{}", app.addr), &app.admin_token, &app.account_id)
            .await
            .into_iter()
            .collect();
    assert!(copy.len() > 12, "the copy holds the licenses made before and during the dump: {}", copy.len());
    for (key, code) in &copy {
        assert_eq!(original.get(key), Some(code), "{key} validates differently in the copy");
    }
    for code in ["VALID", "EXPIRED", "SUSPENDED"] {
        assert!(copy.iter().any(|(_, c)| c == code), "no {code} license in the copy");
    }
    drop(node);
    admin.close().await;
    let admin = sqlx::PgPool::connect(&app.database_url).await.unwrap();
    let _ = sqlx::query(&format!("DROP DATABASE {fresh} WITH (FORCE)")).execute(&admin).await;
}

/// Every license key in the account, with what validating it answers.
async fn validations(client: &reqwest::Client, url: &str, token: &str, account: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut page = 1;
    loop {
        let r: serde_json::Value = client
            .get(format!("{url}/v1/accounts/{account}/licenses?page[size]=100&page[number]={page}"))
            .bearer_auth(token)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let data = r["data"].as_array().unwrap().clone();
        for l in &data {
            let key = l["attributes"]["key"].as_str().unwrap().to_string();
            let v: serde_json::Value = client
                .post(format!("{url}/v1/accounts/{account}/licenses/actions/validate-key"))
                .json(&json!({"meta": {"key": key}}))
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            out.push((key, v["meta"]["code"].as_str().unwrap().to_string()));
        }
        if data.len() < 100 {
            break;
        }
        page += 1;
    }
    out.sort();
    out
}

/// The restore drill of docs/operations.md: back up a live server under load, restore into a
/// fresh folder, and every license there validates as it does on the original.
#[tokio::test]
async fn backup_under_load_and_restore_validate_the_same() {
    let tmp = tempfile::tempdir().unwrap();
    let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
    let (_server_a, url_a, _) = start_server(&a, &[("LICENSOR_RATE_LIMITS", "off")]).await;
    let creds: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(a.join("initial-credentials.json")).unwrap()).unwrap();
    let token = creds["admin_token"].as_str().unwrap().to_string();
    let account = creds["account_id"].as_str().unwrap().to_string();
    let client = reqwest::Client::new();
    let api = format!("{url_a}/v1/accounts/{account}");
    let post = |path: &str, body: serde_json::Value| {
        client.post(format!("{api}{path}")).bearer_auth(&token).json(&body).send()
    };
    let product: serde_json::Value =
        post("/products", json!({"data": {"type": "products", "attributes": {"name": "App"}}}))
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
    let policy: serde_json::Value = post(
        "/policies",
        json!({"data": {"type": "policies", "attributes": {"name": "P", "floating": true, "maxMachines": 3, "protected": false},
            "relationships": {"product": {"data": {"type": "products", "id": product["data"]["id"]}}}}}),
    )
    .await
    .unwrap()
    .json()
    .await
    .unwrap();
    let policy = policy["data"]["id"].as_str().unwrap().to_string();
    let license = |attrs: serde_json::Value| {
        post(
            "/licenses",
            json!({"data": {"type": "licenses", "attributes": attrs,
                "relationships": {"policy": {"data": {"type": "policies", "id": policy}}}}}),
        )
    };
    for i in 0..24 {
        let attrs = match i % 4 {
            0 => json!({"expiry": "2020-01-01T00:00:00Z"}),
            1 => json!({"suspended": true}),
            _ => json!({}),
        };
        assert_eq!(license(attrs).await.unwrap().status(), 201);
    }

    // Load: licenses keep being created and validated while the backup runs.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let load = {
        let (client, api, token, policy, stop) =
            (client.clone(), api.clone(), token.clone(), policy.clone(), stop.clone());
        tokio::spawn(async move {
            let mut n = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let r = client
                    .post(format!("{api}/licenses"))
                    .bearer_auth(&token)
                    .json(&json!({"data": {"type": "licenses",
                        "relationships": {"policy": {"data": {"type": "policies", "id": policy}}}}}))
                    .send()
                    .await
                    .unwrap();
                assert_eq!(r.status(), 201);
                n += 1;
            }
            n
        })
    };
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    let backup = tmp.path().join("licensor-backup.db");
    let (ok, out) = {
        let (backup, a) = (backup.clone(), a.clone());
        tokio::task::spawn_blocking(move || licensor_cli(&["backup", "--to", backup.to_str().unwrap()], &a))
            .await
            .unwrap()
    };
    assert!(ok, "{out}");
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    assert!(load.await.unwrap() > 0);
    assert_eq!(mode(&backup), 0o600);

    // The backup opens only with its master key; a live server's database is not replaced.
    std::fs::create_dir_all(&b).unwrap();
    let (ok, out) = licensor_cli(&["restore", "--from", backup.to_str().unwrap()], &a);
    assert!(!ok && out.contains("a server is using"), "{out}");
    std::fs::write(b.join("master.key"), "00".repeat(32)).unwrap();
    let (ok, out) = licensor_cli(&["restore", "--from", backup.to_str().unwrap()], &b);
    assert!(!ok && out.contains("another master key"), "{out}");
    std::fs::copy(a.join("master.key"), b.join("master.key")).unwrap();
    let (ok, out) = licensor_cli(&["restore", "--from", backup.to_str().unwrap()], &b);
    assert!(ok, "{out}");
    assert!(!b.join("licensor.db.restoring").exists());

    let (_server_b, url_b, _) = start_server(&b, &[("LICENSOR_RATE_LIMITS", "off")]).await;
    let restored = validations(&client, &url_b, &token, &account).await;
    let original = validations(&client, &url_a, &token, &account).await;
    assert!(restored.len() > 24, "{} licenses restored", restored.len());
    assert!(restored.len() < original.len(), "the load after the backup is not in it");
    let codes: std::collections::HashMap<_, _> = original.into_iter().collect();
    for (key, code) in &restored {
        assert_eq!(Some(code), codes.get(key), "{key}");
    }
    for code in ["VALID", "SUSPENDED", "EXPIRED"] {
        assert!(restored.iter().any(|(_, c)| c == code), "no {code} license in the drill");
    }
}

struct TestCert {
    cert: String,
    key: String,
    der: Vec<u8>,
}

fn test_cert() -> TestCert {
    let c = rcgen::generate_simple_self_signed(vec!["localhost".to_string(), "127.0.0.1".to_string()]).unwrap();
    TestCert { cert: c.cert.pem(), key: c.key_pair.serialize_pem(), der: c.cert.der().to_vec() }
}

/// GET `path` over TLS trusting `roots`; returns (the certificate the server presented, the
/// response's status line).
async fn https_get(port: u16, roots: &[&TestCert], path: &str) -> (Vec<u8>, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut store = rustls::RootCertStore::empty();
    for r in roots {
        store.add(rustls::pki_types::CertificateDer::from(r.der.clone())).unwrap();
    }
    let config =
        rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(store)
            .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(std::sync::Arc::new(config));
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let mut tls = connector.connect(name, tcp).await.expect("TLS handshake");
    let presented = tls.get_ref().1.peer_certificates().unwrap()[0].to_vec();
    tls.write_all(format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut buf = Vec::new();
    let _ = tls.read_to_end(&mut buf).await;
    (presented, String::from_utf8_lossy(&buf).lines().next().unwrap_or("").to_string())
}

/// HTTPS without a proxy: served with the configured certificate, reloaded on SIGHUP and when
/// the files change, a broken renewal leaves the served certificate in place, and the
/// healthcheck speaks TLS.
#[tokio::test]
async fn https_with_certificate_reload() {
    let tmp = tempfile::tempdir().unwrap();
    let (cert_path, key_path) = (tmp.path().join("cert.pem"), tmp.path().join("key.pem"));
    let (a, b) = (test_cert(), test_cert());
    std::fs::write(&cert_path, &a.cert).unwrap();
    std::fs::write(&key_path, &a.key).unwrap();
    let data = tmp.path().join("data");
    let envs = [("LICENSOR_TLS_CERT", cert_path.to_str().unwrap()), ("LICENSOR_TLS_KEY", key_path.to_str().unwrap())];
    let (server, _, port) = start_server(&data, &envs).await;
    let (presented, status) = https_get(port, &[&a, &b], "/v1/ping").await;
    assert_eq!(presented, a.der);
    assert_eq!(status, "HTTP/1.1 200 OK");
    // Plain HTTP gets no answer on the TLS port.
    let plain = reqwest::Client::new().get(format!("http://127.0.0.1:{port}/v1/ping")).send().await;
    assert!(plain.is_err() || !plain.unwrap().status().is_success());

    // A renewed certificate, announced with SIGHUP.
    std::fs::write(&cert_path, &b.cert).unwrap();
    std::fs::write(&key_path, &b.key).unwrap();
    signal(&server.0, "-HUP");
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert_eq!(https_get(port, &[&a, &b], "/v1/ping").await.0, b.der);

    // A broken renewal: the served certificate stays.
    std::fs::write(&key_path, "not a key").unwrap();
    signal(&server.0, "-HUP");
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let (presented, status) = https_get(port, &[&a, &b], "/readyz").await;
    assert_eq!((presented, status.as_str()), (b.der.clone(), "HTTP/1.1 200 OK"));

    // The healthcheck trusts exactly the configured certificate.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_licensor"))
        .args(["healthcheck", "--listen", &format!("127.0.0.1:{port}")])
        .env("LICENSOR_TLS_CERT", &cert_path)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));

    // Files changed without a signal are picked up within the watch interval.
    std::fs::write(&cert_path, &a.cert).unwrap();
    std::fs::write(&key_path, &a.key).unwrap();
    let mut seen = Vec::new();
    for _ in 0..30 {
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        seen = https_get(port, &[&a, &b], "/v1/ping").await.0;
        if seen == a.der {
            break;
        }
    }
    assert_eq!(seen, a.der, "the changed files were not reloaded");
}

/// Settings come from flags, then environment variables, then `*_FILE` variables, then the
/// `--config` file, then defaults; `licensor config check` says which, and never prints a
/// secret.
#[tokio::test]
async fn configuration_precedence_and_config_check() {
    let tmp = tempfile::tempdir().unwrap();
    let key = "ab".repeat(32);
    std::fs::write(tmp.path().join("master.hex"), format!("{key}\n")).unwrap();
    let config = tmp.path().join("licensor.toml");
    std::fs::write(
        &config,
        r#"
listen = "127.0.0.1:9001"
rate-limits = "50/1s"
idle_timeout = "7s"
trusted-proxies = ["10.0.0.0/8", "::1"]
master_key_file = "master.hex"
database-url = "postgres://app:s3cret@db/licensor"
"#,
    )
    .unwrap();
    let check = |extra_env: &[(&str, &str)], args: &[&str]| {
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_licensor"));
        cmd.args(["config", "check", "--config", config.to_str().unwrap()]).args(args);
        for (k, _) in std::env::vars().filter(|(k, _)| k.starts_with("LICENSOR_")) {
            cmd.env_remove(k);
        }
        for (k, v) in extra_env {
            cmd.env(k, v);
        }
        let out = cmd.output().unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let line = |out: &str, name: &str| {
        out.lines()
            .find(|l| l.starts_with(&format!("{name} ")))
            .unwrap_or_else(|| panic!("{name} in {out}"))
            .to_string()
    };
    let (code, out, err) = check(&[("LICENSOR_LISTEN", "127.0.0.1:9002")], &["--idle-timeout", "3s"]);
    assert_eq!(code, Some(0), "{err}");
    assert!(line(&out, "listen").contains("\"127.0.0.1:9002\"") && line(&out, "listen").ends_with("# LICENSOR_LISTEN"));
    assert!(line(&out, "idle-timeout").contains("\"3s\"") && line(&out, "idle-timeout").ends_with("# flag"));
    assert!(line(&out, "rate-limits").contains("\"50/1s\"") && line(&out, "rate-limits").ends_with("# config file"));
    assert!(line(&out, "trusted-proxies").contains("\"10.0.0.0/8,::1\""));
    assert!(line(&out, "max-connections").ends_with("# default"));
    assert!(line(&out, "master-key").contains("(redacted)") && line(&out, "master-key").ends_with("# config file"));
    assert!(line(&out, "database-url").contains("postgres://app:…@db/licensor"));
    assert!(!out.contains(&key) && !out.contains("s3cret"), "a secret was printed: {out}");

    // A `*_FILE` variable is above the config file and below the variable itself.
    let other = tmp.path().join("other.hex");
    std::fs::write(&other, "cd".repeat(32)).unwrap();
    let (_, out, _) = check(&[("LICENSOR_MASTER_KEY_FILE", other.to_str().unwrap())], &[]);
    assert!(line(&out, "master-key").ends_with("# LICENSOR_MASTER_KEY_FILE"), "{out}");
    let (_, out, _) =
        check(&[("LICENSOR_MASTER_KEY_FILE", other.to_str().unwrap()), ("LICENSOR_MASTER_KEY", &"ef".repeat(32))], &[]);
    assert!(line(&out, "master-key").ends_with("# LICENSOR_MASTER_KEY"), "{out}");

    // Mistakes are refused, not ignored.
    std::fs::write(&config, "listen = \"127.0.0.1:9001\"\nlisten-address = \"x\"\n").unwrap();
    let (code, _, err) = check(&[], &[]);
    assert_eq!(code, Some(2));
    assert!(err.contains("unknown setting \"listen-address\""), "{err}");
    std::fs::write(&config, "rate-limits = \"lots\"\n").unwrap();
    let (code, _, err) = check(&[], &[]);
    assert_ne!(code, Some(0));
    assert!(err.contains("rate-limits"), "{err}");
}

/// `licensor serve --config FILE` runs with the file's settings.
#[tokio::test]
async fn serve_reads_the_config_file() {
    let tmp = tempfile::tempdir().unwrap();
    let metrics_port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let config = tmp.path().join("licensor.toml");
    std::fs::write(&config, format!("metrics-listen = \"127.0.0.1:{metrics_port}\"\n")).unwrap();
    let (_server, _, _) =
        start_server(&tmp.path().join("data"), &[("LICENSOR_CONFIG", config.to_str().unwrap())]).await;
    let r = reqwest::get(format!("http://127.0.0.1:{metrics_port}/healthz")).await.unwrap();
    assert_eq!(r.status(), 200);
}

/// `--log-format json`: one object a line; each request's access line names its request id,
/// surface, route template, status and latency, and no key or token appears anywhere.
#[tokio::test]
async fn json_access_logs_carry_no_secrets() {
    let tmp = tempfile::tempdir().unwrap();
    let log = tmp.path().join("stderr.log");
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_licensor"));
    cmd.args(["serve", "--log-format", "json"])
        .env("LICENSOR_LISTEN", format!("127.0.0.1:{port}"))
        .env("LICENSOR_DATA_DIR", tmp.path().join("data"))
        .env_remove("LICENSOR_DATABASE_URL")
        .env_remove("LICENSOR_MASTER_KEY")
        .env_remove("LICENSOR_LOG")
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap());
    let server = KillOnDrop(cmd.spawn().unwrap());
    let url = format!("http://127.0.0.1:{port}");
    let client = reqwest::Client::new();
    for _ in 0..300 {
        if client.get(format!("{url}/v1/ping")).send().await.is_ok() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let creds: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(tmp.path().join("data/initial-credentials.json")).unwrap())
            .unwrap();
    let token = creds["admin_token"].as_str().unwrap();
    let secret_key = "SECRET-LICENSE-KEY-0123456789";
    let r = client
        .get(format!("{url}/v1/licenses/{secret_key}?key={secret_key}"))
        .bearer_auth(token)
        .header("x-request-id", "trace-me-42")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    drop(server);
    let text = std::fs::read_to_string(&log).unwrap();
    let lines: Vec<serde_json::Value> =
        text.lines().map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}"))).collect();
    let access = lines
        .iter()
        .find(|l| l["request_id"] == "trace-me-42")
        .unwrap_or_else(|| panic!("no access line for the request: {text}"));
    assert_eq!(access["target"], "licensor::access");
    assert_eq!(access["surface"], "keygen");
    assert_eq!(access["route"], "/v1/licenses/{id}");
    assert_eq!(access["status"], 404);
    assert!(access["latency_us"].as_u64().is_some());
    assert!(!text.contains(secret_key) && !text.contains(token), "a secret in the log: {text}");
}

/// The deployment files stay true: the example configuration passes `licensor config check`,
/// and the systemd unit passes `systemd-analyze verify` (where systemd is installed) with the
/// binary it names.
#[tokio::test]
async fn the_deployment_files_are_valid() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy");
    let tmp = tempfile::tempdir().unwrap();
    let c = test_cert();
    std::fs::write(tmp.path().join("cert.pem"), &c.cert).unwrap();
    std::fs::write(tmp.path().join("key.pem"), &c.key).unwrap();
    let config = std::fs::read_to_string(root.join("licensor.toml"))
        .unwrap()
        .replace("/etc/licensor/tls/fullchain.pem", tmp.path().join("cert.pem").to_str().unwrap())
        .replace("/etc/licensor/tls/privkey.pem", tmp.path().join("key.pem").to_str().unwrap());
    std::fs::write(tmp.path().join("licensor.toml"), config).unwrap();
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_licensor"));
    for (k, _) in std::env::vars().filter(|(k, _)| k.starts_with("LICENSOR_")) {
        cmd.env_remove(k);
    }
    let out =
        cmd.args(["config", "check", "--config", tmp.path().join("licensor.toml").to_str().unwrap()]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("\"0.0.0.0:8443\""));

    let unit = std::fs::read_to_string(root.join("licensor.service")).unwrap();
    assert!(unit.contains("ExecStart=/usr/local/bin/licensor serve --config /etc/licensor/licensor.toml"));
    // The service runs as user licensor: its configuration (and TLS key) must be readable by
    // its group, and by nobody else.
    assert!(unit.contains("install -d -m 0750 -g licensor /etc/licensor"), "{unit}");
    assert!(unit.contains("install -m 0640 -g licensor deploy/licensor.toml /etc/licensor/"), "{unit}");
    let useradd = unit.find("useradd").unwrap();
    assert!(useradd < unit.find("-g licensor").unwrap(), "the group must exist before files are given to it");
    if std::process::Command::new("systemd-analyze").arg("--version").output().is_err() {
        eprintln!("systemd-analyze is not installed: unit not verified");
        return;
    }
    let path = tmp.path().join("licensor.service");
    std::fs::write(&path, unit.replace("/usr/local/bin/licensor", env!("CARGO_BIN_EXE_licensor"))).unwrap();
    let out = std::process::Command::new("systemd-analyze").arg("verify").arg(&path).output().unwrap();
    let complaints = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success() && complaints.trim().is_empty(), "{complaints}");
}
