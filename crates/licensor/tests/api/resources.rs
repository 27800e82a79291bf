use reqwest::StatusCode;
use serde_json::json;

use crate::helpers::*;

#[tokio::test]
async fn products_crud() {
    let app = spawn_app().await;
    let r = app
        .post(&app.acct("/products"), &app.admin(), json!({"data": {"type": "products", "attributes": {"name": "Desktop", "code": "desktop", "platforms": ["linux"], "metadata": {"tier": "gold"}}}}))
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    let location = r.headers["location"].to_str().unwrap().to_string();
    assert!(location.ends_with(&r.id()));
    assert_eq!(r.attr("distributionStrategy"), "LICENSED");
    let r2 = app.get(&app.acct("/products/desktop"), &app.admin()).await;
    assert_eq!(r2.id(), r.id(), "products are addressable by code");
    let dup = app
        .post(
            &app.acct("/products"),
            &app.admin(),
            json!({"data": {"type": "products", "attributes": {"name": "Other", "code": "desktop"}}}),
        )
        .await;
    assert_eq!(dup.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(dup.code(), "CODE_TAKEN");
    let p = app
        .patch(
            &app.acct(&format!("/products/{}", r.id())),
            &app.admin(),
            json!({"data": {"type": "products", "attributes": {"name": "Desktop 2", "url": "https://x.example"}}}),
        )
        .await;
    assert_eq!(p.status, StatusCode::OK);
    assert_eq!(p.attr("name"), "Desktop 2");
    assert_eq!(p.attr("metadata"), &json!({"tier": "gold"}));
    assert_eq!(
        app.delete(&app.acct(&format!("/products/{}", r.id())), &app.admin()).await.status,
        StatusCode::NO_CONTENT
    );
    assert_eq!(app.get(&app.acct(&format!("/products/{}", r.id())), &app.admin()).await.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn users_crud_ban_and_roles() {
    let app = spawn_app().await;
    let r = app
        .post(&app.acct("/users"), &app.admin(), json!({"data": {"type": "users", "attributes": {"email": "Ann@Example.com", "firstName": "Ann", "lastName": "Lee", "password": PASSWORD}}}))
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    assert_eq!(r.attr("email"), "ann@example.com");
    assert_eq!(r.attr("fullName"), "Ann Lee");
    assert_eq!(r.attr("role"), "user");
    assert_eq!(r.attr("status"), "ACTIVE");
    let id = r.id();
    let dup = app
        .post(
            &app.acct("/users"),
            &app.admin(),
            json!({"data": {"type": "users", "attributes": {"email": "ann@example.com"}}}),
        )
        .await;
    assert_eq!(dup.code(), "EMAIL_TAKEN");
    let by_email = app.get(&app.acct("/users/ann@example.com"), &app.admin()).await;
    assert_eq!(by_email.id(), id);
    // Ann logs in and can see herself but not the admin, nor change her role.
    let t = app.post(&app.acct("/tokens"), &As::Basic("ann@example.com".into(), PASSWORD.into()), json!(null)).await;
    let ann = As::Bearer(t.attr("token").as_str().unwrap().to_string());
    assert_eq!(app.get(&app.acct(&format!("/users/{id}")), &ann).await.status, StatusCode::OK);
    // Another user, by id or email, is as unknown to her as a user that does not exist: no
    // probing which emails are registered.
    let other = app.create_user("bob@example.com").await;
    for path in [format!("/users/{other}"), "/users/bob@example.com".into(), "/users/nobody@example.com".into()] {
        let r = app.get(&app.acct(&path), &ann).await;
        assert_eq!((r.status, r.code()), (StatusCode::NOT_FOUND, "NOT_FOUND"), "{path}");
    }
    let users = app.get(&app.acct("/users"), &ann).await;
    assert_eq!(users.body["data"].as_array().unwrap().len(), 1, "{}", users.text);
    let r = app
        .patch(
            &app.acct(&format!("/users/{id}")),
            &ann,
            json!({"data": {"type": "users", "attributes": {"role": "admin"}}}),
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    // Banned users cannot authenticate.
    let r = app.post(&app.acct(&format!("/users/{id}/actions/ban")), &app.admin(), json!(null)).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.attr("status"), "BANNED");
    let r = app.get(&app.acct("/me"), &ann).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert_eq!(r.code(), "USER_BANNED");
    let r = app.post(&app.acct(&format!("/users/{id}/actions/unban")), &app.admin(), json!(null)).await;
    assert_eq!(r.attr("status"), "ACTIVE");
    assert_eq!(app.get(&app.acct("/me"), &ann).await.status, StatusCode::OK);
    assert_eq!(app.delete(&app.acct(&format!("/users/{id}")), &app.admin()).await.status, StatusCode::NO_CONTENT);
    assert_eq!(app.get(&app.acct("/me"), &ann).await.status, StatusCode::UNAUTHORIZED);
}

/// Accounts start protected (unlike Keygen's default): nobody signs up until the operator opens
/// the account, and closing it again stops sign-ups.
#[tokio::test]
async fn anonymous_signup_only_when_account_unprotected() {
    let app = spawn_app().await;
    assert_eq!(app.get(&app.acct(""), &app.admin()).await.attr("protected"), &json!(true));
    let signup = |email: &str| json!({"data": {"type": "users", "attributes": {"email": email, "password": PASSWORD}}});
    let r = app.post(&app.acct("/users"), &As::Anonymous, signup("early@example.com")).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.text);
    // Policies inherit the account's protection when they do not choose.
    let product = app.create_product("Closed").await;
    let body = json!({"data": {"type": "policies", "attributes": {"name": "Default"},
        "relationships": {"product": {"data": {"type": "products", "id": product}}}}});
    let r = app.post(&app.acct("/policies"), &app.admin(), body).await;
    assert_eq!(r.attr("protected"), &json!(true), "{}", r.text);
    app.open_account().await;
    let r = app.post(&app.acct("/users"), &As::Anonymous, signup("new@example.com")).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    app.patch(&app.acct(""), &app.admin(), json!({"data": {"type": "accounts", "attributes": {"protected": true}}}))
        .await;
    let r = app.post(&app.acct("/users"), &As::Anonymous, signup("new2@example.com")).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn entitlements_and_groups_crud() {
    let app = spawn_app().await;
    let e = app
        .post(
            &app.acct("/entitlements"),
            &app.admin(),
            json!({"data": {"type": "entitlements", "attributes": {"name": "Export", "code": "EXPORT"}}}),
        )
        .await;
    assert_eq!(e.status, StatusCode::CREATED);
    assert_eq!(app.get(&app.acct("/entitlements/EXPORT"), &app.admin()).await.id(), e.id());
    let r = app
        .patch(
            &app.acct(&format!("/entitlements/{}", e.id())),
            &app.admin(),
            json!({"data": {"type": "entitlements", "attributes": {"name": "Export PDF"}}}),
        )
        .await;
    assert_eq!(r.attr("name"), "Export PDF");
    let missing = app
        .post(
            &app.acct("/entitlements"),
            &app.admin(),
            json!({"data": {"type": "entitlements", "attributes": {"name": "No code"}}}),
        )
        .await;
    assert_eq!(missing.status, StatusCode::BAD_REQUEST);
    assert_eq!(missing.pointer(), "/data/attributes/code");
    let g = app
        .post(
            &app.acct("/groups"),
            &app.admin(),
            json!({"data": {"type": "groups", "attributes": {"name": "EMEA", "maxLicenses": 10}}}),
        )
        .await;
    assert_eq!(g.status, StatusCode::CREATED, "{}", g.text);
    assert_eq!(g.attr("maxLicenses"), 10);
    let bad = app
        .post(
            &app.acct("/groups"),
            &app.admin(),
            json!({"data": {"type": "groups", "attributes": {"name": "X", "maxUsers": 0}}}),
        )
        .await;
    assert_eq!(bad.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(app.get(&app.acct("/groups"), &app.admin()).await.body["data"].as_array().unwrap().len(), 1);
    assert_eq!(
        app.delete(&app.acct(&format!("/groups/{}", g.id())), &app.admin()).await.status,
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        app.delete(&app.acct(&format!("/entitlements/{}", e.id())), &app.admin()).await.status,
        StatusCode::NO_CONTENT
    );
}

/// Every `links.related` a resource carries leads somewhere: following each one as the admin
/// answers 200 from a real route.
#[tokio::test]
async fn every_related_link_resolves() {
    let app = spawn_app().await;
    let (product, policy, license, _) = app.license_fixture(json!({"floating": true})).await;
    let user = app.create_user("owner@example.com").await;
    app.put(
        &app.acct(&format!("/licenses/{license}/owner")),
        &app.admin(),
        json!({"data": {"type": "users", "id": user}}),
    )
    .await;
    let group = app
        .post(&app.acct("/groups"), &app.admin(), json!({"data": {"type": "groups", "attributes": {"name": "G"}}}))
        .await
        .id();
    app.put(
        &app.acct(&format!("/licenses/{license}/group")),
        &app.admin(),
        json!({"data": {"type": "groups", "id": group}}),
    )
    .await;
    let machine = app
        .post(
            &app.acct("/machines"),
            &app.admin(),
            json!({"data": {"type": "machines", "attributes": {"fingerprint": "fp"},
            "relationships": {"license": {"data": {"type": "licenses", "id": license}}}}}),
        )
        .await
        .id();
    let component = app
        .post(
            &app.acct("/components"),
            &app.admin(),
            json!({"data": {"type": "components", "attributes": {"fingerprint": "cpu", "name": "CPU"},
            "relationships": {"machine": {"data": {"type": "machines", "id": machine}}}}}),
        )
        .await
        .id();
    let process = app
        .post(
            &app.acct("/processes"),
            &app.admin(),
            json!({"data": {"type": "processes", "attributes": {"pid": "1"},
            "relationships": {"machine": {"data": {"type": "machines", "id": machine}}}}}),
        )
        .await
        .id();
    let entitlement = app
        .post(
            &app.acct("/entitlements"),
            &app.admin(),
            json!({"data": {"type": "entitlements", "attributes": {"name": "E", "code": "E"}}}),
        )
        .await
        .id();
    let mut followed = 0;
    let mut broken = Vec::new();
    for path in [
        format!("/products/{product}"),
        format!("/policies/{policy}"),
        format!("/licenses/{license}"),
        format!("/users/{user}"),
        format!("/groups/{group}"),
        format!("/machines/{machine}"),
        format!("/components/{component}"),
        format!("/processes/{process}"),
        format!("/entitlements/{entitlement}"),
    ] {
        let r = app.get(&app.acct(&path), &app.admin()).await;
        assert_eq!(r.status, StatusCode::OK, "{path}: {}", r.text);
        for (name, rel) in r.body["data"]["relationships"].as_object().cloned().unwrap_or_default() {
            let Some(related) = rel["links"]["related"].as_str() else { continue };
            let followed_to = app.get(related, &app.admin()).await;
            if followed_to.status != StatusCode::OK {
                broken.push(format!("{path} → {name}: {}", followed_to.status));
            }
            followed += 1;
        }
    }
    assert!(broken.is_empty(), "broken links:\n{}", broken.join("\n"));
    assert!(followed > 30, "followed only {followed} links");
}

#[tokio::test]
async fn nested_lists_narrow_to_their_parent() {
    let app = spawn_app().await;
    let (p1, pol1, l1, _) = app.license_fixture(json!({})).await;
    let (p2, _, l2, _) = app.license_fixture(json!({})).await;
    let ids = |r: &Res| -> Vec<String> {
        r.body["data"].as_array().unwrap().iter().map(|d| d["id"].as_str().unwrap().to_string()).collect()
    };
    assert_eq!(ids(&app.get(&app.acct(&format!("/products/{p1}/licenses")), &app.admin()).await), vec![l1.clone()]);
    assert_eq!(ids(&app.get(&app.acct(&format!("/policies/{pol1}/licenses")), &app.admin()).await), vec![l1.clone()]);
    // A client's own filter cannot widen the nested list.
    let r = app.get(&app.acct(&format!("/products/{p1}/licenses?product={p2}")), &app.admin()).await;
    assert_eq!(ids(&r), vec![l1]);
    // Another product's token sees neither the parent nor its children.
    let t = app.post(&app.acct(&format!("/products/{p2}/tokens")), &app.admin(), json!(null)).await;
    let as_p2 = As::Bearer(t.attr("token").as_str().unwrap().to_string());
    assert_eq!(ids(&app.get(&app.acct(&format!("/products/{p2}/licenses")), &as_p2).await), vec![l2]);
    assert!(app.get(&app.acct(&format!("/products/{p1}/licenses")), &as_p2).await.status.is_client_error());
}

#[tokio::test]
async fn only_operators_move_users_between_groups() {
    let app = spawn_app().await;
    let user = app.create_user("u@example.com").await;
    let g = app
        .post(
            &app.acct("/groups"),
            &app.admin(),
            json!({"data": {"type": "groups", "attributes": {"name": "G", "maxUsers": 1}}}),
        )
        .await
        .id();
    let t = app.post(&app.acct("/tokens"), &As::Basic("u@example.com".into(), PASSWORD.into()), json!(null)).await;
    let me = As::Bearer(t.attr("token").as_str().unwrap().to_string());
    let join = json!({"data": {"type": "users", "relationships": {"group": {"data": {"type": "groups", "id": g}}}}});
    let r = app.patch(&app.acct(&format!("/users/{user}")), &me, join).await;
    assert_eq!((r.status, r.pointer()), (reqwest::StatusCode::BAD_REQUEST, "/data/relationships/group"));
    let path = app.acct(&format!("/users/{user}/group"));
    assert_eq!(
        app.put(&path, &me, json!({"data": {"type": "groups", "id": g}})).await.status,
        reqwest::StatusCode::FORBIDDEN
    );
    let r = app.put(&path, &app.admin(), json!({"data": {"type": "groups", "id": g}})).await;
    assert_eq!(r.status, reqwest::StatusCode::OK, "{}", r.text);
    assert_eq!(app.get(&path, &me).await.id(), g);
    let other = app.create_user("v@example.com").await;
    let r = app
        .put(&app.acct(&format!("/users/{other}/group")), &app.admin(), json!({"data": {"type": "groups", "id": g}}))
        .await;
    assert_eq!(r.code(), "GROUP_USER_LIMIT_EXCEEDED");
    let r = app.put(&path, &app.admin(), json!({"data": null})).await;
    assert_eq!(r.status, reqwest::StatusCode::OK);
    assert!(app.get(&path, &app.admin()).await.body["data"].is_null());
}

/// `metadata[key]=value` and `order=asc` on every list Keygen takes them on, not only
/// licenses: machines/index.feature "Admin retrieves all machines filtered by metadata node ID
/// (camelcase)" and "(snakecase)", and the same filters on users, products and policies.
#[tokio::test]
async fn lists_filter_by_metadata_and_order_oldest_first() {
    let app = spawn_app().await;
    let admin = app.admin();
    let ids = |r: &Res| -> Vec<String> {
        r.body["data"].as_array().unwrap().iter().map(|d| d["id"].as_str().unwrap().to_string()).collect()
    };
    // Machines.
    let (_, _, license, _) = app.license_fixture(json!({"floating": true, "maxMachines": 5})).await;
    let mut machines = Vec::new();
    for (i, node) in ["node-a", "node-b", "node-a"].iter().enumerate() {
        let r = app
            .post(
                &app.acct("/machines"),
                &admin,
                json!({"data": {"type": "machines", "attributes": {"fingerprint": format!("fp-{i}"), "metadata": {"nodeId": node, "active": i > 0}},
                    "relationships": {"license": {"data": {"type": "licenses", "id": license}}}}}),
            )
            .await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
        machines.push(r.id());
        // Lists order by creation time to the millisecond; two made within one would tie.
        tokio::time::sleep(std::time::Duration::from_millis(2)).await;
    }
    for filter in ["metadata[nodeId]=node-a", "metadata[node_id]=node-a"] {
        let r = app.get(&app.acct(&format!("/machines?{filter}")), &admin).await;
        assert_eq!(ids(&r), [machines[2].clone(), machines[0].clone()], "{filter}: {}", r.text);
    }
    let r = app.get(&app.acct("/machines?metadata[nodeId]=node-a&order=asc"), &admin).await;
    assert_eq!(ids(&r), [machines[0].clone(), machines[2].clone()]);
    let r = app.get(&app.acct("/machines?metadata[active]=true&metadata[nodeId]=node-b"), &admin).await;
    assert_eq!(ids(&r), [machines[1].clone()]);
    let r = app.get(&app.acct(&format!("/licenses/{license}/machines?order=asc")), &admin).await;
    assert_eq!(ids(&r), machines);
    let r = app.get(&app.acct("/machines?metadata[nodeId]=node-c&page[size]=10&page[number]=1"), &admin).await;
    assert_eq!((ids(&r).len(), &r.body["links"]["meta"]["count"]), (0, &json!(0)));

    // Users, products, policies.
    for (kind, path, attrs) in [
        ("users", "/users", json!({"email": "a@example.com", "metadata": {"tier": "gold"}})),
        ("users", "/users", json!({"email": "b@example.com", "metadata": {"tier": "free"}})),
        ("products", "/products", json!({"name": "A", "metadata": {"tier": "gold"}})),
        ("products", "/products", json!({"name": "B", "metadata": {"tier": "free"}})),
    ] {
        let r = app.post(&app.acct(path), &admin, json!({"data": {"type": kind, "attributes": attrs}})).await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
        // Lists order by creation time to the millisecond; two made within one would tie.
        tokio::time::sleep(std::time::Duration::from_millis(2)).await;
    }
    let r = app.get(&app.acct("/users?metadata[tier]=gold"), &admin).await;
    assert_eq!(r.body["data"].as_array().unwrap().len(), 1, "{}", r.text);
    assert_eq!(r.body["data"][0]["attributes"]["email"], "a@example.com");
    let r = app.get(&app.acct("/products?metadata[tier]=free"), &admin).await;
    assert_eq!(r.body["data"].as_array().unwrap().len(), 1, "{}", r.text);
    assert_eq!(r.body["data"][0]["attributes"]["name"], "B");
    let r = app.get(&app.acct("/products?order=asc"), &admin).await;
    let names: Vec<&str> =
        r.body["data"].as_array().unwrap().iter().map(|p| p["attributes"]["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["App", "A", "B"], "oldest first");
    let product = r.body["data"][1]["id"].as_str().unwrap().to_string();
    for tier in ["gold", "free"] {
        let r = app
            .post(
                &app.acct("/policies"),
                &admin,
                json!({"data": {"type": "policies", "attributes": {"name": tier, "metadata": {"tier": tier}},
                    "relationships": {"product": {"data": {"type": "products", "id": product}}}}}),
            )
            .await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    }
    let r = app.get(&app.acct("/policies?metadata[tier]=gold"), &admin).await;
    assert_eq!(r.body["data"].as_array().unwrap().len(), 1, "{}", r.text);
    assert_eq!(r.body["data"][0]["attributes"]["name"], "gold");
}
