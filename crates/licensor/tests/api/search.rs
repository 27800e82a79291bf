//! `POST /search`, ported from Keygen's features/api/v1/searches/search.feature: types,
//! attributes, AND/OR, metadata containment, relationships, pagination, every refusal, and
//! who may search.

use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::helpers::*;

async fn search(app: &TestApp, who: &As, meta: Value, query: &str) -> Res {
    app.post(&app.acct(&format!("/search{query}")), who, json!({ "meta": meta })).await
}

fn count(r: &Res) -> usize {
    r.body["data"].as_array().map_or(usize::MAX, Vec::len)
}

#[tokio::test]
async fn admins_search_every_resource_type() {
    let app = spawn_app().await;
    let admin = app.admin();
    for (email, first, last) in [
        ("john.doe@keygen.example", "John", "Doe"),
        ("jane.doe@keygen.example", "Jane", "doe"),
        ("zeke@other.example", "Zeke", "Smith"),
    ] {
        let r = app
            .post(
                &app.acct("/users"),
                &admin,
                json!({"data": {"type": "users", "attributes": {"email": email, "firstName": first, "lastName": last,
                    "metadata": {"customerId": format!("cus-{first}")}}}}),
            )
            .await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    }
    // AND / OR (users): "Admin performs a search by user type using the AND/OR operator".
    let r = search(&app, &admin, json!({"type": "users", "query": {"firstName": "john", "lastName": "doe"}}), "").await;
    assert_eq!(count(&r), 1, "{}", r.text);
    let r = search(
        &app,
        &admin,
        json!({"type": "users", "query": {"firstName": "john", "lastName": "doe"}, "op": "or"}),
        "",
    )
    .await;
    assert_eq!(count(&r), 2, "{}", r.text);
    // Case-insensitive substrings; a full name needs both words.
    assert_eq!(count(&search(&app, &admin, json!({"type": "users", "query": {"lastName": "DOE"}}), "").await), 2);
    assert_eq!(count(&search(&app, &admin, json!({"type": "users", "query": {"email": "@keygen."}}), "").await), 2);
    assert_eq!(count(&search(&app, &admin, json!({"type": "user", "query": {"fullName": "John Doe"}}), "").await), 1);
    assert_eq!(count(&search(&app, &admin, json!({"type": "users", "query": {"fullName": "Jonh Doe"}}), "").await), 0);
    assert_eq!(count(&search(&app, &admin, json!({"type": "users", "query": {"lastName": null}}), "").await), 0);
    let r =
        search(&app, &admin, json!({"type": "users", "query": {"metadata": {"customer_id": "cus-Zeke"}}}), "").await;
    assert_eq!(count(&r), 1, "{}", r.text);
    assert_eq!(r.body["data"][0]["type"], "users");
    let r = search(&app, &admin, json!({"type": "users", "query": {"role": "admin"}}), "").await;
    assert_eq!(count(&r), 1, "the account's admin: {}", r.text);

    // Licenses: key exact, id partial, name, metadata, relationships.
    let product = app.create_product("Halo").await;
    let policy = app
        .post(
            &app.acct("/policies"),
            &admin,
            json!({"data": {"type": "policies", "attributes": {"name": "Premium", "protected": false, "floating": true, "maxMachines": 5},
                "relationships": {"product": {"data": {"type": "products", "id": product}}}}}),
        )
        .await
        .id();
    let (license, key) = app
        .create_license(
            &policy,
            json!({"name": "Robert'); DROP TABLE licenses;--", "metadata": {"customerId": "cus-123", "tier": {"level": 2, "name": "gold"}, "seats": [1, 2, 3], "active": true}}),
        )
        .await;
    let (other, _) = app.create_license(&policy, json!({"name": "Another"})).await;
    let user = app.create_user("owner@keygen.example").await;
    app.set_owner(&other, &user).await;
    let licenses = |query: Value| {
        let app = &app;
        async move { search(app, &app.admin(), json!({"type": "licenses", "query": query}), "").await }
    };
    assert_eq!(count(&licenses(json!({"key": key})).await), 1);
    assert_eq!(count(&licenses(json!({"key": &key[..key.len() - 2]})).await), 0, "a key matches whole");
    let r = licenses(json!({"id": &license[..8]})).await;
    assert_eq!((count(&r), r.body["data"][0]["id"].as_str()), (1, Some(license.as_str())), "{}", r.text);
    assert_eq!(count(&licenses(json!({"name": "Robert'); DROP TABLE licenses;--"})).await), 1);
    assert_eq!(count(&licenses(json!({"name": "'; DELETE FROM users; --"})).await), 0);
    assert_eq!(count(&licenses(json!({"metadata": {"customerId": "cus-123"}})).await), 1);
    assert_eq!(count(&licenses(json!({"metadata": {"customer_id": "cus-123"}})).await), 1);
    assert_eq!(count(&licenses(json!({"metadata": {"tier": {"level": 2}}})).await), 1, "an object in part");
    assert_eq!(count(&licenses(json!({"metadata": {"tier": {"level": 3}}})).await), 0);
    assert_eq!(count(&licenses(json!({"metadata": {"seats": [2]}})).await), 1, "an array in part");
    assert_eq!(count(&licenses(json!({"metadata": {"active": "true"}})).await), 1, "a string read as a boolean");
    assert_eq!(count(&licenses(json!({"metadata": {"customerId": "cus-12"}})).await), 0, "values are equal, not like");
    assert_eq!(count(&licenses(json!({"policy": "Premium"})).await), 2);
    assert_eq!(count(&licenses(json!({"policy": policy})).await), 2);
    assert_eq!(count(&licenses(json!({"product": "halo"})).await), 2);
    assert_eq!(count(&licenses(json!({"user": "owner@keygen"})).await), 1);
    assert_eq!(count(&licenses(json!({"owner": user})).await), 1);
    let r = search(
        &app,
        &admin,
        json!({"type": "licenses", "query": {"name": "Another", "user": "nobody"}, "op": "OR"}),
        "",
    )
    .await;
    assert_eq!(count(&r), 1, "{}", r.text);

    // Machines.
    for i in 0..3 {
        let r = app
            .post(
                &app.acct("/machines"),
                &admin,
                json!({"data": {"type": "machines", "attributes": {"fingerprint": format!("fp-{i}-abc"), "name": format!("MacBook Pro {i}")},
                    "relationships": {"license": {"data": {"type": "licenses", "id": license}}}}}),
            )
            .await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    }
    let machines = |query: Value| {
        let app = &app;
        async move { search(app, &app.admin(), json!({"type": "machines", "query": query}), "").await }
    };
    assert_eq!(count(&machines(json!({"name": "macbook pro"})).await), 3);
    assert_eq!(count(&machines(json!({"fingerprint": "fp-1-abc"})).await), 1);
    assert_eq!(count(&machines(json!({"license": license})).await), 3);
    assert_eq!(count(&machines(json!({"policy": "Premium"})).await), 3);
    assert_eq!(count(&machines(json!({"product": product})).await), 3);

    // Products, policies, entitlements, groups.
    assert_eq!(count(&search(&app, &admin, json!({"type": "products", "query": {"name": "Hal"}}), "").await), 1);
    assert_eq!(count(&search(&app, &admin, json!({"type": "policies", "query": {"product": "Halo"}}), "").await), 1);
    let r = app
        .post(&app.acct("/groups"), &admin, json!({"data": {"type": "groups", "attributes": {"name": "ACME Corp"}}}))
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    assert_eq!(count(&search(&app, &admin, json!({"type": "groups", "query": {"name": "acme"}}), "").await), 1);
    assert_eq!(
        count(&search(&app, &admin, json!({"type": "entitlements", "query": {"code": "NONE_SUCH"}}), "").await),
        0
    );

    // Pagination: "Admin performs a paginated search".
    let r =
        search(&app, &admin, json!({"type": "machines", "query": {"name": "MacBook"}}), "?page[size]=2&page[number]=1")
            .await;
    assert_eq!(count(&r), 2, "{}", r.text);
    assert_eq!(r.body["links"]["meta"]["count"], 3);
    assert_eq!(r.body["links"]["meta"]["pages"], 2);
    assert!(r.body["links"]["next"].as_str().unwrap().contains("/search?"), "{}", r.text);
}

