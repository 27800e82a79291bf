//! Resource metadata: free-form JSON with Keygen's limits and key casing (stored snake_case,
//! shown camelCase).

use serde_json::{Map, Value};

use crate::error::{Error, Result};

const MAX_BYTES: usize = 16 * 1024;
/// Objects and arrays may nest two levels below the metadata object itself, as in Keygen.
const MAX_DEPTH: usize = 2;
const MAX_KEYS: usize = 64;

/// Rails' `underscore`: `HTTPServer` → `http_server`, `nodeID` → `node_id`, `a-b` → `a_b`; a
/// key with no capital, dash or `::` is left as it is.
pub fn underscore(key: &str) -> String {
    if !(key.contains(|c: char| c.is_ascii_uppercase() || c == '-') || key.contains("::")) {
        return key.to_string();
    }
    let chars: Vec<char> = key.chars().collect();
    let mut word = String::with_capacity(key.len() + 4);
    for (i, &c) in chars.iter().enumerate() {
        word.push(c);
        let next = chars.get(i + 1).copied().unwrap_or(' ');
        let after = chars.get(i + 2).copied().unwrap_or(' ');
        let split = (c.is_ascii_lowercase() || c.is_ascii_digit()) && next.is_ascii_uppercase()
            || c.is_ascii_uppercase() && next.is_ascii_uppercase() && after.is_ascii_lowercase();
        if split {
            word.push('_');
        }
    }
    word.replace("::", "/").replace('-', "_").to_ascii_lowercase()
}

/// A metadata key as Keygen stores it: Rails' `underscore`, then `parameterize` with `_`
/// (`"example key 4"` → `example_key_4`, `HTTPServer` → `http_server`, `nodeID` → `node_id`).
pub fn stored_key(key: &str) -> String {
    let word = underscore(key);
    // parameterize: to ASCII, every run of anything else one `_`, none at either end.
    let mut out = String::with_capacity(word.len());
    for c in word.chars() {
        let ascii = transliterate(c);
        for a in ascii.chars() {
            if a.is_ascii_alphanumeric() || a == '-' || a == '_' {
                if a == '_' && out.ends_with('_') {
                    continue;
                }
                out.push(a.to_ascii_lowercase());
            } else if !out.ends_with('_') {
                out.push('_');
            }
        }
    }
    let out = out.strip_prefix('_').unwrap_or(&out);
    out.strip_suffix('_').unwrap_or(out).to_string()
}

/// Latin letters to ASCII as I18n's default transliteration does them; anything else `?`.
fn transliterate(c: char) -> std::borrow::Cow<'static, str> {
    if c.is_ascii() {
        return c.to_string().into();
    }
    let plain = match c {
        'À'..='Å' => "A",
        'à'..='å' | 'ā' | 'ă' | 'ą' => "a",
        'Æ' => "AE",
        'æ' => "ae",
        'Ç' => "C",
        'ç' | 'ć' | 'č' => "c",
        'È'..='Ë' => "E",
        'è'..='ë' | 'ē' | 'ė' | 'ę' | 'ě' => "e",
        'Ì'..='Ï' => "I",
        'ì'..='ï' | 'ī' | 'į' => "i",
        'Ð' => "D",
        'ð' => "d",
        'Ñ' => "N",
        'ñ' | 'ń' | 'ň' => "n",
        'Ò'..='Ö' | 'Ø' => "O",
        'ò'..='ö' | 'ø' | 'ō' | 'ő' => "o",
        'Ù'..='Ü' => "U",
        'ù'..='ü' | 'ū' | 'ů' | 'ű' => "u",
        'Ý' => "Y",
        'ý' | 'ÿ' => "y",
        'Þ' => "Th",
        'þ' => "th",
        'ß' => "ss",
        'Œ' => "OE",
        'œ' => "oe",
        'š' | 'ś' => "s",
        'ž' | 'ź' | 'ż' => "z",
        'ł' => "l",
        _ => "?",
    };
    plain.into()
}

/// A stored key as Keygen shows it: Rails' `camelize(:lower)` (`http_server` → `httpServer`).
pub fn shown_key(key: &str) -> String {
    let mut out = String::with_capacity(key.len());
    for (i, segment) in key.split('_').enumerate() {
        let mut chars = segment.chars();
        match chars.next() {
            Some(first) if i == 0 => {
                out.push(first.to_ascii_lowercase());
                out.push_str(chars.as_str());
            }
            Some(first) => {
                out.push(first.to_ascii_uppercase());
                out.push_str(&chars.as_str().to_ascii_lowercase());
            }
            None => {}
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
    Ok(map_keys(&value, &stored_key))
}

/// The metadata as the API shows it.
pub fn render(stored: &Value) -> Value {
    map_keys(stored, &shown_key)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn keys_are_cased_as_keygen_cases_them() {
        for (given, stored, shown) in [
            ("example_key_1", "example_key_1", "exampleKey1"),
            ("ExampleKey2", "example_key2", "exampleKey2"),
            ("exampleKey3", "example_key3", "exampleKey3"),
            ("example key 4", "example_key_4", "exampleKey4"),
            ("HTTPServer", "http_server", "httpServer"),
            ("nodeID", "node_id", "nodeId"),
            ("_x", "x", "x"),
            ("max-machines", "max_machines", "maxMachines"),
            ("café  crème!", "cafe_creme", "cafeCreme"),
        ] {
            assert_eq!(stored_key(given), stored, "{given}");
            assert_eq!(shown_key(stored), shown, "{given}");
        }
    }

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
