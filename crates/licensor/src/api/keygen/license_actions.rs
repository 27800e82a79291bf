//! License actions: validation (by key, by id, quick), suspend/reinstate, renew, revoke,
//! check-in, and usage counters.

use axum::http::StatusCode;
use axum::response::Response;
use serde::Deserialize;
use serde_json::Value;

use super::document;
use super::error::ApiResult;
use super::extract::{parse_meta, Body, Ctx};
use super::licenses::OwnerAction;
use crate::auth::Principal;
use crate::domain::license as license_rules;
use crate::domain::validation::{self, Facts, MachineFacts, Scope};
use crate::error::{Error, Source};
use crate::model::{ExpirationBasis, License};
use crate::store::licenses;
use crate::store::{components, entitlements, machines, processes, users};
use crate::time;

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct ValidateMeta {
    key: Option<String>,
    nonce: Option<i64>,
    scope: Option<Scope>,
    encrypted: Option<bool>,
    #[serde(rename = "legacyEncrypted")]
    legacy_encrypted: Option<bool>,
}

/// Gathers what validation needs, querying only what this license and scope make relevant:
/// an unscoped validation of a non-strict license costs no query beyond the license itself.
async fn gather(ctx: &Ctx, l: &License, scope: Option<&Scope>, quick: bool) -> Result<Facts, Error> {
    let rules = l.rules();
    let mut facts = Facts::default();
    let scoped = |f: fn(&Scope) -> bool| !quick && scope.is_some_and(f);
    let needs_machines = rules.strict
        || scoped(|s| {
            s.machine.is_some() || s.fingerprint.is_some() || s.fingerprints.is_some() || s.components.is_some()
        });
    if needs_machines && l.machines_count > 0 {
        let rows = machines::for_license(ctx.db(), ctx.account_id(), l.id).await?;
        let counts = if rules.strict && (l.max_processes().is_some() || rows.iter().any(|m| m.max_processes.is_some()))
        {
            processes::counts_for_license(ctx.db(), l.id).await?
        } else {
            Vec::new()
        };
        facts.processes_total = counts.iter().map(|(_, n)| n).sum();
        let component_fp = scope.filter(|s| !quick && s.components.is_some()).and_then(|s| s.fingerprint.clone());
        for m in rows {
            let components = match &component_fp {
                Some(fp) if *fp == m.fingerprint => components::fingerprints_for_machine(ctx.db(), m.id).await?,
                _ => Vec::new(),
            };
            facts.machines.push(MachineFacts {
                id: m.id.to_string(),
                fingerprint: m.fingerprint,
                owner_id: m.owner_id.map(|o| o.to_string()),
                cores: m.cores.unwrap_or(0),
                memory: m.memory.unwrap_or(0),
                disk: m.disk.unwrap_or(0),
                last_heartbeat: m.last_heartbeat_at,
                created_at: m.created_at,
                processes: counts.iter().find(|(id, _)| *id == m.id).map(|(_, n)| *n).unwrap_or(0),
                max_processes: m.max_processes,
                components,
            });
        }
    }
    if scoped(|s| s.entitlements.is_some()) {
        facts.entitlements = entitlements::codes_for_license(ctx.db(), ctx.account_id(), l.id, l.policy_id).await?;
    }
    if let Some(user) = scope.filter(|_| !quick).and_then(|s| s.user.as_ref()?.as_deref()) {
        if let Some(u) = users::find_by_id_or_email(ctx.db(), ctx.account_id(), user).await? {
            if licenses::has_user(ctx.db(), l, u.id).await? {
                facts.scope_user = Some(u.id.to_string());
            }
        }
    }
    Ok(facts)
}

/// Anyone may validate a key anonymously; a bearer only the licenses it may read.
async fn may_validate(ctx: &Ctx, p: Option<&Principal>, l: &License) -> Result<bool, Error> {
    Ok(match p {
        None => true,
        Some(p) => super::licenses::can_read(ctx, p, l).await?,
    })
}

/// The `meta` of a validation response.
#[derive(serde::Serialize)]
struct ValidationMeta<'a> {
    ts: String,
    valid: bool,
    detail: &'static str,
    code: validation::ValidationCode,
    #[serde(skip_serializing_if = "Option::is_none")]
    nonce: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    scope: Option<&'a Scope>,
}

