//! Resource metadata: free-form JSON with Keygen's limits and key casing (stored snake_case,
//! shown camelCase).

use serde_json::{Map, Value};

use crate::error::{Error, Result};

const MAX_BYTES: usize = 16 * 1024;
/// Objects and arrays may nest two levels below the metadata object itself, as in Keygen.
const MAX_DEPTH: usize = 2;
const MAX_KEYS: usize = 64;

fn snake(key: &str) -> String {
    let mut out = String::with_capacity(key.len() + 4);
    for (i, c) in key.chars().enumerate() {
        if c.is_ascii_uppercase() {
            if i > 0 {
                out.push('_');
            }
            out.push(c.to_ascii_lowercase());
        } else {
            out.push(c);
        }
    }
    out
}

fn camel(key: &str) -> String {
    let mut out = String::with_capacity(key.len());
    let mut upper = false;
    for (i, c) in key.chars().enumerate() {
        if c == '_' && i > 0 {
            upper = true;
        } else if upper {
            out.push(c.to_ascii_uppercase());
            upper = false;
        } else {
            out.push(c);
        }
    }
    out
}

fn map_keys(value: &Value, f: &dyn Fn(&str) -> String) -> Value {
    match value {
        Value::Object(m) => Value::Object(m.iter().map(|(k, v)| (f(k), map_keys(v, f))).collect::<Map<_, _>>()),
        Value::Array(a) => Value::Array(a.iter().map(|v| map_keys(v, f)).collect()),
        other => other.clone(),
    }
}

/// The JSON pointer (below the metadata) of the first object or array nested deeper than
/// [`MAX_DEPTH`], `level` being the nesting of `value` (the metadata object is 0).
fn too_deep(value: &Value, level: usize) -> Option<String> {
    let children: Box<dyn Iterator<Item = (String, &Value)>> = match value {
        Value::Object(m) => Box::new(m.iter().map(|(k, v)| (k.replace('~', "~0").replace('/', "~1"), v))),
        Value::Array(a) => Box::new(a.iter().enumerate().map(|(i, v)| (i.to_string(), v))),
        _ => return None,
    };
    if level > MAX_DEPTH {
        return Some(String::new());
    }
    children.into_iter().find_map(|(k, v)| too_deep(v, level + 1).map(|rest| format!("/{k}{rest}")))
}

/// Checks incoming metadata and converts it to its stored form.
pub fn accept(value: Value) -> Result<Value> {
    let invalid = |detail: &str| Error::invalid_attr("metadata", detail.to_string(), "METADATA_INVALID");
    let Value::Object(ref m) = value else {
        return Err(Error::bad_request(
            "type mismatch (received non-object expected object)",
            crate::error::Source::Pointer("/data/attributes/metadata".into()),
        ));
    };
    if m.len() > MAX_KEYS {
        return Err(invalid("too many keys (exceeded limit of 64 keys)"));
    }
    if let Some(path) = too_deep(&value, 0) {
        return Err(Error::bad_request(
            format!("maximum depth of {MAX_DEPTH} exceeded"),
            crate::error::Source::Pointer(format!("/data/attributes/metadata{path}").into()),
        ));
    }
    if value.to_string().len() > MAX_BYTES {
        return Err(invalid("too large (exceeded limit of 16KB)"));
    }
    Ok(map_keys(&value, &snake))
}

/// The metadata as the API shows it.
pub fn render(stored: &Value) -> Value {
    map_keys(stored, &camel)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn keys_round_trip_through_storage() {
        let stored = accept(json!({"fooBar": 1, "nested": {"someKey": {"deepKey": true}}})).unwrap();
        assert_eq!(stored, json!({"foo_bar": 1, "nested": {"some_key": {"deep_key": true}}}));
        assert_eq!(render(&stored), json!({"fooBar": 1, "nested": {"someKey": {"deepKey": true}}}));
    }

    #[test]
    fn limits() {
        assert!(accept(json!([1])).is_err());
        // Keygen's "complex nested metadata" passes; its "too complex" one fails at the
        // first container three levels down, and says where.
        accept(json!({"key": ["value"], "object": {"key": {"k": "v"}}, "array": [{"foo": 1}, {"bar": 2}]})).unwrap();
        let deep = accept(json!({"key": ["value"], "array": [[0], [{"foo": 1}, 2, [3]]]}));
        match deep {
            Err(Error::BadRequest { detail, location: crate::error::Source::Pointer(p), .. }) => {
                assert_eq!(
                    (detail.as_ref(), p.as_ref()),
                    ("maximum depth of 2 exceeded", "/data/attributes/metadata/array/1/0")
                )
            }
            other => panic!("{other:?}"),
        }
        let many: Map<String, Value> = (0..65).map(|i| (format!("k{i}"), json!(i))).collect();
        assert!(accept(Value::Object(many)).is_err());
        assert!(accept(json!({"big": "x".repeat(17_000)})).is_err());
    }
}
