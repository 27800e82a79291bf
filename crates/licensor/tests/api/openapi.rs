//! docs/openapi.yaml stays true: every documented path and method is served.

use reqwest::{Method, StatusCode};

use crate::helpers::*;

/// (method, path) pairs from the description's `paths`.
fn documented() -> Vec<(Method, String)> {
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/openapi.yaml")).unwrap();
    let mut out = Vec::new();
    let mut in_paths = false;
    let mut current = None;
    for line in text.lines() {
        if line == "paths:" {
            in_paths = true;
            continue;
        }
        if !in_paths {
            continue;
        }
        if let Some(path) = line.strip_prefix("  /").and_then(|p| p.strip_suffix(':')) {
            current = Some(format!("/{path}"));
        } else if let (Some(path), Some(rest)) = (&current, line.strip_prefix("    ")) {
            for m in ["get", "post", "put", "patch", "delete"] {
                if rest.starts_with(&format!("{m}:")) {
                    out.push((Method::from_bytes(m.to_uppercase().as_bytes()).unwrap(), path.clone()));
                }
            }
        }
    }
    out
}

#[tokio::test]
async fn every_documented_operation_is_served() {
    let app = spawn_app().await;
    let (_, _, license, _) = app.license_fixture(serde_json::json!({})).await;
    let ops = documented();
    assert!(ops.len() > 40, "parsed {} operations", ops.len());
    for (method, path) in ops {
        let concrete = path
            .replace("{account}", &app.account_id)
            .replace("{account_id}", &app.account_id)
            .replace("{license_id}", &license)
            .replace("{entitlement_id}", &uuid::Uuid::new_v4().to_string())
            .replace("{id}", &license)
            .replace("{key}", "1");
        let r = app.send(method.clone(), &concrete, &app.admin(), Some("application/json"), "").await;
        assert!(r.headers.get("x-licensor-unmatched").is_none(), "{method} {path} is documented but not served");
        assert_ne!(r.status, StatusCode::METHOD_NOT_ALLOWED, "{method} {path}");
    }
    // The marker does show up for what is not served.
    let r = app.get("/api/licensing/v1/nothing", &app.admin()).await;
    assert!(r.headers.get("x-licensor-unmatched").is_some());
    assert_eq!(r.body["error"]["message"], "no such endpoint (check the method and path)");
    // Keygen's words for a route that does not exist.
    let r = app.get(&app.acct("/nothing-here"), &app.admin()).await;
    assert_eq!((r.status, r.code()), (StatusCode::NOT_FOUND, "NOT_FOUND"));
    assert_eq!(
        r.body["errors"][0]["detail"],
        "The requested endpoint was not found (check your HTTP method, Accept header, and URL path)"
    );
}