/// Runs a validation and renders Keygen's response (always 200 once it ran).
async fn run(ctx: &Ctx, license: Option<License>, meta: &ValidateMeta, quick: bool) -> Result<Response, Error> {
    // Credentials are checked before the outcome, found or not: a bad token is a 401 even for
    // an unknown key.
    let principal = ctx.principal_unless_bad_license_key()?;
    let now = time::now_ms();
    let (outcome, data) = match license {
        None => (
            validation::Outcome { valid: false, detail: "does not exist", code: validation::ValidationCode::NotFound },
            None,
        ),
        Some(mut l) => {
            if !may_validate(ctx, principal, &l).await? {
                return Err(Error::access_denied());
            }
            let rules = l.rules();
            if !quick && l.expiry.is_none() && rules.expiration_basis == ExpirationBasis::FromFirstValidation {
                if let Some(expiry) = license_rules::expiry_from(rules, now) {
                    licenses::start_expiry_clock(ctx.db(), ctx.account_id(), l.id, expiry).await?;
                    l.expiry = Some(expiry);
                }
            }
            let facts = gather(ctx, &l, meta.scope.as_ref(), quick).await?;
            let outcome = validation::validate(&l, &facts, meta.scope.as_ref(), quick, now);
            // Quick validations count as validations too (Keygen records them).
            ctx.state.touch_validated(l.id, now);
            l.last_validated_at = Some(now);
            (outcome, Some(super::licenses::render(ctx.account_id(), &l)))
        }
    };
    let meta = ValidationMeta {
        ts: time::iso(now),
        valid: outcome.valid,
        detail: outcome.detail,
        code: outcome.code,
        nonce: meta.nonce,
        scope: meta.scope.as_ref(),
    };
    #[derive(serde::Serialize)]
    struct Doc<'a, D: serde::Serialize> {
        data: Option<D>,
        meta: ValidationMeta<'a>,
    }
    Ok(document::respond(StatusCode::OK, &Doc { data, meta }))
}

/// What Keygen's typed parameters refuse before a validation runs: null or blank strings (only
/// a `user` scope may be null) and, on `…/actions/validate`, the parameters of a key lookup.
fn check_values(body: &Value, by_key: bool) -> Result<(), Error> {
    let Some(meta) = body.get("meta").and_then(Value::as_object) else { return Ok(()) };
    let bad = |detail: &'static str, pointer: String| Error::bad_request(detail, Source::Pointer(pointer.into()));
    if !by_key {
        if let Some(k) = ["key", "encrypted", "legacyEncrypted"].into_iter().find(|k| meta.contains_key(*k)) {
            return Err(bad("unpermitted parameter", format!("/meta/{k}")));
        }
    }
    let string = |v: &Value, pointer: String, nullable: bool| match v {
        Value::Null if !nullable => Err(bad("cannot be null", pointer)),
        Value::String(s) if s.trim().is_empty() => Err(bad("cannot be blank", pointer)),
        _ => Ok(()),
    };
    if let Some(key) = meta.get("key") {
        string(key, "/meta/key".into(), false)?;
    }
    for (k, v) in meta.get("scope").and_then(Value::as_object).into_iter().flatten() {
        match (k.as_str(), v) {
            ("fingerprints" | "components" | "entitlements", Value::Array(items)) => {
                for (i, item) in items.iter().enumerate() {
                    string(item, format!("/meta/scope/{k}/{i}"), false)?;
                }
            }
            ("user", v) => string(v, "/meta/scope/user".into(), true)?,
            ("product" | "policy" | "machine" | "fingerprint" | "checksum" | "version", v) => {
                string(v, format!("/meta/scope/{k}"), false)?
            }
            // Anything else is refused as unpermitted when the scope is decoded.
            _ => {}
        }
    }
    Ok(())
}

/// `POST /licenses/actions/validate-key`: no credentials needed; any sent must be valid.
pub async fn validate_key(ctx: Ctx, Body(body): Body) -> ApiResult<Response> {
    check_values(&body, true)?;
    let meta: ValidateMeta = parse_meta(body)?;
    let key = meta.key.clone().ok_or_else(|| Error::bad_request("is missing", Source::Pointer("/meta/key".into())))?;
    if meta.encrypted.or(meta.legacy_encrypted).unwrap_or(false) {
        return Err(Error::bad_request(
            "legacy encrypted license keys are not supported",
            Source::Pointer("/meta/encrypted".into()),
        )
        .into());
    }
    let license = licenses::find_by_key(ctx.db(), ctx.account_id(), &key).await?;
    Ok(run(&ctx, license, &meta, false).await?)
}

/// `POST /licenses/{id}/actions/validate` (full) and `GET` (quick: no scopes, no events).
pub async fn validate(ctx: Ctx, method: axum::http::Method, Body(body): Body) -> ApiResult<Response> {
    let l = super::licenses::load(&ctx).await?;
    let quick = method == axum::http::Method::GET;
    let meta: ValidateMeta = if quick {
        ValidateMeta::default()
    } else {
        check_values(&body, false)?;
        parse_meta(body)?
    };
    Ok(run(&ctx, Some(l), &meta, quick).await?)
}

/// Writes what changed since `before` was read.
async fn save(ctx: &Ctx, before: &License, l: &mut License) -> Result<Response, Error> {
    l.updated_at = time::now_ms();
    licenses::update(ctx.db(), before, l).await?;
    Ok(document::ok(super::licenses::render(ctx.account_id(), l)))
}

pub async fn suspend(ctx: Ctx) -> ApiResult<Response> {
    let mut l = super::licenses::load_managed(&ctx).await?;
    let before = l.clone();
    if l.suspended {
        return Err(suspended_error("is already suspended").into());
    }
    l.suspended = true;
    Ok(save(&ctx, &before, &mut l).await?)
}

