//! Webhooks (docs/webhooks.md): Keygen's endpoint and event resources, events raised once
//! whichever surface caused them, signed deliveries a receiver verifies with licensor-client,
//! Keygen's retry and give-up rules, at-least-once delivery across kill -9, and the event log.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::http::{HeaderMap, StatusCode as AxumStatus};
use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::helpers::*;

/// One request a receiver got.
#[derive(Clone, Debug)]
pub struct Received {
    pub path: String,
    pub headers: HeaderMap,
    pub body: String,
}

impl Received {
    pub fn doc(&self) -> Value {
        serde_json::from_str(&self.body).unwrap()
    }
    pub fn event(&self) -> String {
        self.doc()["data"]["attributes"]["event"].as_str().unwrap().to_string()
    }
    /// The resource document the event carries.
    pub fn payload(&self) -> Value {
        serde_json::from_str(self.doc()["data"]["attributes"]["payload"].as_str().unwrap()).unwrap()
    }
    fn header(&self, name: &str) -> &str {
        self.headers.get(name).map_or("", |v| v.to_str().unwrap())
    }
}

/// A real HTTP receiver on 127.0.0.1:0 that records what it gets and answers with the next
/// status of `script` (the last one repeats); `hang` makes it never answer.
pub struct Receiver {
    pub url: String,
    pub got: Arc<Mutex<Vec<Received>>>,
}

pub async fn receiver(script: Vec<u16>, hang: bool) -> Receiver {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://127.0.0.1:{}/hooks/keygen", listener.local_addr().unwrap().port());
    let got: Arc<Mutex<Vec<Received>>> = Arc::default();
    let seen = got.clone();
    let app = axum::Router::new().fallback(move |uri: axum::http::Uri, headers: HeaderMap, body: String| {
        let seen = seen.clone();
        let script = script.clone();
        async move {
            let n = {
                let mut seen = seen.lock().unwrap();
                seen.push(Received { path: uri.path().to_string(), headers, body });
                seen.len()
            };
            if hang {
                tokio::time::sleep(Duration::from_secs(3600)).await;
            }
            let status = script.get(n - 1).or(script.last()).copied().unwrap_or(200);
            (AxumStatus::from_u16(status).unwrap(), "ok")
        }
    });
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    Receiver { url, got }
}

impl Receiver {
    pub fn events(&self) -> Vec<Received> {
        self.got.lock().unwrap().clone()
    }

