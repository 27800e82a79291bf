//! The read-only entitlement view (docs/core-v1.md), computed on read from the licenses (so
//! consumption is always current): per license, one row per limited metric
//! (value = effective limit, consumption = current use) and one per entitlement code.

use axum::extract::RawQuery;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use serde_json::{json, Value};
use uuid::Uuid;

use super::{collection_query, json_response, media_type, no_query, timestamp, Caller, Kind, Params, Problem, Reply};
use crate::domain::collection_query as cq;
use crate::domain::projection::Metric;
use crate::error::Error;
use crate::model::License;
use crate::store::{entitlements, processes, products};

const FOREVER: &str = "9999-12-31T23:59:59.000000Z";

/// A stable id per (license, entitlement type), unchanged by recalculation.
fn row_id(license: Uuid, kind: &str) -> Uuid {
    Uuid::new_v5(&license, kind.as_bytes())
}

async fn consumption(c: &Caller, l: &License, m: Metric) -> Result<i64, Error> {
    Ok(match m {
        Metric::Machines => l.machines_count,
        Metric::Cores => l.machines_cores,
        Metric::Users => l.users_total(),
        Metric::Processes => processes::counts_for_license(c.db(), l.id).await?.iter().map(|(_, n)| n).sum(),
        Metric::Uses => l.uses,
    })
}

async fn rows_for(c: &Caller, l: &License) -> Result<Vec<Value>, Error> {
    let product = products::find(c.db(), c.account.id, &l.product_id.to_string()).await?;
    let base = |kind: &str, value: String, used: Option<i64>| {
        let mut v = json!({
            "type": "application/astra-entitlement",
            "version": "1.0",
            "id": row_id(l.id, kind),
            "allocation": c.account.id,
            "product": product.as_ref().map(|p| p.name.clone()).unwrap_or_default(),
            "productVersion": product.as_ref().and_then(|p| p.metadata.0.get("version").and_then(Value::as_str).map(str::to_string)).unwrap_or_else(|| "1.0".into()),
            "entitlementType": kind,
            "entitlementValue": value,
            "sourceLicense": l.id,
            "validFromTimestamp": timestamp(l.created_at),
            "validUntilTimestamp": l.expiry.map_or_else(|| FOREVER.to_string(), timestamp),
            "metadata": { "labels": [], "creationTimestamp": timestamp(l.created_at), "modificationTimestamp": timestamp(l.updated_at) },
        });
        if let Some(n) = used {
            v["entitlementConsumption"] = json!(n.to_string());
        }
        v
    };
    let mut out = Vec::new();
    for m in Metric::ALL {
        if let Some(limit) = m.limit(l) {
            out.push(base(m.name(), limit.to_string(), Some(consumption(c, l, m).await?)));
        }
    }
    for code in entitlements::codes_for_license(c.db(), c.account.id, l.id, l.policy_id).await? {
        out.push(base(&code, "1".into(), None));
    }
    Ok(out)
}

async fn all_rows(c: &Caller) -> Result<Vec<Value>, Error> {
    let mut out = Vec::new();
    for l in c.visible_licenses().await? {
        out.extend(rows_for(c, &l).await?);
    }
    Ok(out)
}

pub async fn list(c: Caller, RawQuery(query): RawQuery, headers: HeaderMap) -> Reply {
    let q =
        collection_query(query.as_deref(), &["include", "limit", "filter", "orderBy", "skip", "count", "continue"])?;
    let page = cq::apply(all_rows(&c).await?, &q);
    let mut metadata = json!({});
    if q.count {
        metadata["count"] = json!(page.total);
    }
    if let Some(next) = page.next {
        metadata["continue"] = json!(next);
    }
    let body = json!({
        "type": "application/astra-entitlements",
        "version": "1.0",
        "items": cq::project(page.items, q.include.as_deref()),
        "metadata": metadata,
    });
    Ok(json_response(StatusCode::OK, media_type(&headers, "application/astra-entitlements+json"), &body))
}

pub async fn show(
    Params((_, id)): Params<(String, String)>,
    c: Caller,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Reply<Response> {
    no_query(query.as_deref())?;
    let row = all_rows(&c)
        .await?
        .into_iter()
        .find(|r| r["id"].as_str() == Some(id.as_str()))
        .ok_or_else(|| Problem::new(Kind::CollectionNotFound))?;
    Ok(json_response(StatusCode::OK, media_type(&headers, "application/astra-entitlement+json"), &row))
}
