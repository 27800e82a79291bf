//! The admin console and the customer portal over HTTP (docs/console.md): sessions, CSRF,
//! security headers, and that what they do is what the API sees. The browser tests
//! (`browser.rs`) drive the same pages in Chromium.

use reqwest::StatusCode;
use serde_json::json;

use crate::helpers::*;

/// A browser-like client of one area: keeps the cookies it is given.
pub struct Visitor {
    pub client: reqwest::Client,
    pub base: String,
    pub cookies: Vec<(String, String)>,
}

pub struct Page {
    pub status: StatusCode,
    pub headers: reqwest::header::HeaderMap,
    pub body: String,
}

impl Page {
    /// The value of the first hidden `csrf` field.
    pub fn csrf(&self) -> String {
        let at = self.body.find("name=\"csrf\" value=\"").expect("a csrf field") + "name=\"csrf\" value=\"".len();
        self.body[at..].split('"').next().unwrap().to_string()
    }
    pub fn location(&self) -> &str {
        self.headers.get("location").map_or("", |v| v.to_str().unwrap())
    }
}

impl Visitor {
    pub fn new(app: &TestApp) -> Visitor {
        let client = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
        Visitor { client, base: format!("http://{}", app.addr), cookies: Vec::new() }
    }

    fn cookie_header(&self) -> String {
        self.cookies.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join("; ")
    }

    async fn keep(&mut self, r: reqwest::Response) -> Page {
        for c in r.headers().get_all("set-cookie") {
            let text = c.to_str().unwrap();
            let (pair, _) = text.split_once(';').unwrap_or((text, ""));
            let (k, v) = pair.split_once('=').unwrap();
            self.cookies.retain(|(name, _)| name != k);
            if !text.contains("Max-Age=0") {
                self.cookies.push((k.to_string(), v.to_string()));
            }
        }
        let (status, headers) = (r.status(), r.headers().clone());
        Page { status, headers, body: r.text().await.unwrap() }
    }

    pub async fn get(&mut self, path: &str) -> Page {
        let r = self
            .client
            .get(format!("{}{path}", self.base))
            .header("cookie", self.cookie_header())
            .send()
            .await
            .unwrap();
        self.keep(r).await
    }

    pub async fn post(&mut self, path: &str, form: &[(&str, &str)]) -> Page {
        let r = self
            .client
            .post(format!("{}{path}", self.base))
            .header("cookie", self.cookie_header())
            .header("content-type", "application/x-www-form-urlencoded")
            .body(serde_urlencoded::to_string(form).unwrap())
            .send()
            .await
            .unwrap();
        self.keep(r).await
    }

    /// Signs in to `area` (`/admin` or `/portal`) and follows to its home page.
    pub async fn sign_in(&mut self, area: &str, email: &str, password: &str) -> Page {
        let form = self.get(&format!("{area}/sign-in")).await;
        assert_eq!(form.status, StatusCode::OK);
        let csrf = form.csrf();
        let r =
            self.post(&format!("{area}/sign-in"), &[("csrf", &csrf), ("email", email), ("password", password)]).await;
        assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
        self.get(area).await
    }
}

