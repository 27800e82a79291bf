//! Keygen's search: which resources can be searched by what, and the checks a search request
//! meets, in Keygen's order; `store::search` runs it.

use serde_json::{Map, Value};

use crate::domain::metadata;
use crate::error::{Error, Result, Source};
use crate::store::search::{Op, Table, Term};

/// A searchable resource type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Users,
    Licenses,
    Machines,
    Products,
    Policies,
    Entitlements,
    Groups,
}

/// A search to run: the resource type, its terms, how they combine.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    pub kind: Kind,
    pub terms: Vec<Term>,
    pub op: Op,
}

/// Keygen's shortest searchable string.
const MIN_LEN: usize = 3;
/// Values a query may hold (scalars, keys and containers, at any depth): each may become a
/// bound parameter or a term of the condition, and the engines take a few thousand at most.
const MAX_VALUES: usize = 256;

/// How many values `v` holds: a scalar counts one, a container one plus its items, and an
/// object's key one more each, so `{"k1": {}, "k2": {}, …}` counts as much as it binds.
fn values_in(v: &Value) -> usize {
    match v {
        Value::Array(items) => 1 + items.iter().map(values_in).sum::<usize>(),
        Value::Object(o) => 1 + o.values().map(|v| 1 + values_in(v)).sum::<usize>(),
        _ => 1,
    }
}

fn bad(detail: String, pointer: String) -> Error {
    Error::bad_request(detail, Source::Pointer(pointer.into()))
}

/// A type as Keygen reads it (`users`, `user`, `User`, `request-logs`): singular, snake_case.
fn kind_of(given: &str) -> Option<Kind> {
    let t = metadata::underscore(given).replace('-', "_");
    let t =
        t.strip_suffix("ies").map(|s| format!("{s}y")).or_else(|| t.strip_suffix('s').map(str::to_string)).unwrap_or(t);
    Some(match t.as_str() {
        "user" => Kind::Users,
        "license" => Kind::Licenses,
        "machine" => Kind::Machines,
        "product" => Kind::Products,
        "policy" => Kind::Policies,
        "entitlement" => Kind::Entitlements,
        "group" => Kind::Groups,
        _ => return None,
    })
}

impl Kind {
    pub fn table(self) -> Table {
        let (from, id, account, created) = match self {
            Kind::Users => ("users u", "u.id", "u.account_id", "u.created_at"),
            Kind::Licenses => ("licenses l", "l.id", "l.account_id", "l.created_at"),
            Kind::Machines => ("machines m", "m.id", "m.account_id", "m.created_at"),
            Kind::Products => ("products p", "p.id", "p.account_id", "p.created_at"),
            Kind::Policies => ("policies p", "p.id", "p.account_id", "p.created_at"),
            Kind::Entitlements => ("entitlements e", "e.id", "e.account_id", "e.created_at"),
            Kind::Groups => ("groups g", "g.id", "g.account_id", "g.created_at"),
        };
        Table { from, id, account, created }
    }

