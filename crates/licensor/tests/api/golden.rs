//! Golden wire tests: the exact documents representative calls answer on every surface, kept
//! in `tests/golden/*.json`, so a change that moves a byte of the wire shows in review.
//!
//! Ids, timestamps, keys, tokens and signatures differ on every run; they are replaced by
//! stable placeholders (ids numbered in order of first appearance, so a relationship still
//! points at the same `<id:3>` its resource has). `LICENSOR_BLESS=1` rewrites the files.

use std::collections::HashMap;
use std::path::PathBuf;

use reqwest::{Method, StatusCode};
use serde_json::{json, Map, Value};

use crate::astra::core;
use crate::helpers::*;
use crate::opswat::http_get;

/// Documents of one scenario, compared with (or written to) one golden file.
struct Golden {
    name: &'static str,
    slug: String,
    docs: Map<String, Value>,
    ids: HashMap<String, usize>,
}

/// Values under these names are secrets or signatures that change on every run.
const OPAQUE: &[&str] = &[
    "key",
    "token",
    "certificate",
    "licenseText",
    "signature",
    "payload",
    "Signature",
    "digest",
    "ts",
    "productSN",
    "days_left",
    "expiration",
];
/// Numbers derived from random ids (the licensing surface's legacy keys).
const DERIVED: &[&str] = &["key", "productKey", "licenserKey", "extensions"];

fn is_uuid_at(s: &[u8], i: usize) -> bool {
    s.len() >= i + 36
        && s[i..i + 36].iter().enumerate().all(|(j, b)| match j {
            8 | 13 | 18 | 23 => *b == b'-',
            _ => b.is_ascii_hexdigit(),
        })
}

fn is_timestamp(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() >= 19 && b[4] == b'-' && b[7] == b'-' && b[10] == b'T' && b[13] == b':' && s[..4].parse::<u32>().is_ok()
}

impl Golden {
    fn new(app: &TestApp, name: &'static str) -> Self {
        Golden { name, slug: app.slug.clone(), docs: Map::new(), ids: HashMap::new() }
    }

    fn redact_str(&mut self, s: &str) -> String {
        if is_timestamp(s) {
            return "<time>".into();
        }
        let s = s.replace(&self.slug, "<slug>");
        let bytes = s.as_bytes();
        let mut out = String::with_capacity(s.len());
        let mut i = 0;
        while i < bytes.len() {
            if is_uuid_at(bytes, i) {
                let id = s[i..i + 36].to_ascii_lowercase();
                let n = self.ids.len() + 1;
                let n = *self.ids.entry(id).or_insert(n);
                out.push_str(&format!("<id:{n}>"));
                i += 36;
            } else {
                let c = s[i..].chars().next().unwrap_or_default();
                out.push(c);
                i += c.len_utf8().max(1);
            }
        }
        out
    }

    fn redact(&mut self, v: &Value) -> Value {
        match v {
            Value::String(s) => Value::String(self.redact_str(s)),
            Value::Array(items) => Value::Array(items.iter().map(|i| self.redact(i)).collect()),
            Value::Object(o) => Value::Object(
                o.iter()
                    .map(|(k, v)| {
                        let v = match v {
                            // Validations are recorded by the background flush within a second:
                            // null or a time, depending on when it ran.
                            _ if k == "lastValidated" => json!("<lastValidated>"),
                            Value::String(_) if OPAQUE.contains(&k.as_str()) => json!(format!("<{k}>")),
                            Value::Number(_) | Value::Array(_) if DERIVED.contains(&k.as_str()) => {
                                json!(format!("<{k}>"))
                            }
                            _ => self.redact(v),
                        };
                        (k.clone(), v)
                    })
                    .collect(),
            ),
            other => other.clone(),
        }
    }

    /// Records a response: its status and redacted body.
    fn record(&mut self, name: &str, r: &Res) {
        let body = if r.body.is_null() && !r.text.is_empty() { json!(r.text) } else { r.body.clone() };
        let doc = json!({"status": r.status.as_u16(), "body": self.redact(&body)});
        self.docs.insert(name.to_string(), doc);
    }

