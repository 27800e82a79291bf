//! Products: CRUD and product tokens.

use axum::response::Response;
use serde::Deserialize;
use serde_json::Value;
use sqlx::types::Json;

use super::document;
use super::error::ApiResult;
use super::extract::{nullable, parse_data, Body, Ctx, NoRels};
use crate::domain::metadata;
use crate::error::{Error, Source};
use crate::model::Product;
use crate::service;
use crate::store::products;
use crate::time;

const DISTRIBUTION: &[&str] = &["LICENSED", "OPEN", "CLOSED"];

pub use crate::wire::products::{render, ProductAttributes};

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct ProductInput {
    name: Option<String>,
    #[serde(default, deserialize_with = "nullable")]
    code: Option<Option<String>>,
    #[serde(default, deserialize_with = "nullable")]
    distribution_strategy: Option<Option<String>>,
    #[serde(default, deserialize_with = "nullable")]
    url: Option<Option<String>>,
    #[serde(default, deserialize_with = "nullable")]
    platforms: Option<Option<Vec<String>>>,
    metadata: Option<Value>,
    /// Licensor's: the product's key on the licensing surface, chosen at creation.
    licensing_key: Option<i64>,
}

/// A chosen licensing key: a 32-bit signed integer, given at creation only.
pub fn licensing_key(given: Option<i64>, creating: bool) -> Result<Option<i32>, Error> {
    let pointer = || Source::Pointer("/data/attributes/licensingKey".into());
    match given {
        None => Ok(None),
        Some(_) if !creating => Err(Error::bad_request("unpermitted parameter", pointer())),
        Some(k) => i32::try_from(k)
            .map(Some)
            .map_err(|_| Error::bad_request("must be a 32-bit integer (-2147483648 to 2147483647)", pointer())),
    }
}

fn apply(p: &mut Product, a: ProductInput) -> Result<(), Error> {
    if let Some(name) = a.name {
        service::catalog::not_blank("name", &name)?;
        p.name = name;
    }
    if let Some(code) = a.code {
        if let Some(c) = &code {
            service::catalog::product_code(c)?;
        }
        p.code = code;
    }
    if let Some(ds) = a.distribution_strategy {
        if let Some(d) = &ds {
            if !DISTRIBUTION.contains(&d.as_str()) {
                return Err(Error::invalid_attr(
                    "distributionStrategy",
                    "unsupported distribution strategy",
                    "DISTRIBUTION_STRATEGY_NOT_ALLOWED",
                ));
            }
        }
        p.distribution_strategy = ds;
    }
    if let Some(url) = a.url {
        if let Some(u) = &url {
            if !(u.starts_with("http://") || u.starts_with("https://")) {
                return Err(Error::invalid_attr(
                    "url",
                    "must be a valid URL using one of the following protocols: https, http",
                    "URL_INVALID",
                ));
            }
        }
        p.url = url;
    }
    if let Some(platforms) = a.platforms {
        p.platforms = platforms.map(Json);
    }
    if let Some(m) = a.metadata {
        p.metadata = Json(metadata::accept(m)?);
    }
    Ok(())
}

pub async fn create(ctx: Ctx, Body(body): Body) -> ApiResult<Response> {
    ctx.admin()?;
    let data = parse_data::<ProductInput, NoRels>(body, "products")?;
    if data.attributes.name.is_none() {
        return Err(Error::bad_request("is missing", Source::Pointer("/data/attributes/name".into())).into());
    }
    let key = licensing_key(data.attributes.licensing_key, true)?;
    let mut p = Product::new(ctx.account_id(), String::new(), time::now_ms());
    apply(&mut p, data.attributes)?;
    let p = service::catalog::create_product_keyed(ctx.db(), &p, key).await?;
    Ok(document::created(render(ctx.account_id(), &p)))
}

/// Loads a product the caller may see: admins any, a product itself.
pub async fn load(ctx: &Ctx, id: &str) -> Result<Product, Error> {
    let principal = ctx.principal()?;
    let p = products::find(ctx.db(), ctx.account_id(), id).await?.ok_or_else(|| Error::not_found("product", id))?;
    // Lookups are scoped: another product, seen by a product or a license, is not found.
    let elsewhere = principal.license().is_some_and(|l| l.product_id != p.id)
        || principal.product_id().is_some_and(|own| own != p.id);
    if elsewhere {
        return Err(Error::not_found("product", id));
    }
    principal.reads_catalog()?;
    if principal.is_admin() || principal.product_id() == Some(p.id) {
        Ok(p)
    } else {
        Err(Error::access_denied())
    }
}

pub async fn show(ctx: Ctx) -> ApiResult<Response> {
    let p = load(&ctx, ctx.param("id")).await?;
    Ok(document::ok(render(ctx.account_id(), &p)))
}

pub async fn list(ctx: Ctx) -> ApiResult<Response> {
    let principal = ctx.principal()?;
    let params = ctx.list_params()?;
    principal.reads_catalog()?;
    let only = if principal.is_admin() {
        None
    } else if let Some(p) = principal.product_id() {
        Some(p)
    } else {
        return Err(Error::access_denied().into());
    };
    let listing = products::list_narrowed(ctx.db(), ctx.account_id(), only, &params.narrow(), params.page).await?;
    let account = ctx.account_id();
    Ok(params.document(listing, |p| render(account, &p)))
}

pub async fn update(ctx: Ctx, Body(body): Body) -> ApiResult<Response> {
    let mut p = load(&ctx, ctx.param("id")).await?;
    ctx.operator()?;
    let data = parse_data::<ProductInput, NoRels>(body, "products")?;
    licensing_key(data.attributes.licensing_key, false)?;
    apply(&mut p, data.attributes)?;
    p.updated_at = time::now_ms();
    products::update(ctx.db(), &p, &[crate::events::Raised::product("product.updated", &p)])
        .await
        .map_err(|e| crate::error::taken(e, "code", "CODE_TAKEN"))?;
    Ok(document::ok(render(ctx.account_id(), &p)))
}

pub async fn delete(ctx: Ctx) -> ApiResult<Response> {
    ctx.admin()?;
    let p = load(&ctx, ctx.param("id")).await?;
    products::delete(ctx.db(), ctx.account_id(), p.id, &[crate::events::Raised::product("product.deleted", &p)])
        .await?;
    Ok(document::no_content())
}

pub async fn create_token(ctx: Ctx, Body(body): Body) -> ApiResult<Response> {
    ctx.admin()?;
    let p = load(&ctx, ctx.param("id")).await?;
    super::tokens::issue_for(&ctx, "product", p.id, "product", body).await
}

pub async fn list_tokens(ctx: Ctx) -> ApiResult<Response> {
    let p = load(&ctx, ctx.param("id")).await?;
    ctx.operator()?;
    super::tokens::list_for(&ctx, p.id).await
}
