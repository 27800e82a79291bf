//! Who may do what, as a table: routes × kinds of principal × whose resource, each cell with
//! the status Keygen answers. Every cell runs; the failures are listed together.

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use crate::helpers::*;

/// Everyone and everything of the table.
struct World {
    who: Vec<(&'static str, As)>,
    ids: Vec<(&'static str, String)>,
}

impl World {
    fn id(&self, name: &str) -> &str {
        &self.ids.iter().find(|(n, _)| *n == name).unwrap_or_else(|| panic!("no {name}")).1
    }
    fn who(&self, name: &str) -> &As {
        &self.who.iter().find(|(n, _)| *n == name).unwrap_or_else(|| panic!("no {name}")).1
    }
}

/// A token generated through a relationship (Keygen answers those 200).
async fn token_of(app: &TestApp, path: &str) -> (String, As) {
    let r = app.post(&app.acct(path), &app.admin(), json!(null)).await;
    assert_eq!(r.status, StatusCode::OK, "{path}: {}", r.text);
    (r.id(), As::Bearer(r.attr("token").as_str().unwrap().to_string()))
}

async fn login(app: &TestApp, email: &str) -> (String, As) {
    let r = app.post(&app.acct("/tokens"), &As::Basic(email.into(), PASSWORD.into()), json!(null)).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    (r.id(), As::Bearer(r.attr("token").as_str().unwrap().to_string()))
}

async fn world(app: &TestApp) -> World {
    let mut ids = Vec::new();
    let mut who = vec![("admin", app.admin()), ("anonymous", As::Anonymous)];
    let policy_attrs = json!({"floating": true, "maxMachines": 5, "authenticationStrategy": "MIXED"});
    let (product_a, _, license_a, key_a) = app.license_fixture(policy_attrs.clone()).await;
    let (product_b, _, license_b, _) = app.license_fixture(policy_attrs).await;
    let owner = app.create_user("owner@example.com").await;
    let stranger = app.create_user("stranger@example.com").await;
    app.set_owner(&license_a, &owner).await;
    let group = app
        .post(&app.acct("/groups"), &app.admin(), json!({"data": {"type": "groups", "attributes": {"name": "G"}}}))
        .await
        .id();
    let r = app
        .put(
            &app.acct(&format!("/users/{owner}/group")),
            &app.admin(),
            json!({"data": {"type": "groups", "id": group}}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let r = app
        .post(
            &app.acct("/users"),
            &app.admin(),
            json!({"data": {"type": "users", "attributes": {"email": "second-admin@example.com", "password": PASSWORD, "role": "admin"}}}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    let admin2 = r.id();
    let machine = app
        .post(
            &app.acct("/machines"),
            &app.admin(),
            json!({"data": {"type": "machines", "attributes": {"fingerprint": "table-fp"},
                "relationships": {"license": {"data": {"type": "licenses", "id": license_a}}}}}),
        )
        .await
        .id();
    let (_, product_a_token) = token_of(app, &format!("/products/{product_a}/tokens")).await;
    let (_, product_b_token) = token_of(app, &format!("/products/{product_b}/tokens")).await;
    let (license_a_token_id, license_a_token) = token_of(app, &format!("/licenses/{license_a}/tokens")).await;
    let (license_b_token_id, _) = token_of(app, &format!("/licenses/{license_b}/tokens")).await;
    let (admin2_token_id, admin2_token) = login(app, "second-admin@example.com").await;
    let (owner_token_id, owner_token) = login(app, "owner@example.com").await;
    let (_, stranger_token) = login(app, "stranger@example.com").await;
    let (_, other_account) = app.other_account("elsewhere").await;
    who.extend([
        ("admin2", admin2_token),
        ("product", product_a_token),
        ("other product", product_b_token),
        ("owner", owner_token),
        ("stranger", stranger_token),
        ("license", As::License(key_a)),
        ("license token", license_a_token),
        ("other account", other_account),
    ]);
    ids.extend([
        ("license", license_a),
        ("other license", license_b),
        ("product", product_a),
        ("other product", product_b),
        ("machine", machine),
        ("owner", owner),
        ("stranger", stranger),
        ("admin2", admin2),
        ("group", group),
        ("license token", license_a_token_id),
        ("other license token", license_b_token_id),
        ("admin2 token", admin2_token_id),
        ("owner token", owner_token_id),
    ]);
    World { who, ids }
}

/// One row: a request, then for each principal the status expected (`None`: not asserted).
type Row = (Method, String, Option<Value>, Vec<(&'static str, u16)>);

#[tokio::test]
async fn every_route_answers_each_principal_as_keygen_does() {
    let app = spawn_app().await;
    let w = world(&app).await;
    let rename = |kind: &str| Some(json!({"data": {"type": kind, "attributes": {"name": "Renamed"}}}));
    let path = |p: String| p;
    let rows: Vec<Row> = vec![
        (
            Method::GET,
            path(format!("/licenses/{}", w.id("license"))),
            None,
            vec![
                ("admin", 200),
                ("admin2", 200),
                ("product", 200),
                ("other product", 404),
                ("owner", 200),
                ("stranger", 404),
                ("license", 200),
                ("license token", 200),
                ("anonymous", 401),
                ("other account", 401),
            ],
        ),
        (
            Method::GET,
            format!("/licenses/{}", w.id("other license")),
            None,
            vec![("product", 404), ("owner", 404), ("license", 404), ("license token", 404)],
        ),
        (
            Method::PATCH,
            format!("/licenses/{}", w.id("license")),
            rename("licenses"),
            vec![
                ("admin", 200),
                ("product", 200),
                ("other product", 404),
                ("owner", 403),
                ("stranger", 404),
                ("license", 403),
                ("license token", 403),
                ("anonymous", 401),
            ],
        ),
        (
            Method::GET,
            format!("/machines/{}", w.id("machine")),
            None,
            vec![
                ("admin", 200),
                ("product", 200),
                ("other product", 404),
                ("owner", 200),
                ("stranger", 404),
                ("license", 200),
                ("license token", 200),
                ("anonymous", 401),
            ],
        ),
        (
            Method::POST,
            format!("/machines/{}/actions/reset", w.id("machine")),
            None,
            vec![("other product", 404), ("owner", 403), ("stranger", 404), ("license", 403), ("anonymous", 401)],
        ),
        (
            Method::GET,
            format!("/tokens/{}", w.id("other license token")),
            None,
            vec![
                ("admin", 200),
                ("product", 404),
                ("other product", 200),
                ("owner", 404),
                ("license token", 404),
                ("anonymous", 401),
            ],
        ),
        (
            Method::GET,
            format!("/tokens/{}", w.id("license token")),
            None,
            vec![("product", 200), ("other product", 404), ("license token", 200), ("owner", 404)],
        ),
        (
            Method::GET,
            format!("/tokens/{}", w.id("owner token")),
            None,
            vec![("admin", 200), ("product", 200), ("other product", 404), ("owner", 200), ("stranger", 404)],
        ),
        (
            Method::GET,
            format!("/tokens/{}", w.id("admin2 token")),
            None,
            vec![("admin", 200), ("admin2", 200), ("product", 404), ("owner", 404)],
        ),
        // Regenerating another admin's token is refused; the product cannot even see it.
        (
            Method::PUT,
            format!("/tokens/{}", w.id("admin2 token")),
            None,
            vec![("admin", 403), ("product", 404), ("other product", 404)],
        ),
        (
            Method::DELETE,
            format!("/tokens/{}", w.id("other license token")),
            None,
            vec![("product", 404), ("license token", 404), ("owner", 404)],
        ),
        (
            Method::GET,
            format!("/users/{}", w.id("admin2")),
            None,
            vec![("admin", 200), ("product", 404), ("owner", 404), ("stranger", 404), ("anonymous", 401)],
        ),
        (
            Method::GET,
            format!("/users/{}", w.id("owner")),
            None,
            vec![("admin", 200), ("product", 200), ("owner", 200), ("stranger", 404)],
        ),
        (
            Method::GET,
            format!("/groups/{}/users", w.id("group")),
            None,
            vec![("admin", 200), ("product", 200), ("owner", 403), ("stranger", 403), ("anonymous", 401)],
        ),
        (
            Method::PATCH,
            format!("/products/{}", w.id("product")),
            rename("products"),
            vec![("admin", 200), ("product", 200), ("other product", 404), ("owner", 403), ("license", 403)],
        ),
        (
            Method::GET,
            format!("/products/{}", w.id("other product")),
            None,
            vec![("product", 404), ("license", 404), ("other account", 401)],
        ),
        (
            Method::GET,
            "/me".into(),
            None,
            vec![
                ("admin", 200),
                ("product", 200),
                ("owner", 200),
                ("license", 200),
                ("license token", 200),
                ("anonymous", 401),
                ("other account", 401),
            ],
        ),
        (
            Method::GET,
            "/licenses".into(),
            None,
            vec![
                ("admin", 200),
                ("product", 200),
                ("owner", 200),
                ("stranger", 200),
                ("license", 200),
                ("anonymous", 401),
                ("other account", 401),
            ],
        ),
        (
            Method::GET,
            format!("/licenses/{}/machines", w.id("license")),
            None,
            vec![
                ("admin", 200),
                ("product", 200),
                ("other product", 404),
                ("owner", 200),
                ("stranger", 404),
                ("license", 200),
                ("anonymous", 401),
            ],
        ),
        (
            Method::POST,
            format!("/licenses/{}/actions/validate", w.id("license")),
            None,
            vec![
                ("admin", 200),
                ("product", 200),
                ("other product", 404),
                ("owner", 200),
                ("stranger", 404),
                ("license", 200),
                ("license token", 200),
                ("anonymous", 401),
            ],
        ),
        (
            Method::GET,
            format!("/licenses/{}/actions/validate", w.id("license")),
            None,
            vec![("admin", 200), ("other product", 404), ("owner", 200), ("stranger", 404), ("license", 200)],
        ),
        // Allowed callers then learn the policy does not require check-ins.
        (
            Method::POST,
            format!("/licenses/{}/actions/check-in", w.id("license")),
            None,
            vec![
                ("admin", 422),
                ("product", 422),
                ("other product", 404),
                ("owner", 422),
                ("stranger", 404),
                ("license", 422),
                ("license token", 422),
            ],
        ),
        (
            Method::POST,
            format!("/licenses/{}/actions/increment-usage", w.id("license")),
            None,
            vec![
                ("admin", 200),
                ("product", 200),
                ("other product", 404),
                ("owner", 200),
                ("stranger", 404),
                ("license", 200),
                ("license token", 200),
            ],
        ),
        (
            Method::POST,
            format!("/licenses/{}/actions/decrement-usage", w.id("license")),
            None,
            vec![
                ("admin", 200),
                ("product", 200),
                ("other product", 404),
                ("owner", 403),
                ("license", 403),
                ("license token", 403),
            ],
        ),
        (
            Method::POST,
            format!("/licenses/{}/actions/check-out", w.id("license")),
            None,
            vec![
                ("admin", 200),
                ("product", 200),
                ("other product", 404),
                ("stranger", 404),
                ("license", 200),
                ("license token", 200),
            ],
        ),
        (
            Method::GET,
            format!("/licenses/{}/policy", w.id("license")),
            None,
            vec![("admin", 200), ("product", 200), ("other product", 404), ("license", 403), ("license token", 403)],
        ),
        (
            Method::DELETE,
            format!("/licenses/{}", w.id("other license")),
            None,
            vec![("product", 404), ("owner", 404), ("stranger", 404), ("license", 404), ("license token", 404)],
        ),
        (
            Method::GET,
            "/machines".into(),
            None,
            vec![("admin", 200), ("product", 200), ("owner", 200), ("license", 200), ("anonymous", 401)],
        ),
        (
            Method::PATCH,
            format!("/machines/{}", w.id("machine")),
            rename("machines"),
            vec![
                ("admin", 200),
                ("product", 200),
                ("other product", 404),
                ("owner", 200),
                ("stranger", 404),
                ("license", 200),
                ("license token", 200),
            ],
        ),
        (
            Method::POST,
            format!("/machines/{}/actions/ping", w.id("machine")),
            None,
            vec![
                ("admin", 200),
                ("product", 200),
                ("other product", 404),
                ("owner", 200),
                ("stranger", 404),
                ("license", 200),
            ],
        ),
        (
            Method::DELETE,
            format!("/machines/{}", w.id("machine")),
            None,
            vec![("other product", 404), ("stranger", 404), ("anonymous", 401), ("other account", 401)],
        ),
        (
            Method::GET,
            "/users".into(),
            None,
            vec![("admin", 200), ("product", 200), ("owner", 200), ("anonymous", 401)],
        ),
        (
            Method::GET,
            "/tokens".into(),
            None,
            vec![("admin", 200), ("product", 200), ("owner", 200), ("license token", 200), ("anonymous", 401)],
        ),
        (
            Method::GET,
            format!("/groups/{}", w.id("group")),
            None,
            vec![("admin", 200), ("product", 200), ("owner", 200), ("stranger", 403), ("anonymous", 401)],
        ),
        (
            Method::POST,
            "/products".into(),
            Some(json!({"data": {"type": "products", "attributes": {"name": "Another"}}})),
            vec![("product", 403), ("owner", 403), ("license", 403), ("license token", 403), ("anonymous", 401)],
        ),
        (
            Method::GET,
            format!("/products/{}/licenses", w.id("other product")),
            None,
            vec![("admin", 200), ("product", 404), ("other product", 200), ("license", 404)],
        ),
    ];
    let mut wrong = Vec::new();
    for (method, path, body, cells) in rows {
        for (principal, expected) in cells {
            let r = app.req(method.clone(), &app.acct(&path), w.who(principal), body.clone()).await;
            if r.status.as_u16() != expected {
                wrong.push(format!("{method} {path} as {principal}: {} (expected {expected}) {}", r.status, r.text));
            }
        }
    }
    assert!(wrong.is_empty(), "{} cells differ:\n{}", wrong.len(), wrong.join("\n"));
}

/// An account keeps an admin: the only one cannot delete or demote itself; with a second one
/// it can. Another bearer's filter on `GET /tokens` narrows the caller's own list to none.
#[tokio::test]
async fn an_account_keeps_an_admin() {
    let app = spawn_app().await;
    let me: String = {
        let r = app.get(&app.acct("/me"), &app.admin()).await;
        r.id()
    };
    let demote = json!({"data": {"type": "users", "attributes": {"role": "user"}}});
    let r = app.patch(&app.acct(&format!("/users/{me}")), &app.admin(), demote.clone()).await;
    assert_eq!(
        (r.status.as_u16(), r.code(), r.pointer()),
        (422, "ACCOUNT_ADMINS_REQUIRED", "/data/relationships/account")
    );
    let r = app.delete(&app.acct(&format!("/users/{me}")), &app.admin()).await;
    assert_eq!((r.status.as_u16(), r.code()), (422, "ACCOUNT_ADMINS_REQUIRED"), "{}", r.text);
    assert_eq!(app.get(&app.acct("/me"), &app.admin()).await.status, StatusCode::OK);

    let user = app.create_user("lister@example.com").await;
    let lister = {
        let t =
            app.post(&app.acct("/tokens"), &As::Basic("lister@example.com".into(), PASSWORD.into()), json!(null)).await;
        As::Bearer(t.attr("token").as_str().unwrap().to_string())
    };
    let mine = app.get(&app.acct("/tokens"), &lister).await;
    assert_eq!(mine.body["data"].as_array().unwrap().len(), 1);
    let theirs = app.get(&app.acct(&format!("/tokens?bearer[id]={me}")), &lister).await;
    assert_eq!(theirs.body["data"].as_array().unwrap().len(), 0, "{}", theirs.text);
    let _ = user;

    let r = app
        .post(
            &app.acct("/users"),
            &app.admin(),
            json!({"data": {"type": "users", "attributes": {"email": "heir@example.com", "password": PASSWORD, "role": "admin"}}}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    let r = app.delete(&app.acct(&format!("/users/{me}")), &app.admin()).await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.text);
}
