//! Keygen's `products` resource object.

use serde::Serialize;
use serde_json::Value;
use uuid::Uuid;

use super::document::Resource;
use crate::domain::metadata;
use crate::model::Product;
use crate::time;

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ProductAttributes {
    name: String,
    code: Option<String>,
    distribution_strategy: Option<String>,
    url: Option<String>,
    platforms: Option<Vec<String>>,
    permissions: Vec<&'static str>,
    metadata: Value,
    created: String,
    updated: String,
}

pub fn render(account: Uuid, p: &Product) -> Resource<ProductAttributes> {
    Resource::new(
        account,
        "products",
        p.id,
        ProductAttributes {
            name: p.name.clone(),
            code: p.code.clone(),
            distribution_strategy: p.distribution_strategy.clone(),
            url: p.url.clone(),
            platforms: p.platforms.as_ref().map(|p| p.0.clone()),
            permissions: vec!["*"],
            metadata: metadata::render(&p.metadata.0),
            created: time::iso(p.created_at),
            updated: time::iso(p.updated_at),
        },
    )
    .account(account)
    .many("policies", None)
    .many("licenses", None)
    .many("machines", None)
    .many("users", None)
    .many("tokens", None)
}
