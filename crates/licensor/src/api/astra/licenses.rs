//! License resources: list, create from a signed `licenseText`, get, replace (PUT), delete.

use axum::body::Bytes;
use axum::extract::RawQuery;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use md5::{Digest, Md5};
use serde_json::{json, Map, Value};
use uuid::Uuid;

use super::{collection_query, json_response, media_type, no_query, timestamp, Caller, Kind, Params, Problem, Reply};
use crate::domain::collection_query as cq;
use crate::domain::nlf::{self, Nlf, TextError};
use crate::domain::projection::{self, Metric};
use crate::error::Error;
use crate::model::{License, Page, Policy};
use crate::service::licenses::{self as issuance, NewLicense};
use crate::store::astra::{self, AstraRow};
use crate::store::entitlements;
use crate::store::licenses::{self, LicenseFilter};
use crate::store::policies;
use crate::store::{machines, products};
use crate::time;

const MEDIA: &str = "application/astra-license+json";
const TYPE: &str = "application/astra-license";
const VERSION: &str = "1.0";
/// `validUntilTimestamp` of a license without expiry.
const FOREVER: &str = "9999-12-31T23:59:59.000000Z";

/// Fields taken from the license text or owned by the server: a PUT may repeat them, not change them.
const SERVER_OWNED: &[&str] = &[
    "id",
    "product",
    "productVersion",
    "productSN",
    "validFromTimestamp",
    "validUntilTimestamp",
    "capacity",
    "capacity2",
    "features",
    "isEvaluation",
    "licenseProtocol",
    "hostID",
    "addons",
];
const CREATE_FIELDS: &[&str] = &["type", "version", "licenseText", "allocation", "deviceCredentialID", "metadata"];

fn no_limits(l: &License) -> bool {
    Metric::ALL.iter().all(|m| m.limit(l).is_none())
}

/// The NLF view of a core license (rendered and signed when the license has no stored text).
async fn nlf_of(c: &Caller, l: &License, policy: &Policy, product_name: &str, version: &str) -> Result<Nlf, Error> {
    let (metric, quantity) = projection::primary(l);
    let host = match Metric::Machines.limit(l) {
        Some(1) => machines::activations(c.db(), c.account.id, l.id).await?.into_iter().next().map(|m| m.fingerprint),
        _ => None,
    };
    Ok(Nlf {
        serial: projection::serial(l.id).to_string(),
        product: product_name.to_string(),
        product_version: version.to_string(),
        license_id: Some(l.id),
        key: Some(l.key.clone()),
        capacity: if no_limits(l) { "0".into() } else { quantity.to_string() },
        capacity2: projection::secondary_capacity(l).to_string(),
        kind: if no_limits(l) { "unlimited".into() } else { metric.name().into() },
        host_id: host,
        features: entitlements::codes_for_license(c.db(), c.account.id, l.id, l.policy_id).await?,
        protocol: policy.name.clone(),
        evaluation: policy.metadata.0.get("evaluation") == Some(&json!(true)),
        start: Some(timestamp(l.created_at)),
        end: Some(l.expiry.map_or_else(|| FOREVER.to_string(), timestamp)),
        addons: Vec::new(),
    })
}

/// Products and policies read once per request: a list renders many licenses of few of them.
#[derive(Default)]
struct Catalog {
    products: std::collections::HashMap<Uuid, Option<crate::model::Product>>,
    policies: std::collections::HashMap<Uuid, Policy>,
}

impl Catalog {
    async fn product(&mut self, c: &Caller, id: Uuid) -> Result<Option<crate::model::Product>, Error> {
        if let Some(p) = self.products.get(&id) {
            return Ok(p.clone());
        }
        let p = products::find(c.db(), c.account.id, &id.to_string()).await?;
        self.products.insert(id, p.clone());
        Ok(p)
    }

    async fn policy(&mut self, c: &Caller, id: Uuid) -> Result<Policy, Error> {
        if let Some(p) = self.policies.get(&id) {
            return Ok(p.clone());
        }
        let p = policies::find(c.db(), c.account.id, id)
            .await?
            .ok_or_else(|| Error::Internal(anyhow::anyhow!("license without policy")))?;
        self.policies.insert(id, p.clone());
        Ok(p)
    }
}