    /// Waits until `pred` holds of what was received (10 s at most).
    pub async fn wait_for(&self, what: &str, pred: impl Fn(&[Received]) -> bool) -> Vec<Received> {
        for _ in 0..200 {
            let got = self.events();
            if pred(&got) {
                return got;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("timed out waiting for {what}; got {:?}", self.events().iter().map(|r| r.event()).collect::<Vec<_>>());
    }
}

async fn create_endpoint(app: &TestApp, url: &str, subscriptions: Value) -> String {
    let body =
        json!({"data": {"type": "webhook-endpoints", "attributes": {"url": url, "subscriptions": subscriptions}}});
    let r = app.post(&app.acct("/webhook-endpoints"), &app.admin(), body).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    r.id()
}

async fn public_key(app: &TestApp) -> licensor_client::PublicKey {
    let account = licensor::store::accounts::find(&app.db, &app.account_id).await.unwrap().unwrap();
    licensor_client::PublicKey::parse(&account.ed25519_public).unwrap()
}

fn verify(r: &Received, pk: &licensor_client::PublicKey) -> Result<(), licensor_client::Error> {
    licensor_client::response::verify_webhook(
        &licensor_client::response::SignedWebhook {
            path_and_query: &r.path,
            host: "127.0.0.1",
            signature_header: r.header("keygen-signature"),
            date: r.header("date"),
            body: r.body.as_bytes(),
        },
        pk,
        chrono::Utc::now(),
        chrono::Duration::minutes(5),
    )
}

#[tokio::test]
async fn endpoints_are_managed_as_in_keygen() {
    let app = spawn_app().await;
    let path = app.acct("/webhook-endpoints");
    let create = |attrs: Value| json!({"data": {"type": "webhook-endpoints", "attributes": attrs}});

    // Defaults: every event, Ed25519, the current API version.
    let r = app.post(&path, &app.admin(), create(json!({"url": "https://hooks.example.com/keygen"}))).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    assert_eq!(r.body["data"]["type"], "webhook-endpoints");
    assert_eq!(r.attr("subscriptions"), &json!(["*"]));
    assert_eq!(r.attr("signatureAlgorithm"), "ed25519");
    assert_eq!(r.attr("apiVersion"), "1.8");
    assert_eq!(r.body["data"]["relationships"]["product"]["data"], Value::Null);
    let id = r.id();

    // Keygen's refusals, with their codes and pointers.
    for (attrs, status, code, pointer) in [
        (json!({"url": "http://hooks.example.com/"}), 422, "URL_PROTOCOL_INVALID", "/data/attributes/url"),
        (json!({"url": "1230-12e9 c0ascka-ff.a!"}), 422, "URL_INVALID", "/data/attributes/url"),
        (json!({"url": "https://localhost/hook"}), 422, "URL_HOST_INVALID", "/data/attributes/url"),
        (json!({"url": "https://10.0.0.7/hook"}), 422, "URL_HOST_INVALID", "/data/attributes/url"),
        (
            json!({"url": "https://hooks.example.com/", "subscriptions": ["license.created", "license.exploded"]}),
            422,
            "SUBSCRIPTIONS_NOT_ALLOWED",
            "/data/attributes/subscriptions",
        ),
        (
            json!({"url": "https://hooks.example.com/", "subscriptions": []}),
            422,
            "SUBSCRIPTIONS_TOO_SHORT",
            "/data/attributes/subscriptions",
        ),
        (
            json!({"url": "https://hooks.example.com/", "signatureAlgorithm": "sha1"}),
            422,
            "SIGNATURE_ALGORITHM_NOT_ALLOWED",
            "/data/attributes/signatureAlgorithm",
        ),
    ] {
        let r = app.post(&path, &app.admin(), create(attrs.clone())).await;
        assert_eq!(r.status.as_u16(), status, "{attrs}: {}", r.text);
        assert_eq!(r.code(), code, "{attrs}");
        assert_eq!(r.pointer(), pointer, "{attrs}");
    }
    let r = app.post(&path, &app.admin(), create(json!({"url": "https://h.example.com/", "apiVersion": "0.0"}))).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.text);
    assert_eq!(r.pointer(), "/data/attributes/apiVersion");
    let r = app.post(&path, &app.admin(), create(json!({"subscriptions": ["*"]}))).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.text);
    let r =
        app.post(&path, &app.admin(), json!({"data": {"type": "webhook-endpoints", "attributes": {"url": 5}}})).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.text);

    // Update, list, delete.
    let one = app.acct(&format!("/webhook-endpoints/{id}"));
    let body = json!({"data": {"type": "webhook-endpoints", "attributes": {"subscriptions": ["license.created", "license.created", "machine.deleted"]}}});
    let r = app.patch(&one, &app.admin(), body).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.attr("subscriptions"), &json!(["license.created", "machine.deleted"]), "duplicates dropped");
    let r = app.get(&path, &app.admin()).await;
    assert_eq!(r.body["data"].as_array().unwrap().len(), 1);

    // A product's endpoints are its own; users, licenses and strangers see none.
    let product = app.create_product("App").await;
    let policy = app.create_policy(&product, json!({"authenticationStrategy": "LICENSE"})).await;
    let (_, key) = app.create_license(&policy, json!({})).await;
    let token = app
        .post(&app.acct(&format!("/products/{product}/tokens")), &app.admin(), json!(null))
        .await
        .attr("token")
        .as_str()
        .unwrap()
        .to_string();
    let product_token = As::Bearer(token);
    let r = app.post(&path, &product_token, create(json!({"url": "https://p.example.com/"}))).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    assert_eq!(r.body["data"]["relationships"]["product"]["data"]["id"], product.as_str());
    let own = r.id();
    let other = app.create_product("Other").await;
    let body = json!({"data": {"type": "webhook-endpoints", "attributes": {"url": "https://p.example.com/"},
        "relationships": {"product": {"data": {"type": "products", "id": other}}}}});
    assert_eq!(app.post(&path, &product_token, body).await.status, StatusCode::FORBIDDEN);
    assert_eq!(app.get(&one, &product_token).await.status, StatusCode::NOT_FOUND, "the admin's endpoint");
    assert_eq!(app.get(&app.acct(&format!("/webhook-endpoints/{own}")), &product_token).await.status, StatusCode::OK);
    let listed = app.get(&path, &product_token).await;
    assert_eq!(listed.body["data"].as_array().unwrap().len(), 1, "{}", listed.text);
    let license = As::License(key);
    assert_eq!(app.get(&path, &license).await.status, StatusCode::FORBIDDEN);
    assert_eq!(app.get(&one, &license).await.status, StatusCode::NOT_FOUND);
    assert_eq!(app.get(&path, &As::Anonymous).await.status, StatusCode::UNAUTHORIZED);
    let (other_account, stranger) =
        app.other_account(&format!("other-{}", &uuid::Uuid::new_v4().simple().to_string()[..6])).await;
    assert_eq!(app.get(&one, &stranger).await.status, StatusCode::UNAUTHORIZED);
    assert_eq!(app.get(&app.acct("/event-logs"), &license).await.status, StatusCode::FORBIDDEN);
    assert_eq!(app.get(&app.acct("/webhook-events"), &license).await.status, StatusCode::FORBIDDEN);

    // A product of another account does not exist here.
    let foreign = {
        let r = app
            .post(
                &format!("/v1/accounts/{other_account}/products"),
                &stranger,
                json!({"data": {"type": "products", "attributes": {"name": "Theirs"}}}),
            )
            .await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
        r.id()
    };
    let body = json!({"data": {"type": "webhook-endpoints", "attributes": {"url": "https://p.example.com/"},
        "relationships": {"product": {"data": {"type": "products", "id": foreign}}}}});
    let r = app.post(&path, &app.admin(), body).await;
    assert_eq!(
        (r.status, r.code(), r.pointer()),
        (StatusCode::UNPROCESSABLE_ENTITY, "PRODUCT_NOT_FOUND", "/data/relationships/product")
    );

    assert_eq!(app.delete(&one, &app.admin()).await.status, StatusCode::NO_CONTENT);
    assert_eq!(app.get(&one, &app.admin()).await.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn events_from_every_surface_are_delivered_signed() {
    let app = spawn_webhook_app().await;
    let hook = receiver(vec![200], false).await;
    let subscriptions = json!([
        "license.created",
        "license.suspended",
        "machine.created",
        "machine.deleted",
        "license.validation.succeeded"
    ]);
    create_endpoint(&app, &hook.url, subscriptions).await;
    let pk = public_key(&app).await;

    // Keygen surface: a license created, then suspended; a policy (not subscribed) too.
    let product = app.create_product("App").await;
    let policy = app.create_policy(&product, json!({"floating": true, "maxMachines": 3})).await;
    let (license, key) = app.create_license(&policy, json!({})).await;
    let got = hook.wait_for("license.created", |g| g.iter().any(|r| r.event() == "license.created")).await;
    let created = got.iter().find(|r| r.event() == "license.created").unwrap();
    verify(created, &pk).expect("the receiver verifies the signature with licensor-client");
    assert_eq!(created.path, "/hooks/keygen");
    assert_eq!(created.header("keygen-version"), "1.8");
    assert_eq!(created.payload()["data"]["id"], license.as_str());
    assert_eq!(created.payload()["data"]["attributes"]["key"], key.as_str());
    assert_eq!(created.doc()["data"]["type"], "webhook-events");
    assert_eq!(created.doc()["data"]["attributes"]["status"], "DELIVERING");
    assert!(created.doc()["data"]["meta"]["idempotencyToken"].is_string());
    // A tampered body does not verify.
    let mut tampered = created.clone();
    tampered.body = tampered.body.replace(&license, &uuid::Uuid::new_v4().to_string());
    assert!(verify(&tampered, &pk).is_err());

    let r = app.post(&app.acct(&format!("/licenses/{license}/actions/suspend")), &app.admin(), json!({})).await;
    assert_eq!(r.status, StatusCode::OK);
    app.post(&app.acct(&format!("/licenses/{license}/actions/reinstate")), &app.admin(), json!({})).await;

    // OPSWAT surface: an offline activation is a machine.created.
    let deployment = format!("MSCL{:032X}", 7);
    let (status, _, body) =
        crate::opswat::http_get(&app, &format!("/activation?key={key}&deployment={deployment}&quantity=1")).await;
    assert!(status.contains("200"), "{status} {body}");
    let got = hook.wait_for("machine.created", |g| g.iter().any(|r| r.event() == "machine.created")).await;
    let machine = got.iter().find(|r| r.event() == "machine.created").unwrap();
    assert_eq!(machine.payload()["data"]["attributes"]["fingerprint"], deployment.as_str());
    assert_eq!(machine.payload()["data"]["relationships"]["license"]["data"]["id"], license.as_str());

    // A validation with a subscriber carries the validation's meta.
    let r = app.post(&app.acct("/licenses/actions/validate-key"), &As::Anonymous, json!({"meta": {"key": key}})).await;
    assert_eq!(r.status, StatusCode::OK);
    let got = hook
        .wait_for("license.validation.succeeded", |g| g.iter().any(|r| r.event() == "license.validation.succeeded"))
        .await;
    let validation = got.iter().find(|r| r.event() == "license.validation.succeeded").unwrap();
    assert_eq!(validation.payload()["meta"]["code"], "VALID");
    verify(validation, &pk).unwrap();

    // Exactly the subscribed events, each once.
    let events: Vec<String> = hook.events().iter().map(|r| r.event()).collect();
    for e in ["license.created", "license.suspended", "machine.created", "license.validation.succeeded"] {
        assert_eq!(events.iter().filter(|x| *x == e).count(), 1, "{e} in {events:?}");
    }
    assert!(!events.iter().any(|e| e == "policy.created" || e == "license.reinstated"), "{events:?}");

    // The deliveries are listed as Keygen lists webhook events.
    let r = app.get(&app.acct("/webhook-events?events[]=license.created"), &app.admin()).await;
    let data = r.body["data"].as_array().unwrap();
    assert_eq!(data.len(), 1, "{}", r.text);
    assert_eq!(data[0]["attributes"]["status"], "DELIVERED");
    assert_eq!(data[0]["attributes"]["lastResponseCode"], 200);
    assert_eq!(data[0]["attributes"]["endpoint"], hook.url.as_str());

    // The event log has every event, subscribed or not, with who did it.
    let r = app.get(&app.acct("/event-logs?limit=100"), &app.admin()).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let logged: Vec<&str> =
        r.body["data"].as_array().unwrap().iter().map(|e| e["attributes"]["event"].as_str().unwrap()).collect();
    for e in [
        "product.created",
        "policy.created",
        "license.created",
        "license.suspended",
        "license.reinstated",
        "machine.created",
    ] {
        assert!(logged.contains(&e), "{e} missing from {logged:?}");
    }
    let r =
        app.get(&app.acct(&format!("/event-logs?events[]=license.created&resource[id]={license}")), &app.admin()).await;
    let entry = &r.body["data"][0];
    assert_eq!(entry["relationships"]["resource"]["data"]["id"], license.as_str());
    assert_eq!(entry["relationships"]["whodunnit"]["data"]["type"], "users");
    assert!(entry["meta"]["requestId"].is_string(), "{entry}");
    // An offline activation was made by the license whose key the script sent.
    let r = app.get(&app.acct("/event-logs?events[]=machine.created"), &app.admin()).await;
    let whodunnit = &r.body["data"][0]["relationships"]["whodunnit"]["data"];
    assert_eq!(
        (whodunnit["type"].as_str(), whodunnit["id"].as_str()),
        (Some("licenses"), Some(license.as_str())),
        "{}",
        r.text
    );
    let bad = app.get(&app.acct("/event-logs?date[start]=2026-01-01&date[end]=2026-03-01"), &app.admin()).await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST, "{}", bad.text);
}

