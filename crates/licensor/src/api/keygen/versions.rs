//! `Keygen-Version`: answers for a client pinned to an older API version. Handlers answer in
//! the current version's shapes (1.8); the signing middleware then migrates the document back,
//! newest change first, as Keygen's request migrations do, before it signs it. A change applies
//! to every version up to and including the one it is filed under.
//!
//! Requests are migrated the other way first ([`migrate_request`]): a policy written with an
//! older version's attribute names is read in the current ones.
//!
//! Not migrated (the resource or header does not exist in Licensor): releases and artifacts
//! (1.0) and the `Keygen-*-Id` header names (1.3).

use axum::http::{Method, StatusCode};
use serde_json::{Map, Value};

use crate::error::{Error, Source};

/// A released API version, `1.minor`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Version(u8);

impl Version {
    pub const CURRENT: Version = Version(8);

    /// `1.5` or `v1.5`; anything else is Keygen's 400 `INVALID_API_VERSION`.
    pub fn parse(header: &str) -> Result<Version, Error> {
        let v = header.trim();
        let v = v.strip_prefix('v').unwrap_or(v);
        match v.strip_prefix("1.").and_then(|m| m.parse::<u8>().ok()) {
            Some(minor) if minor <= Self::CURRENT.0 && v.len() == 3 => Ok(Version(minor)),
            _ => Err(Error::BadRequest {
                detail: "unsupported API version requested".into(),
                code: Some("INVALID_API_VERSION".into()),
                location: Source::None,
            }),
        }
    }

    pub fn as_str(self) -> &'static str {
        ["1.0", "1.1", "1.2", "1.3", "1.4", "1.5", "1.6", "1.7", "1.8"][usize::from(self.0)]
    }

    /// Whether a change filed under `1.minor` applies to this version.
    pub fn upto(self, minor: u8) -> bool {
        self.0 <= minor
    }
}

/// The request an answer is for: its method and its path after `/v1/accounts/{account}` (or
/// after `/v1` on the default account).
pub struct Route<'a> {
    pub method: &'a Method,
    pub path: &'a str,
}

impl Route<'_> {
    fn is(&self, method: Method, path: &str) -> bool {
        *self.method == method && self.path == path
    }

    fn validates(&self) -> bool {
        (self.path.starts_with("/licenses/") && self.path.ends_with("/actions/validate"))
            || self.is(Method::POST, "/licenses/actions/validate-key")
    }

    fn writes_a_license(&self) -> bool {
        self.is(Method::POST, "/licenses")
            || (*self.method == Method::PATCH
                && self.path.strip_prefix("/licenses/").is_some_and(|rest| !rest.contains('/')))
    }
}

/// Reads a request body written in `version`'s shapes in the current version's: a policy's
/// `leasingStrategy` (up to 1.6), `fingerprintUniquenessStrategy` and
/// `fingerprintMatchingStrategy` (up to 1.3) and `concurrent` (up to 1.1). Returns whether it
/// changed anything.
pub fn migrate_request(version: Version, route: &Route, body: &mut Value) -> bool {
    if !migrates_request(version, route) {
        return false;
    }
    let Some(attrs) = body.pointer_mut("/data/attributes").and_then(Value::as_object_mut) else { return false };
    let mut renamed = false;
    if version.upto(6) {
        renamed |= rename(attrs, "leasingStrategy", "processLeasingStrategy");
    }
    if version.upto(3) {
        renamed |= rename(attrs, "fingerprintUniquenessStrategy", "machineUniquenessStrategy");
        renamed |= rename(attrs, "fingerprintMatchingStrategy", "machineMatchingStrategy");
    }
    if version.upto(1) {
        if let Some(Value::Bool(concurrent)) = attrs.remove("concurrent") {
            let overage = if concurrent { "ALWAYS_ALLOW_OVERAGE" } else { "NO_OVERAGE" };
            attrs.entry("overageStrategy").or_insert_with(|| overage.into());
            renamed = true;
        }
    }
    renamed
}

/// Whether [`migrate_request`] may change a request of `version` to `route`: only policy
/// writes of versions before 1.7 have older names; every other body is left as sent.
pub fn migrates_request(version: Version, route: &Route) -> bool {
    let writes_policy = (*route.method == Method::POST && route.path == "/policies")
        || (matches!(*route.method, Method::PATCH | Method::PUT)
            && route.path.strip_prefix("/policies/").is_some_and(|rest| !rest.contains('/')));
    writes_policy && version.upto(6)
}

/// The licenses of the machines in an answer (for 1.5's machine `user` relationship, the
/// license's owner, which the caller looks up).
pub fn machine_licenses(doc: &Value) -> Vec<uuid::Uuid> {
    let data: Vec<&Value> = match doc.get("data") {
        Some(Value::Array(items)) => items.iter().collect(),
        Some(o @ Value::Object(_)) => vec![o],
        _ => Vec::new(),
    };
    data.into_iter()
        .filter(|o| o.get("type").and_then(Value::as_str) == Some("machines"))
        .filter_map(|o| o.pointer("/relationships/license/data/id").and_then(Value::as_str))
        .filter_map(|id| id.parse().ok())
        .collect()
}