/// The resource for `l`.
async fn render(c: &Caller, l: &License, extra: Option<&AstraRow>) -> Result<Value, Error> {
    render_with(c, &mut Catalog::default(), l, extra).await
}

async fn render_with(c: &Caller, catalog: &mut Catalog, l: &License, extra: Option<&AstraRow>) -> Result<Value, Error> {
    let product = catalog.product(c, l.product_id).await?;
    let policy = catalog.policy(c, l.policy_id).await?;
    let product_name = product.as_ref().map(|p| p.name.clone()).unwrap_or_default();
    let version = product
        .as_ref()
        .and_then(|p| p.metadata.0.get("version").and_then(Value::as_str).map(str::to_string))
        .unwrap_or_else(|| VERSION.to_string());
    let nlf = nlf_of(c, l, &policy, &product_name, &version).await?;
    let keys = c.state.signing_keys(&c.account)?;
    let (text, addons) = match extra.and_then(|e| e.license_text.clone()) {
        Some(text) => {
            let addons = nlf::parse(&text, &keys.ed25519.verifying_key()).map(|n| n.addons).unwrap_or_default();
            (text, addons)
        }
        None => (nlf::render(&nlf, &keys.ed25519), Vec::new()),
    };
    let labels: Value = extra.and_then(|e| serde_json::from_str(&e.labels).ok()).unwrap_or_else(|| json!([]));
    let mut metadata = json!({
        "labels": labels,
        "creationTimestamp": timestamp(l.created_at),
        "modificationTimestamp": timestamp(extra.map_or(l.updated_at, |e| e.updated_at.max(l.updated_at))),
    });
    if let Some(by) = extra.and_then(|e| e.created_by.clone()) {
        metadata["createdBy"] = json!(by);
    }
    if let Some(by) = extra.and_then(|e| e.modified_by.clone()) {
        metadata["modifiedBy"] = json!(by);
    }
    let mut r = json!({
        "type": TYPE,
        "version": VERSION,
        "id": l.id,
        "allocation": c.account.id,
        "isEvaluation": if nlf.evaluation { "true" } else { "false" },
        "licenseProtocol": nlf.protocol,
        "licenseText": text,
        "validFromTimestamp": timestamp(l.created_at),
        "validUntilTimestamp": l.expiry.map_or_else(|| FOREVER.to_string(), timestamp),
        "product": product_name,
        "productVersion": version,
        "productSN": nlf.serial,
        "features": nlf.features.join(","),
        "capacity": nlf.capacity,
        "capacity2": nlf.capacity2,
        "metadata": metadata,
    });
    if let Some(h) = nlf.host_id {
        r["hostID"] = json!(h);
    }
    if let Some(d) = extra.and_then(|e| e.device_credential_id.as_deref()) {
        r["deviceCredentialID"] = json!(d);
    }
    if !addons.is_empty() {
        r["addons"] = json!(addons);
    }
    Ok(r)
}

fn etag(resource: &Value) -> String {
    format!("\"{}\"", hex::encode(Md5::digest(resource.to_string().as_bytes())))
}

pub async fn list(c: Caller, RawQuery(query): RawQuery, headers: HeaderMap) -> Reply {
    let q = collection_query(query.as_deref(), &["include", "limit", "filter"])?;
    let extras = astra::for_account(c.db(), c.account.id).await?;
    // Licenses are read a page at a time, newest first, rendered and filtered, until the
    // limit is met: no cap on what is looked at, and no more rendering than the answer needs.
    let mut catalog = Catalog::default();
    let mut items = Vec::new();
    let mut f = LicenseFilter::default();
    crate::service::access::scope_license_list(&c.principal, &mut f);
    'pages: for number in 1.. {
        let rows = licenses::list(c.db(), c.account.id, &f, Page { size: 200, number }).await?.rows;
        let last = rows.len() < 200;
        for l in rows {
            let item = render_with(&c, &mut catalog, &l, extras.iter().find(|e| e.license_id == l.id)).await?;
            if q.filter.iter().all(|cond| cq::matches(&item, cond)) {
                items.push(item);
                // One more than the limit tells the page it was cut.
                if q.limit.is_some_and(|limit| items.len() > limit) {
                    break 'pages;
                }
            }
        }
        if last {
            break;
        }
    }
    let page = cq::apply(items, &q);
    let body = json!({
        "type": "application/astra-licenses",
        "version": VERSION,
        "items": cq::project(page.items, q.include.as_deref()),
        "metadata": {},
    });
    Ok(json_response(StatusCode::OK, media_type(&headers, "application/astra-licenses+json"), &body))
}

