//! Integrations: webhook endpoints and their deliveries, the event log, and the account's
//! public keys.

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use axum::response::Response;
use axum::routing::{get, post};
use axum::Router;
use serde_json::Value;
use uuid::Uuid;

use super::{field, html, page_number, render, uuid_of, AREA, PAGE_SIZE, Q};
use crate::console::html::{esc, link};
use crate::console::{done, error_page};
use crate::error::Error;
use crate::model::Page;
use crate::service;
use crate::state::AppState;
use crate::store;
use crate::time;

pub(super) fn routes() -> Router<AppState> {
    Router::new()
        .route("/admin/webhooks", get(webhooks_page).post(create_endpoint))
        .route("/admin/webhooks/endpoints/{id}/delete", post(delete_endpoint))
        .route("/admin/webhooks/{id}/retry", post(retry_delivery))
        .route("/admin/events", get(events_page))
        .route("/admin/keys", get(keys_page))
}

async fn webhooks_page(State(state): State<AppState>, headers: HeaderMap, Query(q): Q) -> Response {
    let s = signed_in!(state, headers, AREA);
    let account = s.account.id;
    let endpoints =
        tri!(AREA, store::webhooks::list_endpoints(&state.db, account, None, Page { size: 100, number: 1 }).await);
    let rows: Vec<Vec<String>> = endpoints
        .rows
        .iter()
        .map(|e| {
            vec![
                esc(&e.url),
                esc(&e.subscriptions.0.join(", ")),
                esc(&e.signature_algorithm),
                html::button(&format!("/admin/webhooks/endpoints/{}/delete", e.id), s.csrf(), "Delete", "danger"),
            ]
        })
        .collect();
    let number = page_number(&q);
    let deliveries = tri!(
        AREA,
        store::webhooks::list_deliveries(&state.db, account, &[], None, Page { size: PAGE_SIZE, number }).await
    );
    let drows: Vec<Vec<String>> = deliveries
        .rows
        .iter()
        .map(|d| {
            vec![
                esc(&d.event),
                esc(&d.endpoint_url),
                esc(&d.status),
                d.last_response_code.map_or(esc(d.last_response_body.as_deref().unwrap_or("")), |c| c.to_string()),
                esc(&time::iso(d.created_at)),
                html::button(&format!("/admin/webhooks/{}/retry", d.id), s.csrf(), "Retry", ""),
            ]
        })
        .collect();
    let body = format!(
        "<p>Licensor POSTs each event to the endpoints subscribed to it, signed with the account's key (see docs/webhooks.md).</p>{}{}{}{}",
        html::table("Endpoints", &["URL", "Subscriptions", "Signature", ""], &rows),
        html::form(
            "/admin/webhooks",
            s.csrf(),
            &format!(
                "{}{}",
                html::input("url", "URL (https)", "url", "", true),
                html::input(
                    "subscriptions",
                    "Events, separated by commas (empty or * for all; e.g. license.created, machine.deleted)",
                    "text",
                    "",
                    false
                )
            ),
            "Add endpoint"
        ),
        html::table("Deliveries", &["Event", "Endpoint", "Status", "Last answer", "Created", ""], &drows),
        html::pager("/admin/webhooks", "", number, PAGE_SIZE, deliveries.total)
    );
    render(&s, "Webhooks", &q, &body)
}

async fn create_endpoint(State(state): State<AppState>, headers: HeaderMap, body: Bytes) -> Response {
    let (s, form) = posted!(state, headers, body);
    let url = tri!(AREA, service::webhooks::endpoint_url(&state, field(&form, "url")));
    let mut e = service::webhooks::new_endpoint(s.account.id, None, url, time::now_ms());
    let subs: Vec<String> =
        field(&form, "subscriptions").split(',').map(|x| x.trim().to_string()).filter(|x| !x.is_empty()).collect();
    if !subs.is_empty() {
        e.subscriptions.0 = tri!(AREA, service::webhooks::subscriptions(subs));
    }
    tri!(AREA, service::webhooks::create_endpoint(&state, &e).await);
    done("/admin/webhooks", "Endpoint added.")
}

