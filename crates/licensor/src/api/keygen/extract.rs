//! Request extractors for the native surface: the account and caller ([`Ctx`]) and the JSON:API
//! body ([`Body`]). Rejections come back as Keygen error documents.

use std::sync::Arc;

use axum::extract::{FromRequest, FromRequestParts, RawPathParams, Request};
use axum::http::header;
use axum::http::request::Parts;
use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::Value;
use uuid::Uuid;

use super::error::ApiError;
use crate::auth::{self, Credential, Principal};
use crate::db::Db;
use crate::error::{Error, Source};
use crate::model::Account;
use crate::state::AppState;

/// The account a request is addressed to, the authenticated caller (if any), and path params.
pub struct Ctx {
    pub state: AppState,
    pub account: Arc<Account>,
    /// The caller: `Ok(None)` when anonymous, `Err` when the credentials sent were bad.
    auth: Result<Option<Principal>, Error>,
    /// Whether the bad credential (if any) was a license key.
    bad_license_key: bool,
    /// Email and password from HTTP Basic, only meaningful to `POST /tokens`.
    pub password_login: Option<(String, String)>,
    params: Vec<(String, String)>,
    pub path: String,
    pub query: Option<String>,
}

impl Ctx {
    pub fn db(&self) -> &Db {
        &self.state.db
    }

    pub fn account_id(&self) -> Uuid {
        self.account.id
    }

    /// A path parameter by name (routes guarantee the ones they declare).
    pub fn param(&self, name: &str) -> &str {
        self.params.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str()).unwrap_or("")
    }

    /// The caller, or 401 when the request carried no credentials.
    pub fn principal(&self) -> Result<&Principal, Error> {
        self.maybe_principal()?
            .ok_or_else(|| Error::unauthorized("You must be authenticated to complete the request", "TOKEN_MISSING"))
    }

    /// The caller if any; bad credentials are still an error.
    pub fn maybe_principal(&self) -> Result<Option<&Principal>, Error> {
        match &self.auth {
            Ok(p) => Ok(p.as_ref()),
            Err(e) => Err(clone_auth_error(e)),
        }
    }

    /// Like [`maybe_principal`](Self::maybe_principal), but a license key that fails to
    /// authenticate counts as anonymous. Validation by key uses this: SDKs send the key being
    /// validated as their credential, and an unknown key must come back as `NOT_FOUND`.
    pub fn principal_unless_bad_license_key(&self) -> Result<Option<&Principal>, Error> {
        match &self.auth {
            Err(_) if self.bad_license_key => Ok(None),
            _ => self.maybe_principal(),
        }
    }

    /// The caller, who must be an admin of the account.
    pub fn admin(&self) -> Result<&Principal, Error> {
        let p = self.principal()?;
        if p.is_admin() {
            Ok(p)
        } else {
            Err(Error::access_denied())
        }
    }

    /// The caller, who must be an admin or a product (the account's operators).
    pub fn operator(&self) -> Result<&Principal, Error> {
        let p = self.principal()?;
        if p.is_admin() || p.product_id().is_some() {
            Ok(p)
        } else {
            Err(Error::access_denied())
        }
    }

    /// This request with one more list filter, as a nested route (`/products/{id}/licenses`)
    /// narrows the top-level list; the filter replaces any the client sent under that name.
    pub fn with_filter(mut self, name: &str, value: &str) -> Self {
        let kept = self
            .query
            .as_deref()
            .unwrap_or("")
            .split('&')
            .filter(|pair| !pair.is_empty() && pair.split_once('=').map_or(*pair, |(k, _)| k) != name);
        let mut query: Vec<String> = kept.map(str::to_string).collect();
        query.push(format!("{name}={value}"));
        self.query = Some(query.join("&"));
        self
    }

    pub fn list_params(&self) -> Result<super::document::ListParams, Error> {
        super::document::ListParams::parse(&self.path, self.query.as_deref())
    }
}

/// Whether `s` is a media range as HTTP spells it (`type/subtype`, then `;` parameters).
fn is_media_type(s: &str) -> bool {
    let token = |t: &str| !t.is_empty() && t.bytes().all(|b| b.is_ascii_alphanumeric() || b"!#$&^_.+-*".contains(&b));
    let essence = s.split(';').next().unwrap_or("").trim();
    essence == "*" || essence.split_once('/').is_some_and(|(t, sub)| token(t) && token(sub))
}