    fn metadata_column(self) -> Option<&'static str> {
        match self {
            Kind::Users => Some("u.metadata"),
            Kind::Licenses => Some("l.metadata"),
            Kind::Machines => Some("m.metadata"),
            Kind::Products | Kind::Policies => Some("p.metadata"),
            Kind::Entitlements | Kind::Groups => None,
        }
    }

    /// The term for attribute `attr` (snake_case) searched for `s`, or `None` when this
    /// resource has no such attribute.
    fn term(self, attr: &str, s: String) -> Option<Term> {
        use Term::{Eq, Id, Like, Related};
        const USERS_OF_LICENSE: &str =
            "SELECT l.owner_id UNION SELECT x.user_id FROM license_users x WHERE x.license_id = l.id";
        const USERS_OF_MACHINE: &str = "SELECT l2.owner_id FROM licenses l2 WHERE l2.id = m.license_id \
             UNION SELECT x.user_id FROM license_users x WHERE x.license_id = m.license_id";
        let users = |ids| Related { ids, table: "users", column: "email", term: s.clone() };
        let named = |ids, table| Related { ids, table, column: "name", term: s.clone() };
        Some(match (self, attr) {
            (Kind::Users, "id") => Id { column: "u.id", term: s },
            (Kind::Users, "email") => Like { column: "u.email", term: s },
            (Kind::Users, "first_name") => Like { column: "u.first_name", term: s },
            (Kind::Users, "last_name") => Like { column: "u.last_name", term: s },
            (Kind::Users, "full_name" | "name") => match s.split_once(' ') {
                Some((first, last)) => Term::All(vec![
                    Like { column: "u.first_name", term: first.to_string() },
                    Like { column: "u.last_name", term: last.to_string() },
                ]),
                None => Term::Nothing,
            },
            (Kind::Users, "role") => Like { column: "u.role", term: s },
            (Kind::Licenses, "id") => Id { column: "l.id", term: s },
            (Kind::Licenses, "key") => Eq { column: "l.key", term: s },
            (Kind::Licenses, "name") => Like { column: "l.name", term: s },
            (Kind::Licenses, "owner") => users("SELECT l.owner_id"),
            (Kind::Licenses, "user") => users(USERS_OF_LICENSE),
            (Kind::Licenses, "product") => named("SELECT l.product_id", "products"),
            (Kind::Licenses, "policy") => named("SELECT l.policy_id", "policies"),
            (Kind::Machines, "id") => Id { column: "m.id", term: s },
            (Kind::Machines, "fingerprint") => Like { column: "m.fingerprint", term: s },
            (Kind::Machines, "name") => Like { column: "m.name", term: s },
            (Kind::Machines, "license") => named("SELECT m.license_id", "licenses"),
            (Kind::Machines, "owner") => users("SELECT m.owner_id"),
            (Kind::Machines, "user") => users(USERS_OF_MACHINE),
            (Kind::Machines, "product") => {
                named("SELECT l2.product_id FROM licenses l2 WHERE l2.id = m.license_id", "products")
            }
            (Kind::Machines, "policy") => {
                named("SELECT l2.policy_id FROM licenses l2 WHERE l2.id = m.license_id", "policies")
            }
            (Kind::Products | Kind::Policies, "id") => Id { column: "p.id", term: s },
            (Kind::Products | Kind::Policies, "name") => Like { column: "p.name", term: s },
            (Kind::Policies, "product") => named("SELECT p.product_id", "products"),
            (Kind::Entitlements, "id") => Id { column: "e.id", term: s },
            (Kind::Entitlements, "code") => Like { column: "e.code", term: s },
            (Kind::Entitlements, "name") => Like { column: "e.name", term: s },
            (Kind::Groups, "name") => Like { column: "g.name", term: s },
            _ => return None,
        })
    }
}

fn received(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_f64() => "float",
        Value::Number(_) => "integer",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "hash",
    }
}

/// `meta.<name>`: present, not null, of the type asked (Keygen's typed-parameter checks).
fn member<'a>(meta: &'a Map<String, Value>, name: &str, expected: &str) -> Result<Option<&'a Value>> {
    let pointer = format!("/meta/{name}");
    match meta.get(name) {
        None => Ok(None),
        Some(Value::Null) => Err(bad("cannot be null".into(), pointer)),
        Some(v) if received(v) != expected => {
            Err(bad(format!("type mismatch (received {} expected {expected})", received(v)), pointer))
        }
        Some(v) => Ok(Some(v)),
    }
}

