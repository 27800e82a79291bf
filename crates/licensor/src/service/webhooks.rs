//! Webhook endpoint use cases, for the API and the console alike: what a URL and a subscription
//! list must be, and the writes that also drop the node's cached view of the account's
//! endpoints (so the next event is routed by the new list).

use uuid::Uuid;

use crate::error::{Error, Result};
use crate::model::{Json, WebhookEndpoint};
use crate::state::AppState;
use crate::store::webhooks;

/// The API version an endpoint gets when it names none (Keygen's current).
pub const CURRENT_API_VERSION: &str = "1.8";

/// A new endpoint of `account` for every event, signed with Ed25519.
pub fn new_endpoint(account: Uuid, product: Option<Uuid>, url: String, now: i64) -> WebhookEndpoint {
    WebhookEndpoint {
        id: Uuid::new_v4(),
        account_id: account,
        product_id: product,
        url,
        subscriptions: Json(vec!["*".to_string()]),
        signature_algorithm: "ed25519".into(),
        api_version: CURRENT_API_VERSION.into(),
        created_at: now,
        updated_at: now,
    }
}

/// `url` as it will be stored: https (or, with `--allow-insecure-webhooks`, http) and not aimed
/// at the server's own networks (checked again after DNS at delivery time).
pub fn endpoint_url(state: &AppState, url: String) -> Result<String> {
    let checked = crate::webhooks::target::check_url(&url, state.webhooks.allow_insecure)
        .map_err(|r| Error::invalid_attr("url", r.detail, r.code))?;
    let normalized = checked.to_string();
    // `Uri` adds a trailing slash to a bare host; keep what the vendor wrote otherwise.
    if !url.ends_with('/') && normalized.ends_with('/') && !url.contains('?') && url.matches('/').count() == 2 {
        return Ok(url);
    }
    Ok(normalized)
}

/// A subscription list: `["*"]`, or known event names, each once.
pub fn subscriptions(subs: Vec<String>) -> Result<Vec<String>> {
    if subs.is_empty() {
        return Err(Error::invalid_attr(
            "subscriptions",
            "must have at least 1 webhook event subscription",
            "SUBSCRIPTIONS_TOO_SHORT",
        ));
    }
    let star = subs.len() == 1 && subs[0] == "*";
    if !star && subs.iter().any(|s| s == "*" || !crate::events::is_known(s)) {
        return Err(Error::invalid_attr(
            "subscriptions",
            "unsupported webhook event type for subscription",
            "SUBSCRIPTIONS_NOT_ALLOWED",
        ));
    }
    let mut unique: Vec<String> = Vec::with_capacity(subs.len());
    for s in subs {
        if !unique.contains(&s) {
            unique.push(s);
        }
    }
    Ok(unique)
}

pub async fn create_endpoint(state: &AppState, e: &WebhookEndpoint) -> Result<()> {
    webhooks::insert_endpoint(&state.db, e).await?;
    state.forget_hooks(e.account_id);
    Ok(())
}

pub async fn update_endpoint(state: &AppState, e: &WebhookEndpoint) -> Result<()> {
    webhooks::update_endpoint(&state.db, e).await?;
    state.forget_hooks(e.account_id);
    Ok(())
}

pub async fn delete_endpoint(state: &AppState, e: &WebhookEndpoint) -> Result<()> {
    webhooks::delete_endpoint(&state.db, e.account_id, e.id).await?;
    state.forget_hooks(e.account_id);
    Ok(())
}
