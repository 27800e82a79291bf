//! JSON:API documents as Keygen writes them: resources with `links.self`, relationships with
//! `links.related` (and linkage `data` for to-one), pagination links, and the media type.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde_json::json;
use uuid::Uuid;

use crate::error::Error;
use crate::model::{Listing, Page};

pub const MEDIA_TYPE: &str = "application/vnd.api+json; charset=utf-8";

pub use crate::wire::document::{Data, Relationships, Resource, SelfLink};

/// A JSON:API response with the right media type.
pub fn respond(status: StatusCode, body: &impl Serialize) -> Response {
    let text = serde_json::to_string(body).unwrap_or_else(|_| "{}".into());
    let mut response = (status, text).into_response();
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(MEDIA_TYPE));
    response
}

pub fn ok<A: Serialize>(resource: Resource<A>) -> Response {
    respond(StatusCode::OK, &Data::new(resource))
}

pub fn created<A: Serialize>(resource: Resource<A>) -> Response {
    let location = resource.links.path.clone();
    let mut response = respond(StatusCode::CREATED, &Data::new(resource));
    if let Ok(v) = HeaderValue::from_str(&location) {
        response.headers_mut().insert(header::LOCATION, v);
    }
    response
}

pub fn no_content() -> Response {
    StatusCode::NO_CONTENT.into_response()
}

/// List parameters shared by every index: pagination and raw filters.
#[derive(Debug, Clone)]
pub struct ListParams {
    pub page: Page,
    /// Whether offset pagination was asked for (`page[…]`), which adds pagination links.
    pub paginated: bool,
    pub filters: Vec<(String, String)>,
    pub path: String,
}

impl ListParams {
    /// Parses `page[size]`, `page[number]`, `limit`, keeping everything else as filters.
    pub fn parse(path: &str, query: Option<&str>) -> Result<Self, Error> {
        let pairs = crate::api::query_pairs(query)
            .map_err(|_| Error::bad_request("query string is malformed", crate::error::Source::None))?;
        let mut size = None;
        let mut number = None;
        let mut limit = None;
        let mut filters = Vec::new();
        for (k, v) in pairs {
            match k.as_str() {
                "page[size]" => size = Some(v),
                "page[number]" => number = Some(v),
                "limit" => limit = Some(v),
                _ => filters.push((k, v)),
            }
        }
        let in_range = |v: &str, param: &'static str, what: &str| -> Result<i64, Error> {
            v.parse::<i64>()
                .ok()
                .filter(|n| (1..=100).contains(n))
                .ok_or_else(|| Error::bad_param(format!("{what} must be a number between 1 and 100 (got {v})"), param))
        };
        let paginated = size.is_some() || number.is_some();
        let page = if paginated {
            let size = match size {
                Some(s) => in_range(&s, "page[size]", "page size")?,
                None => 10,
            };
            let number = match number {
                Some(n) => n.parse::<i64>().ok().filter(|n| *n >= 1).ok_or_else(|| {
                    Error::bad_param(format!("page number must be a number greater than 0 (got {n})"), "page[number]")
                })?,
                None => 1,
            };
            Page { size, number }
        } else {
            let size = match limit {
                Some(l) => in_range(&l, "limit", "limit")?,
                None => 10,
            };
            Page { size, number: 1 }
        };
        Ok(ListParams { page, paginated, filters, path: path.to_string() })
    }

    pub fn filter(&self, name: &str) -> Option<&str> {
        self.filters.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }

    /// A filter that must be a UUID; a malformed one matches nothing rather than erroring, as
    /// Keygen's scopes do, so it is mapped to the nil UUID.
    pub fn uuid_filter(&self, name: &str) -> Option<Uuid> {
        self.filter(name).map(|v| Uuid::parse_str(v).unwrap_or(Uuid::nil()))
    }

    /// `metadata[key]=value` filters, as (key, value).
    pub fn metadata_filters(&self) -> Vec<(String, String)> {
        self.filters
            .iter()
            .filter_map(|(k, v)| {
                let key = k.strip_prefix("metadata[")?.strip_suffix(']')?;
                // `metadata[nodeId]` and `metadata[node_id]` name the same stored key.
                (!key.is_empty()).then(|| (crate::domain::metadata::stored_key(key), v.clone()))
            })
            .collect()
    }

    /// The metadata filters and the order asked for, as every list takes them.
    pub fn narrow(&self) -> crate::store::Narrow {
        crate::store::Narrow { metadata: self.metadata_filters(), ascending: self.ascending() }
    }

    /// `order=asc` lists oldest first; anything else (`desc`, the default) newest first.
    pub fn ascending(&self) -> bool {
        self.filter("order").is_some_and(|o| o.eq_ignore_ascii_case("asc"))
    }

    pub fn bool_filter(&self, name: &str) -> Option<bool> {
        self.filter(name).map(|v| v == "true" || v == "1")
    }

    /// A link to page `number` of this list: the request's path and filters, so following it
    /// walks the same list.
    fn page_link(&self, number: i64) -> String {
        let mut link = format!("{}?page[number]={number}&page[size]={}", self.path, self.page.size);
        if let Ok(filters) = serde_urlencoded::to_string(&self.filters) {
            if !filters.is_empty() {
                link.push('&');
                link.push_str(&filters);
            }
        }
        link
    }

    /// A list document with Keygen's pagination links.
    pub fn document<T, A: Serialize>(&self, listing: Listing<T>, render: impl Fn(T) -> Resource<A>) -> Response {
        let total = listing.total;
        let data: Vec<Resource<A>> = listing.rows.into_iter().map(render).collect();
        let links = if self.paginated {
            let pages = ((total + self.page.size - 1) / self.page.size).max(1);
            let n = self.page.number;
            json!({
                "self": self.page_link(n),
                "prev": if n > 1 { Some(self.page_link(n - 1)) } else { None },
                "next": if n < pages { Some(self.page_link(n + 1)) } else { None },
                "first": self.page_link(1),
                "last": self.page_link(pages),
                "meta": { "pages": pages, "count": total },
            })
        } else {
            json!({ "self": self.path })
        };
        #[derive(Serialize)]
        struct List<A: Serialize> {
            data: Vec<Resource<A>>,
            links: serde_json::Value,
        }
        respond(StatusCode::OK, &List { data, links })
    }
}
