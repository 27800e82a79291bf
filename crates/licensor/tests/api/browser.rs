//! The console and the portal in a real browser: Debian's headless Chromium driven through
//! chromedriver's WebDriver protocol (a few commands, spoken with reqwest). `scripts/test`
//! installs both when missing. With `LICENSOR_SCREENSHOTS=<dir>` the test also saves the
//! screenshots docs/console.md shows (`scripts/screenshots`).

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::helpers::*;

const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

/// A chromedriver process and one headless Chromium session.
struct Browser {
    client: reqwest::Client,
    session: String,
    _driver: KillOnDrop,
}

impl Browser {
    async fn start() -> Browser {
        let driver = ["/usr/bin/chromedriver", "/usr/lib/chromium/chromedriver"]
            .into_iter()
            .find(|p| std::path::Path::new(p).exists())
            .expect("chromedriver is missing: scripts/test installs Debian's chromium and chromium-driver");
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let child = std::process::Command::new(driver)
            .arg(format!("--port={port}"))
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("start chromedriver");
        let driver = KillOnDrop(child);
        let client = reqwest::Client::new();
        let base = format!("http://127.0.0.1:{port}");
        for _ in 0..100 {
            if client.get(format!("{base}/status")).send().await.is_ok() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let caps = json!({"capabilities": {"alwaysMatch": {"browserName": "chrome", "goog:chromeOptions": {
            "binary": "/usr/bin/chromium",
            "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1280,900"]
        }}}});
        let r: Value = client.post(format!("{base}/session")).json(&caps).send().await.unwrap().json().await.unwrap();
        let session = r["value"]["sessionId"].as_str().unwrap_or_else(|| panic!("no session: {r}")).to_string();
        Browser { client, session: format!("{base}/session/{session}"), _driver: driver }
    }

    async fn cmd(&self, method: reqwest::Method, path: &str, body: Value) -> Value {
        let mut req = self.client.request(method.clone(), format!("{}{path}", self.session));
        if method != reqwest::Method::GET {
            req = req.json(&body);
        }
        let r = req.send().await.unwrap();
        let v: Value = r.json().await.unwrap();
        if v["value"].get("error").is_some() {
            panic!("webdriver {path}: {v}");
        }
        v["value"].clone()
    }

    async fn go(&self, url: &str) {
        self.cmd(reqwest::Method::POST, "/url", json!({ "url": url })).await;
    }

    async fn find(&self, css: &str) -> String {
        let v = self.cmd(reqwest::Method::POST, "/element", json!({"using": "css selector", "value": css})).await;
        v[ELEMENT].as_str().unwrap().to_string()
    }

    async fn fill(&self, css: &str, text: &str) {
        let e = self.find(css).await;
        self.cmd(reqwest::Method::POST, &format!("/element/{e}/value"), json!({ "text": text })).await;
    }

    async fn click(&self, css: &str) {
        let e = self.find(css).await;
        self.cmd(reqwest::Method::POST, &format!("/element/{e}/click"), json!({})).await;
    }

    async fn select(&self, name: &str, visible: &str) {
        // Clicking the option of that text selects it, as a user does.
        let e = self
            .cmd(
                reqwest::Method::POST,
                "/element",
                json!({"using": "xpath", "value": format!("//select[@name='{name}']/option[contains(., '{visible}')]")}),
            )
            .await;
        let e = e[ELEMENT].as_str().unwrap().to_string();
        self.cmd(reqwest::Method::POST, &format!("/element/{e}/click"), json!({})).await;
    }

    async fn text(&self) -> String {
        let body = self.find("body").await;
        self.cmd(reqwest::Method::GET, &format!("/element/{body}/text"), Value::Null)
            .await
            .as_str()
            .unwrap()
            .to_string()
    }