/// A Content-Type or Accept header that is not a media type at all is refused before anything
/// else, as Keygen's middleware does.
fn check_media_types(parts: &Parts) -> Result<(), Error> {
    let malformed = |name| {
        parts.headers.get_all(name).iter().any(|v| {
            v.to_str().map_or(true, |v| !v.trim().is_empty() && !v.split(',').all(|m| is_media_type(m.trim())))
        })
    };
    if malformed(header::CONTENT_TYPE) || malformed(header::ACCEPT) {
        return Err(Error::BadRequest {
            detail: "The mime type of the request is not acceptable (check content-type and accept headers)".into(),
            code: Some("MIME_TYPE_INVALID".into()),
            location: Source::None,
        });
    }
    Ok(())
}

/// Keygen answers JSON:API or plain JSON; a client that accepts neither gets a 400.
fn check_accept(parts: &Parts) -> Result<(), Error> {
    check_media_types(parts)?;
    let Some(accept) = parts.headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()) else { return Ok(()) };
    let acceptable = accept.split(',').any(|m| {
        let m = m.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
        matches!(
            m.as_str(),
            "" | "*/*"
                | "application/*"
                | "application/json"
                | "application/vnd.api+json"
                | "application/vnd.keygen+json"
        )
    });
    if acceptable {
        Ok(())
    } else {
        Err(Error::BadRequest {
            detail: "The content type of the request is not acceptable (check accept header)".into(),
            code: Some("ACCEPT_INVALID".into()),
            location: Source::Header("Accept".into()),
        })
    }
}

/// Environments are an Enterprise feature of Keygen; Licensor answers as Keygen's Community
/// Edition does when a client selects one, rather than silently serving the global resources.
fn check_environment(parts: &Parts) -> Result<(), Error> {
    let unsupported = |location| Error::BadRequest {
        detail: "is unsupported".into(),
        code: Some("ENVIRONMENT_NOT_SUPPORTED".into()),
        location,
    };
    if parts.headers.get("keygen-environment").is_some_and(|v| !v.as_bytes().trim_ascii().is_empty()) {
        return Err(unsupported(Source::Header("Keygen-Environment".into())));
    }
    let selects = parts.uri.query().is_some_and(|q| {
        q.split('&').any(|pair| pair.split_once('=').is_some_and(|(k, v)| k == "environment" && !v.is_empty()))
    });
    if selects {
        return Err(unsupported(Source::Parameter("environment".into())));
    }
    Ok(())
}

/// Authentication errors are plain values (no database cause), so they can be handed out again.
fn clone_auth_error(e: &Error) -> Error {
    match e {
        Error::Unauthorized { detail, code, location } => {
            Error::Unauthorized { detail: detail.clone(), code: code.clone(), location: location.clone() }
        }
        Error::Forbidden { detail, code } => Error::Forbidden { detail: detail.clone(), code: code.clone() },
        _ => Error::unauthorized("Authentication failed", "TOKEN_INVALID"),
    }
}

impl FromRequestParts<AppState> for Ctx {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        check_accept(parts)?;
        check_environment(parts)?;
        let params = RawPathParams::from_request_parts(parts, state)
            .await
            .map(|p| p.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect::<Vec<_>>())
            .unwrap_or_default();
        let query_has_nul = parts.uri.query().is_some_and(|q| {
            crate::api::query_pairs(Some(q))
                .is_ok_and(|pairs| pairs.iter().any(|(k, v)| k.contains('\0') || v.contains('\0')))
        });
        if query_has_nul || params.iter().any(|(_, v)| v.contains('\0')) {
            return Err(crate::error::nul_character().into());
        }
        let account = match params.iter().find(|(k, _)| k == "account") {
            Some((_, id)) => state.account(id).await?.ok_or_else(|| Error::not_found("account", id.clone()))?,
            None => state.default_account().await?.ok_or_else(|| {
                Error::not_found("account", "(none: set LICENSOR_ACCOUNT or use /v1/accounts/{account}/…)")
            })?,
        };
        let mut password_login = None;
        let mut bad_license_key = false;
        let auth = match auth::parse_authorization(&parts.headers) {
            Err(e) => Err(e),
            Ok(None) => Ok(None),
            Ok(Some(Credential::Password(email, password))) => {
                password_login = Some((email, password));
                Ok(None)
            }
            Ok(Some(credential)) => {
                bad_license_key = matches!(credential, Credential::License(_));
                auth::authenticate(&state.db, state.license_cache.as_deref(), &account, credential).await.map(Some)
            }
        };
        if let Err(Error::Database(_) | Error::Internal(_)) = &auth {
            return Err(auth.err().map(ApiError).unwrap_or_else(|| ApiError(Error::access_denied())));
        }
        Ok(Ctx {
            state: state.clone(),
            account,
            auth,
            bad_license_key,
            password_login,
            params,
            // The path as the client sent it: under a nested router `parts.uri` has lost the
            // `/v1/accounts/{account}` prefix, and links built from it would not be followable.
            path: parts
                .extensions
                .get::<axum::extract::OriginalUri>()
                .map_or_else(|| parts.uri.path().to_string(), |u| u.path().to_string()),
            query: parts.uri.query().map(str::to_string),
        })
    }
}