/// The license `id` names, if the caller can see it; else problem `not_found`.
async fn load(c: &Caller, id: &str, not_found: Kind) -> Reply<(License, Option<AstraRow>)> {
    let Ok(id) = Uuid::parse_str(id) else { return Err(Problem::new(not_found)) };
    let l = licenses::find(c.db(), c.account.id, id).await?.ok_or_else(|| Problem::new(not_found))?;
    if !c.can_read(&l).await? {
        return Err(Problem::new(not_found));
    }
    let extra = astra::find(c.db(), c.account.id, l.id).await?;
    Ok((l, extra))
}

fn resource_response(status: StatusCode, headers: &HeaderMap, resource: &Value) -> Response {
    let mut r = json_response(status, media_type(headers, MEDIA), resource);
    if let Ok(v) = HeaderValue::from_str(&etag(resource)) {
        r.headers_mut().insert(header::ETAG, v);
    }
    r
}

pub async fn show(
    Params((_, id)): Params<(String, String)>,
    c: Caller,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Reply {
    no_query(query.as_deref())?;
    let (l, extra) = load(&c, &id, Kind::CollectionNotFound).await?;
    Ok(resource_response(StatusCode::OK, &headers, &render(&c, &l, extra.as_ref()).await?))
}

pub async fn delete(Params((_, id)): Params<(String, String)>, c: Caller, RawQuery(query): RawQuery) -> Reply {
    no_query(query.as_deref())?;
    let (l, _) = load(&c, &id, Kind::ResourceNotFound).await?;
    if !c.can_write(Some(&l)) {
        return Err(Problem::new(Kind::OperationNotPermitted));
    }
    licenses::delete(c.db(), c.account.id, l.id, &[crate::events::Raised::license("license.deleted", &l)]).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// Parses the body and checks it against the resource schema: an object with only `allowed`
/// fields, `type` and `version` right, strings where strings belong, well-formed labels.
fn parse_body(body: &[u8], allowed: &[&str]) -> Reply<Map<String, Value>> {
    let v: Value = crate::api::json_body(body).map_err(|e| match e {
        crate::api::BadJson::Syntax(_) => Problem::new(Kind::InvalidJsonPayload),
        crate::api::BadJson::Nul => {
            Problem::new(Kind::InvalidJsonResource).schema("strings must not hold a NUL character")
        }
    })?;
    let Value::Object(o) = v else {
        return Err(Problem::new(Kind::InvalidJsonResource).schema("the body must be a JSON object"));
    };
    for k in o.keys() {
        if !allowed.contains(&k.as_str()) {
            return Err(
                Problem::new(Kind::InvalidJsonResource).schema(format!("additional property '{k}' is not allowed"))
            );
        }
    }
    for (k, want) in [("type", TYPE), ("version", VERSION)] {
        match o.get(k) {
            Some(Value::String(s)) if s == want => {}
            Some(_) => return Err(Problem::new(Kind::InvalidJsonResource).schema(format!("'{k}' must be \"{want}\""))),
            None => return Err(Problem::new(Kind::InvalidJsonResource).schema(format!("'{k}' is required"))),
        }
    }
    for (k, v) in &o {
        let ok = match k.as_str() {
            "metadata" => v.is_object(),
            "addons" => v.is_array(),
            _ => v.is_string(),
        };
        if !ok {
            return Err(Problem::new(Kind::InvalidJsonResource).schema(format!("'{k}' has the wrong type")));
        }
    }
    if let Some(h) = o.get("hostID").and_then(Value::as_str) {
        if h.is_empty() || h.len() > 63 {
            return Err(Problem::new(Kind::InvalidJsonResource).schema("'hostID' must be 1 to 63 characters"));
        }
    }
    formats(&o).map_err(|detail| Problem::new(Kind::InvalidJsonResource).schema(detail))?;
    labels(&o)?;
    Ok(o)
}

/// The resource schema's value formats, checked before anything is compared with the stored
/// license (a malformed value is a 400, never a conflict): `isEvaluation` `"true"` or
/// `"false"`, timestamps ISO 8601, add-ons objects of the add-on schema's string fields with
/// ISO 8601 dates, `deviceCredentialID` an Astra identifier.
fn formats(o: &Map<String, Value>) -> Result<(), String> {
    if let Some(v) = o.get("isEvaluation").and_then(Value::as_str) {
        if v != "true" && v != "false" {
            return Err("'isEvaluation' must be \"true\" or \"false\"".into());
        }
    }
    let iso = |field: &str, v: &str| {
        time::parse_iso(v).map(|_| ()).ok_or_else(|| format!("'{field}' must be an ISO 8601 date and time"))
    };
    for field in ["validFromTimestamp", "validUntilTimestamp"] {
        if let Some(v) = o.get(field).and_then(Value::as_str) {
            iso(field, v)?;
        }
    }
    for (i, addon) in o.get("addons").and_then(Value::as_array).into_iter().flatten().enumerate() {
        let Some(addon) = addon.as_object() else { return Err(format!("'addons[{i}]' must be an object")) };
        for (k, v) in addon {
            if !["startDate", "endDate", "features", "capacity", "licenseProtocol"].contains(&k.as_str()) {
                return Err(format!("'addons[{i}]': additional property '{k}' is not allowed"));
            }
            let Some(v) = v.as_str() else { return Err(format!("'addons[{i}].{k}' must be a string")) };
            if k == "startDate" || k == "endDate" {
                iso(&format!("addons[{i}].{k}"), v)?;
            }
        }
    }
    if let Some(v) = o.get("deviceCredentialID").and_then(Value::as_str) {
        if !is_astra_identifier(v) {
            return Err(
                "'deviceCredentialID' must be an Astra identifier (a lowercase UUID v4 or v5, or the nil UUID)".into(),
            );
        }
    }
    Ok(())
}

/// The Astra Identifier Schema: a lowercase, hyphenated UUID of version 4 or 5, or the nil UUID.
fn is_astra_identifier(v: &str) -> bool {
    let lowercase_hyphenated =
        v.len() == 36 && v.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b) || b == b'-');
    lowercase_hyphenated && Uuid::parse_str(v).is_ok_and(|u| u.is_nil() || matches!(u.get_version_num(), 4 | 5))
}