    /// The page's text once it contains `needle`: a click that submits a form returns before
    /// the next page has loaded.
    async fn wait_text(&self, needle: &str) -> String {
        let mut last = String::new();
        for _ in 0..100 {
            let source = self.client.get(format!("{}/source", self.session)).send().await.unwrap();
            let v: Value = source.json().await.unwrap();
            if let Some(html) = v["value"].as_str() {
                if html.contains(needle) {
                    return self.text().await;
                }
                last = html.to_string();
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("the page never showed {needle:?}; it shows: {last}");
    }

    async fn url(&self) -> String {
        self.cmd(reqwest::Method::GET, "/url", Value::Null).await.as_str().unwrap().to_string()
    }

    /// Saves a screenshot when `LICENSOR_SCREENSHOTS` names a folder.
    async fn shot(&self, name: &str) {
        let Ok(dir) = std::env::var("LICENSOR_SCREENSHOTS") else { return };
        use base64::Engine;
        let png = self.cmd(reqwest::Method::GET, "/screenshot", Value::Null).await;
        let bytes = base64::engine::general_purpose::STANDARD.decode(png.as_str().unwrap()).unwrap();
        std::fs::write(std::path::Path::new(&dir).join(format!("{name}.png")), bytes).unwrap();
    }

    async fn quit(self) {
        let _ = self.client.delete(&self.session).send().await;
    }
}

#[tokio::test]
async fn a_vendor_and_a_customer_in_chromium() {
    let app = spawn_app().await;
    let base = format!("http://{}", app.addr);
    let b = Browser::start().await;

    // The vendor signs in and builds a product, a policy and a license, with no script.
    b.go(&format!("{base}/admin")).await;
    assert!(b.url().await.ends_with("/admin/sign-in"));
    b.shot("sign-in").await;
    b.fill("#f-email", &app.admin_email).await;
    b.fill("#f-password", PASSWORD).await;
    b.click("button[type=submit]").await;
    b.wait_text("overview").await;
    b.go(&format!("{base}/admin/products")).await;
    b.fill("#f-name", "Desktop App").await;
    b.click("main form button[type=submit]").await;
    b.wait_text("Product created.").await;
    b.go(&format!("{base}/admin/policies")).await;
    b.fill("#f-name", "Pro").await;
    b.fill("#f-max_machines", "3").await;
    b.click("#f-unprotected").await;
    b.click("main form button[type=submit]").await;
    b.wait_text("Policy created.").await;
    b.go(&format!("{base}/admin/licenses")).await;
    b.select("policy", "Pro (Desktop App)").await;
    b.fill("form[method=post][action='/admin/licenses'] #f-name", "Acme Corp").await;
    b.click("form[method=post][action='/admin/licenses'] button[type=submit]").await;
    let text = b.wait_text("License created.").await;
    assert!(text.contains("ACTIVE"), "{text}");
    let license = b.url().await.split('?').next().unwrap().rsplit('/').next().unwrap().to_string();
    let key = app
        .get(&app.acct(&format!("/licenses/{license}")), &app.admin())
        .await
        .attr("key")
        .as_str()
        .unwrap()
        .to_string();

    // Suspend: validate-key, through the API, answers SUSPENDED.
    b.click(&format!("form[action='/admin/licenses/{license}/suspend'] button")).await;
    b.wait_text("License suspended.").await;
    assert!(b.text().await.contains("SUSPENDED"));
    b.shot("license").await;
    let r = app.post(&app.acct("/licenses/actions/validate-key"), &As::Anonymous, json!({"meta": {"key": key}})).await;
    assert_eq!(r.body["meta"]["code"], "SUSPENDED");
    b.go(&format!("{base}/admin")).await;
    b.shot("overview").await;
    b.go(&format!("{base}/admin/licenses")).await;
    b.shot("licenses").await;
    b.click("header form button").await;
    b.wait_text("Sign in to the console").await;

    // A customer moves a seat from the portal.
    let alice = app.create_user("alice@example.com").await;
    app.set_owner(&license, &alice).await;
    app.post(&app.acct(&format!("/licenses/{license}/actions/reinstate")), &app.admin(), json!(null)).await;
    let machine = app
        .post(
            &app.acct("/machines"),
            &app.admin(),
            json!({"data": {"type": "machines", "attributes": {"fingerprint": "old-laptop"},
                "relationships": {"license": {"data": {"type": "licenses", "id": license}}}}}),
        )
        .await
        .id();
    b.go(&format!("{base}/portal")).await;
    b.fill("#f-email", "alice@example.com").await;
    b.fill("#f-password", PASSWORD).await;
    b.click("button[type=submit]").await;
    b.wait_text("Acme Corp").await;
    b.shot("portal").await;
    b.click("main table a").await;
    b.wait_text("old-laptop").await;
    b.click(&format!("form[action='/portal/machines/{machine}/deactivate'] button")).await;
    b.wait_text("Machine deactivated.").await;
    assert_eq!(app.get(&app.acct(&format!("/machines/{machine}")), &app.admin()).await.status, StatusCode::NOT_FOUND);
    b.quit().await;
}
