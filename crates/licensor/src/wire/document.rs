//! The parts of a JSON:API resource object as Keygen writes them: `links.self`, relationships
//! with `links.related` (and linkage `data` for to-one ones), and `meta`.

use serde::Serialize;
use serde_json::Value;
use uuid::Uuid;

/// One resource object. Serialised straight from typed parts: this is on every response,
/// the validation hot path included, so nothing here builds a `serde_json::Value` tree.
#[derive(Serialize)]
pub struct Resource<A: Serialize> {
    pub id: Uuid,
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub attributes: A,
    pub relationships: Relationships,
    pub links: SelfLink,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub meta: Option<Value>,
}

/// A top-level document, `{"data": …}` with `meta` when there is one, serialised straight
/// (a `json!` document would copy the resource into a `Value` tree first).
#[derive(Serialize)]
pub struct Data<D: Serialize> {
    pub data: D,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub meta: Option<Value>,
}

impl<D: Serialize> Data<D> {
    pub fn new(data: D) -> Self {
        Data { data, meta: None }
    }
}

#[derive(Serialize)]
pub struct SelfLink {
    #[serde(rename = "self")]
    pub path: String,
}

/// A resource's relationships, as one JSON object in the order they were added.
#[derive(Default)]
pub struct Relationships(Vec<(&'static str, Relationship)>);

impl Serialize for Relationships {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut map = serializer.serialize_map(Some(self.0.len()))?;
        for (name, relationship) in &self.0 {
            map.serialize_entry(name, relationship)?;
        }
        map.end()
    }
}

#[derive(Serialize)]
pub struct Relationship {
    links: Related,
    /// To-one relationships carry linkage (`null` when unset); to-many ones carry none.
    #[serde(skip_serializing_if = "Option::is_none")]
    data: Option<Option<Linkage>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    meta: Option<Value>,
}

#[derive(Serialize)]
struct Related {
    related: String,
}

#[derive(Serialize)]
struct Linkage {
    #[serde(rename = "type")]
    kind: &'static str,
    id: Uuid,
}

impl<A: Serialize> Resource<A> {
    /// A resource of `kind` (plural type) with its `links.self` under the account.
    pub fn new(account: Uuid, kind: &'static str, id: Uuid, attributes: A) -> Self {
        Resource {
            id,
            kind,
            attributes,
            relationships: Relationships::default(),
            links: SelfLink { path: format!("/v1/accounts/{account}/{kind}/{id}") },
            meta: None,
        }
    }

    fn related(&self, name: &str) -> Related {
        Related { related: format!("{}/{name}", self.links.path) }
    }

    /// A to-one relationship with linkage data.
    pub fn one(mut self, name: &'static str, kind: &'static str, id: Option<Uuid>) -> Self {
        let links = self.related(name);
        let data = Some(id.map(|id| Linkage { kind, id }));
        self.relationships.0.push((name, Relationship { links, data, meta: None }));
        self
    }

    /// A to-one relationship whose `links.related` is the related resource's own path.
    pub fn one_at(mut self, name: &'static str, kind: &'static str, id: Uuid, related: String) -> Self {
        let data = Some(Some(Linkage { kind, id }));
        self.relationships.0.push((name, Relationship { links: Related { related }, data, meta: None }));
        self
    }

    /// The `account` relationship every resource carries.
    pub fn account(mut self, account: Uuid) -> Self {
        let links = Related { related: format!("/v1/accounts/{account}") };
        let data = Some(Some(Linkage { kind: "accounts", id: account }));
        self.relationships.0.push(("account", Relationship { links, data, meta: None }));
        self
    }

    /// A to-one relationship to a resource of any type (the event log's resource and
    /// whodunnit), `null` when unset.
    pub fn one_of(mut self, name: &'static str, target: Option<(&'static str, Uuid)>) -> Self {
        let links = self.related(name);
        let data = Some(target.map(|(kind, id)| Linkage { kind, id }));
        self.relationships.0.push((name, Relationship { links, data, meta: None }));
        self
    }

    /// The resource's own `meta`.
    pub fn with_meta(mut self, meta: Value) -> Self {
        self.meta = Some(meta);
        self
    }

    /// A to-many relationship: links only, with optional `meta`.
    pub fn many(mut self, name: &'static str, meta: Option<Value>) -> Self {
        let links = self.related(name);
        self.relationships.0.push((name, Relationship { links, data: None, meta }));
        self
    }
}
