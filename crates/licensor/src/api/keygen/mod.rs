//! The native surface: Keygen's v1 API (JSON:API under `/v1/accounts/{account}/…`), so Keygen's
//! SDKs work unchanged. `docs/api.md` lists what is implemented and where Licensor differs.

pub mod accounts;
pub mod checkout;
pub mod components;
pub mod document;
pub mod entitlements;
pub mod error;
pub mod extract;
pub mod groups;
pub mod keys;
pub mod license_actions;
pub mod licenses;
pub mod machine_relationships;
pub mod machines;
pub mod nested;
pub mod policies;
pub mod processes;
pub mod products;
pub mod search;
pub mod second_factors;
pub mod signature;
pub mod tokens;
pub mod users;
pub mod versions;
pub mod webhooks;

use axum::routing::{delete, get, post};
use axum::Router;

use crate::error::Error;
use crate::state::AppState;
use error::ApiError;

/// Marks answers that matched no route, so tests can tell "no such endpoint" from "no such
/// resource" (docs/openapi.yaml is checked against the server with it).
pub const UNMATCHED: (&str, &str) = ("x-licensor-unmatched", "1");

async fn not_found() -> impl axum::response::IntoResponse {
    ([UNMATCHED], ApiError(Error::NotFound { kind: "endpoint", id: "requested".into() }))
}

async fn method_not_allowed() -> impl axum::response::IntoResponse {
    (
        [UNMATCHED],
        ApiError(Error::BadRequest {
            detail: "The request method is not supported by this endpoint".into(),
            code: Some("METHOD_NOT_ALLOWED".into()),
            location: crate::error::Source::None,
        }),
    )
}

