//! License and machine file check-outs (`…/actions/check-out`, GET and POST): a signed,
//! optionally encrypted snapshot of the resource for offline use.

use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{json, Value};
use uuid::Uuid;

use super::document;
use super::error::ApiResult;
use super::extract::{parse_meta, Body, Ctx};
use crate::crypto::sign::SigAlg;
use crate::domain::license_file::{self, FileKind};
use crate::error::{Error, Source};
use crate::model::{License, Page, Scheme};
use crate::store::entitlements::{self, Scope};
use crate::store::{components, groups, licenses, machines, policies, products, users};
use crate::time;

/// Options, from the query string or (POST) `meta`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct CheckoutOptions {
    encrypt: Option<Value>,
    algorithm: Option<String>,
    ttl: Option<Value>,
    include: Option<Value>,
}

struct Resolved {
    encrypt: bool,
    alg: SigAlg,
    /// `None`: no expiry.
    ttl: Option<i64>,
    include: Vec<String>,
}

fn bad(detail: &'static str, code: &'static str, param: &'static str) -> Error {
    Error::BadRequest { detail: detail.into(), code: Some(code.into()), location: Source::Parameter(param.into()) }
}

fn resolve(opts: CheckoutOptions, scheme: Option<Scheme>, allowed: &[&str]) -> Result<Resolved, Error> {
    let encrypt = match &opts.encrypt {
        None => false,
        Some(Value::Bool(b)) => *b,
        Some(Value::String(s)) if s == "true" || s == "1" => true,
        Some(Value::String(s)) if s == "false" || s == "0" || s.is_empty() => false,
        Some(_) => return Err(bad("encrypt must be a boolean", "CHECKOUT_ENCRYPT_INVALID", "encrypt")),
    };
    let (encrypt, alg) = match &opts.algorithm {
        Some(a) => license_file::parse_algorithm(a)
            .ok_or_else(|| bad("algorithm is not supported", "CHECKOUT_ALGORITHM_INVALID", "algorithm"))?,
        None => (encrypt, license_file::default_alg(scheme)),
    };
    let ttl = match &opts.ttl {
        None => Some(license_file::DEFAULT_TTL),
        Some(Value::Null) => None,
        Some(Value::String(s)) if s.is_empty() || s == "null" => None,
        Some(v) => {
            let n = match v {
                Value::Number(n) => n.as_i64(),
                Value::String(s) => s.parse::<i64>().ok(),
                _ => None,
            };
            match n {
                // At most 2^31 - 1 s (68 years), like every other duration: an expiry that
                // always exists.
                Some(n) if n > i32::MAX as i64 => {
                    return Err(bad("must be less than or equal to 2147483647", "CHECKOUT_TTL_INVALID", "ttl"))
                }
                Some(n) if n >= license_file::MIN_TTL => Some(n),
                _ => return Err(bad("must be greater than or equal to 3600 (1 hour)", "CHECKOUT_TTL_INVALID", "ttl")),
            }
        }
    };
    let include: Vec<String> = match &opts.include {
        None => Vec::new(),
        Some(Value::String(s)) => s.split(',').map(str::trim).filter(|s| !s.is_empty()).map(str::to_string).collect(),
        Some(Value::Array(a)) => a.iter().filter_map(|v| v.as_str().map(str::to_string)).collect(),
        Some(_) => return Err(bad("include must be a comma-separated list", "CHECKOUT_INCLUDE_INVALID", "include")),
    };
    let include: Vec<String> = include.into_iter().map(|i| if i == "user" { "owner".to_string() } else { i }).collect();
    if include.iter().any(|i| !allowed.contains(&i.as_str())) {
        return Err(bad("include contains an unsupported resource", "CHECKOUT_INCLUDE_INVALID", "include"));
    }
    Ok(Resolved { encrypt, alg, ttl, include })
}