/// A request body parsed as JSON. Malformed JSON is a 400 in Keygen's format.
pub struct Body(pub Value);

impl<S: Send + Sync> FromRequest<S> for Body {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let bytes = axum::body::Bytes::from_request(req, state).await.map_err(|_| {
            Error::bad_request("The request body could not be read (it may be too large)", Source::None)
        })?;
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Ok(Body(Value::Null));
        }
        match crate::api::json_body(&bytes) {
            Ok(value) => Ok(Body(value)),
            Err(crate::api::BadJson::Nul) => Err(crate::error::nul_character().into()),
            Err(crate::api::BadJson::Syntax(_)) => Err(Error::BadRequest {
                detail: "The request could not be completed because it contains invalid JSON (check encoding)".into(),
                code: Some("JSON_INVALID".into()),
                location: Source::None,
            }
            .into()),
        }
    }
}

/// `data` of a JSON:API document: type, optional id, attributes and relationships.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, bound(deserialize = "A: Deserialize<'de> + Default, R: Deserialize<'de> + Default"))]
pub struct Data<A, R> {
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default)]
    pub id: Option<String>,
    #[serde(default = "Default::default")]
    pub attributes: A,
    #[serde(default = "Default::default")]
    pub relationships: R,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Document<D> {
    data: D,
    #[serde(default)]
    #[allow(dead_code)]
    meta: Option<Value>,
}

/// A relationship in input: `{"data": {"type": …, "id": …}}` or `{"data": null}`.
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RelInput {
    pub data: Option<Linkage>,
}

#[derive(Debug, Deserialize, Clone)]
#[serde(deny_unknown_fields)]
pub struct Linkage {
    #[serde(rename = "type")]
    pub kind: String,
    pub id: String,
}

/// No relationships accepted.
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct NoRels {}

/// Deserializes `value` into `T`, turning serde's complaint into a 400 with a JSON pointer.
pub fn decode<T: DeserializeOwned>(value: Value) -> Result<T, Error> {
    serde_path_to_error::deserialize::<_, T>(value).map_err(|e| {
        let mut pointer = String::new();
        for seg in e.path().iter() {
            match seg {
                serde_path_to_error::Segment::Seq { index } => pointer.push_str(&format!("/{index}")),
                serde_path_to_error::Segment::Map { key } | serde_path_to_error::Segment::Enum { variant: key } => {
                    pointer.push('/');
                    pointer.push_str(key);
                }
                serde_path_to_error::Segment::Unknown => {}
            }
        }
        let message = e.inner().to_string();
        let detail = if let Some(rest) = message.strip_prefix("unknown field `") {
            let field = rest.split('`').next().unwrap_or_default();
            if !pointer.ends_with(&format!("/{field}")) {
                pointer.push('/');
                pointer.push_str(field);
            }
            "unpermitted parameter".to_string()
        } else if let Some(rest) = message.strip_prefix("missing field `") {
            let field = rest.split('`').next().unwrap_or_default();
            pointer.push('/');
            pointer.push_str(field);
            "is missing".to_string()
        } else if integer_too_large(&message) {
            "integer is too large".to_string()
        } else if message.starts_with("invalid type: null") {
            "cannot be null".to_string()
        } else if message.starts_with("invalid type") {
            type_mismatch(&message)
        } else {
            message
        };
        if pointer.is_empty() {
            pointer.push('/');
        }
        Error::bad_request(detail, Source::Pointer(pointer.into()))
    })
}

