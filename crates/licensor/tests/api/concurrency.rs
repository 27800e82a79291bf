//! Limits hold under concurrent requests, within one node and across several nodes sharing
//! one database.

use reqwest::StatusCode;
use serde_json::json;

use crate::helpers::*;

async fn race(app: &TestApp, urls: &[String], license: &str, n: usize) -> usize {
    let mut tasks = Vec::new();
    for i in 0..n {
        let client = app.client.clone();
        let url = format!("{}/v1/accounts/{}/machines", urls[i % urls.len()], app.account_id);
        let token = app.admin_token.clone();
        let body = json!({"data": {"type": "machines", "attributes": {"fingerprint": format!("fp-{i}")}, "relationships": {"license": {"data": {"type": "licenses", "id": license}}}}});
        tasks.push(tokio::spawn(async move {
            client
                .post(url)
                .bearer_auth(token)
                .header("content-type", "application/vnd.api+json")
                .body(body.to_string())
                .send()
                .await
                .unwrap()
                .status()
        }));
    }
    let mut created = 0;
    for t in tasks {
        let s = t.await.unwrap();
        assert!(s == StatusCode::CREATED || s == StatusCode::UNPROCESSABLE_ENTITY, "unexpected {s}");
        if s == StatusCode::CREATED {
            created += 1;
        }
    }
    created
}

#[tokio::test]
async fn fifty_concurrent_activations_against_five() {
    let app = spawn_app().await;
    let (_, _, id, _) = app.license_fixture(json!({"floating": true, "maxMachines": 5})).await;
    let created = race(&app, &[format!("http://{}", app.addr)], &id, 50).await;
    assert_eq!(created, 5);
    let r = app.get(&app.acct(&format!("/licenses/{id}")), &app.admin()).await;
    assert_eq!(r.body["data"]["relationships"]["machines"]["meta"]["count"], 5);
}

/// Two `licensor serve` processes on one database: the limit still holds.
#[tokio::test]
async fn two_server_processes_share_the_limit() {
    let app = spawn_app().await;
    let (_, _, id, _) = app.license_fixture(json!({"floating": true, "maxMachines": 5})).await;
    let data_dir = tempfile::tempdir().unwrap();
    let mut children = Vec::new();
    let mut urls = Vec::new();
    for _ in 0..2 {
        let (child, url) = app.serve_process(data_dir.path()).await;
        children.push(child);
        urls.push(url);
    }
    let created = race(&app, &urls, &id, 50).await;
    assert_eq!(created, 5);
    let r = app.get(&app.acct(&format!("/licenses/{id}")), &app.admin()).await;
    assert_eq!(r.body["data"]["relationships"]["machines"]["meta"]["count"], 5);

    // The air-gapped activation surface shares the limit through both processes too.
    let (_, _, id, key) = app.license_fixture(json!({"floating": true, "maxMachines": 5})).await;
    let mut tasks = Vec::new();
    for n in 0..50usize {
        let url = format!("{}/activation?key={key}&deployment=MSCL{:032X}&quantity=1", urls[n % urls.len()], n);
        let client = app.client.clone();
        tasks.push(tokio::spawn(async move { client.get(url).send().await.unwrap().text().await.unwrap() }));
    }
    let mut files = 0;
    for t in tasks {
        let body = t.await.unwrap();
        if body.starts_with("# Licensor offline license") {
            files += 1;
        } else {
            assert!(body.contains("has no activations left"), "{body}");
        }
    }
    assert_eq!(files, 5);
    let r = app.get(&app.acct(&format!("/licenses/{id}")), &app.admin()).await;
    assert_eq!(r.body["data"]["relationships"]["machines"]["meta"]["count"], 5);
}

/// One license token activating new machines while it deactivates old ones, all at once (a
/// fleet re-imaging its hosts). Every request succeeds and the count is exact: activation and
/// deactivation take the license and the token in the same order, so PostgreSQL finds no
/// deadlock to break with an error.
#[tokio::test]
async fn one_token_activating_and_deactivating_at_once() {
    let app = spawn_app().await;
    let (_, _, license, _) = app.license_fixture(json!({"floating": true, "maxMachines": 100})).await;
    let t = app.post(&app.acct(&format!("/licenses/{license}/tokens")), &app.admin(), json!(null)).await;
    assert_eq!(t.status, StatusCode::OK, "{}", t.text);
    let token = t.attr("token").as_str().unwrap().to_string();
    let machine = |fingerprint: String| {
        json!({"data": {"type": "machines", "attributes": {"fingerprint": fingerprint},
            "relationships": {"license": {"data": {"type": "licenses", "id": license}}}}})
    };
    let mut old = Vec::new();
    for i in 0..20 {
        let r = app.post(&app.acct("/machines"), &As::Bearer(token.clone()), machine(format!("old-{i}"))).await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
        old.push(r.id());
    }
    let mut tasks = Vec::new();
    for (i, id) in old.into_iter().enumerate() {
        for deactivate in [true, false] {
            let (client, token) = (app.client.clone(), token.clone());
            let request = if deactivate {
                client.delete(app.url(&app.acct(&format!("/machines/{id}"))))
            } else {
                client
                    .post(app.url(&app.acct("/machines")))
                    .header("content-type", "application/vnd.api+json")
                    .body(machine(format!("new-{i}")).to_string())
            };
            tasks.push(tokio::spawn(async move { request.bearer_auth(token).send().await.unwrap().status() }));
        }
    }
    for t in tasks {
        let status = t.await.unwrap();
        assert!(status == StatusCode::CREATED || status == StatusCode::NO_CONTENT, "unexpected {status}");
    }
    let r = app.get(&app.acct(&format!("/licenses/{license}")), &app.admin()).await;
    assert_eq!(r.body["data"]["relationships"]["machines"]["meta"]["count"], 20);
}

