//! The overview: licenses by status, machines, the last days' activity, what expires soon.

use axum::extract::{Query, State};
use axum::http::HeaderMap;
use axum::response::Response;
use axum::routing::get;
use axum::Router;
use uuid::Uuid;

use super::licenses::license_table;
use super::{html, render, AREA, Q};
use crate::console::html::esc;
use crate::error::Error;
use crate::model::Page;
use crate::state::AppState;
use crate::store::licenses::LicenseFilter;
use crate::store::{self, licenses, machines};
use crate::time;

pub(super) fn routes() -> Router<AppState> {
    Router::new().route("/admin", get(overview))
}

pub(super) fn status_filter(status: &str, now: i64) -> Option<(String, [i64; 3])> {
    let (soon, stale) = crate::domain::license::status_thresholds(now);
    (!status.is_empty()).then(|| (status.to_ascii_uppercase(), [now, soon, stale]))
}

async fn count_licenses(state: &AppState, account: Uuid, status: &str) -> Result<i64, Error> {
    let f = LicenseFilter { status: status_filter(status, time::now_ms()), ..Default::default() };
    Ok(licenses::list(&state.db, account, &f, Page { size: 1, number: 1 }).await?.total)
}

async fn overview(State(state): State<AppState>, headers: HeaderMap, Query(q): Q) -> Response {
    let s = signed_in!(state, headers, AREA);
    let account = s.account.id;
    let mut counts = Vec::new();
    for (label, status) in [
        ("All licenses", ""),
        ("Active", "ACTIVE"),
        ("Expiring soon", "EXPIRING"),
        ("Expired", "EXPIRED"),
        ("Suspended", "SUSPENDED"),
        ("Inactive", "INACTIVE"),
    ] {
        let n = tri!(AREA, count_licenses(&state, account, status).await);
        let href =
            if status.is_empty() { "/admin/licenses".to_string() } else { format!("/admin/licenses?status={status}") };
        counts.push(format!("<li><a href=\"{}\"><strong>{n}</strong> {}</a></li>", esc(&href), esc(label)));
    }
    let machines =
        tri!(AREA, machines::list(&state.db, account, &Default::default(), Page { size: 1, number: 1 }).await).total;
    counts.push(format!("<li><strong>{machines}</strong> machines</li>"));
    let now = time::now_ms();
    let activity = tri!(AREA, store::console::activity(&state.db, account, now, 7).await);
    let rows: Vec<Vec<String>> = activity
        .iter()
        .map(|(day, activations, validated)| vec![esc(day), activations.to_string(), validated.to_string()])
        .collect();
    let f = LicenseFilter { status: status_filter("EXPIRING", now), ..Default::default() };
    let expiring = tri!(AREA, licenses::list(&state.db, account, &f, Page { size: 10, number: 1 }).await);
    let body = format!(
        "<ul class=\"counts\">{}</ul>{}{}",
        counts.join(""),
        html::table("The last 7 days", &["Day", "Machines activated", "Licenses last validated that day"], &rows),
        license_table("Expiring soon", &expiring.rows, now)
    );
    render(&s, &format!("{} — overview", s.account.name), &q, &body)
}