/// `metadata.labels`, validated; `None` when absent.
fn labels(o: &Map<String, Value>) -> Reply<Option<Value>> {
    let Some(l) = o.get("metadata").and_then(|m| m.get("labels")) else { return Ok(None) };
    let ok = l.as_array().is_some_and(|a| {
        a.iter().all(|x| {
            x.as_object().is_some_and(|x| {
                x.len() == 2
                    && x.get("name").is_some_and(Value::is_string)
                    && x.get("value").is_some_and(Value::is_string)
            })
        })
    });
    if ok {
        Ok(Some(l.clone()))
    } else {
        Err(Problem::new(Kind::InvalidJsonResource)
            .schema("'metadata.labels' must be an array of {name, value} strings"))
    }
}

fn check_allocation(c: &Caller, o: &Map<String, Value>) -> Reply<()> {
    match o.get("allocation").and_then(Value::as_str) {
        Some(a) if a != c.account.id.to_string() => Err(Problem::new(Kind::FailedExtendedValidation)
            .field("allocation", "must be the account ID of the request URI")),
        _ => Ok(()),
    }
}

/// Verifies a submitted `licenseText` and reads it; `end` is its expiry (None = never).
fn read_text(c: &Caller, text: &str) -> Reply<(Nlf, Option<i64>)> {
    let keys = c.state.signing_keys(&c.account)?;
    let nlf = nlf::parse(text, &keys.ed25519.verifying_key()).map_err(|e| match e {
        TextError::Malformed(why) => Problem::new(Kind::InvalidJsonResource).schema(why),
        TextError::Several => Problem::new(Kind::UnsupportedLicenseDefinition),
        TextError::Invalid(why) => Problem::new(Kind::FailedExtendedValidation).field("licenseText", why),
    })?;
    let end = match nlf.end.as_deref() {
        None | Some(FOREVER) => None,
        Some(s) if s.starts_with("9999-") => None,
        Some(s) => Some(time::parse_iso(s).ok_or_else(|| {
            Problem::new(Kind::FailedExtendedValidation).field("licenseText", "endDate is not a timestamp")
        })?),
    };
    if end.is_some_and(|e| e < time::now_ms()) {
        return Err(
            Problem::new(Kind::LicenseExpired).field("licenseText", "the license expired before the current date")
        );
    }
    Ok((nlf, end))
}

