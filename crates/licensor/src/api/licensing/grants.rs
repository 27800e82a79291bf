//! `POST /licenses/create` (issue or renew a grant, answer with its encrypted code) and
//! `POST /licenses` (install a code: idempotent, restores licenses deleted since).
//!
//! Everything a request says is checked before anything is written, so a bad request changes
//! nothing.

use axum::body::Bytes;
use axum::http::{header, HeaderMap, HeaderValue};
use axum::response::{IntoResponse, Response};
use serde_json::{json, Map, Value};
use uuid::Uuid;

use super::{require_content_type, Caller, Failure, Reply};
use crate::domain::licensing_code::{self, GrantedLicense, OpenError};
use crate::domain::projection::{self, legacy_key, Metric};
use crate::error::{Error, Source};
use crate::model::{Entitlement, Group, Json, Policy, Product};
use crate::service::licenses::{self as issuance, NewLicense};
use crate::store::entitlements;
use crate::store::groups;
use crate::store::licenses::{self, LicenseFilter};
use crate::store::policies;
use crate::time;

fn bad(code: &'static str, detail: impl Into<std::borrow::Cow<'static, str>>) -> Error {
    Error::BadRequest { detail: detail.into(), code: Some(code.into()), location: Source::None }
}

fn invalid_field(field: &str, what: &str) -> Error {
    bad("INVALID_FIELD", format!("{field} {what}"))
}

/// One validated entry of `licenses[]`.
struct Item {
    product: Product,
    metric: Metric,
    quantity: i64,
    extensions: Vec<Entitlement>,
}

/// A validated `create` request.
struct CreateRequest {
    group: Option<Group>,
    licensee_id: String,
    licensee_name: String,
    expiration: String,
    expiry: Option<i64>,
    items: Vec<Item>,
}

fn integer(v: &Value, field: &str) -> Result<i64, Error> {
    v.as_i64().ok_or_else(|| invalid_field(field, "must be an integer"))
}

fn key32(v: &Value, field: &str) -> Result<i32, Error> {
    i32::try_from(integer(v, field)?).map_err(|_| invalid_field(field, "must be a signed 32-bit integer"))
}

fn string<'a>(o: &'a Map<String, Value>, field: &str) -> Result<&'a str, Error> {
    match o.get(field) {
        None | Some(Value::Null) => Err(invalid_field(field, "is required")),
        Some(Value::String(s)) if !s.trim().is_empty() => Ok(s),
        Some(Value::String(_)) => Err(invalid_field(field, "must not be blank")),
        Some(_) => Err(invalid_field(field, "must be a string")),
    }
}

async fn validate(c: &Caller, body: &Value) -> Result<CreateRequest, Error> {
    let o = body.as_object().ok_or_else(|| bad("INVALID_BODY", "the body must be a JSON object"))?;
    if let Some(v) = o.get("licenseVersion").filter(|v| !v.is_null()) {
        let version = integer(v, "licenseVersion")?;
        if !(1..=i64::from(licensing_code::VERSION)).contains(&version) {
            return Err(bad("UNSUPPORTED_LICENSE_VERSION", "licenseVersion must be 1, 2 or 3"));
        }
    }
    let licensee_id = string(o, "licenseeId")?.to_string();
    let licensee_name = string(o, "licenseeName")?.to_string();
    let expiration = string(o, "expiration")?.to_string();
    let expiry = projection::parse_expiration(&expiration)
        .ok_or_else(|| bad("INVALID_DATE", "expiration must be a date in the format YYYY-MM-DD"))?;
    let group = match o.get("licenserKey").filter(|v| !v.is_null()) {
        None => None,
        Some(v) => {
            let key = key32(v, "licenserKey")?;
            let range = crate::domain::projection::legacy_key_range(key);
            Some(
                groups::find_in_range(c.db(), c.account.id, range)
                    .await?
                    .ok_or_else(|| Error::not_found("licenserKey", key.to_string()))?,
            )
        }
    };
    let list = match o.get("licenses") {
        Some(Value::Array(a)) if !a.is_empty() => a,
        Some(Value::Array(_)) => return Err(invalid_field("licenses", "must have at least one item")),
        None | Some(Value::Null) => return Err(invalid_field("licenses", "is required")),
        Some(_) => return Err(invalid_field("licenses", "must be an array")),
    };
    let mut items = Vec::with_capacity(list.len());
    for (i, item) in list.iter().enumerate() {
        let field = |f: &str| format!("licenses[{i}].{f}");
        let it = item.as_object().ok_or_else(|| invalid_field(&format!("licenses[{i}]"), "must be an object"))?;
        let product_key = key32(
            it.get("productKey").ok_or_else(|| invalid_field(&field("productKey"), "is required"))?,
            &field("productKey"),
        )?;
        let product =
            c.product_by_key(product_key).await?.ok_or_else(|| Error::not_found("product", product_key.to_string()))?;
        let quantity = integer(
            it.get("quantity").ok_or_else(|| invalid_field(&field("quantity"), "is required"))?,
            &field("quantity"),
        )?;
        if !(0..=i64::from(i32::MAX)).contains(&quantity) {
            return Err(invalid_field(&field("quantity"), "must be between 0 and 2147483647"));
        }
        let kind = match it.get("type") {
            Some(Value::String(s)) => s,
            None | Some(Value::Null) => return Err(invalid_field(&field("type"), "is required")),
            Some(_) => return Err(invalid_field(&field("type"), "must be a string")),
        };
        let metric = Metric::from_licensing_type(kind).ok_or_else(|| {
            bad(
                "INVALID_TYPE",
                format!(
                    "{} must be one of connection, processor, nominalUser, simultaneousUser, custom (or C, P, U, S, X)",
                    field("type")
                ),
            )
        })?;
        let offered = entitlements::for_product(c.db(), c.account.id, product.id).await?;
        let mut extensions = Vec::new();
        match it.get("extensions") {
            None | Some(Value::Null) => {}
            Some(Value::Array(keys)) => {
                for k in keys {
                    let k = key32(k, &field("extensions"))?;
                    let e = offered
                        .iter()
                        .find(|e| legacy_key(e.id) == k)
                        .ok_or_else(|| Error::not_found("extension", format!("{k} of product {product_key}")))?;
                    if !extensions.iter().any(|x: &Entitlement| x.id == e.id) {
                        extensions.push(e.clone());
                    }
                }
            }
            Some(_) => return Err(invalid_field(&field("extensions"), "must be an array of numbers")),
        }
        if items.iter().any(|x: &Item| x.product.id == product.id) {
            return Err(invalid_field(&field("productKey"), "appears twice"));
        }
        metric.check_quantity(quantity).map_err(|why| invalid_field(&field("quantity"), &why))?;
        items.push(Item { product, metric, quantity, extensions });
    }
    Ok(CreateRequest { group, licensee_id, licensee_name, expiration, expiry, items })
}