/// Like [`decode`], with error pointers placed under `prefix` (e.g. `/data/attributes`).
pub fn decode_at<T: DeserializeOwned>(value: Value, prefix: &str) -> Result<T, Error> {
    decode(value).map_err(|e| match e {
        Error::BadRequest { detail, code, location: Source::Pointer(p) } => {
            let p = if p == "/" { prefix.to_string() } else { format!("{prefix}{p}") };
            Error::BadRequest { detail, code, location: Source::Pointer(p.into()) }
        }
        other => other,
    })
}

/// A to-many linkage document: `{"data": [{"type": …, "id": …}, …]}` (1 to 100 entries).
pub fn parse_linkages(body: Value, plural: &'static str) -> Result<Vec<String>, Error> {
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Many {
        data: Vec<Linkage>,
    }
    if body.is_null() {
        return Err(Error::bad_request("is missing", Source::Pointer("/data".into())));
    }
    let many: Many = decode(body)?;
    if many.data.is_empty() || many.data.len() > 100 {
        return Err(Error::bad_request("must contain between 1 and 100 items", Source::Pointer("/data".into())));
    }
    let singular = plural.trim_end_matches('s');
    many.data
        .into_iter()
        .enumerate()
        .map(|(i, l)| {
            if l.kind == plural || l.kind == singular {
                Ok(l.id)
            } else {
                Err(Error::bad_request(
                    format!("type mismatch (received {} expected {plural})", l.kind),
                    Source::Pointer(format!("/data/{i}/type").into()),
                ))
            }
        })
        .collect()
}

/// Whether serde refused a whole number only for its size: beyond i64 (and, past u64, parsed
/// as a float) where an integer was expected.
fn integer_too_large(message: &str) -> bool {
    let expects_integer = ["expected i64", "expected i32", "expected u32", "expected u64", "expected integer"]
        .iter()
        .any(|e| message.contains(e));
    let number = message.split('`').nth(1).unwrap_or("");
    expects_integer
        && ((message.starts_with("invalid value: integer")
            && number.parse::<i128>().is_ok_and(|n| n.unsigned_abs() > i32::MAX as u128))
            || (message.starts_with("invalid type: floating point")
                && number.parse::<f64>().is_ok_and(|f| f.fract() == 0.0 && f.abs() >= 9.2e18)))
}

/// Renders serde's "invalid type: X, expected Y" as Keygen's "type mismatch (received X expected Y)".
fn type_mismatch(message: &str) -> String {
    let received = if message.contains("invalid type: string") {
        "string"
    } else if message.contains("invalid type: integer") {
        "integer"
    } else if message.contains("invalid type: floating") {
        "float"
    } else if message.contains("invalid type: boolean") {
        "boolean"
    } else if message.contains("invalid type: null") {
        "null"
    } else if message.contains("invalid type: map") {
        "object"
    } else if message.contains("invalid type: sequence") {
        "array"
    } else {
        "value"
    };
    let expected_raw = message.split("expected ").nth(1).unwrap_or("");
    let expected = if expected_raw.contains("i64")
        || expected_raw.contains("u64")
        || expected_raw.contains("i32")
        || expected_raw.contains("integer")
    {
        "integer"
    } else if expected_raw.contains("bool") {
        "boolean"
    } else if expected_raw.contains("string") || expected_raw.contains("str") {
        "string"
    } else if expected_raw.contains("sequence") {
        "array"
    } else if expected_raw.contains("map") || expected_raw.contains("struct") {
        "object"
    } else {
        expected_raw
    };
    format!("type mismatch (received {received} expected {expected})")
}

/// The id a client chose for a new resource (`data.id`), which must be a UUID.
pub fn chosen_id(id: Option<&str>) -> Result<Option<uuid::Uuid>, Error> {
    id.map(|given| {
        uuid::Uuid::parse_str(given).map_err(|_| {
            Error::bad_request(
                "type mismatch (received string expected UUID string)",
                Source::Pointer("/data/id".into()),
            )
        })
    })
    .transpose()
}

/// A chosen id that another resource of this kind already has.
pub fn id_conflict(kind: &str) -> Error {
    Error::Invalid {
        detail: format!("must not conflict with another {kind}").into(),
        code: "ID_CONFLICT".into(),
        location: Source::Pointer("/data/id".into()),
    }
}