/// Reads a search request's `meta` into a plan, or Keygen's 400 for what is wrong with it.
/// `may_search` is asked after the type is known, as Keygen authorizes (a 403 after a bad
/// type's 400, before a bad query's).
pub fn plan(doc: &Value, may_search: impl FnOnce() -> Result<()>) -> Result<Plan> {
    let Some(meta) = doc.get("meta") else { return Err(bad("is missing".into(), "/meta".into())) };
    let Value::Object(meta) = meta else {
        return Err(bad(format!("type mismatch (received {} expected hash)", received(meta)), "/meta".into()));
    };
    if let Some(extra) = meta.keys().find(|k| !["type", "query", "op"].contains(&k.as_str())) {
        return Err(bad("unpermitted parameter".into(), format!("/meta/{extra}")));
    }
    let given = member(meta, "type", "string")?.ok_or_else(|| bad("is missing".into(), "/meta/type".into()))?;
    let given = given.as_str().unwrap_or_default();
    if given.is_empty() {
        return Err(bad("cannot be blank".into(), "/meta/type".into()));
    }
    let query = member(meta, "query", "hash")?.ok_or_else(|| bad("is missing".into(), "/meta/query".into()))?;
    let query = query.as_object().cloned().unwrap_or_default();
    if query.is_empty() {
        return Err(bad("cannot be blank".into(), "/meta/query".into()));
    }
    if query.values().map(values_in).sum::<usize>() > MAX_VALUES {
        return Err(bad(format!("is too large (at most {MAX_VALUES} values)"), "/meta/query".into()));
    }
    let op = match member(meta, "op", "string")?.and_then(Value::as_str) {
        None => Op::And,
        Some(op) if op.eq_ignore_ascii_case("and") => Op::And,
        Some(op) if op.eq_ignore_ascii_case("or") => Op::Or,
        Some(op) => return Err(bad(format!("search operation '{op}' is not supported"), "/meta/op".into())),
    };
    let type_name = metadata::shown_key(&metadata::underscore(given));
    let kind = kind_of(given)
        .ok_or_else(|| bad(format!("search type '{type_name}' is not supported"), "/meta/type".into()))?;
    may_search()?;

    let mut terms = Vec::with_capacity(query.len());
    for (given_attr, value) in query {
        let attr = metadata::underscore(&given_attr);
        let shown = metadata::shown_key(&attr);
        let pointer = format!("/meta/query/{shown}");
        if attr == "metadata" {
            let column = kind.metadata_column().ok_or_else(|| {
                bad(format!("search query '{shown}' is not supported for resource type '{type_name}'"), pointer.clone())
            })?;
            let Value::Object(pairs) = value else {
                return Err(bad(
                    "search query for 'metadata' must be a hash of key-value search terms".into(),
                    pointer,
                ));
            };
            for (key, value) in pairs {
                let stored = metadata::stored_key(&key);
                if value.as_str().is_some_and(|s| s.chars().count() < MIN_LEN) {
                    let key_shown = metadata::shown_key(&stored);
                    return Err(bad(
                        format!("search query for '{key_shown}' is too small (minimum {MIN_LEN} characters)"),
                        format!("{pointer}/{key_shown}"),
                    ));
                }
                terms.push(Term::Metadata { column, key: stored, value });
            }
            continue;
        }
        if kind.term(&attr, String::new()).is_none() {
            return Err(bad(
                format!("search query '{shown}' is not supported for resource type '{type_name}'"),
                pointer,
            ));
        }
        let s = match value {
            Value::Null => {
                terms.push(Term::Nothing);
                continue;
            }
            Value::String(s) => s,
            Value::Number(n) => n.to_string(),
            other => {
                return Err(bad(format!("type mismatch (received {} expected string)", received(&other)), pointer))
            }
        };
        if s.chars().count() < MIN_LEN {
            return Err(bad(
                format!("search query for '{shown}' is too small (minimum {MIN_LEN} characters)"),
                pointer,
            ));
        }
        terms.extend(kind.term(&attr, s));
    }
    Ok(Plan { kind, terms, op })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn detail(r: Result<Plan>) -> (String, String) {
        match r {
            Err(Error::BadRequest { detail, location: Source::Pointer(p), .. }) => {
                (detail.into_owned(), p.into_owned())
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn types_are_read_as_keygen_reads_them() {
        for t in ["users", "user", "User", "licenses", "policies", "policy", "machines", "entitlement", "groups"] {
            assert!(kind_of(t).is_some(), "{t}");
        }
        for t in ["accounts", "tokens", "requestLog", "request-logs", "unknowns"] {
            assert!(kind_of(t).is_none(), "{t}");
        }
    }

    #[test]
    fn requests_are_checked_in_keygens_order() {
        let ok = || Ok(());
        let plan_of = |doc: Value| plan(&doc, ok);
        assert_eq!(detail(plan_of(json!({}))), ("is missing".into(), "/meta".into()));
        assert_eq!(detail(plan_of(json!({"meta": {"query": {"x": "y"}}}))), ("is missing".into(), "/meta/type".into()));
        assert_eq!(detail(plan_of(json!({"meta": {"type": "users"}}))), ("is missing".into(), "/meta/query".into()));
        assert_eq!(
            detail(plan_of(json!({"meta": {"type": "users", "query": {}}}))),
            ("cannot be blank".into(), "/meta/query".into())
        );
        assert_eq!(
            detail(plan_of(json!({"meta": {"type": "users", "query": []}}))),
            ("type mismatch (received array expected hash)".into(), "/meta/query".into())
        );
        assert_eq!(
            detail(plan_of(json!({"meta": {"type": "accounts", "query": {"name": "abc"}}}))),
            ("search type 'accounts' is not supported".into(), "/meta/type".into())
        );
        assert_eq!(
            detail(plan_of(json!({"meta": {"type": "users", "query": {"foo": "abc"}}}))),
            ("search query 'foo' is not supported for resource type 'users'".into(), "/meta/query/foo".into())
        );
        assert_eq!(
            detail(plan_of(json!({"meta": {"type": "licenses", "query": {"key": "ab"}}}))),
            ("search query for 'key' is too small (minimum 3 characters)".into(), "/meta/query/key".into())
        );
        assert_eq!(
            detail(plan_of(json!({"meta": {"type": "licenses", "query": {"metadata": {"customer_id": "ab"}}}}))),
            (
                "search query for 'customerId' is too small (minimum 3 characters)".into(),
                "/meta/query/metadata/customerId".into()
            )
        );
        assert_eq!(
            detail(plan_of(json!({"meta": {"type": "users", "query": {"metadata": ["x"]}}}))),
            (
                "search query for 'metadata' must be a hash of key-value search terms".into(),
                "/meta/query/metadata".into()
            )
        );
        let many: Vec<Value> = (0..300).map(Value::from).collect();
        assert_eq!(
            detail(plan_of(json!({"meta": {"type": "licenses", "query": {"metadata": {"seats": many}}}}))),
            ("is too large (at most 256 values)".into(), "/meta/query".into())
        );
        // Empty containers bind nothing each, but their keys do: they count too.
        let keys: serde_json::Map<String, Value> = (0..300).map(|i| (format!("key{i}"), json!({}))).collect();
        assert_eq!(
            detail(plan_of(json!({"meta": {"type": "licenses", "query": {"metadata": keys}}}))),
            ("is too large (at most 256 values)".into(), "/meta/query".into())
        );
        // The type is checked before the caller's right to search; the query after.
        let denied = || Err(Error::access_denied());
        assert!(matches!(
            plan(&json!({"meta": {"type": "accounts", "query": {"name": "x"}}}), denied),
            Err(Error::BadRequest { .. })
        ));
        assert!(matches!(
            plan(&json!({"meta": {"type": "users", "query": {"foo": "x"}}}), denied),
            Err(Error::Forbidden { .. })
        ));
    }

    #[test]
    fn full_names_need_two_words_and_null_matches_nothing() {
        let p = plan(
            &json!({"meta": {"type": "users", "query": {"fullName": "John Doe", "email": null}, "op": "or"}}),
            || Ok(()),
        )
        .unwrap();
        assert_eq!(p.op, Op::Or);
        assert!(p.terms.iter().any(|t| matches!(t, Term::All(_))), "{:?}", p.terms);
        assert!(p.terms.contains(&Term::Nothing), "{:?}", p.terms);
        let p = plan(&json!({"meta": {"type": "users", "query": {"fullName": "John"}}}), || Ok(())).unwrap();
        assert_eq!(p.terms, vec![Term::Nothing]);
    }
}
