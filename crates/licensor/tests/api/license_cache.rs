//! A license changed on one node is seen by every node: each node answers validations from its
//! own cache (src/license_cache.rs), which must drop what changed within its documented bound,
//! and at once on the node that made the change. On both engines: on SQLite the nodes are
//! processes sharing one file.

use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::helpers::*;

/// The bound `license_cache::BOUND` promises, plus time for the requests themselves.
const WITHIN: Duration = Duration::from_millis(1500);

async fn validate(client: &reqwest::Client, base: &str, account: &str, key: &str) -> String {
    validate_scoped(client, base, account, key, Value::Null).await
}

async fn validate_scoped(client: &reqwest::Client, base: &str, account: &str, key: &str, scope: Value) -> String {
    let url = format!("{base}/v1/accounts/{account}/licenses/actions/validate-key");
    let mut meta = json!({"key": key});
    if !scope.is_null() {
        meta["scope"] = scope;
    }
    let r = client.post(url).json(&json!({ "meta": meta })).send().await.unwrap();
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
    let dir = tempfile::tempdir().unwrap();
    let (_b, node_b) = app.serve_process_with(dir.path(), &[]).await;
    let node_a = app.url("");
    let client = reqwest::Client::new();
    let (_, _, license, key) = app.license_fixture(json!({})).await;
    let user = app.create_user("owner@example.com").await;
    app.set_owner(&license, &user).await;

    // Both nodes validate it until they answer from their caches.
    for node in [&node_a, &node_b] {
        let start = Instant::now();
        loop {
            assert_eq!(validate(&client, node, &app.account_id, &key).await, "VALID");
            if cache_hits(&client, node, &app.admin_token).await > 0 {
                break;
            }
            assert!(start.elapsed() < Duration::from_secs(5), "{node} never answered from its cache");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    // A machine activated and deactivated through node A: node B, validating with its
    // fingerprint (the license's machines cached beside it), follows within the bound.
    let r = app.activate_machine(&license, "fp-cached").await;
    assert_eq!(r.status, 201, "{}", r.text);
    let machine = r.id();
    let scope = json!({"fingerprint": "fp-cached"});
    let start = Instant::now();
    for _ in 0..3 {
        while validate_scoped(&client, &node_b, &app.account_id, &key, scope.clone()).await != "VALID" {
            assert!(start.elapsed() < WITHIN, "node B did not see the activation");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
    let r = app.delete(&app.acct(&format!("/machines/{machine}")), &app.admin()).await;
    assert_eq!(r.status, 204, "{}", r.text);
    let start = Instant::now();
    while validate_scoped(&client, &node_b, &app.account_id, &key, scope.clone()).await == "VALID" {
        assert!(start.elapsed() < WITHIN, "node B still validated a deactivated machine");
        tokio::time::sleep(Duration::from_millis(5)).await;
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

    // A change to a policy's rules reaches every node too (it changes no license row).
    let account: uuid::Uuid = app.account_id.parse().unwrap();
    let row = licensor::store::licenses::find(&app.db, account, license.parse().unwrap()).await.unwrap().unwrap();
    let policy = row.policy_id.to_string();
    for node in [&node_a, &node_b] {
        assert_eq!(validate(&client, node, &app.account_id, &key).await, "VALID");
    }
    let r = app.patch_attributes("policies", &policy, json!({"requireFingerprintScope": true})).await;
    assert_eq!(r.status, 200, "{}", r.text);
    for node in [&node_a, &node_b] {
        let took = until(&client, node, &app.account_id, &key, "FINGERPRINT_SCOPE_REQUIRED").await;
        assert!(took < WITHIN, "{node} saw the policy's change after {took:?}");
    }
    let r = app.patch_attributes("policies", &policy, json!({"requireFingerprintScope": false})).await;
    assert_eq!(r.status, 200, "{}", r.text);
    for node in [&node_a, &node_b] {
        until(&client, node, &app.account_id, &key, "VALID").await;
    }

    // A write made behind the nodes' backs (not through the API) is heard too.
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
}

/// Waits until `node` answers validations of `key` from its cache.
async fn warm(app: &TestApp, client: &reqwest::Client, node: &str, key: &str) {
    let before = cache_hits(client, node, &app.admin_token).await;
    let start = Instant::now();
    loop {
        assert_eq!(validate(client, node, &app.account_id, key).await, "VALID");
        if cache_hits(client, node, &app.admin_token).await > before + 1 {
            return;
        }
        assert!(start.elapsed() < Duration::from_secs(5), "{node} never answered from its cache");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// With its listener stalled (notifications held back), a node still reads its own writes at
/// once, and reads the database within the bound.
#[tokio::test]
async fn a_stalled_node_reads_its_own_writes_and_falls_back_within_the_bound() {
    let app = spawn_app().await;
    let cache = app.state.license_cache.clone().expect("nodes keep a license cache");
    let client = reqwest::Client::new();
    let node = app.url("");
    let (_, _, license, key) = app.license_fixture(json!({})).await;
    let account: uuid::Uuid = app.account_id.parse().unwrap();

    // A change made behind the node's back while it hears nothing: the cache's copy may be
    // served only until the node's last ping is 1 s old.
    warm(&app, &client, &node, &key).await;
    cache.hold(true);
    let before = licensor::store::licenses::find(&app.db, account, license.parse().unwrap()).await.unwrap().unwrap();
    let mut expired = before.clone();
    expired.expiry = Some(licensor::time::now_ms() - 60_000);
    licensor::store::licenses::update(&app.db, &before, &expired, &[]).await.unwrap();
    let took = until(&client, &node, &app.account_id, &key, "EXPIRED").await;
    assert!(took < WITHIN, "a deaf node answered from its cache for {took:?}");
    cache.hold(false);
    licensor::store::licenses::update(&app.db, &expired, &before, &[]).await.unwrap();
    until(&client, &node, &app.account_id, &key, "VALID").await;

    // The node's own write, while it hears nothing: answered from the database at once (the
    // write fenced the cache, and no ping can come back to lift the fence).
    warm(&app, &client, &node, &key).await;
    cache.hold(true);
    let r = app.post(&app.acct(&format!("/licenses/{license}/actions/suspend")), &app.admin(), json!(null)).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(validate(&client, &node, &app.account_id, &key).await, "SUSPENDED");
    cache.hold(false);
}

/// SQLite's notices do not pile up: every node prunes them to the newest
/// `license_notices::KEPT` every second, and a node that caches reads on past the pruning.
#[tokio::test]
async fn sqlite_notices_are_pruned_and_the_cache_carries_on() {
    let app = spawn_app().await;
    let licensor::db::Db::Sqlite(sqlite) = &app.db else { return };
    let kept = licensor::store::license_notices::KEPT;
    let count = || async {
        sqlx::query_scalar::<_, i64>("SELECT COUNT(*) FROM license_notices").fetch_one(&sqlite.pool).await.unwrap()
    };
    // The pruner may run between this insert and any count that follows, so the insert is
    // checked by what it wrote, not by a later count.
    let wrote = sqlx::query(
        "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < $1) \
         INSERT INTO license_notices (payload) SELECT 'all' FROM n",
    )
    .bind(kept + 500)
    .execute(&sqlite.pool)
    .await
    .unwrap();
    assert_eq!(wrote.rows_affected(), (kept + 500) as u64);
    let start = Instant::now();
    while count().await > kept {
        assert!(start.elapsed() < Duration::from_secs(5), "still {} notices after 5 s", count().await);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let client = reqwest::Client::new();
    let (_, _, _, key) = app.license_fixture(json!({})).await;
    warm(&app, &client, &app.url(""), &key).await;
}

/// A node hears its own writes before it answers them: on SQLite as each write turn ends, on
/// PostgreSQL as the request ends (it waits for a ping sent after it). So a node taking writes
/// without pause still answers validations from its cache (a fence lifted only by a later ping
/// would keep it closed most of the time), and what a write changes is still seen at once.
#[tokio::test]
async fn a_node_that_writes_without_pause_still_answers_from_its_cache() {
    let app = spawn_app().await;
    let cache = app.state.license_cache.clone().expect("nodes keep a license cache");
    let client = reqwest::Client::new();
    let node = app.url("");
    let account: uuid::Uuid = app.account_id.parse().unwrap();
    let (_, _, license, key) = app.license_fixture(json!({})).await;
    let (_, _, other_id, other_key) = app.license_fixture(json!({})).await;
    let other: uuid::Uuid = other_id.parse().unwrap();
    warm(&app, &client, &node, &key).await;

    // The test and the server share one thread: between a write's answer and the check below
    // no other task runs (the listener and the poller included), so the cache is current only
    // if the write itself heard what it wrote.
    let mut closed = 0;
    for n in 0..20 {
        let r = app.patch_attributes("licenses", &other_id, json!({"name": format!("request {n}")})).await;
        assert_eq!(r.status, 200, "{}", r.text);
        closed += usize::from(cache.get(account, &key).is_err());
    }
    // On PostgreSQL a ping that misses the request's 100 ms wait on a loaded machine fences the
    // cache, as before: a few are tolerated, a fence after every write is not.
    assert!(closed <= 5, "the cache was closed after {closed} of 20 requests");
    // On SQLite, writes made outside any request (a job's, a tool's in the same process) too.
    if matches!(app.db, licensor::db::Db::Sqlite(_)) {
        for n in 0..20 {
            let before = licensor::store::licenses::find(&app.db, account, other).await.unwrap().unwrap();
            let mut after = before.clone();
            after.name = Some(format!("write {n}"));
            licensor::store::licenses::update(&app.db, &before, &after, &[]).await.unwrap();
            assert!(cache.get(account, &key).is_ok(), "the cache was fenced after write {n}");
        }
    }

    // An activation's notice is written by triggers (the machine's insert updates the
    // license's counters): the writer hears it too, so the count is current at once.
    let r = app.activate_machine(&license, "laptop").await;
    assert_eq!(r.status, 201, "{}", r.text);
    let url = format!("{node}/v1/accounts/{}/licenses/actions/validate-key", app.account_id);
    let v: Value = client.post(url).json(&json!({"meta": {"key": key}})).send().await.unwrap().json().await.unwrap();
    assert_eq!(v["data"]["relationships"]["machines"]["meta"]["count"], 1, "{v}");

    // What the writes change is read at once: a cached license suspended is seen so on the
    // next request.
    warm(&app, &client, &node, &other_key).await;
    let r = app.post(&app.acct(&format!("/licenses/{other}/actions/suspend")), &app.admin(), json!(null)).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(validate(&client, &node, &app.account_id, &other_key).await, "SUSPENDED");
    assert_eq!(validate(&client, &node, &app.account_id, &key).await, "VALID");
}

/// A license key authenticates from the node's cache, which may lag a change made elsewhere
/// (within the bound); an activation still decides on the license as it is under its lock. A
/// limit lowered and a suspension made behind the node's back (not through its write turn, its
/// notices held back, as another node's write would be before this one hears it) are not
/// missed, though the copy authentication took predates them.
#[tokio::test]
async fn an_activation_decides_on_the_license_as_it_is_not_on_a_cached_copy() {
    let app = spawn_app().await;
    let cache = app.state.license_cache.clone().expect("nodes keep a license cache");
    let client = reqwest::Client::new();
    let node = app.url("");
    let account: uuid::Uuid = app.account_id.parse().unwrap();
    let (_, _, license, key) =
        app.license_fixture(json!({"authenticationStrategy": "LICENSE", "floating": true, "maxMachines": 3})).await;
    let id: uuid::Uuid = license.parse().unwrap();
    let (this, db) = (&app, &app.db);
    let activate = |fingerprint: &'static str| {
        let body = json!({"data": {"type": "machines", "attributes": {"fingerprint": fingerprint},
            "relationships": {"license": {"data": {"type": "licenses", "id": license}}}}});
        let (url, who) = (this.acct("/machines"), As::License(key.clone()));
        async move { this.post(&url, &who, body).await }
    };
    // Changes held back (as another node's are until this one hears them), the cache keeps
    // answering: its pings still come back, so the node's own write turns (its validation clock's
    // flush, the notices' pruning) lift the fences they raise.
    let serves_the_old_copy = |check: fn(&licensor::model::License) -> bool| {
        let copy = cache.lookup(account, &key).expect("the cache serves its copy");
        assert!(check(&copy), "the cache heard the change: {copy:?}");
    };
    let r = activate("one").await;
    assert_eq!(r.status, 201, "{}", r.text);

    warm(&app, &client, &node, &key).await;
    cache.hold_changes(true);
    behind_the_nodes_back(db, "UPDATE licenses SET max_machines = 1 WHERE id = $1", id).await;
    serves_the_old_copy(|l| l.max_machines() == Some(3));
    let r = activate("two").await;
    assert_eq!(r.status, 422, "{}", r.text);
    assert_eq!(r.code(), "MACHINE_LIMIT_EXCEEDED");
    cache.hold_changes(false);

    warm(&app, &client, &node, &key).await;
    cache.hold_changes(true);
    behind_the_nodes_back(db, "UPDATE licenses SET max_machines = NULL, suspended = TRUE WHERE id = $1", id).await;
    serves_the_old_copy(|l| !l.suspended);
    let r = activate("three").await;
    assert_eq!(r.status, 403, "{}", r.text);
    assert_eq!(r.code(), "LICENSE_SUSPENDED");
    cache.hold_changes(false);

    let r = app.get(&app.acct(&format!("/machines?license={license}")), &app.admin()).await;
    assert_eq!(r.body["data"].as_array().map(Vec::len), Some(1), "{}", r.text);
}

/// `GET /me` as a license shows its last validation, though authentication's copy came from
/// the cache, which does not keep it.
#[tokio::test]
async fn me_as_a_cached_license_shows_its_last_validation() {
    let app = spawn_app().await;
    let client = reqwest::Client::new();
    let (_, _, _, key) = app.license_fixture(json!({"authenticationStrategy": "LICENSE"})).await;
    warm(&app, &client, &app.url(""), &key).await;
    let start = Instant::now();
    loop {
        let r = app.get(&app.acct("/me"), &As::License(key.clone())).await;
        assert_eq!(r.status, 200, "{}", r.text);
        if r.attr("lastValidated").is_string() {
            break;
        }
        // The instant is written in the background, a moment after the validation.
        assert!(start.elapsed() < Duration::from_secs(5), "no last validation: {}", r.text);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A key the cache's copy would refuse is read again before it is refused: a license reinstated
/// behind the node's back (as on another node, not yet heard) authenticates at once.
#[tokio::test]
async fn a_key_is_never_refused_from_the_cache() {
    let app = spawn_app().await;
    let cache = app.state.license_cache.clone().expect("nodes keep a license cache");
    let client = reqwest::Client::new();
    let account: uuid::Uuid = app.account_id.parse().unwrap();
    let (_, _, license, key) = app.license_fixture(json!({"authenticationStrategy": "LICENSE"})).await;
    let (_, _, other, _) = app.license_fixture(json!({})).await;
    let r = app.post(&app.acct(&format!("/licenses/{license}/actions/suspend")), &app.admin(), json!(null)).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let start = Instant::now();
    loop {
        assert_eq!(validate(&client, &app.url(""), &app.account_id, &key).await, "SUSPENDED");
        if cache.lookup(account, &key).is_ok_and(|l| l.suspended) {
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(5), "the suspended license was never cached");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    cache.hold_changes(true);
    let id: uuid::Uuid = license.parse().unwrap();
    behind_the_nodes_back(&app.db, "UPDATE licenses SET suspended = FALSE WHERE id = $1", id).await;
    // A write of the node's own meanwhile (a job's, as its validation clock's flush) leaves the
    // cache open: on SQLite the write turn hears itself (not yet the change) as it ends.
    let other = licensor::store::licenses::find(&app.db, account, other.parse().unwrap()).await.unwrap().unwrap();
    let renamed = licensor::model::License { name: Some("renamed".into()), ..other.clone() };
    licensor::store::licenses::update(&app.db, &other, &renamed, &[]).await.unwrap();
    assert!(cache.lookup(account, &key).is_ok_and(|l| l.suspended), "the cache heard the reinstatement");
    let r = app.get(&app.acct("/me"), &As::License(key.clone())).await;
    assert_eq!(r.status, 200, "{}", r.text);
    cache.hold_changes(false);
}

/// Runs `sql` on license `id` straight on the database: no write turn tells this node's cache,
/// as with another node's write that this one has not heard yet.
async fn behind_the_nodes_back(db: &licensor::db::Db, sql: &'static str, id: uuid::Uuid) {
    match db {
        licensor::db::Db::Sqlite(s) => sqlx::query(sql).bind(id).execute(&s.pool).await.map(drop),
        licensor::db::Db::Postgres(p) => sqlx::query(sql).bind(id).execute(p).await.map(drop),
    }
    .unwrap();
}
