//! The to-many and to-one links of products, policies, users and groups
//! (`/products/{id}/licenses`, `/users/{id}/group`, …): each checks the caller can see the
//! parent, then answers with the child's own list narrowed to it, so scoping and paging are
//! the top-level list's.

use axum::response::Response;

use super::document;
use super::error::ApiResult;
use super::extract::Ctx;
use super::licenses::null_data;
use super::{groups, licenses, machines, policies, products, users};
use crate::store;

/// Which parent a nested list hangs from.
#[derive(Clone, Copy)]
enum Parent {
    Product,
    Policy,
    User,
    Group,
}

/// The parent's id, once the caller is known to see it.
async fn parent_id(ctx: &Ctx, parent: Parent) -> Result<String, crate::error::Error> {
    Ok(match parent {
        Parent::Product => products::load(ctx, ctx.param("id")).await?.id,
        Parent::Policy => policies::load(ctx, ctx.param("id")).await?.id,
        Parent::User => users::load(ctx).await?.id,
        Parent::Group => groups::load(ctx).await?.id,
    }
    .to_string())
}

macro_rules! nested_list {
    ($name:ident, $parent:expr, $filter:literal, $list:path) => {
        pub async fn $name(ctx: Ctx) -> ApiResult<Response> {
            let id = parent_id(&ctx, $parent).await?;
            $list(ctx.with_filter($filter, &id)).await
        }
    };
}

nested_list!(product_licenses, Parent::Product, "product", licenses::list);
nested_list!(product_machines, Parent::Product, "product", machines::list);
nested_list!(product_policies, Parent::Product, "product", policies::list);
nested_list!(product_users, Parent::Product, "product", users::list);
nested_list!(policy_licenses, Parent::Policy, "policy", licenses::list);
nested_list!(user_licenses, Parent::User, "user", licenses::list);
nested_list!(user_machines, Parent::User, "user", machines::list);
nested_list!(group_licenses, Parent::Group, "group", licenses::list);
nested_list!(group_machines, Parent::Group, "group", machines::list);
/// `GET /groups/{id}/users`: for admins and products. Keygen lets a user list the users of the
/// groups they own; Licensor's groups have members, not owners, so a member may not.
pub async fn group_users(ctx: Ctx) -> ApiResult<Response> {
    let id = parent_id(&ctx, Parent::Group).await?;
    ctx.operator()?;
    users::list(ctx.with_filter("group", &id)).await
}

/// `GET /policies/{id}/product`.
pub async fn policy_product(ctx: Ctx) -> ApiResult<Response> {
    let p = policies::load(&ctx, ctx.param("id")).await?;
    let product = products::load(&ctx, &p.product_id.to_string()).await?;
    Ok(document::ok(products::render(ctx.account_id(), &product)))
}

/// `GET /users/{id}/group`: the user's group, or `null`.
pub async fn user_group(ctx: Ctx) -> ApiResult<Response> {
    let u = users::load(&ctx).await?;
    let group = match u.group_id {
        Some(id) => store::groups::find(ctx.db(), ctx.account_id(), id).await?,
        None => None,
    };
    Ok(group.map_or_else(null_data, |g| document::ok(groups::render(ctx.account_id(), &g))))
}