fn options(ctx: &Ctx, method: &Method, body: Value) -> Result<CheckoutOptions, Error> {
    let mut opts: CheckoutOptions = match ctx.query.as_deref() {
        Some(q) if !q.is_empty() => {
            let pairs = crate::api::query_pairs(Some(q))
                .map_err(|_| Error::bad_request("query string is malformed", Source::None))?;
            let map: serde_json::Map<String, Value> = pairs.into_iter().map(|(k, v)| (k, Value::String(v))).collect();
            super::extract::decode(Value::Object(map)).map_err(|e| match e {
                Error::BadRequest { detail, .. } => Error::bad_request(detail, Source::None),
                other => other,
            })?
        }
        _ => CheckoutOptions::default(),
    };
    if method == Method::POST && !body.is_null() {
        let meta: CheckoutOptions = parse_meta(body)?;
        opts.encrypt = meta.encrypt.or(opts.encrypt);
        opts.algorithm = meta.algorithm.or(opts.algorithm);
        opts.ttl = meta.ttl.or(opts.ttl);
        opts.include = meta.include.or(opts.include);
    }
    Ok(opts)
}

async fn license_included(ctx: &Ctx, l: &License, include: &[String], prefix: &str) -> Result<Vec<Value>, Error> {
    let account = ctx.account_id();
    let mut out = Vec::new();
    for inc in include {
        let Some(what) = inc.strip_prefix(prefix) else { continue };
        match what {
            "entitlements" => {
                let list =
                    entitlements::list(ctx.db(), account, Scope::License(l.id), Page { size: 100, number: 1 }).await?;
                out.extend(list.rows.iter().map(|e| to(&super::entitlements::render(account, e))));
            }
            "product" => {
                if let Some(p) = products::find(ctx.db(), account, &l.product_id.to_string()).await? {
                    out.push(to(&super::products::render(account, &p)));
                }
            }
            "policy" => {
                if let Some(p) = policies::find(ctx.db(), account, l.policy_id).await? {
                    out.push(to(&super::policies::render(account, &p)));
                }
            }
            "owner" => {
                if let Some(u) = match l.owner_id {
                    Some(id) => users::find(ctx.db(), account, id).await?,
                    None => None,
                } {
                    out.push(to(&super::users::render(account, &u)));
                }
            }
            "users" => {
                for id in licenses::user_ids(ctx.db(), account, l.id).await? {
                    if let Some(u) = users::find(ctx.db(), account, id).await? {
                        out.push(to(&super::users::render(account, &u)));
                    }
                }
            }
            "group" => {
                if let Some(g) = match l.group_id {
                    Some(id) => groups::find(ctx.db(), account, id).await?,
                    None => None,
                } {
                    out.push(to(&super::groups::render(account, &g)));
                }
            }
            _ => {}
        }
    }
    Ok(out)
}

fn to<T: serde::Serialize>(v: &T) -> Value {
    serde_json::to_value(v).unwrap_or_default()
}

struct Issued {
    certificate: String,
    opts: Resolved,
    issued: i64,
    expiry: Option<i64>,
}

fn respond(ctx: &Ctx, method: &Method, kind: FileKind, owner_id: Uuid, file: Issued) -> Response {
    let account = ctx.account_id();
    if method == Method::GET {
        let mut r = (StatusCode::OK, file.certificate).into_response();
        r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/octet-stream"));
        if let Ok(v) = HeaderValue::from_str(&format!("attachment; filename=\"{owner_id}.lic\"")) {
            r.headers_mut().insert(header::CONTENT_DISPOSITION, v);
        }
        return r;
    }
    let (kind_name, owner_kind, rel) = match kind {
        FileKind::License => ("license-files", "licenses", "license"),
        FileKind::Machine => ("machine-files", "machines", "machine"),
    };
    document::respond(
        StatusCode::OK,
        &json!({ "data": {
            "id": Uuid::new_v4(),
            "type": kind_name,
            "attributes": {
                "certificate": file.certificate,
                "ttl": file.opts.ttl,
                "expiry": time::iso_opt(file.expiry),
                "issued": time::iso(file.issued),
                "algorithm": license_file::algorithm_name(file.opts.encrypt, file.opts.alg),
                "includes": file.opts.include,
            },
            "relationships": {
                "account": { "links": { "related": format!("/v1/accounts/{account}") }, "data": { "type": "accounts", "id": account } },
                rel: { "links": { "related": format!("/v1/accounts/{account}/{owner_kind}/{owner_id}") }, "data": { "type": owner_kind, "id": owner_id } },
            },
        }}),
    )
}