/// The policy a text's protocol names under `product`, created on first use.
async fn policy_for(c: &Caller, product: Uuid, nlf: &Nlf) -> Result<Policy, Error> {
    let name = if nlf.protocol.is_empty() { "core-v1" } else { nlf.protocol.as_str() };
    issuance::floating_policy(c.db(), c.account.id, product, name, json!({ "evaluation": nlf.evaluation })).await
}

/// The license-level limits a text grants (none for `unlimited`).
fn capacity_limits(nlf: &Nlf) -> Reply<Vec<(Metric, i64)>> {
    let number = |s: &str, field: &str| {
        s.parse::<i64>().ok().filter(|n| *n >= 0).ok_or_else(|| {
            Problem::new(Kind::FailedExtendedValidation)
                .field("licenseText", format!("{field} must be a non-negative integer"))
        })
    };
    if nlf.kind == "unlimited" {
        return Ok(Vec::new());
    }
    let metric = Metric::from_name(&nlf.kind).ok_or_else(|| {
        Problem::new(Kind::FailedExtendedValidation)
            .field("licenseText", format!("unknown capacity type '{}'", nlf.kind))
    })?;
    let mut limits = vec![(metric, number(&nlf.capacity, "capacity")?)];
    let second = number(&nlf.capacity2, "capacity2")?;
    if metric != Metric::Machines && second > 0 {
        limits.push((Metric::Machines, second));
    }
    for ((m, n), field) in limits.iter().zip(["capacity", "capacity2"]) {
        m.check_quantity(*n).map_err(|why| {
            Problem::new(Kind::FailedExtendedValidation).field("licenseText", format!("{field} {why}"))
        })?;
    }
    Ok(limits)
}

/// Entitlements for the text's features, created in the account when missing.
async fn feature_ids(c: &Caller, features: &[String]) -> Result<Vec<Uuid>, Error> {
    let mut ids = Vec::new();
    for code in features {
        ids.push(crate::service::catalog::entitlement_by_code(c.db(), c.account.id, code).await?.id);
    }
    Ok(ids)
}

fn actor(c: &Caller) -> String {
    c.principal.bearer_ref().1.to_string()
}

