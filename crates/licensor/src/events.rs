//! Events: what happened to a resource, named as Keygen names it (`license.created`,
//! `machine.heartbeat.dead`, …). A use case raises them and hands them to the store call that
//! commits its change, which writes them in the same transaction: to the event log, and as one
//! webhook delivery per subscribed endpoint (the outbox the delivery workers drain). So a
//! crash can neither lose an event nor announce a change that did not commit, and an event is
//! the same whichever surface caused it.
//!
//! The payload is the resource as Keygen's API renders it (a webhook body is Keygen's wire
//! format whichever surface the change came in on), rendered when the event is raised so it
//! shows the resource as the change left it, deleted resources included.

use serde::Serialize;
use serde_json::{json, Value};
use uuid::Uuid;

use crate::model::{Component, Entitlement, Group, Key, License, Machine, Policy, Process, Product, Token, User};
use crate::wire as render;

/// Every event name Licensor raises or accepts in a subscription (Keygen's names for the
/// resources Licensor implements).
pub const EVENTS: &[&str] = &[
    "component.created",
    "component.deleted",
    "component.updated",
    "entitlement.created",
    "entitlement.deleted",
    "entitlement.updated",
    "group.created",
    "group.deleted",
    "group.updated",
    "key.created",
    "key.deleted",
    "key.updated",
    "license.check-in-overdue",
    "license.checked-in",
    "license.checked-out",
    "license.created",
    "license.deleted",
    "license.entitlements.attached",
    "license.entitlements.detached",
    "license.expired",
    "license.expiring-soon",
    "license.group.updated",
    "license.owner.updated",
    "license.policy.updated",
    "license.reinstated",
    "license.renewed",
    "license.revoked",
    "license.suspended",
    "license.updated",
    "license.usage.decremented",
    "license.usage.incremented",
    "license.usage.reset",
    "license.users.attached",
    "license.users.detached",
    "license.validation.failed",
    "license.validation.succeeded",
    "machine.checked-out",
    "machine.created",
    "machine.deleted",
    "machine.heartbeat.dead",
    "machine.heartbeat.ping",
    "machine.heartbeat.reset",
    "machine.heartbeat.resurrected",
    "machine.updated",
    "policy.created",
    "policy.deleted",
    "policy.entitlements.attached",
    "policy.entitlements.detached",
    "policy.pool.popped",
    "policy.updated",
    "process.created",
    "process.deleted",
    "process.heartbeat.dead",
    "process.heartbeat.ping",
    "product.created",
    "product.deleted",
    "product.updated",
    "second-factor.created",
    "second-factor.deleted",
    "second-factor.disabled",
    "second-factor.enabled",
    "token.generated",
    "token.regenerated",
    "token.revoked",
    "user.banned",
    "user.created",
    "user.deleted",
    "user.password-reset",
    "user.unbanned",
    "user.updated",
];

/// Whether `name` is an event a subscription may name (`*` is every event).
pub fn is_known(name: &str) -> bool {
    name == "*" || EVENTS.binary_search(&name).is_ok()
}

/// Whether an endpoint subscribed to `subscriptions` receives `event`.
pub fn subscribed(subscriptions: &[String], event: &str) -> bool {
    subscriptions.iter().any(|s| s == "*" || s == event)
}

/// One event, ready to be written with the change it describes.
#[derive(Debug, Clone)]
pub struct Raised {
    pub event: &'static str,
    /// The JSON:API type of the resource (`licenses`, `machines`, …).
    pub resource_type: &'static str,
    pub resource_id: Uuid,
    /// The product the resource belongs to: an endpoint limited to a product receives only
    /// events about that product's resources.
    pub product_id: Option<Uuid>,
    /// The resource document (`{"data": …}`, plus `meta` for validations), as JSON text.
    pub payload: String,
    /// Small facts for the event log (a validation's code, the attributes a change touched).
    pub metadata: Value,
}

fn document<A: Serialize>(resource: render::document::Resource<A>, meta: Option<Value>) -> String {
    serde_json::to_string(&render::document::Data { data: resource, meta }).unwrap_or_else(|e| {
        // Typed resources with string keys: cannot fail short of a bug, which must show.
        tracing::error!(error = %e, "an event's payload could not be rendered");
        "{}".into()
    })
}

impl Raised {
    fn new(event: &'static str, kind: &'static str, id: Uuid, product: Option<Uuid>, payload: String) -> Raised {
        debug_assert!(is_known(event), "unknown event {event}");
        Raised {
            event,
            resource_type: kind,
            resource_id: id,
            product_id: product,
            payload,
            metadata: Value::Object(Default::default()),
        }
    }

    pub fn with_metadata(mut self, metadata: Value) -> Raised {
        self.metadata = metadata;
        self
    }

    pub fn license(event: &'static str, l: &License) -> Raised {
        let payload = document(render::licenses::render(l.account_id, l), None);
        Raised::new(event, "licenses", l.id, Some(l.product_id), payload)
    }

