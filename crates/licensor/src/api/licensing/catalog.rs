//! Reading the catalogue (products, extensions) and the installed licenses; removing licenses.

use axum::extract::RawQuery;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};

use super::{Caller, KeyParam, Reply};
use crate::domain::projection::{self, legacy_key};
use crate::error::Error;
use crate::model::{Entitlement, License, Product};
use crate::store::entitlements;
use crate::store::groups;
use crate::store::licenses::{self, LicenseFilter};

fn product_json(p: &Product, extensions: &[Entitlement]) -> Value {
    json!({
        "name": p.name,
        "key": legacy_key(p.id),
        "extensions": extensions.iter().map(|e| legacy_key(e.id)).collect::<Vec<_>>(),
    })
}

fn extension_json(e: &Entitlement, p: &Product) -> Value {
    json!({
        "key": legacy_key(e.id),
        "name": e.name,
        "code": e.code,
        "productName": p.name,
        "productKey": legacy_key(p.id),
    })
}

/// One license as this surface shows it.
pub(super) async fn license_json(c: &Caller, l: &License, product: Option<&Product>) -> Result<Value, Error> {
    let group = match l.group_id {
        Some(g) => groups::find(c.db(), c.account.id, g).await?,
        None => None,
    };
    let extensions = entitlements::for_license(c.db(), c.account.id, l.id, l.policy_id).await?;
    let (metric, quantity) = projection::primary(l);
    Ok(json!({
        "productName": product.map(|p| p.name.clone()).unwrap_or_default(),
        "type": metric.licensing_type(),
        "quantity": quantity,
        "extensions": extensions.iter().map(|e| legacy_key(e.id)).collect::<Vec<_>>(),
        "licenseeName": projection::licensee_name(l, group.as_ref(), &c.account),
        "licenserKey": projection::licenser_key(l),
        "productKey": legacy_key(l.product_id),
        "licenseeId": projection::licensee_id(group.as_ref()),
        "expiration": projection::expiration_date(l.expiry),
    }))
}

fn not_found(kind: &'static str, key: &str) -> Error {
    Error::not_found(kind, key.to_string())
}

pub async fn products(c: Caller) -> Reply<Json<Vec<Value>>> {
    let mut out = Vec::new();
    for p in c.products().await? {
        out.push(product_json(&p, &entitlements::for_product(c.db(), c.account.id, p.id).await?));
    }
    Ok(Json(out))
}

pub async fn product(c: Caller, KeyParam(key): KeyParam) -> Reply<Json<Value>> {
    let p = c.product(&key).await?.ok_or_else(|| not_found("product", &key))?;
    Ok(Json(product_json(&p, &entitlements::for_product(c.db(), c.account.id, p.id).await?)))
}

pub async fn product_extensions(c: Caller, KeyParam(key): KeyParam) -> Reply<Json<Vec<Value>>> {
    let p = c.product(&key).await?.ok_or_else(|| not_found("product", &key))?;
    let exts = entitlements::for_product(c.db(), c.account.id, p.id).await?;
    Ok(Json(exts.iter().map(|e| extension_json(e, &p)).collect()))
}

/// Every (extension, product) pair the caller can license.
async fn all_extensions(c: &Caller) -> Result<Vec<(Entitlement, Product)>, Error> {
    let mut out = Vec::new();
    for p in c.products().await? {
        for e in entitlements::for_product(c.db(), c.account.id, p.id).await? {
            out.push((e, p.clone()));
        }
    }
    Ok(out)
}

pub async fn extensions(c: Caller) -> Reply<Json<Vec<Value>>> {
    Ok(Json(all_extensions(&c).await?.iter().map(|(e, p)| extension_json(e, p)).collect()))
}

pub async fn extension(c: Caller, KeyParam(key): KeyParam) -> Reply<Json<Value>> {
    let wanted = key.parse::<i32>().ok();
    let found = all_extensions(&c).await?.into_iter().find(|(e, _)| Some(legacy_key(e.id)) == wanted);
    let (e, p) = found.ok_or_else(|| not_found("extension", &key))?;
    Ok(Json(extension_json(&e, &p)))
}