use crate::service::checkout::payload;

const LICENSE_INCLUDES: &[&str] = &["entitlements", "product", "policy", "owner", "users", "group"];
const MACHINE_INCLUDES: &[&str] = &[
    "license",
    "license.entitlements",
    "license.product",
    "license.policy",
    "license.owner",
    "license.users",
    "components",
    "group",
    "owner",
];

/// `GET|POST /licenses/{id}/actions/check-out`.
pub async fn license(ctx: Ctx, method: Method, Body(body): Body) -> ApiResult<Response> {
    let l = super::licenses::load(&ctx).await?;
    let opts = resolve(options(&ctx, &method, body)?, l.rules().scheme, LICENSE_INCLUDES)?;
    let included = license_included(&ctx, &l, &opts.include, "").await?;
    let file_opts =
        crate::service::checkout::FileOptions { encrypt: opts.encrypt, alg: opts.alg, ttl: opts.ttl, included };
    let file = crate::service::checkout::license_file(&ctx.state, &ctx.account, l, file_opts).await?;
    let id = file.license.id;
    Ok(respond(
        &ctx,
        &method,
        FileKind::License,
        id,
        Issued { certificate: file.certificate, opts, issued: file.issued, expiry: file.expiry },
    ))
}

/// `GET|POST /machines/{id}/actions/check-out`.
pub async fn machine(ctx: Ctx, method: Method, Body(body): Body) -> ApiResult<Response> {
    let (m, l) = super::machines::load(&ctx).await?;
    let opts = resolve(options(&ctx, &method, body)?, l.rules().scheme, MACHINE_INCLUDES)?;
    let now = time::now_ms();
    machines::set_checked_out(ctx.db(), ctx.account_id(), m.id, now).await?;
    let expiry = opts.ttl.and_then(|t| time::add_duration(now, t));
    let account = ctx.account_id();
    let data = serde_json::to_value(super::machines::render(account, &m)).map_err(anyhow::Error::from)?;
    let mut included = Vec::new();
    for inc in &opts.include {
        match inc.as_str() {
            "license" => {
                included.push(serde_json::to_value(super::licenses::render(account, &l)).map_err(anyhow::Error::from)?)
            }
            "components" => {
                let list = components::list(ctx.db(), account, Some(m.id), None, Page { size: 100, number: 1 }).await?;
                for c in list.rows {
                    included.push(json!({ "id": c.id, "type": "components", "attributes": { "fingerprint": c.fingerprint, "name": c.name,
                        "metadata": crate::domain::metadata::render(&c.metadata.0), "created": time::iso(c.created_at), "updated": time::iso(c.updated_at) } }));
                }
            }
            "owner" | "group" => {
                let sub = vec![inc.clone()];
                let mut fake = l.clone();
                fake.owner_id = m.owner_id;
                fake.group_id = m.group_id;
                included.extend(license_included(&ctx, &fake, &sub, "").await?);
            }
            _ => {}
        }
    }
    included.extend(license_included(&ctx, &l, &opts.include, "license.").await?);
    let keys = ctx.state.signing_keys(&ctx.account)?;
    let key = opts.encrypt.then(|| license_file::file_key(&l.key, Some(&m.fingerprint)));
    let certificate = license_file::certificate(
        FileKind::Machine,
        &payload(data, included, now, expiry, opts.ttl),
        &keys,
        opts.alg,
        key,
    )?;
    Ok(respond(&ctx, &method, FileKind::Machine, m.id, Issued { certificate, opts, issued: now, expiry }))
}