    /// Records a raw answer (status line and text), for surfaces that are not JSON.
    fn record_raw(&mut self, name: &str, status: &str, text: &str) {
        let lines: Vec<Value> = text
            .lines()
            .map(|l| match l.split_once(": ") {
                Some((k, _)) if OPAQUE.contains(&k) => json!(format!("{k}: <{k}>")),
                _ => json!(self.redact_str(l)),
            })
            .collect();
        self.docs.insert(name.to_string(), json!({"status": status, "body": lines}));
    }

    fn check(self) {
        let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/golden").join(format!("{}.json", self.name));
        let actual = serde_json::to_string_pretty(&Value::Object(self.docs)).unwrap() + "\n";
        if std::env::var("LICENSOR_BLESS").is_ok_and(|v| v == "1") {
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(&path, &actual).unwrap();
            return;
        }
        let expected = std::fs::read_to_string(&path)
            .unwrap_or_else(|_| panic!("{} is missing: run with LICENSOR_BLESS=1 to write it", path.display()));
        if expected != actual {
            let diff: Vec<String> = expected
                .lines()
                .zip(actual.lines())
                .enumerate()
                .filter(|(_, (e, a))| e != a)
                .take(20)
                .map(|(i, (e, a))| format!("line {}:\n  golden: {e}\n  actual: {a}", i + 1))
                .collect();
            panic!(
                "the wire changed from {} ({} lines golden, {} now); LICENSOR_BLESS=1 accepts it:\n{}",
                path.display(),
                expected.lines().count(),
                actual.lines().count(),
                diff.join("\n")
            );
        }
    }
}

fn machine(license: &str, fingerprint: &str) -> Value {
    json!({"data": {"type": "machines", "attributes": {"fingerprint": fingerprint},
        "relationships": {"license": {"data": {"type": "licenses", "id": license}}}}})
}

/// The Keygen surface: a license's life, validation outcomes, activation and its refusals,
/// pagination and the error documents.
#[tokio::test]
async fn keygen_documents() {
    let app = spawn_app().await;
    let mut g = Golden::new(&app, "keygen");
    let r = app
        .post(
            &app.acct("/products"),
            &app.admin(),
            json!({"data": {"type": "products", "attributes": {"name": "Golden"}}}),
        )
        .await;
    g.record("product created", &r);
    let product = r.id();
    let r = app
        .post(
            &app.acct("/policies"),
            &app.admin(),
            json!({"data": {"type": "policies", "attributes": {"name": "Seats", "floating": true, "maxMachines": 1,
                "duration": 31_556_952, "requireFingerprintScope": false},
                "relationships": {"product": {"data": {"type": "products", "id": product}}}}}),
        )
        .await;
    g.record("policy created", &r);
    let policy = r.id();
    let r = app
        .post(
            &app.acct("/licenses"),
            &app.admin(),
            json!({"data": {"type": "licenses", "attributes": {"name": "Golden license", "metadata": {"seat": 1}},
                "relationships": {"policy": {"data": {"type": "policies", "id": policy}}}}}),
        )
        .await;
    g.record("license created", &r);
    let (license, key) = (r.id(), r.attr("key").as_str().unwrap().to_string());
    let validate_path = app.acct("/licenses/actions/validate-key");
    let validate = |meta: Value| app.post(&validate_path, &As::Anonymous, json!({ "meta": meta }));
    g.record("validate-key, no machine", &validate(json!({"key": key, "scope": {"fingerprint": "gold-1"}})).await);
    g.record("machine activated", &app.post(&app.acct("/machines"), &app.admin(), machine(&license, "gold-1")).await);
    g.record(
        "validate-key, valid",
        &validate(json!({"key": key, "nonce": 1, "scope": {"fingerprint": "gold-1"}})).await,
    );
    g.record("validate-key, unknown", &validate(json!({"key": "NOPE-NOPE"})).await);
    g.record(
        "activation over the limit",
        &app.post(&app.acct("/machines"), &app.admin(), machine(&license, "gold-2")).await,
    );
    let action = |a: &str| app.acct(&format!("/licenses/{license}/actions/{a}"));
    g.record("suspended", &app.post(&action("suspend"), &app.admin(), json!(null)).await);
    g.record("suspended again", &app.post(&action("suspend"), &app.admin(), json!(null)).await);
    g.record("validate-key, suspended", &validate(json!({"key": key})).await);
    g.record("renewed", &app.post(&action("renew"), &app.admin(), json!(null)).await);
    app.create_license(&policy, json!({})).await;
    g.record("licenses page 2", &app.get(&app.acct("/licenses?page[size]=1&page[number]=2"), &app.admin()).await);
    g.record("not found", &app.get(&app.acct("/licenses/nothing-here"), &app.admin()).await);
    g.record("unauthenticated", &app.get(&app.acct("/licenses"), &As::Anonymous).await);
    g.record("bad token", &app.get(&app.acct("/licenses"), &As::Bearer("admin-0000".into())).await);
    let r = app.raw(Method::POST, &app.acct("/licenses"), &app.admin(), Some("{not json".into())).await;
    g.record("malformed JSON", &r);
    let r = app
        .post(
            &app.acct("/policies"),
            &app.admin(),
            json!({"data": {"type": "policies", "attributes": {"name": "Bad", "expirationStrategy": "SOMETIMES"},
                "relationships": {"product": {"data": {"type": "products", "id": product}}}}}),
        )
        .await;
    g.record("unsupported strategy", &r);
    g.record("machine deactivated", &app.delete(&app.acct("/machines/gold-1"), &app.admin()).await);
    g.check();
}