/// Sends all `bodies` to `path` at once, as the admin; returns how many were created (201 or
/// 200) and checks every other answer is a 422.
async fn race_posts(app: &TestApp, path: &str, bodies: Vec<serde_json::Value>) -> usize {
    let tasks: Vec<_> = bodies
        .into_iter()
        .map(|body| {
            let (client, url, token) = (app.client.clone(), app.url(path), app.admin_token.clone());
            tokio::spawn(async move {
                let r = client
                    .post(url)
                    .bearer_auth(token)
                    .header("content-type", "application/vnd.api+json")
                    .body(body.to_string())
                    .send()
                    .await
                    .unwrap();
                (r.status(), r.text().await.unwrap())
            })
        })
        .collect();
    let mut ok = 0;
    for t in tasks {
        let (status, text) = t.await.unwrap();
        match status {
            StatusCode::CREATED | StatusCode::OK => ok += 1,
            StatusCode::UNPROCESSABLE_ENTITY => {}
            other => panic!("unexpected {other}: {text}"),
        }
    }
    ok
}

#[tokio::test]
async fn process_core_user_and_component_limits_hold_under_races() {
    let app = spawn_app().await;
    let product = app.create_product("App").await;

    // 30 spawns against maxProcesses=3 on one license.
    let policy = app
        .create_policy(&product, json!({"floating": true, "maxProcesses": 3, "processLeasingStrategy": "PER_LICENSE"}))
        .await;
    let (license, _) = app.create_license(&policy, json!({})).await;
    let r = app
        .post(
            &app.acct("/machines"),
            &app.admin(),
            json!({"data": {"type": "machines", "attributes": {"fingerprint": "host"},
            "relationships": {"license": {"data": {"type": "licenses", "id": license}}}}}),
        )
        .await;
    let machine = r.id();
    let bodies = (0..30)
        .map(|i| {
            json!({"data": {"type": "processes", "attributes": {"pid": format!("{i}")},
            "relationships": {"machine": {"data": {"type": "machines", "id": machine}}}}})
        })
        .collect();
    assert_eq!(race_posts(&app, &app.acct("/processes"), bodies).await, 3, "processes");

    // 20 activations of 2 cores each against maxCores=6.
    let policy = app.create_policy(&product, json!({"floating": true, "maxCores": 6})).await;
    let (license, _) = app.create_license(&policy, json!({})).await;
    let bodies = (0..20)
        .map(|i| {
            json!({"data": {"type": "machines", "attributes": {"fingerprint": format!("c{i}"), "cores": 2},
            "relationships": {"license": {"data": {"type": "licenses", "id": license}}}}})
        })
        .collect();
    assert_eq!(race_posts(&app, &app.acct("/machines"), bodies).await, 3, "cores");

    // 12 single-user attachments against maxUsers=4.
    let policy = app.create_policy(&product, json!({"maxUsers": 4})).await;
    let (license, _) = app.create_license(&policy, json!({})).await;
    let mut bodies = Vec::new();
    for i in 0..12 {
        let user = app.create_user(&format!("u{i}@example.com")).await;
        bodies.push(json!({"data": [{"type": "users", "id": user}]}));
    }
    assert_eq!(race_posts(&app, &app.acct(&format!("/licenses/{license}/users")), bodies).await, 4, "users");

    // 10 machines of one license each bringing the same component, unique per license.
    let policy = app
        .create_policy(&product, json!({"floating": true, "componentUniquenessStrategy": "UNIQUE_PER_LICENSE"}))
        .await;
    let (license, _) = app.create_license(&policy, json!({})).await;
    let bodies = (0..10)
        .map(|i| {
            json!({"data": {"type": "machines", "attributes": {"fingerprint": format!("b{i}")}, "relationships": {
            "license": {"data": {"type": "licenses", "id": license}},
            "components": {"data": [{"type": "components", "attributes": {"fingerprint": "gpu", "name": "GPU"}}]}}}})
        })
        .collect();
    assert_eq!(race_posts(&app, &app.acct("/machines"), bodies).await, 1, "components");
}