#[tokio::test]
async fn failures_are_retried_and_given_up_as_keygen_does() {
    let app = spawn_webhook_app().await;
    let flaky = receiver(vec![500, 503, 200], false).await;
    let gone = receiver(vec![410], false).await;
    let hanging = receiver(vec![200], true).await;
    let refused = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://127.0.0.1:{}/x", l.local_addr().unwrap().port())
    };
    let subs = json!(["product.created"]);
    let flaky_id = create_endpoint(&app, &flaky.url, subs.clone()).await;
    let gone_id = create_endpoint(&app, &gone.url, subs.clone()).await;
    create_endpoint(&app, &hanging.url, subs.clone()).await;
    create_endpoint(&app, &refused, subs.clone()).await;

    // A hanging receiver holds no API request.
    let started = std::time::Instant::now();
    app.create_product("One").await;
    assert!(started.elapsed() < Duration::from_secs(2), "{:?}", started.elapsed());

    // 500, 503, then 200: delivered on the third attempt, the same event each time.
    let got = flaky.wait_for("three attempts", |g| g.len() >= 3).await;
    let ids: Vec<Value> = got.iter().map(|r| r.doc()["data"]["id"].clone()).collect();
    assert!(ids.windows(2).all(|w| w[0] == w[1]), "one delivery, retried: {ids:?}");
    let deliveries = |endpoint: String| {
        let app = &app;
        async move {
            let r = app.get(&app.acct("/webhook-events?limit=100"), &app.admin()).await;
            r.body["data"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|d| d["attributes"]["endpoint"].as_str() == Some(endpoint.as_str()))
                .cloned()
                .collect::<Vec<Value>>()
        }
    };
    for _ in 0..100 {
        if deliveries(flaky.url.clone()).await[0]["attributes"]["status"] == "DELIVERED" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(deliveries(flaky.url.clone()).await[0]["attributes"]["status"], "DELIVERED");
    let _ = flaky_id;

    // 410 Gone: FAILED at once, and the endpoint unsubscribed from everything.
    gone.wait_for("one attempt", |g| !g.is_empty()).await;
    let mut status = Value::Null;
    for _ in 0..100 {
        status = deliveries(gone.url.clone()).await[0]["attributes"]["status"].clone();
        if status == "FAILED" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(status, "FAILED");
    let r = app.get(&app.acct(&format!("/webhook-endpoints/{gone_id}")), &app.admin()).await;
    assert_eq!(r.attr("subscriptions"), &json!([]), "{}", r.text);

    // A refused connection is given up on without retrying.
    let mut last = Value::Null;
    for _ in 0..100 {
        last = deliveries(refused.clone()).await[0]["attributes"].clone();
        if last["status"] == "FAILED" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(last["status"], "FAILED", "{last}");
    assert_eq!(last["lastResponseBody"], "CONN_REFUSED");

    // Later events still reach the healthy endpoint while one receiver hangs.
    app.create_product("Two").await;
    flaky.wait_for("the next event", |g| g.len() >= 4).await;
    assert_eq!(gone.events().len(), 1, "a disabled endpoint gets nothing more");

    // Retry: a new delivery of the same event, with the same idempotency token.
    let original = &deliveries(gone.url.clone()).await[0];
    let r = app
        .post(
            &app.acct(&format!("/webhook-events/{}/actions/retry", original["id"].as_str().unwrap())),
            &app.admin(),
            json!({}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    assert_ne!(r.id(), original["id"].as_str().unwrap());
    assert_eq!(r.body["data"]["meta"]["idempotencyToken"], original["meta"]["idempotencyToken"]);
    assert_eq!(r.attr("status"), "DELIVERING");
    gone.wait_for("the retried delivery", |g| g.len() == 2).await;

    // What operators see of it.
    let text = app.get("/metrics", &app.admin()).await.text;
    let value = |series: &str| -> f64 {
        text.lines()
            .find_map(|l| l.strip_prefix(series).and_then(|v| v.trim().parse().ok()))
            .unwrap_or_else(|| panic!("no {series} in\n{text}"))
    };
    assert!(value(r#"licensor_webhook_delivery_attempts_total{status="FAILING"}"#) >= 2.0);
    assert!(value(r#"licensor_webhook_delivery_attempts_total{status="DELIVERED"}"#) >= 2.0);
    assert!(value(r#"licensor_webhook_delivery_attempts_total{status="FAILED"}"#) >= 2.0);
    assert!(value("licensor_webhook_queue ") >= 1.0, "the hanging receiver's delivery is still queued");
}

#[tokio::test]
async fn expiry_events_fire_once_whoever_looks() {
    let app = spawn_webhook_app().await;
    let hook = receiver(vec![200], false).await;
    create_endpoint(&app, &hook.url, json!(["license.expiring-soon", "license.expired"])).await;
    let product = app.create_product("App").await;
    let policy = app.create_policy(&product, json!({})).await;
    let soon = (chrono::Utc::now() + chrono::Duration::days(1)).to_rfc3339();
    let past = (chrono::Utc::now() - chrono::Duration::hours(1)).to_rfc3339();
    let (expiring, _) = app.create_license(&policy, json!({"expiry": soon})).await;
    let (expired, _) = app.create_license(&policy, json!({"expiry": past})).await;
    let (_later, _) = app
        .create_license(&policy, json!({"expiry": (chrono::Utc::now() + chrono::Duration::days(30)).to_rfc3339()}))
        .await;

    // Two "nodes" scanning at once, then again: one event per license.
    let now = licensor::time::now_ms();
    let (a, b) = tokio::join!(
        licensor::jobs::raise_expiry_events(&app.db, now),
        licensor::jobs::raise_expiry_events(&app.db, now)
    );
    // The server's own background scan may have raised some first; exactly two in all is
    // what the receiver counts below.
    assert!(a.unwrap() + b.unwrap() <= 2);
    assert_eq!(licensor::jobs::raise_expiry_events(&app.db, now + 1000).await.unwrap(), 0);
    hook.wait_for("both events", |g| g.len() >= 2).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let got: Vec<(String, Value)> =
        hook.events().iter().map(|r| (r.event(), r.payload()["data"]["id"].clone())).collect();
    assert_eq!(got.len(), 2, "{got:?}");
    assert!(got.contains(&("license.expiring-soon".into(), json!(expiring))));
    assert!(got.contains(&("license.expired".into(), json!(expired))));

    // A renewal is a new occurrence.
    let later = (chrono::Utc::now() + chrono::Duration::days(2)).to_rfc3339();
    let r = app.patch_attributes("licenses", &expiring, json!({"expiry": later})).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(licensor::jobs::raise_expiry_events(&app.db, licensor::time::now_ms()).await.unwrap(), 1);

    // A missed check-in: license.check-in-overdue once per missed check-in.
    let checkin = app
        .create_policy(&product, json!({"requireCheckIn": true, "checkInInterval": "day", "checkInIntervalCount": 1}))
        .await;
    let (late, _) = app.create_license(&checkin, json!({})).await;
    let (_on_time, _) = app.create_license(&checkin, json!({})).await;
    let account: uuid::Uuid = app.account_id.parse().unwrap();
    let before = licensor::store::licenses::find(&app.db, account, late.parse().unwrap()).await.unwrap().unwrap();
    let mut moved = before.clone();
    moved.last_check_in_at = Some(licensor::time::now_ms() - 2 * licensor::time::DAY);
    licensor::store::licenses::update(&app.db, &before, &moved, &[]).await.unwrap();
    let now = licensor::time::now_ms();
    assert_eq!(licensor::jobs::raise_check_in_events(&app.db, now).await.unwrap(), 1);
    assert_eq!(licensor::jobs::raise_check_in_events(&app.db, now).await.unwrap(), 0);
    let r = app
        .get(&app.acct(&format!("/event-logs?events[]=license.check-in-overdue&resource[id]={late}")), &app.admin())
        .await;
    assert_eq!(r.body["data"].as_array().unwrap().len(), 1, "{}", r.text);

    // Retention: the log and finished deliveries older than the cut go.
    let r = app.get(&app.acct("/event-logs"), &app.admin()).await;
    assert!(r.body["data"].as_array().unwrap().len() > 3);
    let pruned = licensor::store::events::prune(&app.db, licensor::time::now_ms() + 1000).await.unwrap();
    assert!(pruned > 3, "{pruned}");
    let r = app.get(&app.acct("/event-logs"), &app.admin()).await;
    assert_eq!(r.body["data"].as_array().unwrap().len(), 0, "{}", r.text);
}

/// Every committed change's event is delivered after a kill -9 in the middle of a burst, and
/// none for changes that did not commit. Two servers share the database, so it also shows that
/// nodes claim deliveries without sending one twice in normal operation.
#[tokio::test]
async fn deliveries_survive_kill_9_and_nodes_do_not_double_send() {
    let app = spawn_webhook_app().await;
    let hook = receiver(vec![200], false).await;
    create_endpoint(&app, &hook.url, json!(["license.created"])).await;
    let product = app.create_product("App").await;
    let policy = app.create_policy(&product, json!({})).await;
    let dir = tempfile::tempdir().unwrap();
    let envs = [
        ("LICENSOR_ALLOW_INSECURE_WEBHOOKS", "true"),
        ("LICENSOR_WEBHOOK_BACKOFF", "10ms"),
        ("LICENSOR_WEBHOOK_TIMEOUT", "1s"),
    ];
    let (mut first, url) = app.serve_process_with(dir.path(), &envs).await;
    let (_second, second_url) = app.serve_process_with(dir.path(), &envs).await;

    // Normal operation first: three nodes polling, each event delivered exactly once.
    let client = reqwest::Client::new();
    for _ in 0..20 {
        app.create_license(&policy, json!({})).await;
    }
    hook.wait_for("20 events", |g| g.len() >= 20).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let mut ids: Vec<String> =
        hook.events().iter().map(|r| r.doc()["data"]["id"].as_str().unwrap().to_string()).collect();
    ids.sort();
    ids.dedup();
    assert_eq!((hook.events().len(), ids.len()), (20, 20), "each delivery sent once by one node");

    // A burst of license creations against the first node, killed part-way.
    let burst = {
        let (client, url, token, account, policy) =
            (client.clone(), url.clone(), app.admin_token.clone(), app.account_id.clone(), policy.clone());
        tokio::spawn(async move {
            let mut acknowledged = Vec::new();
            for _ in 0..400 {
                let body = json!({"data": {"type": "licenses", "relationships": {"policy": {"data": {"type": "policies", "id": policy}}}}});
                let r = client
                    .post(format!("{url}/v1/accounts/{account}/licenses"))
                    .bearer_auth(&token)
                    .header("content-type", "application/vnd.api+json")
                    .body(body.to_string())
                    .send()
                    .await;
                match r {
                    Ok(r) if r.status() == 201 => {
                        let doc: Value = r.json().await.unwrap();
                        acknowledged.push(doc["data"]["id"].as_str().unwrap().to_string());
                    }
                    _ => break,
                }
            }
            acknowledged
        })
    };
    tokio::time::sleep(Duration::from_millis(400)).await;
    first.0.kill().unwrap();
    let _ = first.0.wait();
    let acknowledged = burst.await.unwrap();
    assert!(!acknowledged.is_empty(), "the burst made progress before the kill");

    // The second node delivers what the first could not; a restarted first node joins in.
    let dir2 = tempfile::tempdir().unwrap();
    let (_restarted, _) = app.serve_process_with(dir2.path(), &envs).await;
    let r = client
        .get(format!("{second_url}/v1/accounts/{}/licenses?page[size]=1&page[number]=1", app.account_id))
        .bearer_auth(&app.admin_token)
        .send()
        .await
        .unwrap();
    let committed = r.json::<Value>().await.unwrap()["links"]["meta"]["count"].as_i64().unwrap() as usize;
    assert!(committed >= acknowledged.len(), "{committed} < {}", acknowledged.len());
    let got = hook
        .wait_for("every committed license's event", |g| {
            let mut ids: Vec<String> =
                g.iter().map(|r| r.payload()["data"]["id"].as_str().unwrap().to_string()).collect();
            ids.sort();
            ids.dedup();
            ids.len() >= committed
        })
        .await;
    let mut delivered: Vec<String> =
        got.iter().map(|r| r.payload()["data"]["id"].as_str().unwrap().to_string()).collect();
    for id in &acknowledged {
        assert!(delivered.contains(id), "acknowledged license {id} never announced");
    }
    delivered.sort();
    let total = delivered.len();
    delivered.dedup();
    assert_eq!(delivered.len(), committed, "an event for a license that was not committed");
    // At least once: only what was in flight at the kill (at most 8 per endpoint per node, and
    // answers not yet recorded) may be sent twice.
    assert!(total - delivered.len() <= 64, "{} duplicates", total - delivered.len());
    // The event log holds one license.created per committed license, none for the rest.
    let logged = licensor::store::events::list_logs(
        &app.db,
        app.account_id.parse().unwrap(),
        &licensor::store::events::LogFilter { events: vec!["license.created".into()], ..Default::default() },
        licensor::model::Page { size: 100, number: 1 },
    )
    .await
    .unwrap();
    assert_eq!(logged.total as usize, committed);
}

/// SIGTERM while a receiver hangs: the node stops claiming at once, waits for the delivery
/// no longer than its shutdown deadline (not the 60 s attempt timeout), and hands the claim
/// back, so the delivery is due again at once for any node instead of after its lease.
#[tokio::test]
async fn shutdown_hands_back_deliveries_it_could_not_finish() {
    let mut app = spawn_webhook_app().await;
    let hanging = receiver(vec![200], true).await;
    create_endpoint(&app, &hanging.url, json!(["license.created"])).await;
    let product = app.create_product("App").await;
    let policy = app.create_policy(&product, json!({})).await;
    // Only the node below delivers.
    app.stop().await;
    let dir = tempfile::tempdir().unwrap();
    let envs = [
        ("LICENSOR_ALLOW_INSECURE_WEBHOOKS", "true"),
        ("LICENSOR_WEBHOOK_TIMEOUT", "60s"),
        ("LICENSOR_SHUTDOWN_TIMEOUT", "1s"),
    ];
    let (mut node, url) = app.serve_process_with(dir.path(), &envs).await;
    let body = json!({"data": {"type": "licenses", "relationships": {"policy": {"data": {"type": "policies", "id": policy}}}}});
    let r = app
        .client
        .post(format!("{url}/v1/accounts/{}/licenses", app.account_id))
        .bearer_auth(&app.admin_token)
        .header("content-type", "application/vnd.api+json")
        .body(body.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    hanging.wait_for("the delivery to reach the receiver", |g| !g.is_empty()).await;

    let stopping = std::time::Instant::now();
    let ok = std::process::Command::new("kill").args(["-TERM", &node.0.id().to_string()]).status().unwrap();
    assert!(ok.success());
    let status = tokio::task::spawn_blocking(move || {
        for _ in 0..200 {
            if let Some(s) = node.0.try_wait().unwrap() {
                return s;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("still running 10 s after SIGTERM");
    })
    .await
    .unwrap();
    assert!(status.success(), "{status}");
    assert!(stopping.elapsed() < Duration::from_secs(5), "shutdown took {:?}", stopping.elapsed());

    const SQL: &str = "SELECT claimed_until, attempts FROM webhook_events";
    let (claimed, attempts): (Option<i64>, i64) = match &app.db {
        licensor::db::Db::Sqlite(s) => sqlx::query_as(SQL).fetch_one(&s.pool).await.unwrap(),
        licensor::db::Db::Postgres(p) => sqlx::query_as(SQL).fetch_one(p).await.unwrap(),
    };
    assert_eq!(claimed, None, "the claim was not handed back");
    assert_eq!(attempts, 0, "a delivery cut off is not a failed attempt");
}

/// Components are resources like any other: creating, updating and deleting one is an event.
#[tokio::test]
async fn component_changes_are_events() {
    let app = spawn_app().await;
    let (_, _, license, _) = app.license_fixture(json!({})).await;
    let machine = app
        .post(
            &app.acct("/machines"),
            &app.admin(),
            json!({"data": {"type": "machines", "attributes": {"fingerprint": "fp-components"},
                "relationships": {"license": {"data": {"type": "licenses", "id": license}}}}}),
        )
        .await
        .id();
    let r = app
        .post(
            &app.acct("/components"),
            &app.admin(),
            json!({"data": {"type": "components", "attributes": {"fingerprint": "disk-1", "name": "Disk"},
                "relationships": {"machine": {"data": {"type": "machines", "id": machine}}}}}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    let id = r.id();
    let patch = json!({"data": {"type": "components", "attributes": {"name": "Boot disk"}}});
    assert_eq!(app.patch(&app.acct(&format!("/components/{id}")), &app.admin(), patch).await.status, StatusCode::OK);
    assert_eq!(app.delete(&app.acct(&format!("/components/{id}")), &app.admin()).await.status, StatusCode::NO_CONTENT);
    let log =
        app.get(&app.acct(&format!("/event-logs?resource[type]=components&resource[id]={id}")), &app.admin()).await;
    let events: Vec<&str> =
        log.body["data"].as_array().unwrap().iter().map(|e| e["attributes"]["event"].as_str().unwrap()).collect();
    assert_eq!(events, ["component.deleted", "component.updated", "component.created"]);
}

/// Deliveries to a receiver that keeps its connection open reuse it: three events a moment
/// apart arrive over one connection.
#[tokio::test]
async fn a_kept_alive_connection_carries_the_next_deliveries() {
    let app = spawn_webhook_app().await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://127.0.0.1:{}/in", listener.local_addr().unwrap().port());
    let peers: Arc<Mutex<Vec<std::net::SocketAddr>>> = Arc::default();
    let seen = peers.clone();
    let receive = move |axum::extract::ConnectInfo(peer): axum::extract::ConnectInfo<std::net::SocketAddr>| {
        let seen = seen.clone();
        async move {
            seen.lock().unwrap().push(peer);
            AxumStatus::NO_CONTENT
        }
    };
    let service = axum::Router::new().fallback(receive).into_make_service_with_connect_info::<std::net::SocketAddr>();
    tokio::spawn(async move {
        let _ = axum::serve(listener, service).await;
    });
    create_endpoint(&app, &url, json!(["product.created"])).await;
    for n in 1..=3 {
        app.create_product(&format!("P{n}")).await;
        for _ in 0..200 {
            if peers.lock().unwrap().len() == n {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert_eq!(peers.lock().unwrap().len(), n, "delivery {n} arrived");
    }
    let mut ports: Vec<u16> = peers.lock().unwrap().iter().map(|p| p.port()).collect();
    ports.dedup();
    assert_eq!(ports.len(), 1, "one connection carried all three: {ports:?}");
}

/// A node started with `--no-webhook-delivery` writes events to the outbox but sends nothing;
/// a node with delivery on sends them, once.
#[tokio::test]
async fn a_node_without_delivery_leaves_its_events_to_others() {
    let quiet = licensor::webhooks::Config { deliver: false, ..fast_webhooks() };
    let app = spawn_app_configured(licensor::ratelimit::Config::default(), quiet).await;
    let hook = receiver(vec![200], false).await;
    create_endpoint(&app, &hook.url, json!(["product.created"])).await;
    let dir = tempfile::tempdir().unwrap();
    let api_only = [("LICENSOR_ALLOW_INSECURE_WEBHOOKS", "true"), ("LICENSOR_NO_WEBHOOK_DELIVERY", "true")];
    let (_api, api_url) = app.serve_process_with(dir.path(), &api_only).await;
    let body = json!({"data": {"type": "products", "attributes": {"name": "Quiet"}}});
    let r = reqwest::Client::new()
        .post(format!("{api_url}/v1/accounts/{}/products", app.account_id))
        .bearer_auth(&app.admin_token)
        .header("content-type", "application/vnd.api+json")
        .body(body.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let product: Value = r.json().await.unwrap();

    // Several of the worker's polls pass: neither node sends it, and it waits in the outbox.
    tokio::time::sleep(Duration::from_millis(1200)).await;
    assert!(hook.events().is_empty(), "a node without delivery sent {:?}", hook.events().len());
    let r = app.get(&app.acct("/webhook-events?events[]=product.created"), &app.admin()).await;
    assert_eq!(r.body["data"][0]["attributes"]["status"], "DELIVERING", "{}", r.text);

    let dir2 = tempfile::tempdir().unwrap();
    let (_worker, _) = app.serve_process_with(dir2.path(), &[("LICENSOR_ALLOW_INSECURE_WEBHOOKS", "true")]).await;
    let got = hook.wait_for("the delivery, sent by the node with delivery on", |g| !g.is_empty()).await;
    assert_eq!(got[0].payload()["data"]["id"], product["data"]["id"]);
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(hook.events().len(), 1, "sent once");
}

/// A receiver that hangs gets at most 8 deliveries at a time from a node; the rest of its
/// backlog waits its turn instead of opening more connections.
#[tokio::test]
async fn a_hanging_receiver_gets_eight_deliveries_at_a_time() {
    let app = spawn_webhook_app().await;
    let hanging = receiver(vec![200], true).await;
    create_endpoint(&app, &hanging.url, json!(["product.created"])).await;
    for n in 0..20 {
        app.create_product(&format!("P{n}")).await;
    }
    hanging.wait_for("the first deliveries", |g| g.len() >= 8).await;
    // Well within the 2 s attempt timeout of the test settings: nothing has failed yet.
    tokio::time::sleep(Duration::from_millis(1000)).await;
    assert_eq!(hanging.events().len(), 8, "eight sent at once, the other twelve held back");
}
