//! `POST /search`: Keygen's search over users, licenses, machines, products, policies,
//! entitlements and groups, for admins; each match rendered as its own list renders it.

use axum::response::Response;
use uuid::Uuid;

use super::error::ApiResult;
use super::extract::{Body, Ctx};
use crate::error::Result;
use crate::model::Listing;
use crate::service::search::{plan, Kind};
use crate::store::{self, search};
use crate::wire;

/// The rows behind a page of ids, in the page's order (a row deleted meanwhile is left out).
async fn load<T, F>(ids: Listing<Uuid>, mut find: impl FnMut(Uuid) -> F) -> Result<Listing<T>>
where
    F: std::future::Future<Output = Result<Option<T>>>,
{
    let mut rows = Vec::with_capacity(ids.rows.len());
    for id in ids.rows {
        rows.extend(find(id).await?);
    }
    Ok(Listing { rows, total: ids.total })
}

pub async fn search(ctx: Ctx, Body(body): Body) -> ApiResult<Response> {
    ctx.principal()?;
    let plan = plan(&body, || ctx.admin().map(|_| ()))?;
    let params = ctx.list_params()?;
    let (db, account) = (ctx.db(), ctx.account_id());
    let ids =
        search::ids(db, account, &plan.kind.table(), &plan.terms, plan.op, params.page, params.ascending()).await?;
    Ok(match plan.kind {
        Kind::Users => {
            let rows = load(ids, |id| store::users::find(db, account, id)).await?;
            params.document(rows, |u| wire::users::render(account, &u))
        }
        Kind::Licenses => {
            let rows = load(ids, |id| store::licenses::find(db, account, id)).await?;
            params.document(rows, |l| wire::licenses::render(account, &l))
        }
        Kind::Machines => {
            let rows = load(ids, |id| store::machines::find(db, account, id)).await?;
            params.document(rows, |m| wire::machines::render(account, &m))
        }
        Kind::Products => {
            let rows = load(ids, |id| async move { store::products::find(db, account, &id.to_string()).await }).await?;
            params.document(rows, |p| wire::products::render(account, &p))
        }
        Kind::Policies => {
            let rows = load(ids, |id| store::policies::find(db, account, id)).await?;
            params.document(rows, |p| wire::policies::render(account, &p))
        }
        Kind::Entitlements => {
            let rows =
                load(ids, |id| async move { store::entitlements::find(db, account, &id.to_string()).await }).await?;
            params.document(rows, |e| wire::entitlements::render(account, &e))
        }
        Kind::Groups => {
            let rows = load(ids, |id| store::groups::find(db, account, id)).await?;
            params.document(rows, |g| wire::groups::render(account, &g))
        }
    })
}
