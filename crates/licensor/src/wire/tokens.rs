//! Keygen's `tokens` resource object.

use serde::Serialize;
use uuid::Uuid;

use super::document::Resource;
use crate::model::Token;
use crate::time;

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TokenAttributes {
    kind: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    token: Option<String>,
    expiry: Option<String>,
    name: Option<String>,
    permissions: Vec<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    max_activations: Option<Option<i64>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    activations: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    max_deactivations: Option<Option<i64>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    deactivations: Option<i64>,
    created: String,
    updated: String,
}

pub fn render(account: Uuid, t: &Token, raw: Option<String>) -> Resource<TokenAttributes> {
    let license = t.bearer_type == "license";
    let bearer_kind = match t.bearer_type.as_str() {
        "product" => "products",
        "license" => "licenses",
        _ => "users",
    };
    Resource::new(
        account,
        "tokens",
        t.id,
        TokenAttributes {
            kind: t.kind.clone(),
            token: raw,
            expiry: time::iso_opt(t.expiry),
            name: t.name.clone(),
            permissions: vec!["*"],
            max_activations: license.then_some(t.max_activations),
            activations: license.then_some(t.activations),
            max_deactivations: license.then_some(t.max_deactivations),
            deactivations: license.then_some(t.deactivations),
            created: time::iso(t.created_at),
            updated: time::iso(t.updated_at),
        },
    )
    .account(account)
    .one("bearer", bearer_kind, Some(t.bearer_id))
}
