//! Users: CRUD, ban/unban, and their tokens.

use axum::response::Response;
use serde::Deserialize;
use serde_json::Value;
use uuid::Uuid;

use super::document;
use super::error::ApiResult;
use super::extract::{nullable, parse_data, rel_uuid, Body, Ctx, RelInput};
use crate::domain::metadata;
use crate::error::{Error, Source};
use crate::model::User;
use crate::service;
use crate::store::groups;
use crate::store::users::{self, UserFilter};
use crate::time;

pub const ROLES: &[&str] = &["user", "admin", "developer", "sales-agent", "support-agent", "read-only"];

pub use crate::wire::users::{render, UserAttributes};

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct UserInput {
    #[serde(default, deserialize_with = "nullable")]
    first_name: Option<Option<String>>,
    #[serde(default, deserialize_with = "nullable")]
    last_name: Option<Option<String>>,
    email: Option<String>,
    password: Option<String>,
    role: Option<String>,
    metadata: Option<Value>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct UserRels {
    group: Option<RelInput>,
}

/// Applies input to a user row, checking every attribute. `can_set_role` is for admins.
async fn apply(ctx: &Ctx, u: &mut User, input: UserInput, rels: UserRels, can_set_role: bool) -> Result<(), Error> {
    if let Some(email) = input.email {
        let email = email.trim().to_lowercase();
        if !crate::domain::account::valid_email(&email) {
            return Err(Error::invalid_attr("email", "must be a valid email", "EMAIL_INVALID"));
        }
        u.email = email;
    }
    if let Some(f) = input.first_name {
        u.first_name = f;
    }
    if let Some(l) = input.last_name {
        u.last_name = l;
    }
    if let Some(role) = input.role {
        if !can_set_role {
            return Err(Error::bad_request("unpermitted parameter", Source::Pointer("/data/attributes/role".into())));
        }
        if !ROLES.contains(&role.as_str()) {
            return Err(Error::invalid_attr("role", "must be a valid user role", "ROLE_INVALID"));
        }
        u.role = role;
    }
    if let Some(password) = input.password {
        u.password_hash = Some(service::users::password_hash(password).await?);
    }
    if let Some(m) = input.metadata {
        u.metadata = sqlx::types::Json(metadata::accept(m)?);
    }
    if let Some(group) = rel_uuid(&rels.group, "group")? {
        // Only operators move users between groups; a user may not join one by themself.
        if !can_set_role {
            return Err(Error::bad_request(
                "unpermitted parameter",
                Source::Pointer("/data/relationships/group".into()),
            ));
        }
        set_group(ctx, u, group).await?;
    }
    Ok(())
}

/// Moves a user into `group` (or out of any), if the group exists and has room.
async fn set_group(ctx: &Ctx, u: &mut User, group: Option<Uuid>) -> Result<(), Error> {
    if let Some(g) = group {
        let row = groups::find(ctx.db(), ctx.account_id(), g)
            .await?
            .ok_or_else(|| Error::invalid_rel("group", "must exist", "GROUP_NOT_FOUND"))?;
        // Checked, not locked: group membership is an administrative act.
        if let Some(max) = row.max_users.filter(|_| u.group_id != Some(g)) {
            if crate::store::users::count_in_group(ctx.db(), g).await? + 1 > max {
                return Err(Error::invalid_rel(
                    "group",
                    format!("user count has exceeded maximum allowed by current group ({max})"),
                    "GROUP_USER_LIMIT_EXCEEDED",
                ));
            }
        }
    }
    u.group_id = group;
    Ok(())
}

/// `PUT /users/{id}/group`: for admins and products.
pub async fn change_group(ctx: Ctx, Body(body): Body) -> ApiResult<Response> {
    ctx.operator()?;
    let mut u = load(&ctx).await?;
    let before = u.clone();
    let group = super::licenses::parse_to_one(body, "group")?;
    set_group(&ctx, &mut u, group).await?;
    u.updated_at = time::now_ms();
    service::users::save(ctx.db(), ctx.principal()?, &before, &u).await?;
    Ok(document::ok(render(ctx.account_id(), &u)))
}

/// Creates a user. Admins and products may; anyone may sign up when the account is not protected.
pub async fn create(ctx: Ctx, Body(body): Body) -> ApiResult<Response> {
    match ctx.maybe_principal()? {
        Some(p) if p.is_admin() || p.product_id().is_some() => {}
        Some(_) => return Err(Error::access_denied().into()),
        None if ctx.account.protected => return Err(Error::access_denied().into()),
        None => {}
    }
    let data = parse_data::<UserInput, UserRels>(body, "users")?;
    if data.attributes.email.is_none() {
        return Err(Error::bad_request("is missing", Source::Pointer("/data/attributes/email".into())).into());
    }
    let is_admin = ctx.maybe_principal()?.is_some_and(|p| p.is_admin());
    let mut u = User::new(ctx.account_id(), String::new(), time::now_ms());
    apply(&ctx, &mut u, data.attributes, data.relationships, is_admin).await?;
    service::users::create(ctx.db(), &u).await?;
    Ok(document::created(render(ctx.account_id(), &u)))
}

/// Loads a user the caller may see: admins and products any, a user itself. Anyone else gets
/// the same 404 as for an unknown user, so ids and emails cannot be probed.
pub(super) async fn load(ctx: &Ctx) -> Result<User, Error> {
    let p = ctx.principal()?;
    let id = ctx.param("id");
    let not_found = || Error::not_found("user", id);
    let u = users::find_by_id_or_email(ctx.db(), ctx.account_id(), id).await?.ok_or_else(not_found)?;
    // Products see the users of role `user` (not the account's admins), as in Keygen.
    let product_sees = p.product_id().is_some() && u.role == "user";
    if p.is_admin() || product_sees || p.user_id() == Some(u.id) {
        Ok(u)
    } else {
        Err(not_found())
    }
}

pub async fn show(ctx: Ctx) -> ApiResult<Response> {
    let u = load(&ctx).await?;
    Ok(document::ok(render(ctx.account_id(), &u)))
}

pub async fn list(ctx: Ctx) -> ApiResult<Response> {
    let p = ctx.principal()?;
    let params = ctx.list_params()?;
    let mut filter = UserFilter {
        role: params.filter("roles[]").or(params.filter("role")).map(str::to_string),
        group: params.uuid_filter("group"),
        product: params.uuid_filter("product"),
        only: None,
        narrow: params.narrow(),
    };
    if let Some(product) = p.product_id() {
        filter.product = Some(product);
        // Only users of role `user`: a product asking for admins gets none.
        filter.role = Some(match filter.role.as_deref() {
            None | Some("user") => "user".into(),
            Some(_) => String::new(),
        });
    } else if !p.is_admin() {
        filter.only = Some(p.bearer_ref().1);
    }
    let listing = users::list(ctx.db(), ctx.account_id(), &filter, params.page).await?;
    let account = ctx.account_id();
    Ok(params.document(listing, |u| render(account, &u)))
}

pub async fn update(ctx: Ctx, Body(body): Body) -> ApiResult<Response> {
    let mut u = load(&ctx).await?;
    let before = u.clone();
    let is_admin = ctx.principal()?.is_admin();
    let data = parse_data::<UserInput, UserRels>(body, "users")?;
    // A user changes their own password with the old one (actions/update-password); only the
    // vendor sets one outright, as in Keygen.
    if data.attributes.password.is_some() && !service::access::is_operator(ctx.principal()?) {
        return Err(
            Error::bad_request("unpermitted parameter", Source::Pointer("/data/attributes/password".into())).into()
        );
    }
    apply(&ctx, &mut u, data.attributes, data.relationships, is_admin).await?;
    u.updated_at = time::now_ms();
    service::users::save(ctx.db(), ctx.principal()?, &before, &u).await?;
    Ok(document::ok(render(ctx.account_id(), &u)))
}

pub async fn delete(ctx: Ctx) -> ApiResult<Response> {
    ctx.operator()?;
    let u = load(&ctx).await?;
    service::users::delete(ctx.db(), &u).await?;
    Ok(document::no_content())
}

async fn set_banned(ctx: Ctx, banned: bool) -> ApiResult<Response> {
    ctx.operator()?;
    let mut u = load(&ctx).await?;
    if banned && u.banned_at.is_some() {
        return Err(Error::invalid("is already banned", "USER_ALREADY_BANNED").into());
    }
    if !banned && u.banned_at.is_none() {
        return Err(Error::invalid("is not banned", "USER_NOT_BANNED").into());
    }
    let before = u.clone();
    let now = time::now_ms();
    u.banned_at = banned.then_some(now);
    u.updated_at = now;
    service::users::save(ctx.db(), ctx.principal()?, &before, &u).await?;
    Ok(document::ok(render(ctx.account_id(), &u)))
}

pub async fn ban(ctx: Ctx) -> ApiResult<Response> {
    set_banned(ctx, true).await
}

pub async fn unban(ctx: Ctx) -> ApiResult<Response> {
    set_banned(ctx, false).await
}

pub async fn create_token(ctx: Ctx, Body(body): Body) -> ApiResult<Response> {
    let p = ctx.principal()?;
    let u = load(&ctx).await?;
    if !(p.is_admin() || p.user_id() == Some(u.id)) {
        return Err(Error::access_denied().into());
    }
    super::tokens::issue_for(&ctx, "user", u.id, &u.role, body).await
}

pub async fn list_tokens(ctx: Ctx) -> ApiResult<Response> {
    let p = ctx.principal()?;
    let u = load(&ctx).await?;
    if !(p.is_admin() || p.user_id() == Some(u.id)) {
        return Err(Error::access_denied().into());
    }
    super::tokens::list_for(&ctx, u.id).await
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct PasswordMeta {
    old_password: Option<String>,
    new_password: Option<String>,
}

/// `POST /users/{id}/actions/update-password`: the user, with the old password; every other
/// token of theirs is revoked.
pub async fn update_password(ctx: Ctx, Body(body): Body) -> ApiResult<Response> {
    let u = load(&ctx).await?;
    let meta: PasswordMeta = super::extract::parse_meta(body)?;
    let missing =
        |name: &'static str| Error::bad_request("is missing", Source::Pointer(format!("/meta/{name}").into()));
    let old = meta.old_password.ok_or_else(|| missing("oldPassword"))?;
    let new = meta.new_password.ok_or_else(|| missing("newPassword"))?;
    let u = service::users::update_password(ctx.db(), ctx.principal()?, &u, &old, new).await?;
    Ok(document::ok(render(ctx.account_id(), &u)))
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct ForgotMeta {
    email: Option<String>,
    deliver: Option<bool>,
}

/// `POST /passwords`: anyone may ask for a user's password reset by email. The answer is 204
/// whether or not the email is a user's; when it is, the token goes out in a
/// `user.password-reset` event (Licensor sends no mail, as Keygen with `deliver: false`).
pub async fn forgot_password(ctx: Ctx, Body(body): Body) -> ApiResult<Response> {
    let meta: ForgotMeta = super::extract::parse_meta(body)?;
    let email = meta.email.ok_or_else(|| Error::bad_request("is missing", Source::Pointer("/meta/email".into())))?;
    let _ = meta.deliver;
    service::users::request_password_reset(ctx.db(), ctx.account_id(), &email).await?;
    Ok(document::no_content())
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct ResetMeta {
    password_reset_token: Option<String>,
    new_password: Option<String>,
}

/// `POST /users/{id}/actions/reset-password`: with the token of `POST /passwords`, no
/// credentials needed; the user's tokens are all revoked.
pub async fn reset_password(ctx: Ctx, Body(body): Body) -> ApiResult<Response> {
    let id = ctx.param("id");
    let u = users::find_by_id_or_email(ctx.db(), ctx.account_id(), id)
        .await?
        .ok_or_else(|| Error::not_found("user", id))?;
    let meta: ResetMeta = super::extract::parse_meta(body)?;
    let missing =
        |name: &'static str| Error::bad_request("is missing", Source::Pointer(format!("/meta/{name}").into()));
    let token = meta.password_reset_token.ok_or_else(|| missing("passwordResetToken"))?;
    let new = meta.new_password.ok_or_else(|| missing("newPassword"))?;
    let u = service::users::reset_password_with_token(ctx.db(), &ctx.account, &u, id, &token, new).await?;
    Ok(document::ok(render(ctx.account_id(), &u)))
}
