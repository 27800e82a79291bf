//! Webhook endpoints, webhook events (deliveries) and the event log, as Keygen serves them.
//! Admins manage everything; a product manages the endpoints tied to it and reads their
//! deliveries; users and licenses see none of it.

use axum::response::Response;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use uuid::Uuid;

use super::document::{self, Resource};
use super::error::ApiResult;
use super::extract::{parse_data, rel_uuid, Body, Ctx, RelInput};
use crate::auth::Principal;
use crate::error::{Error, Source};
use crate::model::{EventLog, Json, WebhookDelivery, WebhookEndpoint};
use crate::service::webhooks as service;
use crate::store::events::LogFilter;
use crate::store::{products, webhooks};
use crate::time;

use super::signature::API_VERSIONS;

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct EndpointAttributes {
    url: String,
    subscriptions: Vec<String>,
    signature_algorithm: String,
    api_version: String,
    created: String,
    updated: String,
}

pub fn render_endpoint(e: &WebhookEndpoint) -> Resource<EndpointAttributes> {
    Resource::new(
        e.account_id,
        "webhook-endpoints",
        e.id,
        EndpointAttributes {
            url: e.url.clone(),
            subscriptions: e.subscriptions.0.clone(),
            signature_algorithm: e.signature_algorithm.clone(),
            api_version: e.api_version.clone(),
            created: time::iso(e.created_at),
            updated: time::iso(e.updated_at),
        },
    )
    .account(e.account_id)
    .one("product", "products", e.product_id)
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DeliveryAttributes {
    endpoint: String,
    api_version: String,
    payload: String,
    event: String,
    status: String,
    last_response_code: Option<i64>,
    last_response_body: Option<String>,
    created: String,
    updated: String,
}

/// A delivery as Keygen renders a webhook event (the body POSTed to receivers, too).
pub fn render_delivery(d: &WebhookDelivery) -> Resource<DeliveryAttributes> {
    Resource::new(
        d.account_id,
        "webhook-events",
        d.id,
        DeliveryAttributes {
            endpoint: d.endpoint_url.clone(),
            api_version: d.api_version.clone(),
            payload: d.payload.clone(),
            event: d.event.clone(),
            status: d.status.clone(),
            last_response_code: d.last_response_code,
            last_response_body: d.last_response_body.clone(),
            created: time::iso(d.created_at),
            updated: time::iso(d.updated_at),
        },
    )
    .account(d.account_id)
    .with_meta(json!({ "idempotencyToken": d.event_log_id.simple().to_string() }))
}

#[derive(Serialize)]
pub struct LogAttributes {
    event: String,
    metadata: Value,
    created: String,
    updated: String,
}

pub fn render_log(l: &EventLog) -> Resource<LogAttributes> {
    let whodunnit = match (l.whodunnit_type.as_deref(), l.whodunnit_id) {
        (Some(kind), Some(id)) => plural_type(kind).map(|k| (k, id)),
        _ => None,
    };
    Resource::new(
        l.account_id,
        "event-logs",
        l.id,
        LogAttributes {
            event: l.event.clone(),
            metadata: l.metadata.0.clone(),
            created: time::iso(l.created_at),
            updated: time::iso(l.created_at),
        },
    )
    .account(l.account_id)
    .one_of("whodunnit", whodunnit)
    .one_of("resource", plural_type(&l.resource_type).map(|k| (k, l.resource_id)))
    .with_meta(json!({ "requestId": l.request_id }))
}

/// The JSON:API type for a type name given in any of Keygen's spellings (`License`,
/// `license`, `licenses`).
fn plural_type(kind: &str) -> Option<&'static str> {
    const TYPES: &[&str] = &[
        "components",
        "entitlements",
        "groups",
        "keys",
        "licenses",
        "machines",
        "policies",
        "processes",
        "products",
        "tokens",
        "users",
    ];
    let k = kind.to_ascii_lowercase();
    TYPES.iter().copied().find(|t| {
        *t == k || t.strip_suffix("ies").map(|s| format!("{s}y")) == Some(k.clone()) || t.strip_suffix('s') == Some(&k)
    })
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct EndpointInput {
    url: Option<String>,
    subscriptions: Option<Vec<String>>,
    signature_algorithm: Option<String>,
    api_version: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct EndpointRels {
    product: Option<RelInput>,
}

/// Admins and products manage endpoints; a product only its own.
fn manager(ctx: &Ctx) -> Result<&Principal, Error> {
    ctx.operator()
}

async fn apply(
    ctx: &Ctx,
    p: &Principal,
    e: &mut WebhookEndpoint,
    a: EndpointInput,
    rels: EndpointRels,
) -> Result<(), Error> {
    if let Some(url) = a.url {
        e.url = service::endpoint_url(&ctx.state, url)?;
    }
    if let Some(subs) = a.subscriptions {
        e.subscriptions = Json(service::subscriptions(subs)?);
    }
    if let Some(alg) = a.signature_algorithm {
        let Some(parsed) = crate::crypto::sign::SigAlg::parse(&alg) else {
            return Err(Error::invalid_attr(
                "signatureAlgorithm",
                "unsupported signature algorithm",
                "SIGNATURE_ALGORITHM_NOT_ALLOWED",
            ));
        };
        if parsed == crate::crypto::sign::SigAlg::EcdsaP256 && ctx.account.ecdsa_secret.is_none() {
            return Err(Error::invalid_attr(
                "signatureAlgorithm",
                "unsupported signature algorithm (the account has no ECDSA key)",
                "SIGNATURE_ALGORITHM_NOT_ALLOWED",
            ));
        }
        e.signature_algorithm = alg;
    }
    if let Some(version) = a.api_version {
        if !API_VERSIONS.contains(&version.as_str()) {
            return Err(Error::bad_request("is invalid", Source::Pointer("/data/attributes/apiVersion".into())));
        }
        e.api_version = version;
    }
    if let Some(product) = rel_uuid(&rels.product, "product")? {
        if let Some(id) = product {
            products::find(ctx.db(), ctx.account_id(), &id.to_string())
                .await?
                .ok_or_else(|| Error::invalid_rel("product", "must exist", "PRODUCT_NOT_FOUND"))?;
        }
        if p.product_id().is_some() && product != p.product_id() {
            return Err(Error::access_denied());
        }
        e.product_id = product;
    }
    Ok(())
}

pub async fn create_endpoint(ctx: Ctx, Body(body): Body) -> ApiResult<Response> {
    let p = manager(&ctx)?.clone();
    let data = parse_data::<EndpointInput, EndpointRels>(body, "webhook-endpoints")?;
    if data.attributes.url.is_none() {
        return Err(Error::bad_request("is missing", Source::Pointer("/data/attributes/url".into())).into());
    }
    // A product's endpoint is tied to it unless it names itself.
    let mut e = service::new_endpoint(ctx.account_id(), p.product_id(), String::new(), time::now_ms());
    apply(&ctx, &p, &mut e, data.attributes, data.relationships).await?;
    service::create_endpoint(&ctx.state, &e).await?;
    Ok(document::created(render_endpoint(&e)))
}

async fn load_endpoint(ctx: &Ctx) -> Result<(Principal, WebhookEndpoint), Error> {
    let p = ctx.principal()?.clone();
    let id = ctx.param("id");
    let missing = || Error::not_found("webhook endpoint", id);
    if !(p.is_admin() || p.product_id().is_some()) {
        return Err(missing());
    }
    let uuid = Uuid::parse_str(id).map_err(|_| missing())?;
    let e = webhooks::find_endpoint(ctx.db(), ctx.account_id(), uuid).await?.ok_or_else(missing)?;
    if p.product_id().is_some() && e.product_id != p.product_id() {
        return Err(missing());
    }
    Ok((p, e))
}

pub async fn list_endpoints(ctx: Ctx) -> ApiResult<Response> {
    let p = manager(&ctx)?;
    let params = ctx.list_params()?;
    let product = p.product_id().or_else(|| params.uuid_filter("product"));
    let listing = webhooks::list_endpoints(ctx.db(), ctx.account_id(), product, params.page).await?;
    Ok(params.document(listing, |e| render_endpoint(&e)))
}

pub async fn show_endpoint(ctx: Ctx) -> ApiResult<Response> {
    let (_, e) = load_endpoint(&ctx).await?;
    Ok(document::ok(render_endpoint(&e)))
}

pub async fn update_endpoint(ctx: Ctx, Body(body): Body) -> ApiResult<Response> {
    let (p, mut e) = load_endpoint(&ctx).await?;
    let data = parse_data::<EndpointInput, EndpointRels>(body, "webhook-endpoints")?;
    apply(&ctx, &p, &mut e, data.attributes, data.relationships).await?;
    e.updated_at = time::now_ms();
    service::update_endpoint(&ctx.state, &e).await?;
    Ok(document::ok(render_endpoint(&e)))
}

pub async fn delete_endpoint(ctx: Ctx) -> ApiResult<Response> {
    let (_, e) = load_endpoint(&ctx).await?;
    service::delete_endpoint(&ctx.state, &e).await?;
    Ok(document::no_content())
}

/// The `events[]` (or `events`) filter's names.
fn event_names(params: &document::ListParams) -> Vec<String> {
    params
        .filters
        .iter()
        .filter(|(k, _)| k == "events[]" || k == "events" || k == "event")
        .map(|(_, v)| v.clone())
        .collect()
}

pub async fn list_deliveries(ctx: Ctx) -> ApiResult<Response> {
    let p = manager(&ctx)?;
    let params = ctx.list_params()?;
    let names = event_names(&params);
    let listing = webhooks::list_deliveries(ctx.db(), ctx.account_id(), &names, p.product_id(), params.page).await?;
    Ok(params.document(listing, |d| render_delivery(&d)))
}

async fn load_delivery(ctx: &Ctx) -> Result<(Principal, WebhookDelivery), Error> {
    let p = ctx.principal()?.clone();
    let id = ctx.param("id");
    let missing = || Error::not_found("webhook event", id);
    if !(p.is_admin() || p.product_id().is_some()) {
        return Err(missing());
    }
    let uuid = Uuid::parse_str(id).map_err(|_| missing())?;
    let d = webhooks::find_delivery(ctx.db(), ctx.account_id(), uuid).await?.ok_or_else(missing)?;
    if let Some(product) = p.product_id() {
        let endpoint = webhooks::find_endpoint(ctx.db(), ctx.account_id(), d.endpoint_id).await?;
        if endpoint.and_then(|e| e.product_id) != Some(product) {
            return Err(missing());
        }
    }
    Ok((p, d))
}

pub async fn show_delivery(ctx: Ctx) -> ApiResult<Response> {
    let (_, d) = load_delivery(&ctx).await?;
    Ok(document::ok(render_delivery(&d)))
}

pub async fn delete_delivery(ctx: Ctx) -> ApiResult<Response> {
    let (p, d) = load_delivery(&ctx).await?;
    if !p.is_admin() {
        return Err(Error::access_denied().into());
    }
    webhooks::delete_delivery(ctx.db(), ctx.account_id(), d.id).await?;
    Ok(document::no_content())
}

/// Keygen's retry: a new delivery of the same event (same idempotency token), due now.
pub async fn retry_delivery(ctx: Ctx) -> ApiResult<Response> {
    let (p, d) = load_delivery(&ctx).await?;
    if !p.is_admin() {
        return Err(Error::access_denied().into());
    }
    if webhooks::find_endpoint(ctx.db(), ctx.account_id(), d.endpoint_id).await?.is_none() {
        return Err(Error::unprocessable("webhook event failed to retry").into());
    }
    let id = Uuid::new_v4();
    webhooks::insert_retry(ctx.db(), &d, id, time::now_ms()).await?;
    let retried = webhooks::find_delivery(ctx.db(), ctx.account_id(), id)
        .await?
        .ok_or_else(|| Error::unprocessable("webhook event failed to retry"))?;
    Ok(document::created(render_delivery(&retried)))
}

/// `date[start]`/`date[end]` (`YYYY-MM-DD`, whole days, 1 to 31 of them) as milliseconds.
fn date_range(params: &document::ListParams) -> Result<(Option<i64>, Option<i64>), Error> {
    let (start, end) = (params.filter("date[start]"), params.filter("date[end]"));
    if start.is_none() && end.is_none() {
        return Ok((None, None));
    }
    let invalid = || Error::bad_param("invalid date range", "date");
    let day = |s: &str| chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d").map_err(|_| invalid());
    let (start, end) = (day(start.ok_or_else(invalid)?)?, day(end.ok_or_else(invalid)?)?);
    let days = (end - start).num_days() + 1;
    if !(1..=31).contains(&days) {
        return Err(Error::bad_param(format!("date range must be between 1 and 31 days (got {days})"), "date"));
    }
    let ms = |d: chrono::NaiveDate| d.and_hms_opt(0, 0, 0).map(|t| t.and_utc().timestamp_millis());
    Ok((ms(start), ms(end + chrono::Duration::days(1))))
}

pub async fn list_logs(ctx: Ctx) -> ApiResult<Response> {
    ctx.admin()?;
    let params = ctx.list_params()?;
    let (from, until) = date_range(&params)?;
    let typed = |name: &str| params.filter(name).map(|t| plural_type(t).unwrap_or("none").to_string());
    let filter = LogFilter {
        events: event_names(&params),
        resource_type: typed("resource[type]"),
        resource_id: params.uuid_filter("resource[id]").or_else(|| params.uuid_filter("resource")),
        whodunnit_type: typed("whodunnit[type]"),
        whodunnit_id: params.uuid_filter("whodunnit[id]").or_else(|| params.uuid_filter("whodunnit")),
        request_id: params.filter("request").map(str::to_string),
        from,
        until,
    };
    let listing = crate::store::events::list_logs(ctx.db(), ctx.account_id(), &filter, params.page).await?;
    Ok(params.document(listing, |l| render_log(&l)))
}

pub async fn show_log(ctx: Ctx) -> ApiResult<Response> {
    let p = ctx.principal()?;
    let missing = || Error::NotFound { kind: "event log", id: String::new() };
    if !p.is_admin() {
        return Err(missing().into());
    }
    let id = Uuid::parse_str(ctx.param("id")).map_err(|_| missing())?;
    let log = crate::store::events::find_log(ctx.db(), ctx.account_id(), id).await?.ok_or_else(missing)?;
    Ok(document::ok(render_log(&log)))
}
