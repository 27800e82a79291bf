//! Who may do what to a license or a machine: one policy per resource, as Keygen's
//! `LicensePolicy` and `MachinePolicy` decide it, used by every surface.
//!
//! What a caller cannot see is answered as not found (lookups are scoped to the bearer); what
//! it sees but may not change is refused. The functions here answer the two questions apart.

use uuid::Uuid;

use crate::auth::{Bearer, Principal};
use crate::db::Db;
use crate::error::Result;
use crate::model::{License, Policy, Token};
use crate::store::licenses::{self, LicenseFilter};
use crate::store::users;

/// What is done to a license beyond reading it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LicenseAction {
    /// Updates, suspension, usage decrements and resets, relationships: admins and its product.
    Manage,
    /// Delete or revoke: also its owner, unless the policy is protected.
    Destroy,
    /// Also its owner, unless the policy is protected.
    Renew,
    /// Check-in and usage increments: also its owner unless the license is protected, and the
    /// license itself.
    CheckInOrUse,
}

/// Whether `p` may read license `l`: admins any, a product its own, a user the licenses they
/// own or are attached to, a license itself.
pub async fn may_read_license(db: &Db, p: &Principal, l: &License) -> Result<bool> {
    Ok(match &p.bearer {
        Bearer::Admin(_) => true,
        Bearer::Product(prod) => prod.id == l.product_id,
        Bearer::License(me) => me.id == l.id,
        Bearer::User(u) => licenses::has_user(db, l, u.id).await?,
    })
}

/// Whether `p`, who may read `l`, may also do `action` to it.
pub fn may_change_license(p: &Principal, l: &License, action: LicenseAction) -> bool {
    match &p.bearer {
        Bearer::Admin(_) => true,
        Bearer::Product(prod) => prod.id == l.product_id,
        Bearer::User(u) if l.owner_id == Some(u.id) => match action {
            LicenseAction::Destroy | LicenseAction::Renew => !l.rules().protected,
            LicenseAction::CheckInOrUse => !l.is_protected(),
            LicenseAction::Manage => false,
        },
        Bearer::User(_) => false,
        Bearer::License(me) => me.id == l.id && action == LicenseAction::CheckInOrUse,
    }
}

/// What is done to a machine (or to its processes, which follow its rules).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MachineAction {
    Activate,
    Update,
    Deactivate,
    Ping,
    Reset,
    /// Changing the machine's owner or group: admins and the license's product.
    Reassign,
}

/// Whether `p` may do `action` to a machine of `l` owned by `owner`: users only for machines
/// they own or on licenses they own, and never under a protected license; a license not to
/// update itself when protected; heartbeat resets only by the admin or the product.
pub fn may_touch_machine(p: &Principal, l: &License, owner: Option<Uuid>, action: MachineAction) -> bool {
    match &p.bearer {
        Bearer::Admin(_) => true,
        Bearer::Product(prod) => prod.id == l.product_id,
        Bearer::License(me) => {
            me.id == l.id
                && match action {
                    MachineAction::Reset | MachineAction::Reassign => false,
                    MachineAction::Update => !l.is_protected(),
                    MachineAction::Activate | MachineAction::Deactivate | MachineAction::Ping => true,
                }
        }
        Bearer::User(u) => {
            !matches!(action, MachineAction::Reset | MachineAction::Reassign)
                && !l.is_protected()
                && (owner == Some(u.id) || l.owner_id == Some(u.id))
        }
    }
}

/// Whether `p` may see a machine of `l` owned by `owner`: whoever reads the license, and the
/// machine's own user.
pub async fn may_read_machine(db: &Db, p: &Principal, l: &License, owner: Option<Uuid>) -> Result<bool> {
    Ok(may_read_license(db, p, l).await? || p.user_id().is_some_and(|u| owner == Some(u)))
}

/// Who may manage a user's second factors, among those who can see the user: the account's
/// admins and the user themself; products and licenses never (Keygen's SecondFactorPolicy).
pub fn may_manage_second_factors(p: &Principal) -> bool {
    matches!(p.bearer, Bearer::Admin(_) | Bearer::User(_))
}

/// Admins and products: who may write a license's vendor-owned attributes (limits, expiry,
/// protection, a signed key's dataset).
pub fn is_operator(p: &Principal) -> bool {
    p.is_admin() || p.product_id().is_some()
}

/// Whether `p` may create a license under `policy` for `owner`: admins any, a product under
/// its own policies, a user for themselves under an unprotected policy (as Keygen allows).
pub fn may_create_license(p: &Principal, policy: &Policy, owner: Option<Uuid>) -> bool {
    match &p.bearer {
        Bearer::Admin(_) => true,
        Bearer::Product(prod) => prod.id == policy.product_id,
        Bearer::User(u) => !policy.rules.0.protected && owner == Some(u.id),
        Bearer::License(_) => false,
    }
}

/// Whether `p` may move license `l` to policy `to`: admins anywhere (the license then belongs
/// to that policy's product); its product only between its own policies; its owner only
/// between unprotected policies while the license is unprotected. `to` is `None` while the
/// target is still unknown: the question is then whether `p` may try at all.
pub fn may_transfer_license(p: &Principal, l: &License, to: Option<&Policy>) -> bool {
    match (&p.bearer, to) {
        (Bearer::Admin(_), _) => true,
        (Bearer::Product(prod), None) => prod.id == l.product_id,
        (Bearer::Product(prod), Some(to)) => prod.id == l.product_id && to.product_id == prod.id,
        (Bearer::User(u), None) => l.owner_id == Some(u.id),
        (Bearer::User(u), Some(to)) => l.owner_id == Some(u.id) && !l.is_protected() && !to.rules.0.protected,
        (Bearer::License(_), _) => false,
    }
}

/// Narrows a license listing to what `p` may see.
pub fn scope_license_list(p: &Principal, f: &mut LicenseFilter) {
    match &p.bearer {
        Bearer::Admin(_) => {}
        Bearer::Product(prod) => f.product = Some(prod.id),
        Bearer::User(u) => f.user = Some(u.id),
        Bearer::License(l) => f.only = Some(l.id),
    }
}

/// Whether `p` may see token `t` (not seeing it, it is not found): admins any; a product its
/// own, its licenses', and those of its users of role `user`; a license or a user its own.
pub async fn may_see_token(db: &Db, p: &Principal, t: &Token) -> Result<bool> {
    Ok(match &p.bearer {
        Bearer::Admin(_) => true,
        Bearer::Product(prod) => match t.bearer_type.as_str() {
            "product" => t.bearer_id == prod.id,
            "license" => licenses::find(db, t.account_id, t.bearer_id).await?.is_some_and(|l| l.product_id == prod.id),
            "user" => {
                users::find(db, t.account_id, t.bearer_id).await?.is_some_and(|u| u.role == "user")
                    && users::in_product(db, t.bearer_id, prod.id).await?
            }
            _ => false,
        },
        Bearer::License(l) => t.bearer_type == "license" && t.bearer_id == l.id,
        Bearer::User(u) => t.bearer_type == "user" && t.bearer_id == u.id,
    })
}

/// Whether `p`, who sees token `t`, may regenerate it. An admin regenerates its own token and
/// those of products, licenses and users of role `user`, not another admin's (`bearer_role`
/// is the role of `t`'s user bearer).
pub fn may_regenerate_token(p: &Principal, t: &Token, bearer_role: Option<&str>) -> bool {
    match &p.bearer {
        Bearer::Admin(me) => t.bearer_id == me.id || t.bearer_type != "user" || bearer_role == Some("user"),
        _ => true,
    }
}
