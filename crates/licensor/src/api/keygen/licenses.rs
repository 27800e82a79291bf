//! Licenses: CRUD and relationships (policy, product, owner, group, users, entitlements,
//! machines, tokens). Actions live in `license_actions`.

use axum::http::StatusCode;
use axum::response::Response;
use serde::Deserialize;
use serde_json::{json, Value};
use sqlx::types::Json;
use uuid::Uuid;

use super::document;
use super::error::ApiResult;
use super::extract::{nullable, parse_data, parse_linkages, present, rel_uuid, Body, Ctx, RelInput};
use crate::domain::{license as rules, metadata};
use crate::error::{Error, Source};
use crate::model::{License, TransferStrategy};
use crate::service;
use crate::service::access::{self, LicenseAction};
use crate::service::licenses::NewLicense;
use crate::store::entitlements::{self, Scope};
use crate::store::licenses::{self, LicenseFilter};
use crate::store::{groups, policies, users};
use crate::time;

pub use crate::wire::licenses::{render, status, LicenseAttributes};

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct LicenseInput {
    #[serde(default, deserialize_with = "nullable")]
    name: Option<Option<String>>,
    key: Option<String>,
    #[serde(default, deserialize_with = "nullable")]
    expiry: Option<Option<Value>>,
    #[serde(default, deserialize_with = "present")]
    protected: Option<bool>,
    #[serde(default, deserialize_with = "present")]
    suspended: Option<bool>,
    #[serde(default, deserialize_with = "nullable")]
    max_machines: Option<Option<i64>>,
    #[serde(default, deserialize_with = "nullable")]
    max_processes: Option<Option<i64>>,
    #[serde(default, deserialize_with = "nullable")]
    max_users: Option<Option<i64>>,
    #[serde(default, deserialize_with = "nullable")]
    max_cores: Option<Option<i64>>,
    #[serde(default, deserialize_with = "nullable")]
    max_memory: Option<Option<i64>>,
    #[serde(default, deserialize_with = "nullable")]
    max_disk: Option<Option<i64>>,
    #[serde(default, deserialize_with = "nullable")]
    max_uses: Option<Option<i64>>,
    metadata: Option<Value>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct LicenseRels {
    policy: Option<RelInput>,
    owner: Option<RelInput>,
    user: Option<RelInput>,
    group: Option<RelInput>,
}

/// `expiry` as Keygen takes it: an ISO 8601 time, or UNIX seconds as a number or a string of
/// digits; `null` or a blank value clears it.
fn parse_expiry(e: Option<Option<Value>>) -> Result<Option<Option<i64>>, Error> {
    let invalid = || Error::invalid_attr("expiry", "must be a valid ISO 8601 timestamp", "EXPIRY_INVALID");
    let uncoercible = |what: &str| {
        Error::bad_request(
            format!("failed to coerce {what} to time"),
            Source::Pointer("/data/attributes/expiry".into()),
        )
    };
    let from_seconds = |secs: u64| {
        i64::try_from(secs)
            .ok()
            .and_then(|s| s.checked_mul(time::SECOND))
            .filter(|ms| *ms <= time::MAX_MS)
            .map(|ms| Some(Some(ms)))
            .ok_or_else(invalid)
    };
    match e {
        None => Ok(None),
        Some(None) => Ok(Some(None)),
        Some(Some(Value::Number(n))) => match n.as_u64() {
            Some(secs) => from_seconds(secs),
            None if n.is_f64() => Err(uncoercible("float")),
            None => Err(uncoercible("integer")),
        },
        Some(Some(Value::String(s))) => {
            let s = s.trim();
            if s.is_empty() {
                Ok(Some(None))
            } else if s.bytes().all(|b| b.is_ascii_digit()) {
                from_seconds(s.parse().map_err(|_| invalid())?)
            } else {
                time::parse_iso(s).map(|t| Some(Some(t))).ok_or_else(invalid)
            }
        }
        Some(Some(Value::Array(a))) if a.is_empty() => Ok(Some(None)),
        Some(Some(Value::Object(o))) if o.is_empty() => Ok(Some(None)),
        Some(Some(Value::Bool(_))) => Err(uncoercible("boolean")),
        Some(Some(Value::Array(_))) => Err(uncoercible("array")),
        Some(Some(_)) => Err(uncoercible("hash")),
    }
}

/// The owner relationship (`owner`, or its older alias `user`), checked to exist.
async fn resolve_owner(ctx: &Ctx, rels: &LicenseRels) -> Result<Option<Option<crate::model::User>>, Error> {
    let (rel, name) = if rels.owner.is_some() { (&rels.owner, "owner") } else { (&rels.user, "user") };
    match rel_uuid(rel, name)? {
        None => Ok(None),
        Some(None) => Ok(Some(None)),
        Some(Some(id)) => {
            let u = users::find(ctx.db(), ctx.account_id(), id)
                .await?
                .ok_or_else(|| Error::invalid_rel(name, "must exist", format!("{}_NOT_FOUND", name.to_uppercase())))?;
            Ok(Some(Some(u)))
        }
    }
}

async fn resolve_group(ctx: &Ctx, rel: &Option<RelInput>) -> Result<Option<Option<Uuid>>, Error> {
    let g = rel_uuid(rel, "group")?;
    if let Some(Some(id)) = g {
        groups::find(ctx.db(), ctx.account_id(), id)
            .await?
            .ok_or_else(|| Error::invalid_rel("group", "must exist", "GROUP_NOT_FOUND"))?;
    }
    Ok(g)
}

pub async fn create(ctx: Ctx, Body(body): Body) -> ApiResult<Response> {
    let principal = ctx.principal()?.clone();
    let data = parse_data::<LicenseInput, LicenseRels>(body, "licenses")?;
    let policy_id = rel_uuid(&data.relationships.policy, "policy")?
        .flatten()
        .ok_or_else(|| Error::bad_request("is missing", Source::Pointer("/data/relationships/policy".into())))?;
    let policy = policies::find(ctx.db(), ctx.account_id(), policy_id)
        .await?
        .ok_or_else(|| Error::invalid_rel("policy", "must exist", "POLICY_NOT_FOUND"))?;
    let owner = resolve_owner(&ctx, &data.relationships).await?.flatten();
    if !access::may_create_license(&principal, &policy, owner.as_ref().map(|o| o.id)) {
        return Err(Error::access_denied().into());
    }
    let operator = access::is_operator(&principal);
    let a = data.attributes;
    if !operator {
        // A user licensing themselves chooses a name, key and metadata; the limits, expiry,
        // protection and group are the vendor's, as in Keygen.
        let unpermitted = [
            ("attributes/protected", a.protected.is_some()),
            ("attributes/expiry", a.expiry.is_some()),
            ("attributes/suspended", a.suspended.is_some()),
            ("attributes/maxMachines", a.max_machines.is_some()),
            ("attributes/maxCores", a.max_cores.is_some()),
            ("attributes/maxMemory", a.max_memory.is_some()),
            ("attributes/maxDisk", a.max_disk.is_some()),
            ("attributes/maxUses", a.max_uses.is_some()),
            ("attributes/maxProcesses", a.max_processes.is_some()),
            ("attributes/maxUsers", a.max_users.is_some()),
            ("relationships/group", data.relationships.group.is_some()),
        ];
        if let Some((what, _)) = unpermitted.into_iter().find(|(_, given)| *given) {
            return Err(
                Error::bad_request("unpermitted parameter", Source::Pointer(format!("/data/{what}").into())).into()
            );
        }
    }
    let id = match &data.id {
        Some(id) if operator => Some(
            Uuid::parse_str(id)
                .map_err(|_| Error::bad_request("must be a valid UUID", Source::Pointer("/data/id".into())))?,
        ),
        Some(_) => return Err(Error::bad_request("unpermitted parameter", Source::Pointer("/data/id".into())).into()),
        None => None,
    };
    let new = NewLicense {
        id,
        name: a.name.flatten(),
        key: a.key,
        // An explicit null is no choice at all: the policy's duration still applies, as in Keygen.
        expiry: parse_expiry(a.expiry)?.flatten().map(Some),
        owner: owner.as_ref().map(|o| o.id),
        owner_email: owner.as_ref().map(|o| o.email.clone()),
        group: resolve_group(&ctx, &data.relationships.group).await?.flatten(),
        protected: a.protected,
        suspended: a.suspended.unwrap_or(false),
        max_machines: a.max_machines.flatten(),
        max_processes: a.max_processes.flatten(),
        max_users: a.max_users.flatten(),
        max_cores: a.max_cores.flatten(),
        max_uses: a.max_uses.flatten(),
        max_memory: a.max_memory.flatten(),
        max_disk: a.max_disk.flatten(),
        metadata: a.metadata,
    };
    let row = service::licenses::issue(ctx.db(), &ctx.account, &ctx.state.master, &policy, new, &principal).await?;
    Ok(document::created(render(ctx.account_id(), &row)))
}

/// The license named by the `id` path parameter (UUID or key), for a caller who may read it.
pub async fn load(ctx: &Ctx) -> Result<License, Error> {
    service::licenses::find(ctx.db(), ctx.principal()?, ctx.account_id(), ctx.param("id")).await
}

/// [`load`], for a caller who may also do `action` to it.
pub async fn load_for(ctx: &Ctx, action: LicenseAction) -> Result<License, Error> {
    service::licenses::find_for(ctx.db(), ctx.principal()?, ctx.account_id(), ctx.param("id"), action).await
}

/// [`load`], for a caller who may manage it: admins and its product.
pub async fn load_managed(ctx: &Ctx) -> Result<License, Error> {
    load_for(ctx, LicenseAction::Manage).await
}

pub async fn show(ctx: Ctx) -> ApiResult<Response> {
    let l = load(&ctx).await?;
    Ok(document::ok(render(ctx.account_id(), &l)))
}

pub async fn list(ctx: Ctx) -> ApiResult<Response> {
    let p = ctx.principal()?;
    let params = ctx.list_params()?;
    let now = time::now_ms();
    let mut f = LicenseFilter {
        product: params.uuid_filter("product"),
        policy: params.uuid_filter("policy"),
        owner: params.uuid_filter("owner"),
        user: params.uuid_filter("user"),
        group: params.uuid_filter("group"),
        suspended: params.bool_filter("suspended"),
        expired_before: params.bool_filter("expired").filter(|e| *e).map(|_| now),
        metadata: params.metadata_filters(),
        ascending: params.ascending(),
        ..Default::default()
    };
    access::scope_license_list(p, &mut f);
    if let Some(s) = params.filter("status") {
        let (soon, stale) = rules::status_thresholds(now);
        f.status = Some((s.to_ascii_uppercase(), [now, soon, stale]));
    }
    let listing = licenses::list(ctx.db(), ctx.account_id(), &f, params.page).await?;
    let account = ctx.account_id();
    Ok(params.document(listing, |l| render(account, &l)))
}

pub async fn update(ctx: Ctx, Body(body): Body) -> ApiResult<Response> {
    let mut l = load_managed(&ctx).await?;
    let before = l.clone();
    let data = parse_data::<LicenseInput, LicenseRels>(body, "licenses")?;
    if data.relationships.policy.is_some()
        || data.relationships.owner.is_some()
        || data.relationships.user.is_some()
        || data.relationships.group.is_some()
    {
        return Err(Error::bad_request(
            "is unpermitted (use the relationship endpoints)",
            Source::Pointer("/data/relationships".into()),
        )
        .into());
    }
    let a = data.attributes;
    if a.key.is_some() {
        return Err(Error::bad_request(
            "is unpermitted (license keys are immutable)",
            Source::Pointer("/data/attributes/key".into()),
        )
        .into());
    }
    if let Some(n) = a.name {
        l.name = n;
    }
    if let Some(e) = parse_expiry(a.expiry)? {
        l.expiry = e;
    }
    if let Some(p) = a.protected {
        l.protected = Some(p);
    }
    if let Some(s) = a.suspended {
        l.suspended = s;
    }
    let floating = l.rules().floating;
    for (attr, input, slot) in [
        ("maxMachines", a.max_machines, &mut l.max_machines),
        ("maxProcesses", a.max_processes, &mut l.max_processes),
        ("maxUsers", a.max_users, &mut l.max_users),
        ("maxCores", a.max_cores, &mut l.max_cores),
        ("maxMemory", a.max_memory, &mut l.max_memory),
        ("maxDisk", a.max_disk, &mut l.max_disk),
        ("maxUses", a.max_uses, &mut l.max_uses),
    ] {
        if let Some(v) = input {
            if let Some(v) = v {
                rules::check_limit(attr, v, floating)?;
            }
            *slot = v;
        }
    }
    if let Some(m) = a.metadata {
        l.metadata = Json(metadata::accept(m)?);
    }
    l.updated_at = time::now_ms();
    licenses::update(ctx.db(), &before, &l, &[crate::events::Raised::license("license.updated", &l)]).await?;
    Ok(document::ok(render(ctx.account_id(), &l)))
}

pub async fn delete(ctx: Ctx) -> ApiResult<Response> {
    let l = load_for(&ctx, LicenseAction::Destroy).await?;
    licenses::delete(ctx.db(), ctx.account_id(), l.id, &[crate::events::Raised::license("license.deleted", &l)])
        .await?;
    Ok(document::no_content())
}

// ---- relationships -------------------------------------------------------------------------

pub async fn show_policy(ctx: Ctx) -> ApiResult<Response> {
    let l = load(&ctx).await?;
    ctx.principal()?.reads_catalog()?;
    let p = policies::find(ctx.db(), ctx.account_id(), l.policy_id)
        .await?
        .ok_or_else(|| Error::not_found("policy", l.policy_id.to_string()))?;
    Ok(document::ok(super::policies::render(ctx.account_id(), &p)))
}

pub async fn show_product(ctx: Ctx) -> ApiResult<Response> {
    let l = load(&ctx).await?;
    product_of(&ctx, &l).await
}

/// The product document of a license (for every resource whose `product` link goes through it).
pub(super) async fn product_of(ctx: &Ctx, l: &License) -> ApiResult<Response> {
    ctx.principal()?.reads_catalog()?;
    let p = crate::store::products::find(ctx.db(), ctx.account_id(), &l.product_id.to_string())
        .await?
        .ok_or_else(|| Error::not_found("product", l.product_id.to_string()))?;
    Ok(document::ok(super::products::render(ctx.account_id(), &p)))
}

pub(super) fn null_data() -> Response {
    document::respond(StatusCode::OK, &json!({ "data": null }))
}

pub async fn show_owner(ctx: Ctx) -> ApiResult<Response> {
    let l = load(&ctx).await?;
    ctx.principal()?.reads_catalog()?;
    Ok(match l.owner_id {
        Some(id) => match users::find(ctx.db(), ctx.account_id(), id).await? {
            Some(u) => document::ok(super::users::render(ctx.account_id(), &u)),
            None => null_data(),
        },
        None => null_data(),
    })
}

pub async fn show_group(ctx: Ctx) -> ApiResult<Response> {
    let l = load(&ctx).await?;
    Ok(match l.group_id {
        Some(id) => match groups::find(ctx.db(), ctx.account_id(), id).await? {
            Some(g) => document::ok(super::groups::render(ctx.account_id(), &g)),
            None => null_data(),
        },
        None => null_data(),
    })
}

/// A to-one relationship update body: `{"data": {"type", "id"}}` or `{"data": null}`.
pub(super) fn parse_to_one(body: Value, name: &str) -> Result<Option<Uuid>, Error> {
    let rel: RelInput = super::extract::decode(body)?;
    Ok(rel_uuid(&Some(rel), name)?.flatten())
}

/// `PUT /licenses/{id}/policy`: moves the license to another policy. Admins may move it to
/// any policy (the license then belongs to that policy's product); its product only between
/// its own policies; its owner only between unprotected policies, the license unprotected.
pub async fn change_policy(ctx: Ctx, Body(body): Body) -> ApiResult<Response> {
    let mut l = load(&ctx).await?;
    let before = l.clone();
    let p = ctx.principal()?;
    if !access::may_transfer_license(p, &l, None) {
        return Err(Error::access_denied().into());
    }
    let id = parse_to_one(body, "policy")?
        .ok_or_else(|| Error::bad_request("is missing", Source::Pointer("/data".into())))?;
    let new = policies::find(ctx.db(), ctx.account_id(), id)
        .await?
        .ok_or_else(|| Error::invalid_rel("policy", "must exist", "POLICY_NOT_FOUND"))?;
    if !access::may_transfer_license(p, &l, Some(&new)) {
        return Err(Error::access_denied().into());
    }
    let old = l.rules().clone();
    let next = &new.rules.0;
    if let Some(detail) = crate::domain::policy::transfer_refusal(&old, next) {
        return Err(Error::invalid_rel("policy", detail, "POLICY_NOT_COMPATIBLE").into());
    }
    let now = time::now_ms();
    if next.transfer_strategy == TransferStrategy::ResetExpiry {
        l.expiry = rules::expiry_from(next, now);
    }
    l.policy_id = new.id;
    l.product_id = new.product_id;
    l.updated_at = now;
    licenses::update(ctx.db(), &before, &l, &[crate::events::Raised::license("license.policy.updated", &l)]).await?;
    let l = licenses::find(ctx.db(), ctx.account_id(), l.id)
        .await?
        .ok_or_else(|| Error::not_found("license", l.id.to_string()))?;
    Ok(document::ok(render(ctx.account_id(), &l)))
}

pub async fn change_owner(ctx: Ctx, Body(body): Body) -> ApiResult<Response> {
    let l = load_managed(&ctx).await?;
    let owner = parse_to_one(body, "owner")?;
    let l = service::licenses::set_owner(ctx.db(), &l, owner).await?;
    Ok(document::ok(render(ctx.account_id(), &l)))
}

pub async fn change_group(ctx: Ctx, Body(body): Body) -> ApiResult<Response> {
    let mut l = load_managed(&ctx).await?;
    let before = l.clone();
    let group = parse_to_one(body, "group")?;
    if let Some(id) = group {
        let g = groups::find(ctx.db(), ctx.account_id(), id)
            .await?
            .ok_or_else(|| Error::invalid_rel("group", "must exist", "GROUP_NOT_FOUND"))?;
        // Checked, not locked: moving licenses between groups is an administrative act.
        if let Some(max) = g.max_licenses.filter(|_| l.group_id != Some(id)) {
            if licenses::count_in_group(ctx.db(), id).await? + 1 > max {
                return Err(Error::invalid_rel(
                    "group",
                    format!("license count has exceeded maximum allowed by current group ({max})"),
                    "GROUP_LICENSE_LIMIT_EXCEEDED",
                )
                .into());
            }
        }
    }
    l.group_id = group;
    l.updated_at = time::now_ms();
    licenses::update(ctx.db(), &before, &l, &[crate::events::Raised::license("license.group.updated", &l)]).await?;
    Ok(document::ok(render(ctx.account_id(), &l)))
}

pub async fn list_users(ctx: Ctx) -> ApiResult<Response> {
    let l = load(&ctx).await?;
    let params = ctx.list_params()?;
    let mut ids = licenses::user_ids(ctx.db(), ctx.account_id(), l.id).await?;
    // The owner is one of the license's users, as Keygen lists them.
    if let Some(owner) = l.owner_id.filter(|o| !ids.contains(o)) {
        ids.push(owner);
    }
    let mut rows = Vec::new();
    for id in ids {
        if let Some(u) = users::find(ctx.db(), ctx.account_id(), id).await? {
            rows.push(u);
        }
    }
    rows.sort_by_key(|u| std::cmp::Reverse(u.created_at));
    let total = rows.len() as i64;
    let rows = rows.into_iter().skip(params.page.offset() as usize).take(params.page.limit() as usize).collect();
    let account = ctx.account_id();
    Ok(params.document(crate::model::Listing { rows, total }, |u| super::users::render(account, &u)))
}

async fn resolve_users(ctx: &Ctx, ids: Vec<String>) -> Result<Vec<Uuid>, Error> {
    let mut out = Vec::new();
    for id in ids {
        let u = users::find_by_id_or_email(ctx.db(), ctx.account_id(), &id)
            .await?
            .ok_or_else(|| Error::invalid("user must exist", "USER_NOT_FOUND"))?;
        out.push(u.id);
    }
    Ok(out)
}

pub async fn attach_users(ctx: Ctx, Body(body): Body) -> ApiResult<Response> {
    let l = load_managed(&ctx).await?;
    let ids = resolve_users(&ctx, parse_linkages(body, "users")?).await?;
    service::licenses::attach_users(ctx.db(), &l, &ids).await?;
    let mut data = Vec::new();
    for id in ids {
        if let Some(u) = users::find(ctx.db(), ctx.account_id(), id).await? {
            data.push(super::users::render(ctx.account_id(), &u));
        }
    }
    Ok(document::respond(StatusCode::OK, &json!({ "data": data })))
}

pub async fn detach_users(ctx: Ctx, Body(body): Body) -> ApiResult<Response> {
    let l = load_managed(&ctx).await?;
    let ids = resolve_users(&ctx, parse_linkages(body, "users")?).await?;
    service::licenses::detach_users(ctx.db(), &l, &ids).await?;
    Ok(document::no_content())
}

pub async fn list_entitlements(ctx: Ctx) -> ApiResult<Response> {
    let l = load(&ctx).await?;
    let params = ctx.list_params()?;
    let listing = entitlements::list(ctx.db(), ctx.account_id(), Scope::License(l.id), params.page).await?;
    let account = ctx.account_id();
    Ok(params.document(listing, |e| super::entitlements::render(account, &e)))
}

pub async fn attach_entitlements(ctx: Ctx, Body(body): Body) -> ApiResult<Response> {
    let l = load_managed(&ctx).await?;
    let ids = super::policies::resolve_entitlements(&ctx, parse_linkages(body, "entitlements")?).await?;
    let attached = service::licenses::attach_entitlements(ctx.db(), &l, &ids).await?;
    let account = ctx.account_id();
    let data: Vec<Value> = attached
        .iter()
        .map(|(e, at)| {
            crate::wire::entitlements::render_join(
                account,
                crate::wire::entitlements::JoinOwner::License(l.id),
                *e,
                *at,
            )
        })
        .collect();
    Ok(document::respond(StatusCode::OK, &json!({ "data": data })))
}

pub async fn detach_entitlements(ctx: Ctx, Body(body): Body) -> ApiResult<Response> {
    let l = load_managed(&ctx).await?;
    let ids = super::policies::resolve_entitlements(&ctx, parse_linkages(body, "entitlements")?).await?;
    service::licenses::detach_entitlements(ctx.db(), &l, &ids).await?;
    Ok(document::no_content())
}

pub async fn create_token(ctx: Ctx, Body(body): Body) -> ApiResult<Response> {
    let l = load_managed(&ctx).await?;
    super::tokens::issue_for(&ctx, "license", l.id, "license", body).await
}

pub async fn list_tokens(ctx: Ctx) -> ApiResult<Response> {
    let l = load_managed(&ctx).await?;
    super::tokens::list_for(&ctx, l.id).await
}