/// Migrates an answer of the current version to `version`'s shapes. `owners` holds the owner
/// of each license [`machine_licenses`] named.
pub fn migrate(
    version: Version,
    route: &Route,
    status: StatusCode,
    doc: &mut Value,
    owners: &std::collections::HashMap<uuid::Uuid, Option<uuid::Uuid>>,
) {
    let ok = status.as_u16() < 400;
    // 1.7: password logins refused with one code.
    if version.upto(7) && status == StatusCode::UNAUTHORIZED && route.is(Method::POST, "/tokens") {
        for e in errors(doc) {
            let code = e.get("code").and_then(Value::as_str).unwrap_or("");
            if matches!(
                code,
                "EMAIL_REQUIRED"
                    | "EMAIL_INVALID"
                    | "PASSWORD_REQUIRED"
                    | "PASSWORD_INVALID"
                    | "PASSWORD_NOT_SUPPORTED"
            ) {
                e.insert("detail".into(), "email and password must be valid".into());
                e.insert("code".into(), "CREDENTIALS_INVALID".into());
            }
        }
    }
    // 1.6: policies named their process leasing strategy `leasingStrategy`.
    if version.upto(6) && ok {
        for attrs in attributes_of(doc, "policies") {
            rename(attrs, "processLeasingStrategy", "leasingStrategy");
        }
    }
    // 1.5: a license's owner was its `user`.
    if version.upto(5) && ok && status != StatusCode::NO_CONTENT {
        for object in objects_of(doc, "licenses") {
            let id = object.get("id").and_then(Value::as_str).unwrap_or("").to_string();
            let account = object
                .get("relationships")
                .and_then(|r| r.pointer("/account/data/id"))
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string();
            if let Some(rels) = object.get_mut("relationships").and_then(Value::as_object_mut) {
                if let Some(mut owner) = rels.remove("owner") {
                    owner["links"] =
                        serde_json::json!({"related": format!("/v1/accounts/{account}/licenses/{id}/user")});
                    rels.insert("user".into(), owner);
                }
            }
        }
    }
    // 1.5: a machine's `user` was its license's owner, and it had no `owner` of its own.
    if version.upto(5) && ok && status != StatusCode::NO_CONTENT {
        for object in objects_of(doc, "machines") {
            let id = object.get("id").and_then(Value::as_str).unwrap_or("").to_string();
            let rels = object.get("relationships").cloned().unwrap_or_default();
            let account = rels.pointer("/account/data/id").and_then(Value::as_str).unwrap_or("").to_string();
            let license = rels.pointer("/license/data/id").and_then(Value::as_str).and_then(|l| l.parse().ok());
            let owner = license.and_then(|l| owners.get(&l).copied().flatten());
            if let Some(rels) = object.get_mut("relationships").and_then(Value::as_object_mut) {
                rels.remove("owner");
                rels.insert(
                    "user".into(),
                    serde_json::json!({
                        "links": {"related": format!("/v1/accounts/{account}/machines/{id}/user")},
                        "data": owner.map(|o| serde_json::json!({"type": "users", "id": o})),
                    }),
                );
            }
        }
    }
    if version.upto(5) && status == StatusCode::UNPROCESSABLE_ENTITY && route.writes_a_license() {
        for e in errors(doc) {
            if e.get("code").and_then(Value::as_str) == Some("OWNER_NOT_FOUND") {
                e.insert("code".into(), "USER_NOT_FOUND".into());
                e.insert("source".into(), serde_json::json!({"pointer": "/data/relationships/user"}));
            }
        }
    }
    // 1.4: metadata keys below the top level were snake_case.
    if version.upto(4) && ok {
        for object in all_objects(doc) {
            if let Some(Value::Object(metadata)) = object.get_mut("attributes").and_then(|a| a.get_mut("metadata")) {
                for value in metadata.values_mut() {
                    match value {
                        Value::Object(_) => underscore_keys(value),
                        Value::Array(items) => items.iter_mut().filter(|v| v.is_object()).for_each(underscore_keys),
                        _ => {}
                    }
                }
            }
        }
    }
    // 1.3: machine strategies were fingerprint strategies.
    if version.upto(3) && ok {
        for attrs in attributes_of(doc, "policies") {
            rename(attrs, "machineUniquenessStrategy", "fingerprintUniquenessStrategy");
            rename(attrs, "machineMatchingStrategy", "fingerprintMatchingStrategy");
        }
    }
    // 1.2: a new machine was not yet alive.
    if version.upto(2) && ok && route.is(Method::POST, "/machines") {
        if let Some(attrs) = doc.pointer_mut("/data/attributes").and_then(Value::as_object_mut) {
            if attrs.get("heartbeatStatus").and_then(Value::as_str) == Some("ALIVE") {
                attrs.insert("heartbeatStatus".into(), "NOT_STARTED".into());
                attrs.insert("lastHeartbeat".into(), Value::Null);
            }
        }
    }
    // 1.1: only VALID and EXPIRED were valid, and the code was the validation's `constant`;
    // policies said whether they were `concurrent`.
    if version.upto(1) && ok && route.validates() {
        if let Some(meta) = doc.get_mut("meta").and_then(Value::as_object_mut) {
            if meta.get("valid") == Some(&Value::Bool(true)) {
                let code = meta.get("code").and_then(Value::as_str).unwrap_or("");
                let valid = code == "VALID" || code == "EXPIRED";
                meta.insert("valid".into(), valid.into());
            }
            if let Some(code) = meta.remove("code") {
                meta.insert("constant".into(), code);
            }
        }
    }
    if version.upto(1) && ok {
        for attrs in attributes_of(doc, "policies") {
            if let Some(overage) = attrs.get("overageStrategy").and_then(Value::as_str) {
                let concurrent = overage != "NO_OVERAGE";
                attrs.insert("concurrent".into(), concurrent.into());
            }
        }
    }
}