#[tokio::test]
async fn sign_in_sessions_csrf_and_headers() {
    let app = spawn_app().await;
    let mut v = Visitor::new(&app);

    // Signed out: every page leads to the sign-in form.
    let r = v.get("/admin/licenses").await;
    assert_eq!((r.status, r.location()), (StatusCode::SEE_OTHER, "/admin/sign-in"));
    let form = v.get("/admin/sign-in").await;
    let csp = form.headers["content-security-policy"].to_str().unwrap();
    assert!(
        csp.contains("default-src 'none'") && csp.contains("frame-ancestors 'none'") && !csp.contains("script-src"),
        "{csp}"
    );
    assert_eq!(form.headers["x-content-type-options"], "nosniff");
    assert_eq!(form.headers["cache-control"], "no-store");
    assert!(!form.body.contains("<script"), "no script anywhere");
    assert!(form.body.contains("<label for=\"f-email\">"), "inputs have labels");

    // A sign-in without the double-submit token is refused; a wrong password says so.
    let csrf = form.csrf();
    let r = v.post("/admin/sign-in", &[("email", &app.admin_email), ("password", PASSWORD)]).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    let r =
        v.post("/admin/sign-in", &[("csrf", &csrf), ("email", &app.admin_email), ("password", "wrong password")]).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert!(r.body.contains("Email or password is incorrect."));

    // Signed in: an HttpOnly, SameSite=Strict cookie scoped to /admin, stored as a digest.
    let r = v.post("/admin/sign-in", &[("csrf", &csrf), ("email", &app.admin_email), ("password", PASSWORD)]).await;
    assert_eq!((r.status, r.location()), (StatusCode::SEE_OTHER, "/admin"), "{}", r.body);
    let cookie =
        r.headers.get_all("set-cookie").iter().map(|c| c.to_str().unwrap()).find(|c| c.starts_with("licensor_admin="));
    let cookie = cookie.expect("a session cookie");
    assert!(
        cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict") && cookie.contains("Path=/admin"),
        "{cookie}"
    );
    assert!(!cookie.contains("Secure"), "plain http here");
    let token = v.cookies.iter().find(|(k, _)| k == "licensor_admin").unwrap().1.clone();
    let stored = licensor::store::sessions::find(&app.db, &token, "admin", licensor::time::now_ms()).await.unwrap();
    assert!(stored.is_none(), "the raw token is not what is stored");
    let home = v.get("/admin").await;
    assert_eq!(home.status, StatusCode::OK);
    assert!(home.body.contains("overview") && home.body.contains(&app.admin_email));

    // A form without the session's token changes nothing.
    let r = v.post("/admin/products", &[("name", "Forged")]).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    let r = v.post("/admin/products", &[("csrf", "wrong"), ("name", "Forged")]).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    let products = app.get(&app.acct("/products"), &app.admin()).await;
    assert_eq!(products.body["data"].as_array().unwrap().len(), 0);
    // The portal's cookie is not the console's.
    let r = v.get("/portal").await;
    assert_eq!((r.status, r.location()), (StatusCode::SEE_OTHER, "/portal/sign-in"));

    // Sign out ends the session for good.
    let csrf = home.csrf();
    let r = v.post("/admin/sign-out", &[("csrf", &csrf)]).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    v.cookies.push(("licensor_admin".into(), token));
    let r = v.get("/admin").await;
    assert_eq!((r.status, r.location()), (StatusCode::SEE_OTHER, "/admin/sign-in"));

    // Customers use the portal, not the console.
    let user = app.create_user("customer@example.com").await;
    let _ = user;
    let mut c = Visitor::new(&app);
    let form = c.get("/admin/sign-in").await;
    let csrf = form.csrf();
    let r =
        c.post("/admin/sign-in", &[("csrf", &csrf), ("email", "customer@example.com"), ("password", PASSWORD)]).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn console_actions_are_seen_by_every_surface() {
    let app = spawn_app().await;
    let mut v = Visitor::new(&app);
    let home = v.sign_in("/admin", &app.admin_email, PASSWORD).await;
    let csrf = home.csrf();

    let r = v.post("/admin/products", &[("csrf", &csrf), ("name", "Desktop App")]).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    let product =
        app.get(&app.acct("/products"), &app.admin()).await.body["data"][0]["id"].as_str().unwrap().to_string();
    let r = v
        .post(
            "/admin/policies",
            &[
                ("csrf", &csrf),
                ("product", &product),
                ("name", "Pro"),
                ("max_machines", "2"),
                ("floating", "true"),
                ("license_auth", "true"),
            ],
        )
        .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    let policy = app.get(&app.acct("/policies"), &app.admin()).await;
    assert_eq!(policy.body["data"][0]["attributes"]["maxMachines"], 2);
    let policy = policy.body["data"][0]["id"].as_str().unwrap().to_string();
    // The policy page shows every rule, explained.
    let shown = v.get(&format!("/admin/policies/{policy}")).await;
    assert_eq!(shown.status, StatusCode::OK);
    for rule in ["maxMachines", "heartbeatCullStrategy", "requireFingerprintScope", "authenticationStrategy"] {
        assert!(shown.body.contains(&format!("<code>{rule}</code>")), "{rule}");
    }
    assert!(shown.body.contains("Machines a license may activate at once."));
    let r = v.post("/admin/licenses", &[("csrf", &csrf), ("policy", &policy), ("name", "Acme Corp")]).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    let page = r.location().split('?').next().unwrap().to_string();
    let license = page.rsplit('/').next().unwrap().to_string();
    let key = app
        .get(&app.acct(&format!("/licenses/{license}")), &app.admin())
        .await
        .attr("key")
        .as_str()
        .unwrap()
        .to_string();

    // Search finds it by key, by name, and not by nonsense.
    for (q, found) in [(key.as_str(), true), ("acme", true), ("no-such-thing", false)] {
        let list = v.get(&format!("/admin/licenses?q={q}")).await;
        assert_eq!(list.body.contains(&license), found, "{q}");
    }

    // Suspended in the console: validate-key answers SUSPENDED, and the event is logged.
    let r = v.post(&format!("{page}/suspend"), &[("csrf", &csrf)]).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    assert_eq!(validate(&app, key.clone()).await, "SUSPENDED");
    let shown = v.get(&page).await;
    assert!(shown.body.contains("SUSPENDED") && shown.body.contains("Reinstate"));
    let log = v.get("/admin/events?event=license.suspended").await;
    assert!(log.body.contains(&license), "the console's change is in the event log");
    v.post(&format!("{page}/reinstate"), &[("csrf", &csrf)]).await;
    assert_eq!(validate(&app, key.clone()).await, "VALID");

    // An owner set in the console owns it in the API (and sees it in the portal).
    let buyer = app.create_user("buyer@example.com").await;
    let r = v.post(&format!("{page}/owner"), &[("csrf", &csrf), ("email", "buyer@example.com")]).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    let owner = app.get(&app.acct(&format!("/licenses/{license}")), &app.admin()).await;
    assert_eq!(owner.body["data"]["relationships"]["owner"]["data"]["id"], buyer.as_str());
    let r = v.post(&format!("{page}/owner"), &[("csrf", &csrf), ("email", "nobody@example.com")]).await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);

    // The license file downloads, and verifies offline with the account's key.
    let r = v.post(&format!("{page}/check-out"), &[("csrf", &csrf)]).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert!(r.headers["content-disposition"].to_str().unwrap().contains(&format!("{license}.lic")));
    let account = licensor::store::accounts::find(&app.db, &app.account_id).await.unwrap().unwrap();
    let pk = licensor_client::PublicKey::parse(&account.ed25519_public).unwrap();
    let file = licensor_client::file::verify(&r.body, &pk, None).expect("a verifiable license file");
    assert_eq!(file.attributes()["key"], key.as_str());
    let r = v.post(&format!("{page}/check-out"), &[("csrf", "forged")]).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);

    // A machine activated through the API is deactivated from the console.
    let r = app
        .post(
            &app.acct("/machines"),
            &As::License(key.clone()),
            json!({"data": {"type": "machines", "attributes": {"fingerprint": "fp-console"},
                "relationships": {"license": {"data": {"type": "licenses", "id": license}}}}}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    let machine = r.id();
    let shown = v.get(&page).await;
    assert!(shown.body.contains("fp-console"));
    let r = v.post(&format!("/admin/machines/{machine}/deactivate"), &[("csrf", &csrf)]).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    assert_eq!(app.get(&app.acct(&format!("/machines/{machine}")), &app.admin()).await.status, StatusCode::NOT_FOUND);

    // Revoking asks first, then the license is gone everywhere.
    let confirm = v.get(&format!("{page}/revoke")).await;
    assert!(confirm.body.contains("cannot be undone"));
    let r = v.post(&format!("{page}/revoke"), &[("csrf", &csrf)]).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    assert_eq!(validate(&app, key).await, "NOT_FOUND");
    let r = v.get(&page).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);

    // A product token made in the console is shown once and works against the API.
    let r = v.post("/admin/tokens", &[("csrf", &csrf), ("bearer", &product), ("name", "backend")]).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert!(r.body.contains("shown only this once"));
    let at = r.body.find("<code class=\"key\">").unwrap() + "<code class=\"key\">".len();
    let raw = r.body[at..].split('<').next().unwrap().to_string();
    assert_eq!(app.get(&app.acct("/licenses"), &As::Bearer(raw.clone())).await.status, StatusCode::OK);
    let listed = v.get("/admin/tokens").await;
    assert!(!listed.body.contains(&raw), "the secret is never shown again");
    let token_id = app.get(&app.acct("/tokens"), &As::Bearer(raw.clone())).await.body["data"][0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    v.post(&format!("/admin/tokens/{token_id}/revoke"), &[("csrf", &csrf)]).await;
    assert_eq!(app.get(&app.acct("/licenses"), &As::Bearer(raw)).await.status, StatusCode::UNAUTHORIZED);
    let r = v.post("/admin/entitlements", &[("csrf", &csrf), ("code", "EXPORT_PDF"), ("name", "Export to PDF")]).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    let r = v.post("/admin/entitlements", &[("csrf", &csrf), ("code", "EXPORT_PDF"), ("name", "Again")]).await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "a taken code is refused: {}", r.body);

    // Bad input is a page, not a 500.
    let r = v
        .post("/admin/policies", &[("csrf", &csrf), ("product", &product), ("name", "X"), ("max_machines", "many")])
        .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.body);
    assert!(r.body.contains("must be a whole number"));
    let r = v.get("/admin/licenses/00000000-0000-0000-0000-000000000000").await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    let r = v.post("/admin/users", &[("csrf", &csrf), ("email", "not an email"), ("password", "long enough")]).await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
}