pub async fn create(c: Caller, RawQuery(query): RawQuery, headers: HeaderMap, body: Bytes) -> Reply {
    no_query(query.as_deref())?;
    if !c.can_write(None) {
        return Err(Problem::new(Kind::OperationNotPermitted));
    }
    let o = parse_body(&body, CREATE_FIELDS)?;
    let Some(text) = o.get("licenseText").and_then(Value::as_str) else {
        return Err(Problem::new(Kind::InvalidJsonResource).schema("'licenseText' is required"));
    };
    check_allocation(&c, &o)?;
    let (nlf, end) = read_text(&c, text)?;
    let product = products::find_by_name(c.db(), c.account.id, &nlf.product, c.principal.product_id())
        .await?
        .ok_or_else(|| {
            Problem::new(Kind::UnsupportedLicenseType)
                .field("licenseText", format!("product '{}' is not licensed by this account", nlf.product))
        })?;
    if let Some(id) = nlf.license_id {
        if licenses::find(c.db(), c.account.id, id).await?.is_some() {
            return Err(Problem::new(Kind::ResourceConflict)
                .field("licenseText", format!("license {} is already installed", nlf.serial)));
        }
    }
    // Validate the capacity before writing anything.
    let limits = capacity_limits(&nlf)?;
    let policy = policy_for(&c, product.id, &nlf).await?;
    let mut new = NewLicense { id: nlf.license_id, key: nlf.key.clone(), expiry: Some(end), ..Default::default() };
    for (metric, value) in limits {
        *new.limit_mut(metric) = Some(value);
    }
    let issued = match issuance::issue(c.db(), &c.account, &c.state.master, &policy, new.clone(), &c.principal).await {
        // The id or key is taken elsewhere (another account, another license): issue fresh ones.
        Err(Error::Invalid { code, .. }) if code == "ID_TAKEN" || code.starts_with("KEY_") => {
            issuance::issue(
                c.db(),
                &c.account,
                &c.state.master,
                &policy,
                NewLicense { id: None, key: None, ..new },
                &c.principal,
            )
            .await
        }
        other => other,
    };
    let l = issued.map_err(Problem::from)?;
    let now = time::now_ms();
    let ids = feature_ids(&c, &nlf.features).await?;
    entitlements::replace_for_license(c.db(), c.account.id, l.id, &ids, now).await?;
    if let Some(host) = &nlf.host_id {
        let machine = crate::model::Machine::new(&l, crate::model::fleet_id(), host.clone(), now);
        let new = crate::service::machines::NewMachine { machine, components: Vec::new(), chosen_id: false };
        let activated = match crate::service::machines::admit(c.db(), &c.principal, &l, None, None).await {
            Ok(admission) => crate::service::machines::activate(&c.state, &c.principal, &l, admission, new).await,
            Err(e) => Err(e),
        };
        match activated {
            Ok(_) => c.state.metrics.activations.inc(&["core"]),
            Err(crate::service::machines::ActivateError::Refused(refusal)) => {
                tracing::info!(?refusal, license = %l.id, "host binding from licenseText refused");
            }
            // The license is issued: a failed binding is logged, not answered as a failed create
            // (a retry would issue a second license).
            Err(crate::service::machines::ActivateError::Failed(e)) => e.log("host binding from licenseText failed"),
        }
    }
    let extra = AstraRow {
        license_id: l.id,
        account_id: c.account.id,
        license_text: Some(text.to_string()),
        labels: labels(&o)?.unwrap_or_else(|| json!([])).to_string(),
        created_by: Some(actor(&c)),
        modified_by: None,
        created_at: now,
        updated_at: now,
        device_credential_id: o.get("deviceCredentialID").and_then(Value::as_str).map(str::to_string),
    };
    astra::upsert(c.db(), &extra).await?;
    let l = licenses::find(c.db(), c.account.id, l.id).await?.unwrap_or(l);
    let resource = render(&c, &l, Some(&extra)).await?;
    let mut r = resource_response(StatusCode::CREATED, &headers, &resource);
    let host = headers.get(header::HOST).and_then(|h| h.to_str().ok()).unwrap_or("localhost");
    if let Ok(v) = HeaderValue::from_str(&format!("http://{host}/accounts/{}/core/v1/licenses/{}", c.account.id, l.id))
    {
        r.headers_mut().insert(header::LOCATION, v);
    }
    Ok(r)
}

