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
    assert!(!text.contains(&key), "a key in the metrics");
    assert!(text.contains("licensor_db_connections_max "));
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