#[tokio::test]
async fn the_portal_shows_a_customer_only_their_own() {
    let app = spawn_app().await;
    let product = app.create_product("App").await;
    let policy = app.create_policy(&product, json!({"maxMachines": 3, "floating": true})).await;
    let alice = app.create_user("alice@example.com").await;
    let bob = app.create_user("bob@example.com").await;
    let (hers, _) = app.create_license(&policy, json!({"name": "Alice's seat"})).await;
    let (his, _) = app.create_license(&policy, json!({"name": "Bob's seat"})).await;
    app.set_owner(&hers, &alice).await;
    app.set_owner(&his, &bob).await;
    let activate = |license: &str, fp: &str| {
        json!({"data": {"type": "machines", "attributes": {"fingerprint": fp},
            "relationships": {"license": {"data": {"type": "licenses", "id": license}}}}})
    };
    let her_machine = app.post(&app.acct("/machines"), &app.admin(), activate(&hers, "alice-laptop")).await.id();
    let his_machine = app.post(&app.acct("/machines"), &app.admin(), activate(&his, "bob-laptop")).await.id();

    let mut v = Visitor::new(&app);
    let home = v.sign_in("/portal", "alice@example.com", PASSWORD).await;
    assert_eq!(home.status, StatusCode::OK);
    assert!(home.body.contains("Alice&#39;s seat"), "{}", home.body);
    assert!(!home.body.contains("Bob"), "nothing of another customer");
    let csrf = home.csrf();
    assert_eq!(v.get(&format!("/portal/licenses/{his}")).await.status, StatusCode::NOT_FOUND);
    assert_eq!(
        v.post(&format!("/portal/licenses/{his}/check-out"), &[("csrf", &csrf)]).await.status,
        StatusCode::NOT_FOUND
    );
    let own = v.post(&format!("/portal/licenses/{hers}/check-out"), &[("csrf", &csrf)]).await;
    assert_eq!(own.status, StatusCode::OK, "{}", own.body);
    assert!(own.body.starts_with("-----BEGIN LICENSE FILE-----"), "{}", own.body);
    let r = v.post(&format!("/portal/machines/{his_machine}/deactivate"), &[("csrf", &csrf)]).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert_eq!(app.get(&app.acct(&format!("/machines/{his_machine}")), &app.admin()).await.status, StatusCode::OK);

    // Her own machine: deactivated, the seat freed on every surface.
    let page = v.get(&format!("/portal/licenses/{hers}")).await;
    assert!(page.body.contains("alice-laptop"));
    let r = v.post(&format!("/portal/machines/{her_machine}/deactivate"), &[("csrf", &csrf)]).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    assert_eq!(
        app.get(&app.acct(&format!("/machines/{her_machine}")), &app.admin()).await.status,
        StatusCode::NOT_FOUND
    );

    // A new password works at once; the old one no longer does.
    let r = v.post("/portal/password", &[("csrf", &csrf), ("current", PASSWORD), ("new", "a brand new secret")]).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    let mut again = Visitor::new(&app);
    let form = again.get("/portal/sign-in").await;
    let t = form.csrf();
    let r =
        again.post("/portal/sign-in", &[("csrf", &t), ("email", "alice@example.com"), ("password", PASSWORD)]).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    again.sign_in("/portal", "alice@example.com", "a brand new secret").await;
}