pub async fn reinstate(ctx: Ctx) -> ApiResult<Response> {
    let mut l = super::licenses::load_managed(&ctx).await?;
    let before = l.clone();
    if !l.suspended {
        return Err(suspended_error("is not suspended").into());
    }
    l.suspended = false;
    Ok(save(&ctx, &before, &mut l).await?)
}

fn suspended_error(detail: &'static str) -> Error {
    Error::Unprocessable { detail: detail.into(), location: Source::Pointer("/data/attributes/suspended".into()) }
}

pub async fn renew(ctx: Ctx) -> ApiResult<Response> {
    let mut l = super::licenses::load_for(&ctx, OwnerAction::Renew).await?;
    let before = l.clone();
    if l.rules().duration.is_none() {
        return Err(Error::unprocessable("cannot be renewed because the policy does not have a duration").into());
    }
    // A license whose clock has not started (a FROM_FIRST_* basis) has nothing to renew yet.
    if l.expiry.is_none() {
        return Err(Error::unprocessable("cannot be renewed because the license does not have an expiry").into());
    }
    let next = license_rules::renewed_expiry(l.rules(), l.expiry, time::now_ms())
        .ok_or_else(|| Error::unprocessable("cannot be renewed past the year 9999"))?;
    l.expiry = Some(next);
    Ok(save(&ctx, &before, &mut l).await?)
}

pub async fn revoke(ctx: Ctx) -> ApiResult<Response> {
    let l = super::licenses::load_for(&ctx, OwnerAction::Destroy).await?;
    licenses::delete(ctx.db(), ctx.account_id(), l.id).await?;
    Ok(document::no_content())
}

pub async fn check_in(ctx: Ctx) -> ApiResult<Response> {
    let mut l = super::licenses::load_for(&ctx, OwnerAction::CheckInOrUse).await?;
    let before = l.clone();
    if !l.rules().require_check_in {
        return Err(Error::unprocessable("cannot be checked in because the policy does not require it").into());
    }
    l.last_check_in_at = Some(time::now_ms());
    Ok(save(&ctx, &before, &mut l).await?)
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct UsageMeta {
    increment: Option<i64>,
    decrement: Option<i64>,
}

async fn change_uses(ctx: Ctx, body: Value, sign: i64) -> ApiResult<Response> {
    let l = if sign > 0 {
        super::licenses::load_for(&ctx, OwnerAction::CheckInOrUse).await?
    } else {
        super::licenses::load_managed(&ctx).await?
    };
    let meta: UsageMeta = parse_meta(body)?;
    let (given, name) = if sign > 0 { (meta.increment, "increment") } else { (meta.decrement, "decrement") };
    let n = given.unwrap_or(1);
    if n < 0 {
        return Err(
            Error::bad_request("must be a positive integer", Source::Pointer(format!("/meta/{name}").into())).into()
        );
    }
    let now = time::now_ms();
    // Keygen's uses limit is strict: no overage strategy stretches it.
    let max = l.max_uses();
    match licenses::add_uses(ctx.db(), ctx.account_id(), l.id, sign * n, max, now).await? {
        Some(_) => {}
        None if sign > 0 => {
            return Err(Error::Invalid {
                detail: format!(
                    "usage exceeds maximum allowed for license ({})",
                    l.max_uses().unwrap_or(i32::MAX as i64)
                )
                .into(),
                code: "USES_LIMIT_EXCEEDED".into(),
                location: Source::Pointer("/data/attributes/uses".into()),
            }
            .into())
        }
        None => {
            return Err(Error::Invalid {
                detail: "must be greater than or equal to 0".into(),
                code: "USES_INVALID".into(),
                location: Source::Pointer("/data/attributes/uses".into()),
            }
            .into())
        }
    }
    let rules = l.rules();
    if sign > 0 && l.expiry.is_none() && rules.expiration_basis == ExpirationBasis::FromFirstUse {
        if let Some(expiry) = license_rules::expiry_from(rules, now) {
            licenses::start_expiry_clock(ctx.db(), ctx.account_id(), l.id, expiry).await?;
        }
    }
    let l = licenses::find(ctx.db(), ctx.account_id(), l.id)
        .await?
        .ok_or_else(|| Error::not_found("license", l.id.to_string()))?;
    Ok(document::ok(super::licenses::render(ctx.account_id(), &l)))
}

pub async fn increment_usage(ctx: Ctx, Body(body): Body) -> ApiResult<Response> {
    change_uses(ctx, body, 1).await
}

pub async fn decrement_usage(ctx: Ctx, Body(body): Body) -> ApiResult<Response> {
    change_uses(ctx, body, -1).await
}

pub async fn reset_usage(ctx: Ctx) -> ApiResult<Response> {
    let l = super::licenses::load_managed(&ctx).await?;
    licenses::reset_uses(ctx.db(), ctx.account_id(), l.id, time::now_ms()).await?;
    let l = licenses::find(ctx.db(), ctx.account_id(), l.id)
        .await?
        .ok_or_else(|| Error::not_found("license", l.id.to_string()))?;
    Ok(document::ok(super::licenses::render(ctx.account_id(), &l)))
}