/// The policy licenses of `metric` for `product` are issued under.
async fn policy_for(c: &Caller, product: Uuid, metric: Metric) -> Result<Policy, Error> {
    let name = format!("licensing-v1 {}", metric.licensing_type());
    issuance::floating_policy(c.db(), c.account.id, product, &name, json!({})).await
}

/// A grant's group: the licensee by name, with its tax id in the metadata.
fn grant_group(account: Uuid, id: Uuid, licensee_name: &str, licensee_id: &str, now: i64) -> Group {
    let mut g = Group { id, ..Group::new(account, licensee_name.to_string(), now) };
    set_licensee_id(&mut g, licensee_id);
    g
}

fn text(body: String) -> Response {
    let mut r = body.into_response();
    r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; charset=utf-8"));
    r
}

pub async fn create(c: Caller, headers: HeaderMap, body: Bytes) -> Reply {
    require_content_type(&headers, "application/json")?;
    let body: Value = crate::api::json_body(&body).map_err(|e| match e {
        crate::api::BadJson::Syntax(e) => bad("MALFORMED_JSON", format!("the body is not valid JSON: {e}")),
        crate::api::BadJson::Nul => bad("MALFORMED_JSON", "the body holds a NUL character"),
    })?;
    let req = validate(&c, &body).await?;
    let now = time::now_ms();
    let group = match req.group {
        Some(mut g) => {
            g.name.clone_from(&req.licensee_name);
            set_licensee_id(&mut g, &req.licensee_id);
            g.updated_at = now;
            groups::update(c.db(), &g, &[crate::events::Raised::group("group.updated", &g)]).await?;
            g
        }
        None => {
            let g = grant_group(c.account.id, Uuid::new_v4(), &req.licensee_name, &req.licensee_id, now);
            crate::service::catalog::create_group(c.db(), &g).await?;
            g
        }
    };
    let in_this_group = LicenseFilter { group: Some(group.id), ..Default::default() };
    let in_group =
        crate::store::collect_pages(|page| licenses::list(c.db(), c.account.id, &in_this_group, page)).await?;
    let mut granted = Vec::new();
    for item in &req.items {
        let policy = policy_for(&c, item.product.id, item.metric).await?;
        let license = match in_group.iter().find(|l| l.product_id == item.product.id) {
            // Renewal: same grant, same product.
            Some(existing) => {
                let before = existing.clone();
                let mut l = existing.clone();
                l.policy_id = policy.id;
                l.expiry = req.expiry;
                l.name = Some(req.licensee_name.clone());
                for m in Metric::ALL {
                    m.set_limit(&mut l, None);
                }
                item.metric.set_limit(&mut l, Some(item.quantity));
                l.updated_at = now;
                licenses::update(c.db(), &before, &l, &[crate::events::Raised::license("license.updated", &l)]).await?;
                l
            }
            None => {
                let mut new = NewLicense {
                    name: Some(req.licensee_name.clone()),
                    expiry: Some(req.expiry),
                    group: Some(group.id),
                    ..Default::default()
                };
                *new.limit_mut(item.metric) = Some(item.quantity);
                issuance::issue(c.db(), &c.account, &c.state.master, &policy, new, &c.principal).await?
            }
        };
        let ids: Vec<Uuid> = item.extensions.iter().map(|e| e.id).collect();
        entitlements::replace_for_license(c.db(), c.account.id, license.id, &ids, now).await?;
        granted.push(GrantedLicense {
            id: license.id,
            key: license.key.clone(),
            product: item.product.id,
            product_key: legacy_key(item.product.id),
            policy: policy.id,
            kind: item.metric.licensing_type().to_string(),
            quantity: item.quantity,
            entitlements: ids,
            extensions: item.extensions.iter().map(|e| legacy_key(e.id)).collect(),
        });
    }
    let grant = licensing_code::Grant {
        account: c.account.id,
        group: group.id,
        licenser_key: legacy_key(group.id),
        licensee_id: req.licensee_id,
        licensee_name: req.licensee_name,
        expiration: req.expiration,
        licenses: granted,
        issued: time::iso(now),
    };
    let keys = c.state.signing_keys(&c.account)?;
    Ok(text(licensing_code::seal(&grant, &keys.ed25519)))
}

