//! A license changed on one node is seen by every node: on PostgreSQL each node answers
//! validations from its own cache (src/license_cache.rs), which must drop what changed within
//! its documented bound, and at once on the node that made the change.

use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::helpers::*;

/// The bound `license_cache::BOUND` promises, plus time for the requests themselves.
const WITHIN: Duration = Duration::from_millis(1500);

async fn validate(client: &reqwest::Client, base: &str, account: &str, key: &str) -> String {
    let url = format!("{base}/v1/accounts/{account}/licenses/actions/validate-key");
    let r = client.post(url).json(&json!({"meta": {"key": key}})).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let body: Value = r.json().await.unwrap();
    body["meta"]["code"].as_str().unwrap().to_owned()
}

/// Validates on `base` until the code is `want`; how long that took.
async fn until(client: &reqwest::Client, base: &str, account: &str, key: &str, want: &str) -> Duration {
    let start = Instant::now();
    loop {
        let code = validate(client, base, account, key).await;
        if code == want {
            return start.elapsed();
        }
        assert!(start.elapsed() < Duration::from_secs(5), "still {code}, not {want}, after 5 s");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// A node's `licensor_license_cache_hits_total` (0 where there is no cache).
async fn cache_hits(client: &reqwest::Client, base: &str, token: &str) -> u64 {
    let text = client.get(format!("{base}/metrics")).bearer_auth(token).send().await.unwrap().text().await.unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix("licensor_license_cache_hits_total "))
        .map_or(0, |v| v.trim().parse().unwrap())
}

#[tokio::test]
async fn a_change_on_one_node_is_seen_on_every_node_within_the_bound() {
    let app = spawn_app().await;
    let postgres = matches!(app.db, licensor::db::Db::Postgres(_));
    let dir = tempfile::tempdir().unwrap();
    let (_b, node_b) = app.serve_process_with(dir.path(), &[]).await;
    let node_a = app.url("");
    let client = reqwest::Client::new();
    let (_, _, license, key) = app.license_fixture(json!({})).await;
    let user = app.create_user("owner@example.com").await;
    app.set_owner(&license, &user).await;

    // Both nodes validate it until they answer from their caches (PostgreSQL).
    for node in [&node_a, &node_b] {
        let start = Instant::now();
        loop {
            assert_eq!(validate(&client, node, &app.account_id, &key).await, "VALID");
            if !postgres || cache_hits(&client, node, &app.admin_token).await > 0 {
                break;
            }
            assert!(start.elapsed() < Duration::from_secs(5), "{node} never answered from its cache");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    // Suspended through node A: A answers SUSPENDED at once, B within the bound.
    let r = app.post(&app.acct(&format!("/licenses/{license}/actions/suspend")), &app.admin(), json!(null)).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(validate(&client, &node_a, &app.account_id, &key).await, "SUSPENDED");
    let took = until(&client, &node_b, &app.account_id, &key, "SUSPENDED").await;
    assert!(took < WITHIN, "node B saw the suspension after {took:?}");

    // Reinstated through node B, the other way round.
    let reinstate = format!("{node_b}{}", app.acct(&format!("/licenses/{license}/actions/reinstate")));
    let r = client.post(reinstate).bearer_auth(&app.admin_token).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(validate(&client, &node_b, &app.account_id, &key).await, "VALID");
    let took = until(&client, &node_a, &app.account_id, &key, "VALID").await;
    assert!(took < WITHIN, "node A saw the reinstatement after {took:?}");

    // A write made behind the nodes' backs (not through the API) is heard too.
    let account: uuid::Uuid = app.account_id.parse().unwrap();
    let before = licensor::store::licenses::find(&app.db, account, license.parse().unwrap()).await.unwrap().unwrap();
    let mut expired = before.clone();
    expired.expiry = Some(licensor::time::now_ms() - 60_000);
    licensor::store::licenses::update(&app.db, &before, &expired, &[]).await.unwrap();
    for node in [&node_a, &node_b] {
        let took = until(&client, node, &app.account_id, &key, "EXPIRED").await;
        assert!(took < WITHIN, "{node} saw the expiry after {took:?}");
    }

    // Banning the owner changes no license row: every cached license is dropped.
    let ban = format!("{node_b}{}", app.acct(&format!("/users/{user}/actions/ban")));
    let r = client.post(ban).bearer_auth(&app.admin_token).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let took = until(&client, &node_a, &app.account_id, &key, "BANNED").await;
    assert!(took < WITHIN, "node A saw the ban after {took:?}");
    if postgres {
        assert!(cache_hits(&client, &node_b, &app.admin_token).await > 0);
    }
}