    /// A validation's event, its payload carrying the validation's `meta` as the answer did.
    pub fn validation(l: &License, valid: bool, meta: Value) -> Raised {
        let event = if valid { "license.validation.succeeded" } else { "license.validation.failed" };
        let code = meta.get("code").cloned().unwrap_or(Value::Null);
        let payload = document(render::licenses::render(l.account_id, l), Some(meta));
        Raised::new(event, "licenses", l.id, Some(l.product_id), payload).with_metadata(json!({ "code": code }))
    }

    pub fn machine(event: &'static str, m: &Machine) -> Raised {
        let payload = document(render::machines::render(m.account_id, m), None);
        Raised::new(event, "machines", m.id, Some(m.product_id), payload)
    }

    pub fn policy(event: &'static str, p: &Policy) -> Raised {
        let payload = document(render::policies::render(p.account_id, p), None);
        Raised::new(event, "policies", p.id, Some(p.product_id), payload)
    }

    pub fn product(event: &'static str, p: &Product) -> Raised {
        let payload = document(render::products::render(p.account_id, p), None);
        Raised::new(event, "products", p.id, Some(p.id), payload)
    }

    /// `user.password-reset`: the user, and the raw reset token in `meta.passwordResetToken`
    /// for the vendor to send (Licensor sends no mail). Not in the event log's metadata.
    pub fn password_reset(u: &User, token: &str) -> Raised {
        let payload = document(render::users::render(u.account_id, u), Some(json!({ "passwordResetToken": token })));
        Raised::new("user.password-reset", "users", u.id, None, payload)
    }

    pub fn user(event: &'static str, u: &User) -> Raised {
        let payload = document(render::users::render(u.account_id, u), None);
        Raised::new(event, "users", u.id, None, payload)
    }

    /// A second factor's event; its secret is never in the payload.
    pub fn second_factor(event: &'static str, f: &crate::model::SecondFactor) -> Raised {
        let payload = document(render::second_factors::render(f, None), None);
        Raised::new(event, "second-factors", f.id, None, payload)
    }

    /// A token's event; its secret is never in the payload.
    pub fn token(event: &'static str, t: &Token) -> Raised {
        let payload = document(render::tokens::render(t.account_id, t, None), None);
        Raised::new(event, "tokens", t.id, None, payload)
    }

    pub fn entitlement(event: &'static str, e: &Entitlement) -> Raised {
        let payload = document(render::entitlements::render(e.account_id, e), None);
        Raised::new(event, "entitlements", e.id, None, payload)
    }

    /// A component event; `product` is its machine's license's, for product-scoped endpoints.
    pub fn component(event: &'static str, c: &Component, product: Uuid) -> Raised {
        let payload = document(render::components::render(c.account_id, c), None);
        Raised::new(event, "components", c.id, Some(product), payload)
    }

    pub fn key(event: &'static str, k: &Key) -> Raised {
        let payload = document(render::keys::render(k.account_id, k), None);
        Raised::new(event, "keys", k.id, Some(k.product_id), payload)
    }

    pub fn group(event: &'static str, g: &Group) -> Raised {
        let payload = document(render::groups::render(g.account_id, g), None);
        Raised::new(event, "groups", g.id, None, payload)
    }

    pub fn process(event: &'static str, p: &Process, interval: i64, product: Uuid) -> Raised {
        let payload = document(render::processes::render(p.account_id, p, interval, product), None);
        Raised::new(event, "processes", p.id, Some(product), payload)
    }
}

/// Who caused the events of the current request, as the event log records it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Whodunnit {
    pub kind: &'static str,
    pub id: Uuid,
}

tokio::task_local! {
    /// The authenticated caller of the current request, noted by authentication.
    static WHODUNNIT: std::cell::Cell<Option<Whodunnit>>;
}

/// Runs `f` with a place to note the request's caller (the HTTP layer wraps every request).
pub async fn scope<F: std::future::Future>(f: F) -> F::Output {
    WHODUNNIT.scope(std::cell::Cell::new(None), f).await
}

/// Notes who the current request acts as (authentication calls it); outside a request,
/// nothing.
pub fn note_caller(who: Whodunnit) {
    let _ = WHODUNNIT.try_with(|cell| cell.set(Some(who)));
}

/// The current request's caller, if it authenticated.
pub fn caller() -> Option<Whodunnit> {
    WHODUNNIT.try_with(|cell| cell.get()).ok().flatten()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_catalogue_is_sorted_for_lookups() {
        let mut sorted = EVENTS.to_vec();
        sorted.sort_unstable();
        assert_eq!(sorted, EVENTS);
        assert!(is_known("license.created"));
        assert!(is_known("*"));
        assert!(!is_known("license.exploded"));
    }

    #[test]
    fn subscriptions_match_by_name_or_star() {
        let all = vec!["*".to_string()];
        let some = vec!["license.created".to_string()];
        assert!(subscribed(&all, "machine.deleted"));
        assert!(subscribed(&some, "license.created"));
        assert!(!subscribed(&some, "license.deleted"));
        assert!(!subscribed(&[], "license.created"));
    }
}