#[tokio::test]
async fn the_console_can_be_turned_off_and_sign_in_is_rate_limited() {
    let app = spawn_app().await;
    let dir = tempfile::tempdir().unwrap();
    let (_server, url) = app.serve_process_with(dir.path(), &[("LICENSOR_NO_CONSOLE", "true")]).await;
    let client = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    for path in ["/admin", "/admin/sign-in", "/portal", "/admin/assets/console.css"] {
        let r = client.get(format!("{url}{path}")).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::NOT_FOUND, "{path}");
    }

    // The API's login limit covers the sign-in forms too (the same buckets). A minute window
    // that rolls over mid-test would reset the count: start well inside one.
    let second = chrono::Utc::now().timestamp() % 60;
    if second >= 50 {
        tokio::time::sleep(std::time::Duration::from_secs((61 - second) as u64)).await;
    }
    let (_limited, url) =
        app.serve_process_with(tempfile::tempdir().unwrap().path(), &[("LICENSOR_LOGIN_RATE_LIMIT", "2/1m")]).await;
    let mut v = Visitor { client: client.clone(), base: url, cookies: Vec::new() };
    let form = v.get("/admin/sign-in").await;
    let csrf = form.csrf();
    let mut statuses = Vec::new();
    for _ in 0..3 {
        let r =
            v.post("/admin/sign-in", &[("csrf", &csrf), ("email", &app.admin_email), ("password", "nope nope")]).await;
        statuses.push(r.status.as_u16());
    }
    assert_eq!(statuses, [401, 401, 429]);
}

