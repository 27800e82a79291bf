//! Catalogue use cases: products, policies, entitlements and groups are created here whichever
//! surface asks (the Keygen API, the console, the licensing surface's grants, core/v1's
//! features), so the checks, the event raised and what a clash answers live in one place. The
//! surfaces build the value (`Product::new` and so on, then their own attributes) and hand it
//! over.

use crate::db::Db;
use crate::error::{taken, Error, Result};
use crate::events::Raised;
use crate::model::{Entitlement, Group, Policy, Product};
use crate::store::{entitlements, groups, policies, products};

/// `value` must hold more than white space: `NAME_BLANK`, `CODE_BLANK`… on `attr`.
pub fn not_blank(attr: &str, value: &str) -> Result<()> {
    if value.trim().is_empty() {
        return Err(Error::invalid_attr(attr, "cannot be blank", format!("{}_BLANK", attr.to_ascii_uppercase())));
    }
    Ok(())
}

/// A product's code: letters, digits, `-`, `_` and `.` only.
pub fn product_code(code: &str) -> Result<()> {
    if code.is_empty() || !code.chars().all(|ch| ch.is_ascii_alphanumeric() || "-_.".contains(ch)) {
        return Err(Error::invalid_attr(
            "code",
            "must contain only letters, digits, dashes, underscores and dots",
            "CODE_INVALID",
        ));
    }
    Ok(())
}

pub async fn create_product(db: &Db, p: &Product) -> Result<()> {
    create_product_keyed(db, p, None).await.map(|_| ())
}

/// A chosen licensing key given to a new id: the id then carries it, and the range of ids
/// carrying it is what must be free in the account.
fn choose_key(id: &mut uuid::Uuid, key: Option<i32>) -> Option<(uuid::Uuid, uuid::Uuid)> {
    key.map(|k| {
        *id = crate::domain::projection::id_with_legacy_key(k);
        crate::domain::projection::legacy_key_range(k)
    })
}

/// The created resource, or the 422 for a licensing key another resource of the account has.
fn unless_key_taken<T>(inserted: bool, created: T) -> Result<T> {
    if inserted {
        Ok(created)
    } else {
        Err(Error::invalid_attr("licensingKey", "has already been taken", "LICENSING_KEY_TAKEN"))
    }
}

/// Creates `p`, with the licensing key `key` when one is chosen (its id then carries it, see
/// `domain::projection::id_with_legacy_key`): unique in the account, `LICENSING_KEY_TAKEN`
/// otherwise.
pub async fn create_product_keyed(db: &Db, p: &Product, key: Option<i32>) -> Result<Product> {
    not_blank("name", &p.name)?;
    if let Some(code) = &p.code {
        product_code(code)?;
    }
    let mut p = p.clone();
    let range = choose_key(&mut p.id, key);
    let inserted = products::insert_keyed(db, &p, range, &[Raised::product("product.created", &p)])
        .await
        .map_err(|e| taken(e, "code", "CODE_TAKEN"))?;
    unless_key_taken(inserted, p)
}

/// Creates `p` once its rules are consistent (normalized as Keygen does) and its product is one
/// of the account's.
pub async fn create_policy(db: &Db, mut p: Policy) -> Result<Policy> {
    not_blank("name", &p.name)?;
    if products::find(db, p.account_id, &p.product_id.to_string()).await?.is_none() {
        return Err(Error::invalid_rel("product", "must exist", "PRODUCT_NOT_FOUND"));
    }
    p.rules.0.normalize_and_validate()?;
    policies::insert(db, &p, &[Raised::policy("policy.created", &p)]).await?;
    Ok(p)
}

pub async fn create_entitlement(db: &Db, e: &Entitlement) -> Result<()> {
    create_entitlement_keyed(db, e, None).await.map(|_| ())
}

/// Creates `e`, with the licensing (extension) key `key` when one is chosen, as
/// [`create_product_keyed`] does for products.
pub async fn create_entitlement_keyed(db: &Db, e: &Entitlement, key: Option<i32>) -> Result<Entitlement> {
    not_blank("code", &e.code)?;
    not_blank("name", &e.name)?;
    let mut e = e.clone();
    let range = choose_key(&mut e.id, key);
    let inserted = entitlements::insert_keyed(db, &e, range, &[Raised::entitlement("entitlement.created", &e)])
        .await
        .map_err(|err| taken(err, "code", "CODE_TAKEN"))?;
    unless_key_taken(inserted, e)
}

/// The entitlement with `code`, created (named after its code) when the account has none yet;
/// a concurrent creation of the same code is found, not refused.
pub async fn entitlement_by_code(db: &Db, account: uuid::Uuid, code: &str) -> Result<Entitlement> {
    if let Some(e) = entitlements::find(db, account, code).await? {
        return Ok(e);
    }
    let e = Entitlement::new(account, code.to_string(), code.to_string(), crate::time::now_ms());
    match create_entitlement(db, &e).await {
        Ok(()) => Ok(e),
        Err(Error::Invalid { code: c, .. }) if c == "CODE_TAKEN" => entitlements::find(db, account, code)
            .await?
            .ok_or_else(|| Error::Internal(anyhow::anyhow!("entitlement {code} vanished after a clash"))),
        Err(err) => Err(err),
    }
}

pub async fn create_group(db: &Db, g: &Group) -> Result<()> {
    not_blank("name", &g.name)?;
    for (attr, cap) in [("maxUsers", g.max_users), ("maxLicenses", g.max_licenses), ("maxMachines", g.max_machines)] {
        group_cap(attr, cap)?;
    }
    groups::insert(db, g, &[Raised::group("group.created", g)]).await
}

