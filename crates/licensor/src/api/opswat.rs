//! Air-gapped activation in the style of OPSWAT's scripted activation (docs/opswat.md):
//! `GET /activation?key=&deployment=&quantity=` and `GET /deactivation?key=&deployment=`.
//!
//! Clients must read the body, not the status: refusals are `200` with a custom reason phrase
//! (`200 Invalid parameter`, `200 Activation failed`, `200 No active license found`) and a
//! one-line YAML body. A deployment is a machine whose fingerprint is the deployment ID, so the
//! license's machine limit, uniqueness strategy and suspension apply exactly as on the Keygen
//! surface. The key alone names the account; `/v1/accounts/{account}/opswat/…` pins it.

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::rejection::PathRejection;
use axum::extract::{Path, RawQuery, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use hyper::ext::ReasonPhrase;
use licensor_client::opswat::{self, yaml_quote, Payload};
use serde_json::json;

use crate::domain::projection;
use crate::domain::validation::{self, ValidationCode};
use crate::error::Error;
use crate::model::{Account, AuthenticationStrategy, Json, License, Machine};
use crate::service;
use crate::service::machines::{ActivateError, NewMachine, Refusal};
use crate::state::AppState;
use crate::store::licenses;
use crate::store::machines;
use crate::store::{entitlements, groups, products};
use crate::time;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/activation", get(activation))
        .route("/deactivation", get(deactivation))
        .route("/v1/accounts/{account}/opswat/activation", get(activation_in))
        .route("/v1/accounts/{account}/opswat/deactivation", get(deactivation_in))
}

const CHECK: &str = " Check if you typed it correctly or open a support ticket if problem persist.";