async fn validate(app: &TestApp, key: String) -> String {
    let body = json!({"meta": {"key": key}});
    let r = app.post(&app.acct("/licenses/actions/validate-key"), &As::Anonymous, body).await;
    r.body["meta"]["code"].as_str().unwrap().to_string()
}

#[tokio::test]
async fn sessions_expire_and_are_purged() {
    let app = spawn_app().await;
    let mut v = Visitor::new(&app);
    assert_eq!(v.sign_in("/admin", &app.admin_email, PASSWORD).await.status, StatusCode::OK);
    // Nothing is due yet; past the lifetime, the session is gone and the console asks again.
    let now = licensor::time::now_ms();
    assert_eq!(licensor::store::sessions::purge(&app.db, now).await.unwrap(), 0);
    let later = now + licensor::console::SESSION_TTL + 1;
    assert_eq!(licensor::store::sessions::purge(&app.db, later).await.unwrap(), 1);
    let r = v.get("/admin").await;
    assert_eq!((r.status, r.location()), (StatusCode::SEE_OTHER, "/admin/sign-in"));
}

/// Groups, a license's users and entitlements, password resets and webhook endpoints, made in
/// the console, are what the API sees; the console's checks are the API's (a product code, a
/// group cap, an endpoint URL are refused alike).
#[tokio::test]
async fn the_console_manages_groups_attachments_passwords_and_endpoints() {
    let app = spawn_app().await;
    let (_, _, license, key) = app.license_fixture(json!({"maxUsers": 1})).await;
    let mut v = Visitor::new(&app);
    let csrf = v.sign_in("/admin", &app.admin_email, PASSWORD).await.csrf();
    let page = format!("/admin/licenses/{license}");

    // The same rules as the API's.
    let r = v.post("/admin/products", &[("csrf", &csrf), ("name", "App"), ("code", "bad code!")]).await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.body);
    let r = v.post("/admin/groups", &[("csrf", &csrf), ("name", "Acme"), ("max_users", "0")]).await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.body);
    let r = v.post("/admin/groups", &[("csrf", &csrf), ("name", "  ")]).await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.body);

    // A group.
    let r = v.post("/admin/groups", &[("csrf", &csrf), ("name", "Acme"), ("max_users", "5")]).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    let groups = app.get(&app.acct("/groups"), &app.admin()).await;
    assert_eq!(groups.body["data"][0]["attributes"]["name"], "Acme");
    assert_eq!(groups.body["data"][0]["attributes"]["maxUsers"], 5);
    assert!(v.get("/admin/groups").await.body.contains("Acme"));

    // An entitlement attached on the license page is granted on the API, and detached again.
    v.post("/admin/entitlements", &[("csrf", &csrf), ("code", "EXPORT"), ("name", "Export")]).await;
    let r = v.post(&format!("{page}/entitlements"), &[("csrf", &csrf), ("code", "EXPORT")]).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    let scoped = json!({"meta": {"key": key, "scope": {"entitlements": ["EXPORT"]}}});
    let path = app.acct("/licenses/actions/validate-key");
    assert_eq!(app.post(&path, &As::Anonymous, scoped.clone()).await.body["meta"]["code"], "VALID");
    let r = v.post(&format!("{page}/entitlements"), &[("csrf", &csrf), ("code", "NOPE")]).await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    let listed = app.get(&app.acct(&format!("/licenses/{license}/entitlements")), &app.admin()).await;
    let entitlement = listed.body["data"][0]["id"].as_str().unwrap().to_string();
    let r = v.post(&format!("{page}/entitlements/{entitlement}/detach"), &[("csrf", &csrf)]).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    assert_eq!(app.post(&path, &As::Anonymous, scoped).await.body["meta"]["code"], "ENTITLEMENTS_MISSING");

    // Users attached on the license page, within the license's maxUsers.
    let first = app.create_user("first@example.com").await;
    app.create_user("second@example.com").await;
    let r = v.post(&format!("{page}/users"), &[("csrf", &csrf), ("email", "first@example.com")]).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    let users = app.get(&app.acct(&format!("/licenses/{license}/users")), &app.admin()).await;
    assert_eq!(users.body["data"][0]["id"], first.as_str());
    let r = v.post(&format!("{page}/users"), &[("csrf", &csrf), ("email", "second@example.com")]).await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "maxUsers holds: {}", r.body);
    assert!(r.body.contains("user count has exceeded"));
    let r = v.post(&format!("{page}/users/{first}/detach"), &[("csrf", &csrf)]).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    let users = app.get(&app.acct(&format!("/licenses/{license}/users")), &app.admin()).await;
    assert_eq!(users.body["data"].as_array().unwrap().len(), 0);

    // A password reset by the admin: the new password works, the user's tokens are revoked.
    let basic = As::Basic("first@example.com".into(), PASSWORD.into());
    let token = app.post(&app.acct("/tokens"), &basic, json!(null)).await;
    let token = As::Bearer(token.attr("token").as_str().unwrap().to_string());
    assert_eq!(app.get(&app.acct(&format!("/users/{first}")), &token).await.status, StatusCode::OK);
    let r = v.post(&format!("/admin/users/{first}/password"), &[("csrf", &csrf), ("password", "short")]).await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    let r = v.post(&format!("/admin/users/{first}/password"), &[("csrf", &csrf), ("password", "a new secret!")]).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    assert_eq!(app.get(&app.acct(&format!("/users/{first}")), &token).await.status, StatusCode::UNAUTHORIZED);
    let fresh = As::Basic("first@example.com".into(), "a new secret!".into());
    assert_eq!(app.post(&app.acct("/tokens"), &fresh, json!(null)).await.status, StatusCode::CREATED);

    // Webhook endpoints: the API's URL and subscription checks, then listed by the API.
    for (url, subs) in
        [("http://127.0.0.1:9/hook", ""), ("https://hooks.example.com/in", "license.created, no.such-event")]
    {
        let r = v.post("/admin/webhooks", &[("csrf", &csrf), ("url", url), ("subscriptions", subs)]).await;
        assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{url} {subs}: {}", r.body);
    }
    let r = v
        .post(
            "/admin/webhooks",
            &[("csrf", &csrf), ("url", "https://hooks.example.com/in"), ("subscriptions", "license.created")],
        )
        .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    let listed = app.get(&app.acct("/webhook-endpoints"), &app.admin()).await;
    assert_eq!(listed.body["data"][0]["attributes"]["subscriptions"], json!(["license.created"]));
    let endpoint = listed.body["data"][0]["id"].as_str().unwrap().to_string();
    let r = v.post(&format!("/admin/webhooks/endpoints/{endpoint}/delete"), &[("csrf", &csrf)]).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    let listed = app.get(&app.acct("/webhook-endpoints"), &app.admin()).await;
    assert_eq!(listed.body["data"].as_array().unwrap().len(), 0);
}