/// Grants racing through two server processes for a product with no licensing-v1 policy yet
/// agree on one: the floating policy is found or created under the product's lock.
#[tokio::test]
async fn racing_grants_create_one_floating_policy() {
    let app = spawn_app().await;
    let product = app.create_product("Fresh").await;
    let product_key = licensor::domain::projection::legacy_key(product.parse().unwrap());
    let data_dir = tempfile::tempdir().unwrap();
    let mut children = Vec::new();
    let mut urls = Vec::new();
    for _ in 0..2 {
        let (child, url) = app.serve_process(data_dir.path()).await;
        children.push(child);
        urls.push(url);
    }
    let mut tasks = Vec::new();
    for n in 0..16usize {
        let body = json!({"licenseeId": format!("L-{n}"), "licenseeName": format!("Licensee {n}"), "expiration": "2099-12-31",
            "licenses": [{"productKey": product_key, "type": "simultaneousUser", "quantity": 2}]});
        let request = app
            .client
            .post(format!("{}/api/licensing/v1/licenses/create", urls[n % urls.len()]))
            .bearer_auth(&app.admin_token)
            .header("content-type", "application/json")
            .body(body.to_string());
        tasks.push(tokio::spawn(async move { request.send().await.unwrap().status() }));
    }
    for t in tasks {
        assert_eq!(t.await.unwrap(), StatusCode::OK);
    }
    let r = app.get(&app.acct(&format!("/policies?product={product}&limit=100")), &app.admin()).await;
    let names: Vec<&str> =
        r.body["data"].as_array().unwrap().iter().map(|p| p["attributes"]["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["licensing-v1 simultaneousUser"], "{}", r.text);
}

/// Every write that records an event reads (the account's webhook endpoints) before it writes.
/// On SQLite such a transaction, begun deferred, cannot wait for the write lock: when another
/// connection commits in between, SQLite refuses it at once and the request was a 500. Many
/// writes of different kinds at once must all succeed.
#[tokio::test]
async fn concurrent_writes_of_every_kind_wait_for_each_other() {
    let app = spawn_app().await;
    let (product, policy, _, _) = app.license_fixture(json!({})).await;
    let mut licenses = Vec::new();
    for _ in 0..24 {
        licenses.push(app.create_license(&policy, json!({})).await.0);
    }
    let base = format!("http://{}/v1/accounts/{}", app.addr, app.account_id);
    let mut tasks = Vec::new();
    for (i, license) in licenses.iter().enumerate() {
        let client = app.client.clone();
        let token = app.admin_token.clone();
        let (method, url, body) = match i % 4 {
            0 => (reqwest::Method::DELETE, format!("{base}/licenses/{license}"), None),
            1 => (reqwest::Method::POST, format!("{base}/licenses/{license}/actions/suspend"), None),
            2 => (
                reqwest::Method::PATCH,
                format!("{base}/licenses/{license}"),
                Some(json!({"data": {"type": "licenses", "attributes": {"name": format!("n{i}")}}})),
            ),
            _ => (
                reqwest::Method::POST,
                format!("{base}/machines"),
                Some(json!({"data": {"type": "machines", "attributes": {"fingerprint": format!("fp-{i}")},
                    "relationships": {"license": {"data": {"type": "licenses", "id": license}}}}})),
            ),
        };
        let (product, entitlements) = (product.clone(), format!("{base}/entitlements"));
        tasks.push(tokio::spawn(async move {
            let mut request = client.request(method, url).bearer_auth(&token);
            if let Some(body) = body {
                request = request.header("content-type", "application/vnd.api+json").body(body.to_string());
            }
            let first = request.send().await.unwrap().status();
            // And a creation of another kind on the side.
            let body = json!({"data": {"type": "entitlements", "attributes": {"name": format!("E{i}"), "code": format!("E{i}-{product}")}}});
            let second = client
                .post(entitlements)
                .bearer_auth(&token)
                .header("content-type", "application/vnd.api+json")
                .body(body.to_string())
                .send()
                .await
                .unwrap()
                .status();
            (first, second)
        }));
    }
    for t in tasks {
        let (first, second) = t.await.unwrap();
        assert!(first.is_success(), "unexpected {first}");
        assert_eq!(second, StatusCode::CREATED);
    }
    let r = app.get(&app.acct("/entitlements?limit=100"), &app.admin()).await;
    assert_eq!(r.body["data"].as_array().unwrap().len(), 24);
}