fn set_licensee_id(g: &mut Group, id: &str) {
    match g.metadata.0.as_object_mut() {
        Some(m) => {
            m.insert("licensee_id".into(), json!(id));
        }
        None => g.metadata = Json(json!({ "licensee_id": id })),
    }
}

/// `POST /licenses`: installs a code. Licenses it names that still exist are left as they are
/// (a later renewal must not be undone by an old code); deleted ones are restored with their
/// original ids and keys.
pub async fn install(c: Caller, headers: HeaderMap, body: Bytes) -> Reply {
    require_content_type(&headers, "text/plain")?;
    let code = std::str::from_utf8(&body).map_err(|_| bad("INVALID_CODE", "the license code must be text"))?.trim();
    if code.is_empty() {
        return Err(bad("INVALID_CODE", "the body must hold a license code").into());
    }
    let keys = c.state.signing_keys(&c.account)?;
    let grant = licensing_code::open(code, &keys.ed25519).map_err(|e| match e {
        OpenError::Malformed => bad("INVALID_CODE", "the license code is malformed"),
        OpenError::NotOurs => bad("INVALID_CODE", "the license code was altered or was not issued by this account"),
    })?;
    if grant.account != c.account.id {
        return Err(bad("INVALID_CODE", "the license code was not issued by this account").into());
    }
    for l in &grant.licenses {
        let visible = crate::store::products::find(c.db(), c.account.id, &l.product.to_string())
            .await?
            .is_some_and(|p| c.principal.product_id().is_none_or(|only| only == p.id));
        if !visible {
            return Err(match c.principal.product_id() {
                Some(_) => Failure::from(Error::access_denied()),
                None => bad("PRODUCT_GONE", format!("product {} no longer exists", l.product_key)).into(),
            });
        }
    }
    let now = time::now_ms();
    let expiry = projection::parse_expiration(&grant.expiration)
        .ok_or_else(|| bad("INVALID_CODE", "the license code is malformed"))?;
    if groups::find(c.db(), c.account.id, grant.group).await?.is_none() {
        let g = grant_group(c.account.id, grant.group, &grant.licensee_name, &grant.licensee_id, now);
        crate::service::catalog::create_group(c.db(), &g).await?;
    }
    for l in &grant.licenses {
        if licenses::find(c.db(), c.account.id, l.id).await?.is_some() {
            continue;
        }
        let metric =
            Metric::from_licensing_type(&l.kind).ok_or_else(|| bad("INVALID_CODE", "the license code is malformed"))?;
        let policy = match policies::find(c.db(), c.account.id, l.policy).await? {
            Some(p) if p.product_id == l.product => p,
            _ => policy_for(&c, l.product, metric).await?,
        };
        let mut new = NewLicense {
            id: Some(l.id),
            key: Some(l.key.clone()),
            name: Some(grant.licensee_name.clone()),
            expiry: Some(expiry),
            group: Some(grant.group),
            ..Default::default()
        };
        *new.limit_mut(metric) = Some(l.quantity);
        let license = match issuance::issue(c.db(), &c.account, &c.state.master, &policy, new, &c.principal).await {
            Ok(license) => license,
            // Installed concurrently by another request: nothing left to do for it.
            Err(Error::Invalid { .. }) if licenses::find(c.db(), c.account.id, l.id).await?.is_some() => continue,
            Err(e) => return Err(e.into()),
        };
        let mut ids = Vec::new();
        for id in &l.entitlements {
            if entitlements::find(c.db(), c.account.id, &id.to_string()).await?.is_some() {
                ids.push(*id);
            }
        }
        entitlements::replace_for_license(c.db(), c.account.id, license.id, &ids, now).await?;
    }
    Ok(Response::new(axum::body::Body::empty()))
}