#[tokio::test]
async fn searches_are_refused_as_keygen_refuses_them() {
    let app = spawn_app().await;
    let admin = app.admin();
    let refused = |meta: Value, detail: &'static str, pointer: &'static str| {
        let app = &app;
        async move {
            let r = search(app, &app.admin(), meta, "").await;
            assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.text);
            assert_eq!((r.body["errors"][0]["detail"].as_str(), r.pointer()), (Some(detail), pointer), "{}", r.text);
        }
    };
    refused(
        json!({"type": "accounts", "query": {"name": "abc"}}),
        "search type 'accounts' is not supported",
        "/meta/type",
    )
    .await;
    refused(json!({"type": "tokens", "query": {"name": "abc"}}), "search type 'tokens' is not supported", "/meta/type")
        .await;
    refused(
        json!({"type": "users", "query": {"foo": "abc"}}),
        "search query 'foo' is not supported for resource type 'users'",
        "/meta/query/foo",
    )
    .await;
    refused(
        json!({"type": "licenses", "query": {"key": "ab"}}),
        "search query for 'key' is too small (minimum 3 characters)",
        "/meta/query/key",
    )
    .await;
    refused(
        json!({"type": "users", "query": {"lastName": ""}}),
        "search query for 'lastName' is too small (minimum 3 characters)",
        "/meta/query/lastName",
    )
    .await;
    refused(json!({"type": "users", "query": {}}), "cannot be blank", "/meta/query").await;
    refused(
        json!({"type": "users", "query": {"metadata": [1]}}),
        "search query for 'metadata' must be a hash of key-value search terms",
        "/meta/query/metadata",
    )
    .await;
    refused(
        json!({"type": "users", "query": {"email": "abc"}, "op": "XOR"}),
        "search operation 'XOR' is not supported",
        "/meta/op",
    )
    .await;
    refused(json!({"query": {"email": "abc"}}), "is missing", "/meta/type").await;

    // Who may search: admins only (product, user and license bearers 403, anonymous 401).
    let (product, _, _, key) = app.license_fixture(json!({})).await;
    let meta = json!({"type": "users", "query": {"email": "example"}});
    assert_eq!(search(&app, &admin, meta.clone(), "").await.status, StatusCode::OK);
    assert_eq!(search(&app, &As::Anonymous, meta.clone(), "").await.status, StatusCode::UNAUTHORIZED);
    assert_eq!(search(&app, &As::License(key), meta.clone(), "").await.status, StatusCode::FORBIDDEN);
    let r = app.post(&app.acct(&format!("/products/{product}/tokens")), &admin, json!(null)).await;
    let product_token = As::Bearer(r.attr("token").as_str().unwrap().to_string());
    assert_eq!(search(&app, &product_token, meta.clone(), "").await.status, StatusCode::FORBIDDEN);
    app.create_user("someone@example.com").await;
    let t =
        app.post(&app.acct("/tokens"), &As::Basic("someone@example.com".into(), PASSWORD.into()), json!(null)).await;
    let user = As::Bearer(t.attr("token").as_str().unwrap().to_string());
    assert_eq!(search(&app, &user, meta, "").await.status, StatusCode::FORBIDDEN);
    // A bad type is a 400 even for those who may not search.
    let r = search(&app, &user, json!({"type": "accounts", "query": {"name": "abc"}}), "").await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
}