fn errors(doc: &mut Value) -> impl Iterator<Item = &mut Map<String, Value>> {
    doc.get_mut("errors").and_then(Value::as_array_mut).into_iter().flatten().filter_map(Value::as_object_mut)
}

/// The primary resource objects (`data`, one or a list) of type `kind`.
fn objects_of<'a>(doc: &'a mut Value, kind: &'a str) -> impl Iterator<Item = &'a mut Map<String, Value>> {
    let data: Vec<&mut Value> = match doc.get_mut("data") {
        Some(Value::Array(items)) => items.iter_mut().collect(),
        Some(object @ Value::Object(_)) => vec![object],
        _ => Vec::new(),
    };
    data.into_iter()
        .filter_map(Value::as_object_mut)
        .filter(move |o| o.get("type").and_then(Value::as_str) == Some(kind))
}

fn attributes_of<'a>(doc: &'a mut Value, kind: &'a str) -> impl Iterator<Item = &'a mut Map<String, Value>> {
    objects_of(doc, kind).filter_map(|o| o.get_mut("attributes").and_then(Value::as_object_mut))
}

/// Every resource object: `data` (one or a list) and `included`.
fn all_objects(doc: &mut Value) -> Vec<&mut Map<String, Value>> {
    let Some(doc) = doc.as_object_mut() else { return Vec::new() };
    let mut out = Vec::new();
    for (key, value) in doc.iter_mut() {
        match (key.as_str(), value) {
            ("data" | "included", Value::Array(items)) => out.extend(items.iter_mut().filter_map(Value::as_object_mut)),
            ("data", Value::Object(o)) => out.push(o),
            _ => {}
        }
    }
    out
}

/// Renames `from` to `to` when present; returns whether it was.
fn rename(attrs: &mut Map<String, Value>, from: &str, to: &str) -> bool {
    match attrs.remove(from) {
        Some(v) => {
            attrs.insert(to.into(), v);
            true
        }
        None => false,
    }
}

fn underscore_keys(value: &mut Value) {
    match value {
        Value::Object(map) => {
            let old = std::mem::take(map);
            for (k, mut v) in old {
                underscore_keys(&mut v);
                map.insert(crate::domain::metadata::underscore(&k), v);
            }
        }
        Value::Array(items) => items.iter_mut().for_each(underscore_keys),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn versions_parse_as_keygen_names_them() {
        assert_eq!(Version::parse("1.5").unwrap(), Version(5));
        assert_eq!(Version::parse("v1.0").unwrap().as_str(), "1.0");
        for bad in ["1.9", "2.0", "1.10", "1", "latest", ""] {
            assert!(Version::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn validations_of_1_1_say_constant() {
        let route = Route { method: &Method::POST, path: "/licenses/actions/validate-key" };
        let mut doc = json!({"meta": {"valid": true, "code": "TOO_MANY_MACHINES"}});
        migrate(Version(1), &route, StatusCode::OK, &mut doc, &Default::default());
        assert_eq!(doc, json!({"meta": {"valid": false, "constant": "TOO_MANY_MACHINES"}}));
        let mut doc = json!({"meta": {"valid": true, "code": "VALID"}});
        migrate(Version(2), &route, StatusCode::OK, &mut doc, &Default::default());
        assert_eq!(doc, json!({"meta": {"valid": true, "code": "VALID"}}), "1.2 has codes");
    }

    #[test]
    fn nested_metadata_keys_of_1_4_are_snake_case() {
        let route = Route { method: &Method::GET, path: "/licenses" };
        let mut doc = json!({"data": [{"type": "licenses", "attributes": {"metadata": {
            "parentKey": {"childKey": "value"}, "list": [{"itemKey": 1}], "topKey": "x"}}}]});
        migrate(Version(4), &route, StatusCode::OK, &mut doc, &Default::default());
        assert_eq!(
            doc["data"][0]["attributes"]["metadata"],
            json!({"parentKey": {"child_key": "value"}, "list": [{"item_key": 1}], "topKey": "x"})
        );
    }
}