/// RFC 7232 preconditions of a PUT against the current representation.
fn preconditions(headers: &HeaderMap, current_etag: &str, modified_ms: i64) -> Reply<()> {
    let get = |h: header::HeaderName| headers.get(h).and_then(|v| v.to_str().ok());
    if let Some(m) = get(header::IF_MATCH) {
        let ok = m.split(',').map(str::trim).any(|t| t == "*" || t.trim_start_matches("W/") == current_etag);
        if !ok {
            return Err(Problem::precondition_failed());
        }
    }
    let modified_s = modified_ms / 1000;
    let secs = |s: &str| httpdate::parse_http_date(s).ok().and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok());
    if let Some(d) = get(header::IF_UNMODIFIED_SINCE).and_then(secs) {
        if modified_s > d.as_secs() as i64 {
            return Err(Problem::precondition_failed());
        }
    }
    if let Some(d) = get(header::IF_MODIFIED_SINCE).and_then(secs) {
        if modified_s <= d.as_secs() as i64 {
            return Err(Problem::precondition_failed());
        }
    }
    Ok(())
}

pub async fn replace(
    Params((_, id)): Params<(String, String)>,
    c: Caller,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> Reply {
    no_query(query.as_deref())?;
    let (mut l, extra) = load(&c, &id, Kind::ResourceNotFound).await?;
    let before = l.clone();
    if !c.can_write(Some(&l)) {
        return Err(Problem::new(Kind::OperationNotPermitted));
    }
    let current = render(&c, &l, extra.as_ref()).await?;
    let modified = extra.as_ref().map_or(l.updated_at, |e| e.updated_at.max(l.updated_at));
    preconditions(&headers, &etag(&current), modified)?;
    let mut allowed: Vec<&str> = SERVER_OWNED.to_vec();
    allowed.extend(CREATE_FIELDS);
    let o = parse_body(&body, &allowed)?;
    check_allocation(&c, &o)?;
    let new_text = o.get("licenseText").and_then(Value::as_str).filter(|t| Some(*t) != current["licenseText"].as_str());
    // Fields the text determines may only change through a new text.
    if new_text.is_none() {
        let conflicts: Vec<(String, String)> = SERVER_OWNED
            .iter()
            .filter(|f| o.get(**f).is_some_and(|v| Some(v) != current.get(**f)))
            .map(|f| (f.to_string(), "conflicts with the stored value".to_string()))
            .collect();
        if !conflicts.is_empty() {
            return Err(Problem::new(Kind::ResourceConflict).fields(conflicts));
        }
    }
    let now = time::now_ms();
    if let Some(text) = new_text {
        let (nlf, end) = read_text(&c, text)?;
        if nlf.serial != current["productSN"].as_str().unwrap_or_default() {
            return Err(Problem::new(Kind::ResourceConflict)
                .field("licenseText", "the serial number differs from the stored license's"));
        }
        if nlf.product != current["product"].as_str().unwrap_or_default() {
            return Err(Problem::new(Kind::UnsupportedLicenseType)
                .field("licenseText", "the product differs from the stored license's"));
        }
        let limits = capacity_limits(&nlf)?;
        for m in Metric::ALL {
            m.set_limit(&mut l, limits.iter().find(|(x, _)| *x == m).map(|(_, v)| *v));
        }
        l.expiry = end;
        l.updated_at = now;
        licenses::update(c.db(), &before, &l, &[crate::events::Raised::license("license.updated", &l)]).await?;
        let ids = feature_ids(&c, &nlf.features).await?;
        entitlements::replace_for_license(c.db(), c.account.id, l.id, &ids, now).await?;
    }
    let mut row = extra.unwrap_or(AstraRow {
        license_id: l.id,
        account_id: c.account.id,
        license_text: None,
        labels: "[]".into(),
        created_by: None,
        modified_by: None,
        created_at: now,
        updated_at: now,
        device_credential_id: None,
    });
    if let Some(text) = new_text {
        row.license_text = Some(text.to_string());
    }
    if let Some(d) = o.get("deviceCredentialID").and_then(Value::as_str) {
        row.device_credential_id = Some(d.to_string());
    }
    if let Some(labels) = labels(&o)? {
        row.labels = labels.to_string();
    }
    row.modified_by = Some(actor(&c));
    row.updated_at = now;
    astra::upsert(c.db(), &row).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}