fn account_routes() -> Router<AppState> {
    Router::new()
        .route("/", get(accounts::show).patch(accounts::update))
        .route("/me", get(accounts::me))
        .route("/tokens", get(tokens::list).post(tokens::generate))
        .route("/tokens/{id}", get(tokens::show).put(tokens::regenerate).delete(tokens::revoke))
        .route("/users", get(users::list).post(users::create))
        .route("/users/{id}", get(users::show).patch(users::update).delete(users::delete))
        .route("/users/{id}/actions/ban", post(users::ban))
        .route("/users/{id}/actions/unban", post(users::unban))
        .route("/users/{id}/actions/update-password", post(users::update_password))
        .route("/users/{id}/actions/reset-password", post(users::reset_password))
        .route("/passwords", post(users::forgot_password))
        .route("/users/{id}/second-factors", get(second_factors::list).post(second_factors::create))
        .route(
            "/users/{id}/second-factors/{factor}",
            get(second_factors::show)
                .patch(second_factors::update)
                .put(second_factors::update)
                .delete(second_factors::delete),
        )
        .route("/search", post(search::search))
        .route("/users/{id}/tokens", get(users::list_tokens).post(users::create_token))
        .route("/products", get(products::list).post(products::create))
        .route("/products/{id}", get(products::show).patch(products::update).delete(products::delete))
        .route("/products/{id}/tokens", get(products::list_tokens).post(products::create_token))
        .route("/policies", get(policies::list).post(policies::create))
        .route("/policies/{id}", get(policies::show).patch(policies::update).delete(policies::delete))
        .route(
            "/policies/{id}/entitlements",
            get(policies::list_entitlements).post(policies::attach_entitlements).delete(policies::detach_entitlements),
        )
        .route("/policies/{id}/pool", get(keys::pool).delete(keys::pop))
        .route("/policies/{id}/pool/{key}", get(keys::pool_key))
        .route("/keys", get(keys::list).post(keys::create))
        .route("/keys/{id}", get(keys::show).patch(keys::update).delete(keys::delete))
        .route("/keys/{id}/policy", get(keys::policy))
        .route("/keys/{id}/product", get(keys::product))
        .route("/licenses", get(licenses::list).post(licenses::create))
        .route("/licenses/{id}", get(licenses::show).patch(licenses::update).delete(licenses::delete))
        .route("/licenses/{id}/policy", get(licenses::show_policy).put(licenses::change_policy))
        .route("/licenses/{id}/product", get(licenses::show_product))
        .route("/licenses/{id}/owner", get(licenses::show_owner).put(licenses::change_owner))
        .route("/licenses/{id}/user", get(licenses::show_owner).put(licenses::change_owner))
        .route("/licenses/{id}/group", get(licenses::show_group).put(licenses::change_group))
        .route(
            "/licenses/{id}/users",
            get(licenses::list_users).post(licenses::attach_users).delete(licenses::detach_users),
        )
        .route(
            "/licenses/{id}/entitlements",
            get(licenses::list_entitlements).post(licenses::attach_entitlements).delete(licenses::detach_entitlements),
        )
        .route("/licenses/{id}/tokens", get(licenses::list_tokens).post(licenses::create_token))
        .route("/licenses/{id}/machines", get(machines::list_for_license))
        .route("/licenses/actions/validate-key", post(license_actions::validate_key))
        .route("/licenses/{id}/actions/validate", get(license_actions::validate).post(license_actions::validate))
        .route("/licenses/{id}/actions/suspend", post(license_actions::suspend))
        .route("/licenses/{id}/actions/reinstate", post(license_actions::reinstate))
        .route("/licenses/{id}/actions/renew", post(license_actions::renew))
        .route("/licenses/{id}/actions/revoke", delete(license_actions::revoke))
        .route("/licenses/{id}/actions/check-in", post(license_actions::check_in))
        .route("/licenses/{id}/actions/increment-usage", post(license_actions::increment_usage))
        .route("/licenses/{id}/actions/decrement-usage", post(license_actions::decrement_usage))
        .route("/licenses/{id}/actions/reset-usage", post(license_actions::reset_usage))
        .route("/machines", get(machines::list).post(machines::create))
        .route("/machines/{id}", get(machines::show).patch(machines::update).delete(machines::delete))
        .route("/machines/{id}/license", get(machines::show_license))
        .route("/machines/{id}/product", get(machine_relationships::show_product))
        .route("/machines/{id}/owner", get(machine_relationships::show_owner).put(machine_relationships::change_owner))
        .route("/machines/{id}/group", get(machine_relationships::show_group).put(machine_relationships::change_group))
        .route("/machines/{id}/components", get(machine_relationships::list_components))
        .route("/machines/{id}/components/{component}", get(machine_relationships::show_component))
        .route("/machines/{id}/processes", get(machine_relationships::list_processes))
        .route("/machines/{id}/processes/{process}", get(machine_relationships::show_process))
        .route("/machines/{id}/actions/ping", post(machines::ping))
        .route("/machines/{id}/actions/check-out", get(checkout::machine).post(checkout::machine))
        .route("/licenses/{id}/actions/check-out", get(checkout::license).post(checkout::license))
        .route("/machines/{id}/actions/ping-heartbeat", post(machines::ping))
        .route("/machines/{id}/actions/reset", post(machines::reset))
        .route("/machines/{id}/actions/reset-heartbeat", post(machines::reset))
        .route("/processes", get(processes::list).post(processes::create))
        .route("/processes/{id}", get(processes::show).patch(processes::update).delete(processes::delete))
        .route("/processes/{id}/actions/ping", post(processes::ping))
        .route("/processes/{id}/machine", get(processes::show_machine))
        .route("/processes/{id}/license", get(processes::show_license))
        .route("/processes/{id}/product", get(processes::show_product))
        .route("/components", get(components::list).post(components::create))
        .route("/components/{id}", get(components::show).patch(components::update).delete(components::delete))
        .route("/components/{id}/machine", get(components::show_machine))
        .route("/components/{id}/license", get(components::show_license))
        .route("/components/{id}/product", get(components::show_product))
        .route("/entitlements", get(entitlements::list).post(entitlements::create))
        .route("/entitlements/{id}", get(entitlements::show).patch(entitlements::update).delete(entitlements::delete))
        .route("/groups", get(groups::list).post(groups::create))
        .route("/groups/{id}", get(groups::show).patch(groups::update).delete(groups::delete))
        .route("/groups/{id}/licenses", get(nested::group_licenses))
        .route("/groups/{id}/machines", get(nested::group_machines))
        .route("/groups/{id}/users", get(nested::group_users))
        .route("/products/{id}/licenses", get(nested::product_licenses))
        .route("/products/{id}/machines", get(nested::product_machines))
        .route("/products/{id}/policies", get(nested::product_policies))
        .route("/products/{id}/users", get(nested::product_users))
        .route("/policies/{id}/licenses", get(nested::policy_licenses))
        .route("/policies/{id}/product", get(nested::policy_product))
        .route("/users/{id}/licenses", get(nested::user_licenses))
        .route("/users/{id}/machines", get(nested::user_machines))
        .route("/users/{id}/group", get(nested::user_group).put(users::change_group))
        .route("/webhook-endpoints", get(webhooks::list_endpoints).post(webhooks::create_endpoint))
        .route(
            "/webhook-endpoints/{id}",
            get(webhooks::show_endpoint).patch(webhooks::update_endpoint).delete(webhooks::delete_endpoint),
        )
        .route("/webhook-events", get(webhooks::list_deliveries))
        .route("/webhook-events/{id}", get(webhooks::show_delivery).delete(webhooks::delete_delivery))
        .route("/webhook-events/{id}/actions/retry", post(webhooks::retry_delivery))
        .route("/event-logs", get(webhooks::list_logs))
        .route("/event-logs/{id}", get(webhooks::show_log))
        .method_not_allowed_fallback(method_not_allowed)
}

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/v1/ping", get(accounts::ping))
        .nest("/v1/accounts/{account}", account_routes())
        // Single-account ("singleplayer") mode, as self-hosted Keygen serves it: the same
        // routes without the account segment. SDKs pointed at a custom host use these.
        .nest("/v1", account_routes())
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
}