/// Licenses of the caller's products, newest first (all of them: this surface has no paging).
async fn licenses_of(c: &Caller, product: Option<uuid::Uuid>) -> Result<Vec<License>, Error> {
    let filter = LicenseFilter { product: product.or(c.principal.product_id()), ..Default::default() };
    crate::store::collect_pages(|page| licenses::list(c.db(), c.account.id, &filter, page)).await
}

pub async fn licenses(c: Caller) -> Reply<Json<Vec<Value>>> {
    let products = c.products().await?;
    let mut out = Vec::new();
    for l in licenses_of(&c, None).await? {
        out.push(license_json(&c, &l, products.iter().find(|p| p.id == l.product_id)).await?);
    }
    Ok(Json(out))
}

/// `GET /licenses/<productKey>`: the product's license in force: unsuspended first, then the
/// latest expiry (none = latest of all).
pub async fn license(c: Caller, KeyParam(key): KeyParam) -> Reply<Json<Value>> {
    let p = c.product(&key).await?.ok_or_else(|| not_found("license for product", &key))?;
    let best = licenses_of(&c, Some(p.id))
        .await?
        .into_iter()
        .max_by_key(|l| (!l.suspended, l.expiry.is_none(), l.expiry))
        .ok_or_else(|| not_found("license for product", &key))?;
    Ok(Json(license_json(&c, &best, Some(&p)).await?))
}

/// The licensee a license was installed for: the `licenseeId` of the license code's grant,
/// kept on its group. `None` for a license made another way (the Keygen API, core/v1).
async fn licensee_of(c: &Caller, l: &License) -> Result<Option<String>, Error> {
    let Some(group) = l.group_id else { return Ok(None) };
    let group = groups::find(c.db(), c.account.id, group).await?;
    Ok(group.and_then(|g| g.metadata.0.get("licensee_id").and_then(Value::as_str).map(str::to_string)))
}

/// `DELETE /licenses/<productKey>[?licenseeId=…]`: removes one licensee's license of the
/// product; 204 when there is none.
///
/// The seed's base holds one license per product; a Licensor account holds every customer's.
/// So the delete is scoped to a licensee: the one named by `licenseeId`, or, without it, the
/// only one the product's licenses belong to. When they belong to several (or some were not
/// installed from a license code), nothing is removed and the answer is 409: a call must never
/// remove other customers' licenses.
pub async fn delete_license(c: Caller, KeyParam(key): KeyParam, RawQuery(query): RawQuery) -> Reply {
    let Some(p) = c.product(&key).await? else { return Ok(StatusCode::NO_CONTENT.into_response()) };
    let named: Option<String> = crate::api::query_pairs(query.as_deref())
        .map_err(|_| Error::bad_request("query string is malformed", crate::error::Source::None))?
        .into_iter()
        .find(|(k, _)| k == "licenseeId")
        .map(|(_, v)| v);
    let mut held = Vec::new();
    for l in licenses_of(&c, Some(p.id)).await? {
        let licensee = licensee_of(&c, &l).await?;
        held.push((l, licensee));
    }
    let targets: Vec<License> = match named {
        Some(id) => held.into_iter().filter(|(_, who)| who.as_deref() == Some(id.as_str())).map(|(l, _)| l).collect(),
        None => {
            let one_licensee = held
                .first()
                .and_then(|(_, w)| w.clone())
                .filter(|first| held.iter().all(|(_, w)| w.as_deref() == Some(first.as_str())));
            if held.len() > 1 && one_licensee.is_none() {
                return Err(Error::conflict(
                    "this product's licenses belong to several licensees (or were not installed from a license code): \
                     name the licensee with ?licenseeId=…",
                    "AMBIGUOUS_LICENSEE",
                )
                .into());
            }
            held.into_iter().map(|(l, _)| l).collect()
        }
    };
    if targets.is_empty() {
        return Ok(StatusCode::NO_CONTENT.into_response());
    }
    for l in targets {
        licenses::delete(c.db(), c.account.id, l.id, &[crate::events::Raised::license("license.deleted", &l)]).await?;
    }
    Ok(Response::new(axum::body::Body::empty()))
}
