//! The overview: licenses by status, machines, the last days' activity, what expires soon.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

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
use crate::store::{self, licenses};
use crate::time;

pub(super) fn routes() -> Router<AppState> {
    Router::new().route("/admin", get(overview))
}

pub(super) fn status_filter(status: &str, now: i64) -> Option<(String, [i64; 3])> {
    let (soon, stale) = crate::domain::license::status_thresholds(now);
    (!status.is_empty()).then(|| (status.to_ascii_uppercase(), [now, soon, stale]))
}

/// Accounts with more licenses than this see counts up to [`CACHED_FOR`] old: counting a
/// million licenses by status is a full pass, too slow to run on every visit.
const LIVE_UP_TO: i64 = 10_000;
const CACHED_FOR: Duration = Duration::from_secs(60);

/// What the overview counts.
#[derive(Clone)]
struct Counts {
    total: i64,
    by_status: Vec<(String, i64)>,
    machines: i64,
    activity: Vec<(String, i64, i64)>,
    at: i64,
}

static CACHE: Mutex<Option<HashMap<Uuid, (Instant, Counts)>>> = Mutex::new(None);

async fn counts(state: &AppState, account: Uuid, now: i64) -> Result<Counts, Error> {
    let cached = CACHE.lock().ok().and_then(|c| c.as_ref()?.get(&account).cloned());
    if let Some((_, counts)) = cached.filter(|(at, _)| at.elapsed() < CACHED_FOR) {
        return Ok(counts);
    }
    let (soon, stale) = crate::domain::license::status_thresholds(now);
    let by_status = licenses::status_counts(&state.db, account, [now, soon, stale]).await?;
    let counts = Counts {
        total: by_status.iter().map(|(_, n)| n).sum(),
        by_status,
        machines: store::console::machine_count(&state.db, account).await?,
        activity: store::console::activity(&state.db, account, now, 7).await?,
        at: now,
    };
    if counts.total > LIVE_UP_TO {
        if let Ok(mut cache) = CACHE.lock() {
            let cache = cache.get_or_insert_with(HashMap::new);
            cache.retain(|_, (at, _)| at.elapsed() < CACHED_FOR);
            cache.insert(account, (Instant::now(), counts.clone()));
        }
    }
    Ok(counts)
}

async fn overview(State(state): State<AppState>, headers: HeaderMap, Query(q): Q) -> Response {
    let s = signed_in!(state, headers, AREA);
    let account = s.account.id;
    let now = time::now_ms();
    let c = tri!(AREA, counts(&state, account, now).await);
    let mut items = Vec::new();
    for (label, status) in [
        ("All licenses", ""),
        ("Active", "ACTIVE"),
        ("Expiring soon", "EXPIRING"),
        ("Expired", "EXPIRED"),
        ("Suspended", "SUSPENDED"),
        ("Inactive", "INACTIVE"),
        ("Banned owner", "BANNED"),
    ] {
        let n = if status.is_empty() {
            c.total
        } else {
            c.by_status.iter().find(|(s, _)| s == status).map_or(0, |(_, n)| *n)
        };
        let href =
            if status.is_empty() { "/admin/licenses".to_string() } else { format!("/admin/licenses?status={status}") };
        items.push(format!("<li><a href=\"{}\"><strong>{n}</strong> {}</a></li>", esc(&href), esc(label)));
    }
    items.push(format!("<li><strong>{}</strong> machines</li>", c.machines));
    let rows: Vec<Vec<String>> = c
        .activity
        .iter()
        .map(|(day, activations, validated)| vec![esc(day), activations.to_string(), validated.to_string()])
        .collect();
    let f = LicenseFilter { status: status_filter("EXPIRING", now), count_up_to: Some(0), ..Default::default() };
    let expiring = tri!(AREA, licenses::list(&state.db, account, &f, Page { size: 10, number: 1 }).await);
    let as_of = if c.at < now - 1000 {
        format!("<p>Counted at {} (refreshed every minute on accounts this large).</p>", esc(&time::iso(c.at)))
    } else {
        String::new()
    };
    let body = format!(
        "<ul class=\"counts\">{}</ul>{as_of}{}{}",
        items.join(""),
        html::table("The last 7 days", &["Day", "Machines activated", "Licenses last validated that day"], &rows),
        license_table("Expiring soon", &expiring.rows, now)
    );
    render(&s, &format!("{} — overview", s.account.name), &q, &body)
}