/// A group's cap (`maxUsers`, `maxLicenses`, `maxMachines`): none, or a positive count.
pub fn group_cap(attr: &str, cap: Option<i64>) -> Result<()> {
    if cap.is_some_and(|v| !(1..=i32::MAX as i64).contains(&v)) {
        return Err(Error::invalid_attr(
            attr,
            "must be greater than 0",
            format!("{}_INVALID", crate::domain::policy::code_prefix(attr)),
        ));
    }
    Ok(())
}

/// Entitlements to attach, checked as Keygen checks them: each at most once, none attached
/// already (`ENTITLEMENT_TAKEN`), and none a license inherits from its policy
/// (`ENTITLEMENT_CONFLICT`).
pub fn attachable(requested: &[uuid::Uuid], attached: &[uuid::Uuid], inherited: &[uuid::Uuid]) -> Result<()> {
    for (i, id) in requested.iter().enumerate() {
        if inherited.contains(id) {
            return Err(Error::invalid_rel(
                "entitlement",
                "already exists (entitlement is attached through policy)",
                "ENTITLEMENT_CONFLICT",
            ));
        }
        if attached.contains(id) || requested[..i].contains(id) {
            return Err(taken_entitlement());
        }
    }
    Ok(())
}

fn taken_entitlement() -> Error {
    Error::invalid_rel("entitlement", "already exists", "ENTITLEMENT_TAKEN")
}

/// Entitlements to detach, checked as Keygen checks them: one a license inherits from its
/// policy cannot be (403), one not attached is a 422 naming its place in the request.
pub fn detachable(requested: &[uuid::Uuid], attached: &[uuid::Uuid], inherited: &[uuid::Uuid]) -> Result<()> {
    if let Some(id) = requested.iter().find(|id| inherited.contains(id) && !attached.contains(id)) {
        return Err(Error::Forbidden {
            detail: format!("cannot detach entitlement '{id}' (entitlement is attached through policy)").into(),
            code: None,
        });
    }
    if let Some((i, id)) = requested.iter().enumerate().find(|(_, id)| !attached.contains(id)) {
        return Err(Error::Unprocessable {
            detail: format!("cannot detach entitlement '{id}' (entitlement is not attached)").into(),
            location: crate::error::Source::Pointer(format!("/data/{i}").into()),
        });
    }
    Ok(())
}

/// Attaches entitlements to `target` (a policy, or a license with the entitlements its policy
/// grants as `inherited`), raising `event`; returns what was attached, in the order asked.
pub async fn attach_entitlements(
    db: &Db,
    account: uuid::Uuid,
    target: entitlements::Scope,
    inherited: &[uuid::Uuid],
    ids: &[uuid::Uuid],
    events: &[Raised],
) -> Result<Vec<(uuid::Uuid, i64)>> {
    let attached = entitlements::attached(db, account, target).await?;
    attachable(ids, &attached, inherited)?;
    let now = crate::time::now_ms();
    match entitlements::attach(db, account, target, ids, now, events).await {
        Ok(()) => Ok(ids.iter().map(|id| (*id, now)).collect()),
        // Attached by a request that committed between the check and the insert.
        Err(Error::Database(e)) if crate::db::is_unique_violation(&e) => Err(taken_entitlement()),
        Err(e) => Err(e),
    }
}

/// Detaches entitlements from `target` (see [`detachable`]), raising `event`.
pub async fn detach_entitlements(
    db: &Db,
    account: uuid::Uuid,
    target: entitlements::Scope,
    inherited: &[uuid::Uuid],
    ids: &[uuid::Uuid],
    events: &[Raised],
) -> Result<()> {
    let attached = entitlements::attached(db, account, target).await?;
    detachable(ids, &attached, inherited)?;
    if !entitlements::detach(db, account, target, ids, events).await? {
        // Detached by a request that committed between the check and the delete.
        return detachable(ids, &[], &[]);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blank_names_and_codes_are_refused_with_their_attribute() {
        assert!(not_blank("name", "App").is_ok());
        match not_blank("code", " \t") {
            Err(Error::Invalid { code, location, .. }) => {
                assert_eq!(code, "CODE_BLANK");
                assert_eq!(location, crate::error::Source::Pointer("/data/attributes/code".into()));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn entitlements_attach_once_and_detach_only_where_attached() {
        let (a, b, c) = (uuid::Uuid::from_u128(1), uuid::Uuid::from_u128(2), uuid::Uuid::from_u128(3));
        assert!(attachable(&[a, b], &[c], &[]).is_ok());
        let code = |r: Result<()>| match r {
            Err(Error::Invalid { code, .. }) => code.into_owned(),
            other => format!("{other:?}"),
        };
        assert_eq!(code(attachable(&[a, c], &[c], &[])), "ENTITLEMENT_TAKEN");
        assert_eq!(code(attachable(&[a, a], &[], &[])), "ENTITLEMENT_TAKEN");
        assert_eq!(code(attachable(&[b], &[], &[b])), "ENTITLEMENT_CONFLICT");
        assert!(detachable(&[c], &[c], &[a]).is_ok());
        assert!(matches!(detachable(&[a], &[c], &[a]), Err(Error::Forbidden { .. })));
        match detachable(&[c, b], &[c], &[]) {
            Err(Error::Unprocessable { location, .. }) => {
                assert_eq!(location, crate::error::Source::Pointer("/data/1".into()))
            }
            other => panic!("{other:?}"),
        }
    }
}