/// Parses a `{"data": …}` document whose type must be one of `types` (plural and singular).
pub fn parse_data<A: DeserializeOwned + Default, R: DeserializeOwned + Default>(
    body: Value,
    plural: &'static str,
) -> Result<Data<A, R>, Error> {
    if body.is_null() {
        return Err(Error::bad_request("is missing", Source::Pointer("/data".into())));
    }
    if !body.is_object() {
        return Err(Error::bad_request(
            "type mismatch (received non-object expected object)",
            Source::Pointer("/".into()),
        ));
    }
    let doc: Document<Data<A, R>> = decode(body)?;
    let singular =
        plural.strip_suffix("ies").map(|s| format!("{s}y")).unwrap_or_else(|| plural.trim_end_matches('s').to_string());
    if doc.data.kind != plural && doc.data.kind != singular {
        return Err(Error::bad_request(
            format!("type mismatch (received {} expected {plural})", doc.data.kind),
            Source::Pointer("/data/type".into()),
        ));
    }
    Ok(doc.data)
}

/// Parses a `{"meta": {…}}` document (actions take their options there).
pub fn parse_meta<M: DeserializeOwned + Default>(body: Value) -> Result<M, Error> {
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields, bound(deserialize = "M: Deserialize<'de> + Default"))]
    struct MetaDoc<M> {
        #[serde(default = "Default::default")]
        meta: M,
    }
    if body.is_null() {
        return Ok(M::default());
    }
    Ok(decode::<MetaDoc<M>>(body)?.meta)
}

/// For optional attributes where `null` and absent differ: absent → `None`, null →
/// `Some(None)`, value → `Some(Some(v))`. Use with `#[serde(default, deserialize_with = "nullable")]`.
pub fn nullable<'de, D, T>(d: D) -> Result<Option<Option<T>>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(d).map(Some)
}

/// For optional attributes that may be absent but not `null` (a boolean flag): null is refused
/// as "cannot be null". Use with `#[serde(default, deserialize_with = "present")]`.
pub fn present<'de, D, T>(d: D) -> Result<Option<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    T::deserialize(d).map(Some)
}

/// The id in a required to-one relationship (any id form: the caller resolves it), or a 400
/// pointing at the missing relationship.
pub fn required_rel_id(rel: &Option<RelInput>, name: &'static str) -> Result<String, Error> {
    rel.as_ref()
        .and_then(|r| r.data.as_ref())
        .map(|l| l.id.clone())
        .ok_or_else(|| Error::bad_request("is missing", Source::Pointer(format!("/data/relationships/{name}").into())))
}

/// Resolves a relationship's id as a UUID of the given type, or a 422 pointing at it.
pub fn rel_uuid(rel: &Option<RelInput>, name: &str) -> Result<Option<Option<Uuid>>, Error> {
    match rel {
        None => Ok(None),
        Some(RelInput { data: None }) => Ok(Some(None)),
        Some(RelInput { data: Some(l) }) => Uuid::parse_str(&l.id).map(|u| Some(Some(u))).map_err(|_| {
            Error::invalid_rel(name, "must exist", format!("{}_NOT_FOUND", crate::domain::policy::code_prefix(name)))
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Deserialize, Default)]
    #[serde(deny_unknown_fields, rename_all = "camelCase")]
    struct Attrs {
        #[serde(default)]
        #[allow(dead_code)]
        max_machines: Option<i64>,
    }

    #[test]
    fn errors_point_at_the_offending_attribute() {
        let e = parse_data::<Attrs, NoRels>(
            serde_json::json!({"data": {"type": "policies", "attributes": {"maxMachines": "x"}}}),
            "policies",
        )
        .unwrap_err();
        match e {
            Error::BadRequest { detail, location: Source::Pointer(p), .. } => {
                assert_eq!(p, "/data/attributes/maxMachines");
                assert_eq!(detail, "type mismatch (received string expected integer)");
            }
            other => panic!("unexpected {other:?}"),
        }
        let e = parse_data::<Attrs, NoRels>(
            serde_json::json!({"data": {"type": "policies", "attributes": {"bogus": 1}}}),
            "policies",
        )
        .unwrap_err();
        assert!(
            matches!(e, Error::BadRequest { location: Source::Pointer(ref p), .. } if p == "/data/attributes/bogus")
        );
        let e = parse_data::<Attrs, NoRels>(serde_json::json!({"data": {"type": "users"}}), "policies").unwrap_err();
        assert!(matches!(e, Error::BadRequest { location: Source::Pointer(ref p), .. } if p == "/data/type"));
        assert!(parse_data::<Attrs, NoRels>(serde_json::json!({"data": {"type": "policy"}}), "policies").is_ok());
    }
}