/// With `--log-validations`, the license page lists the license's validations with their codes.
#[tokio::test]
async fn the_license_page_shows_validation_history_when_logged() {
    let webhooks = licensor::webhooks::Config { log_validations: true, ..Default::default() };
    let app = spawn_app_configured(Default::default(), webhooks).await;
    let (_, _, license, key) = app.license_fixture(json!({})).await;
    let path = app.acct("/licenses/actions/validate-key");
    app.post(&path, &As::Anonymous, json!({"meta": {"key": key}})).await;
    app.post(&path, &As::Anonymous, json!({"meta": {"key": key, "scope": {"fingerprint": "nowhere"}}})).await;
    let mut v = Visitor::new(&app);
    v.sign_in("/admin", &app.admin_email, PASSWORD).await;
    let mut shown = String::new();
    for _ in 0..50 {
        shown = v.get(&format!("/admin/licenses/{license}")).await.body;
        if shown.contains("NO_MACHINE") {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(shown.contains("Validation history"), "{shown}");
    assert!(shown.contains("NO_MACHINE") && shown.contains("VALID"), "both validations are listed: {shown}");

    // Without the flag (and no subscribed endpoint) nothing is logged, and the page says why.
    let plain = spawn_app().await;
    let (_, _, license, key) = plain.license_fixture(json!({})).await;
    plain.post(&plain.acct("/licenses/actions/validate-key"), &As::Anonymous, json!({"meta": {"key": key}})).await;
    let mut v = Visitor::new(&plain);
    v.sign_in("/admin", &plain.admin_email, PASSWORD).await;
    assert!(v.get(&format!("/admin/licenses/{license}")).await.body.contains("--log-validations"));
}

/// The license list pages by keyset: "Next" carries the last row's position, the pages do not
/// overlap, and the count is of the whole list.
#[tokio::test]
async fn the_license_list_pages_by_keyset() {
    let app = spawn_app().await;
    let (_, policy, first, _) = app.license_fixture(json!({})).await;
    let mut ids = vec![first];
    for _ in 0..29 {
        ids.push(app.create_license(&policy, json!({})).await.0);
    }
    let mut v = Visitor::new(&app);
    v.sign_in("/admin", &app.admin_email, PASSWORD).await;
    let one = v.get("/admin/licenses").await;
    assert!(one.body.contains("30 in all"), "{}", one.body);
    let at = one.body.find("before=").expect("a Next link") + "before=".len();
    let cursor = one.body[at..].split('"').next().unwrap().replace("&amp;", "&");
    let two = v.get(&format!("/admin/licenses?before={cursor}")).await;
    assert!(two.body.contains("30 in all") && two.body.contains("First page"));
    assert!(!two.body.contains("before="), "the last page has no Next");
    let on = |page: &str| ids.iter().filter(|id| page.contains(id.as_str())).count();
    assert_eq!((on(&one.body), on(&two.body)), (25, 5));
    assert!(ids.iter().all(|id| one.body.contains(id.as_str()) != two.body.contains(id.as_str())));
    // A cursor that does not parse is the first page, not an error.
    assert!(v.get("/admin/licenses?before=garbage").await.body.contains("30 in all"));
}