async fn delete_endpoint(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Bytes,
) -> Response {
    let (s, _) = posted!(state, headers, body);
    let uuid = tri!(AREA, uuid_of("webhook endpoint", &id));
    let Some(e) = tri!(AREA, store::webhooks::find_endpoint(&state.db, s.account.id, uuid).await) else {
        return error_page(AREA, Error::not_found("webhook endpoint", id));
    };
    tri!(AREA, service::webhooks::delete_endpoint(&state, &e).await);
    done("/admin/webhooks", "Endpoint deleted.")
}

async fn retry_delivery(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Bytes,
) -> Response {
    let (s, _) = posted!(state, headers, body);
    let uuid = tri!(AREA, uuid_of("webhook event", &id));
    let Some(d) = tri!(AREA, store::webhooks::find_delivery(&state.db, s.account.id, uuid).await) else {
        return error_page(AREA, Error::not_found("webhook event", id));
    };
    tri!(AREA, store::webhooks::insert_retry(&state.db, &d, Uuid::new_v4(), time::now_ms()).await);
    done("/admin/webhooks", "Delivery queued again.")
}

async fn events_page(State(state): State<AppState>, headers: HeaderMap, Query(q): Q) -> Response {
    let s = signed_in!(state, headers, AREA);
    let number = page_number(&q);
    let event = q.get("event").map(|e| e.trim().to_string()).unwrap_or_default();
    let f = store::events::LogFilter {
        events: if event.is_empty() { vec![] } else { vec![event.clone()] },
        ..Default::default()
    };
    let logs =
        tri!(AREA, store::events::list_logs(&state.db, s.account.id, &f, Page { size: PAGE_SIZE, number }).await);
    let rows: Vec<Vec<String>> = logs
        .rows
        .iter()
        .map(|l| {
            let resource = if l.resource_type == "licenses" {
                link(&format!("/admin/licenses/{}", l.resource_id), &format!("{} {}", l.resource_type, l.resource_id))
            } else {
                esc(&format!("{} {}", l.resource_type, l.resource_id))
            };
            vec![
                esc(&time::iso(l.created_at)),
                esc(&l.event),
                resource,
                esc(&l.whodunnit_type.clone().unwrap_or_default()),
                esc(&metadata_text(&l.metadata.0)),
            ]
        })
        .collect();
    let query = serde_urlencoded::to_string([("event", &event)]).unwrap_or_default();
    let body = format!(
        "<form class=\"filters\" method=\"get\" action=\"/admin/events\" role=\"search\">{}<p><button type=\"submit\">Filter</button></p></form>{}{}",
        html::input("event", "Event (e.g. license.created)", "search", &event, false),
        html::table("Events", &["When", "Event", "Resource", "By", "Details"], &rows),
        html::pager("/admin/events", &query, number, PAGE_SIZE, logs.total)
    );
    render(&s, "Event log", &q, &body)
}

fn metadata_text(v: &Value) -> String {
    match v.as_object() {
        Some(m) if !m.is_empty() => v.to_string(),
        _ => String::new(),
    }
}

async fn keys_page(State(state): State<AppState>, headers: HeaderMap, Query(q): Q) -> Response {
    let s = signed_in!(state, headers, AREA);
    let a = &s.account;
    let body = format!(
        "<p>Products verify signed keys, license files and responses with these public keys (see docs/offline.md). Account id: <code>{}</code></p>{}",
        a.id,
        html::facts(&[
            ("Ed25519 (hex)", format!("<code class=\"key\">{}</code>", esc(&a.ed25519_public))),
            ("RSA (PEM)", format!("<pre>{}</pre>", esc(&a.rsa_public))),
            ("ECDSA P-256 (PEM)", format!("<pre>{}</pre>", esc(a.ecdsa_public.as_deref().unwrap_or("not generated yet")))),
        ])
    );
    render(&s, "Account keys", &q, &body)
}