/// Every answer the activation server gives.
#[derive(Debug, PartialEq, Eq)]
enum Answer {
    File(String),
    Deactivated,
    Missing(&'static str),
    InvalidParameter {
        verb: &'static str,
        what: &'static str,
    },
    Failed(String),
    NoActiveLicense,
    /// Seconds to wait.
    TooManyRequests(i64),
    /// A server-side failure, with its cause for the request's log line.
    Internal(String),
}

fn reply(status: StatusCode, reason: Option<&'static [u8]>, content_type: &'static str, body: String) -> Response {
    let mut r = (status, body).into_response();
    r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    if let Some(reason) = reason {
        r.extensions_mut().insert(ReasonPhrase::from_static(reason));
    }
    r
}

impl IntoResponse for Answer {
    fn into_response(self) -> Response {
        const YAML: &str = "application/x-yaml";
        let error = |msg: &str| format!("error: {}", yaml_quote(msg));
        match self {
            Answer::File(text) => {
                let mut r = reply(StatusCode::OK, None, YAML, text);
                r.headers_mut().insert(
                    header::CONTENT_DISPOSITION,
                    HeaderValue::from_static("attachment; filename=\"license.yml\""),
                );
                r
            }
            Answer::Deactivated => reply(StatusCode::OK, None, YAML, "result: ok".into()),
            Answer::Missing(text) => reply(StatusCode::BAD_REQUEST, None, "text/plain; charset=utf-8", text.into()),
            Answer::InvalidParameter { verb, what } => reply(
                StatusCode::OK,
                Some(b"Invalid parameter"),
                YAML,
                error(&format!("Could not {verb} your product because the {what} you provided is invalid.{CHECK}")),
            ),
            Answer::Failed(msg) => reply(StatusCode::OK, Some(b"Activation failed"), YAML, error(&msg)),
            Answer::NoActiveLicense => reply(
                StatusCode::OK,
                Some(b"No active license found"),
                YAML,
                error("Could not found any active license with the given parameters"),
            ),
            Answer::TooManyRequests(secs) => {
                let mut r = reply(
                    StatusCode::TOO_MANY_REQUESTS,
                    None,
                    YAML,
                    error(&format!("Too many requests. Please wait {secs} seconds before trying again.")),
                );
                crate::api::retry_after(&mut r, secs);
                r
            }
            Answer::Internal(cause) => {
                let id = crate::telemetry::request_id().unwrap_or_default();
                let mut r = reply(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    None,
                    YAML,
                    error(&format!("Internal server error ({id}). Please contact support")),
                );
                r.extensions_mut().insert(crate::api::Fault(cause));
                r
            }
        }
    }
}

/// Query parameters; an empty value counts as missing. The first occurrence wins.
fn params(query: Option<String>) -> HashMap<String, String> {
    let mut out = HashMap::new();
    // Not form-encoded: no parameter, so the missing-parameter answer.
    let pairs = crate::api::query_pairs(query.as_deref()).unwrap_or_default();
    for (k, v) in pairs {
        if !v.is_empty() {
            out.entry(k).or_insert(v);
        }
    }
    out
}

/// `1..=2^31-1`, decimal digits only.
fn parse_quantity(s: &str) -> Option<i64> {
    if s.is_empty() || s.len() > 10 || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse::<i64>().ok().filter(|q| (1..=i64::from(i32::MAX)).contains(q))
}

/// The license `key` names: in `account` when the path names one; else in the default account
/// (`--account`, or the only account) when there is one; else in any account, the oldest
/// license winning. Keys are unique per account only, so without an account a tenant could
/// otherwise hold another tenant's custom key: with this order a key issued later in another
/// account never takes over, or breaks, one that already answers (docs/opswat.md).
async fn find_license(state: &AppState, account: Option<&Account>, key: &str) -> Result<Option<License>, Error> {
    // Keys were allowed up to 16 KiB before the 2 KiB limit on new ones: still find those. No
    // key holds a NUL (PostgreSQL could not even look one up).
    if key.len() > 16 * 1024 || key.contains('\0') {
        return Ok(None);
    }
    if let Some(a) = account {
        return licenses::find_by_key(&state.db, a.id, key).await;
    }
    if let Some(a) = state.default_account().await? {
        return licenses::find_by_key(&state.db, a.id, key).await;
    }
    let mut found = licenses::find_any_by_key(&state.db, key).await?;
    if found.len() > 1 {
        tracing::warn!(
            account = %found[0].account_id,
            "an activation key is held in several accounts; the oldest license answers /activation"
        );
    }
    Ok(if found.is_empty() { None } else { Some(found.swap_remove(0)) })
}

async fn activation(State(state): State<AppState>, RawQuery(q): RawQuery) -> Answer {
    answer(activate(&state, None, params(q)).await)
}

async fn deactivation(State(state): State<AppState>, RawQuery(q): RawQuery) -> Answer {
    answer(deactivate(&state, None, params(q)).await)
}

/// The account named by the alias path; a segment that is not valid UTF-8 names no account.
async fn alias_account(
    state: &AppState,
    account: Result<Path<String>, PathRejection>,
) -> Result<Option<Arc<Account>>, Error> {
    match account {
        Ok(Path(a)) => state.account(&a).await,
        Err(_) => Ok(None),
    }
}

async fn activation_in(
    State(state): State<AppState>,
    account: Result<Path<String>, PathRejection>,
    RawQuery(q): RawQuery,
) -> Answer {
    let p = params(q);
    match alias_account(&state, account).await {
        // An unknown account cannot hold the key: the key is what is invalid.
        Ok(None) if has(&p, &["key", "deployment", "quantity"]) => invalid("activate", "Activation Key"),
        Ok(None) => Answer::Missing(MISSING_ACTIVATION),
        Ok(Some(a)) => answer(activate(&state, Some(&a), p).await),
        Err(e) => answer(Err(e)),
    }
}

async fn deactivation_in(
    State(state): State<AppState>,
    account: Result<Path<String>, PathRejection>,
    RawQuery(q): RawQuery,
) -> Answer {
    let p = params(q);
    match alias_account(&state, account).await {
        Ok(None) if has(&p, &["key", "deployment"]) => invalid("deactivate", "Activation Key"),
        Ok(None) => Answer::Missing(MISSING_DEACTIVATION),
        Ok(Some(a)) => answer(deactivate(&state, Some(&a), p).await),
        Err(e) => answer(Err(e)),
    }
}

/// An error raised before the activation server looked at the request (a rate limit), in its
/// format.
pub fn render(e: Error) -> Response {
    answer(Err(e)).into_response()
}

fn answer(r: Result<Answer, Error>) -> Answer {
    r.unwrap_or_else(|e| match e {
        Error::TooManyRequests { retry_after, .. } => Answer::TooManyRequests(retry_after),
        e => Answer::Internal(e.cause()),
    })
}

fn has(p: &HashMap<String, String>, names: &[&str]) -> bool {
    names.iter().all(|n| p.contains_key(*n))
}

fn invalid(verb: &'static str, what: &'static str) -> Answer {
    Answer::InvalidParameter { verb, what }
}

const MISSING_ACTIVATION: &str = "Missing key, quantity or deployment";
const MISSING_DEACTIVATION: &str = "Missing key or deployment";

/// Why a real key cannot activate now, in words for the person running the script. The same
/// gate as everywhere: what a validation says of the license itself (banned, suspended,
/// expired under its expiration strategy, overdue for check-in), and a policy that takes no
/// license credential at all (`authenticationStrategy: NONE`) takes no activation key either.
fn refusal(l: &License, now: i64) -> Option<String> {
    let because = "Could not activate your product because the Activation Key you provided";
    let standing = validation::standing(l, now);
    if !standing.valid {
        return Some(match standing.code {
            ValidationCode::Banned => format!("{because} belongs to a banned user."),
            ValidationCode::Suspended => format!("{because} has been suspended."),
            ValidationCode::Overdue => format!("{because} is overdue for check-in."),
            _ => format!("{because} has expired."),
        });
    }
    if l.rules().authentication_strategy == AuthenticationStrategy::None {
        return Some(format!("{because} cannot be used for activation."));
    }
    None
}

/// Marks (in its metadata) a machine that `/activation` created, with the deployment's node
/// quantity; `/deactivation` removes only machines so marked.
const QUANTITY: &str = "node_quantity";

async fn activate(state: &AppState, account: Option<&Account>, p: HashMap<String, String>) -> Result<Answer, Error> {
    let (Some(key), Some(deployment), Some(quantity)) = (p.get("key"), p.get("deployment"), p.get("quantity")) else {
        return Ok(Answer::Missing(MISSING_ACTIVATION));
    };
    let Some(license) = find_license(state, account, key).await? else {
        return Ok(invalid("activate", "Activation Key"));
    };
    if !opswat::is_valid_deployment(deployment) {
        return Ok(invalid("activate", "Deployment ID"));
    }
    let Some(quantity) = parse_quantity(quantity) else {
        return Ok(invalid("activate", "quantity"));
    };
    let now = time::now_ms();
    if let Some(msg) = refusal(&license, now) {
        return Ok(Answer::Failed(msg));
    }
    let because = "Could not activate your product because";
    // The file signs `quantity` as the deployment's node count: no more than the key's seats.
    if let Some(max) = license.max_machines().filter(|max| quantity > *max) {
        return Ok(Answer::Failed(format!(
            "{because} the quantity you provided is more than the Activation Key allows ({max})."
        )));
    }
    let machine = match machines::find_on_license(&state.db, license.account_id, license.id, deployment).await? {
        Some(m) => reactivate(state, m, quantity, now).await?,
        None => {
            let mut m = Machine::new(&license, crate::model::fleet_id(), deployment.clone(), now);
            set_quantity(&mut m, quantity, now);
            // The key is the credential: the license acts for itself, as with Keygen's license
            // key authentication.
            let p = crate::auth::license_principal(license.clone());
            let new = NewMachine { machine: m, components: Vec::new(), chosen_id: false };
            let activated = match service::machines::admit(&state.db, &p, &license, None, None).await {
                Ok(admission) => service::machines::activate(state, &p, &license, admission, new).await,
                Err(e) => Err(e),
            };
            match activated {
                Ok(m) => {
                    state.metrics.activations.inc(&["opswat"]);
                    m
                }
                Err(ActivateError::Refused(Refusal::FingerprintTaken(_))) => {
                    // A concurrent activation of this deployment on this license won the race:
                    // use its machine. Anywhere else, the deployment belongs to another key.
                    match machines::find_on_license(&state.db, license.account_id, license.id, deployment).await? {
                        Some(m) => reactivate(state, m, quantity, now).await?,
                        None => {
                            return Ok(Answer::Failed(format!(
                                "{because} the Deployment ID you provided is already activated with another Activation Key."
                            )))
                        }
                    }
                }
                Err(ActivateError::Refused(_)) => {
                    return Ok(Answer::Failed(format!(
                        "{because} the Activation Key you provided has no activations left. Deactivate an unused deployment first."
                    )))
                }
                // The license changed while it was being activated, and the activation, decided
                // again on the license as it is, was refused: say why as for any refusal.
                Err(ActivateError::Failed(Error::Forbidden { .. } | Error::Conflict { .. } | Error::Invalid { .. })) => {
                    return Ok(match find_license(state, account, key).await? {
                        None => invalid("activate", "Activation Key"),
                        Some(l) => Answer::Failed(refusal(&l, now).unwrap_or_else(|| {
                            format!("{because} the Activation Key changed while it was being activated. Try again.")
                        })),
                    })
                }
                Err(ActivateError::Failed(e)) => return Err(e),
            }
        }
    };
    let found;
    let account = match account {
        Some(a) => a,
        None => {
            found = state
                .account(&license.account_id.to_string())
                .await?
                .ok_or_else(|| Error::Internal(anyhow::anyhow!("license without account")))?;
            &found
        }
    };
    // Re-read: the first activation may have started the license's expiry clock.
    let license = service::licenses::reload(&state.db, account.id, license.id).await?;
    Ok(Answer::File(license_file(state, account, &license, &machine, quantity, now).await?))
}

/// Re-activation of a deployment: a fresh file, no new slot; the quantity is updated. A machine
/// activated otherwise (by the vendor, through the API) gets its file but is not marked, so
/// `/deactivation` still cannot remove it.
async fn reactivate(state: &AppState, mut m: Machine, quantity: i64, now: i64) -> Result<Machine, Error> {
    let offline = m.metadata.0.get(QUANTITY).is_some();
    if offline && m.metadata.0.get(QUANTITY) != Some(&json!(quantity)) {
        set_quantity(&mut m, quantity, now);
        // Only metadata changes: no resource limit to check.
        machines::update(&state.db, &m, None, &[crate::events::Raised::machine("machine.updated", &m)])
            .await?
            .map_err(|_| Error::Internal(anyhow::anyhow!("a metadata update was refused a limit")))?;
    }
    Ok(m)
}

fn set_quantity(m: &mut Machine, quantity: i64, now: i64) {
    if let Some(obj) = m.metadata.0.as_object_mut() {
        obj.insert(QUANTITY.into(), json!(quantity));
    } else {
        m.metadata = Json(json!({ QUANTITY: quantity }));
    }
    m.updated_at = now;
}

/// Renders and signs the license file for `machine`.
async fn license_file(
    state: &AppState,
    account: &Account,
    license: &License,
    machine: &Machine,
    quantity: i64,
    now: i64,
) -> Result<String, Error> {
    let product = products::find(&state.db, account.id, &license.product_id.to_string()).await?;
    let group = match license.group_id {
        Some(g) => groups::find(&state.db, account.id, g).await?,
        None => None,
    };
    let engines = entitlements::codes_for_license(&state.db, account.id, license.id, license.policy_id).await?;
    let payload = Payload {
        version: 1,
        account: account.id.to_string(),
        license: license.id.to_string(),
        machine: machine.id.to_string(),
        key: license.key.clone(),
        deployment: machine.fingerprint.clone(),
        product_id: product.as_ref().and_then(|p| p.code.clone()).unwrap_or_else(|| license.product_id.to_string()),
        product_name: product.map(|p| p.name).unwrap_or_default(),
        licensed_to: projection::licensee_name(license, group.as_ref(), account),
        expiry: time::iso_opt(license.expiry),
        max_node_count: quantity,
        licensed_engines: engines,
        issued: time::iso(now),
    };
    let json = serde_json::to_vec(&payload).map_err(anyhow::Error::from)?;
    let keys = state.signing_keys(account)?;
    let sig = crate::crypto::sign::sign(&keys, crate::crypto::sign::SigAlg::Ed25519, &json)?;
    Ok(opswat::render(&payload, &json, &sig))
}

async fn deactivate(state: &AppState, account: Option<&Account>, p: HashMap<String, String>) -> Result<Answer, Error> {
    let (Some(key), Some(deployment)) = (p.get("key"), p.get("deployment")) else {
        return Ok(Answer::Missing(MISSING_DEACTIVATION));
    };
    let Some(license) = find_license(state, account, key).await? else {
        return Ok(invalid("deactivate", "Activation Key"));
    };
    if !opswat::is_valid_deployment(deployment) {
        return Ok(invalid("deactivate", "Deployment ID"));
    }
    // Only deployments this surface activated: a machine the vendor activated otherwise is not
    // the anonymous key holder's to remove.
    let Some(m) = machines::find_on_license(&state.db, license.account_id, license.id, deployment)
        .await?
        .filter(|m| m.metadata.0.get(QUANTITY).is_some())
    else {
        return Ok(Answer::NoActiveLicense);
    };
    // The key is the credential: the license acts for itself.
    let p = crate::auth::license_principal(license);
    Ok(if service::machines::deactivate(state, &p, &m).await? {
        state.metrics.deactivations.inc(&["opswat"]);
        Answer::Deactivated
    } else {
        Answer::NoActiveLicense
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantities() {
        assert_eq!(parse_quantity("1"), Some(1));
        assert_eq!(parse_quantity("2147483647"), Some(2147483647));
        for bad in ["0", "-1", "2147483648", "1.5", " 1", "01x", "", "99999999999"] {
            assert_eq!(parse_quantity(bad), None, "{bad}");
        }
    }

    #[test]
    fn empty_values_count_as_missing() {
        let p = params(Some("key=&deployment=x&deployment=y".into()));
        assert!(!p.contains_key("key"));
        assert_eq!(p["deployment"], "x");
    }
}