/// The other surfaces: an air-gapped activation file and its refusals, the licensing/v1
/// catalogue and licenses, and a core/v1 license with its problems.
#[tokio::test]
async fn other_surface_documents() {
    let app = spawn_app().await;
    let mut g = Golden::new(&app, "surfaces");
    let product = app.create_product("Golden Engine").await;
    let policy = app.create_policy(&product, json!({"floating": true, "maxMachines": 1})).await;
    let (license, key) = app.create_license(&policy, json!({"expiry": "2099-12-31T00:00:00Z"})).await;
    let deployment = "MSCL0123456789ABCDEF0123456789ABCDEF";
    let (status, _, text) = http_get(&app, &format!("/activation?key={key}&deployment={deployment}&quantity=2")).await;
    g.record_raw("activation refused, quantity over the seats", &status, &text);
    let (status, _, text) = http_get(&app, &format!("/activation?key={key}&deployment={deployment}&quantity=1")).await;
    g.record_raw("activation file", &status, &text);
    let other = "MSCL00000000000000000000000000000001";
    let (status, _, text) = http_get(&app, &format!("/activation?key={key}&deployment={other}&quantity=1")).await;
    g.record_raw("activation refused, no seat", &status, &text);
    let (status, _, text) = http_get(&app, &format!("/activation?key=NOPE&deployment={other}&quantity=1")).await;
    g.record_raw("activation refused, unknown key", &status, &text);
    let (status, _, text) = http_get(&app, "/activation?key=NOPE").await;
    g.record_raw("activation, missing parameters", &status, &text);
    let (status, _, text) = http_get(&app, &format!("/deactivation?key={key}&deployment={deployment}")).await;
    g.record_raw("deactivated", &status, &text);
    let (status, _, text) = http_get(&app, &format!("/deactivation?key={key}&deployment={deployment}")).await;
    g.record_raw("deactivated again", &status, &text);

    let basic = As::Basic(app.admin_email.clone(), PASSWORD.into());
    g.record("licensing products", &app.get("/api/licensing/v1/products", &basic).await);
    g.record("licensing licenses", &app.get("/api/licensing/v1/licenses", &basic).await);
    g.record("licensing unknown product", &app.get("/api/licensing/v1/products/1", &basic).await);
    g.record("licensing unauthenticated", &app.get("/api/licensing/v1/products", &As::Anonymous).await);

    let r = app.get(&core(&app, &format!("/licenses/{license}")), &app.admin()).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    g.record("core license", &r);
    g.record("core licenses", &app.get(&core(&app, "/licenses?include=id,product,capacity"), &app.admin()).await);
    g.record("core not found", &app.get(&core(&app, &format!("/licenses/{}", uuid::Uuid::nil())), &app.admin()).await);
    g.record("core unauthenticated", &app.get(&core(&app, "/licenses"), &As::Anonymous).await);
    g.check();
}
