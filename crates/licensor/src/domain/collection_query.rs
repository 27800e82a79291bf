//! Collection query parameters of the `/core/v1` surface (docs/core-v1.md): `include`,
//! `limit`, `skip`, `count`, `orderBy`, `continue`, `filter`, with their grammars, applied to
//! rendered JSON resources.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use serde_json::Value;

/// A rejected parameter: its name and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadParam {
    pub name: String,
    pub reason: String,
    /// `true` when the parameter is valid but this endpoint does not take it (problem 6).
    pub unsupported: bool,
}

fn bad(name: &str, reason: &str) -> BadParam {
    BadParam { name: name.into(), reason: reason.into(), unsupported: false }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Eq,
    Lt,
    Gt,
    Lte,
    Gte,
    In,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Condition {
    pub field: String,
    pub op: Op,
    pub value: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Query {
    pub include: Option<Vec<String>>,
    pub limit: Option<usize>,
    pub skip: usize,
    pub count: bool,
    pub order_by: Option<(String, bool)>,
    pub filter: Vec<Condition>,
}

fn positive(name: &str, v: &str) -> Result<usize, BadParam> {
    let ok = !v.is_empty() && !v.starts_with('0') && v.bytes().all(|b| b.is_ascii_digit());
    v.parse().ok().filter(|_| ok).ok_or_else(|| bad(name, "must be a positive integer"))
}

fn field_name(s: &str) -> bool {
    !s.is_empty()
        && s.split('.').all(|part| {
            let part = part.strip_suffix("[*]").unwrap_or(part);
            !part.is_empty() && part.chars().all(|c| c.is_ascii_alphanumeric())
        })
}

/// Splits on commas outside single quotes.
fn split_conditions(s: &str) -> Vec<String> {
    let (mut out, mut cur, mut quoted) = (Vec::new(), String::new(), false);
    for c in s.chars() {
        match c {
            '\'' => {
                quoted = !quoted;
                cur.push(c);
            }
            ',' if !quoted => out.push(std::mem::take(&mut cur)),
            _ => cur.push(c),
        }
    }
    out.push(cur);
    out
}

fn parse_condition(s: &str) -> Option<Condition> {
    let s = s.trim();
    let (field, rest) = s.split_once(' ')?;
    let (op, value) = rest.trim_start().split_once(' ')?;
    let op = match op {
        "eq" => Op::Eq,
        "lt" => Op::Lt,
        "gt" => Op::Gt,
        "lte" => Op::Lte,
        "gte" => Op::Gte,
        "in" => Op::In,
        _ => return None,
    };
    let value = value.trim().strip_prefix('\'')?.strip_suffix('\'')?;
    field_name(field).then(|| Condition { field: field.into(), op, value: value.into() })
}

/// Parses `params`; `supported` lists the parameters this endpoint takes. The continuation
/// token (`continue`) is folded into `skip`.
pub fn parse(params: &[(String, String)], supported: &[&str]) -> Result<Query, Vec<BadParam>> {
    const KNOWN: &[&str] = &["include", "limit", "skip", "count", "orderBy", "continue", "filter"];
    let mut q = Query::default();
    let mut errors = Vec::new();
    for (name, value) in params {
        if !KNOWN.contains(&name.as_str()) {
            errors.push(bad(name, "is not a known query parameter"));
            continue;
        }
        if !supported.contains(&name.as_str()) {
            errors.push(BadParam {
                name: name.clone(),
                reason: "is not supported by this endpoint".into(),
                unsupported: true,
            });
            continue;
        }
        let r: Result<(), BadParam> = match name.as_str() {
            "include" => {
                let names: Vec<String> = value.split(',').map(str::to_string).collect();
                if names.iter().all(|n| !n.is_empty() && n.chars().all(|c| c.is_ascii_alphanumeric())) {
                    q.include = Some(names);
                    Ok(())
                } else {
                    Err(bad(name, "must be a comma-separated list of field names"))
                }
            }
            "limit" => positive(name, value).map(|v| q.limit = Some(v)),
            "skip" => positive(name, value).map(|v| q.skip += v),
            "count" if value == "true" => {
                q.count = true;
                Ok(())
            }
            "count" => Err(bad(name, "must be true")),
            "orderBy" => {
                let (field, desc) = match value.split_once(' ') {
                    Some((f, "desc")) => (f, true),
                    Some((f, "asc")) => (f, false),
                    Some(_) => ("", false),
                    None => (value.as_str(), false),
                };
                if field_name(field) {
                    q.order_by = Some((field.into(), desc));
                    Ok(())
                } else {
                    Err(bad(name, "must be a field name, optionally followed by ' desc'"))
                }
            }
            "continue" => STANDARD
                .decode(value)
                .ok()
                .and_then(|b| String::from_utf8(b).ok())
                .and_then(|s| s.strip_prefix("skip:").and_then(|n| n.parse::<usize>().ok()))
                .map(|n| q.skip += n)
                .ok_or_else(|| bad(name, "is not a continuation token from this server")),
            "filter" => {
                let parsed: Option<Vec<Condition>> =
                    split_conditions(value).iter().map(|c| parse_condition(c)).collect();
                parsed.map(|c| q.filter.extend(c)).ok_or_else(|| {
                    bad(name, "must be conditions of the form field op 'value' (op: eq, lt, gt, lte, gte, in), comma-separated")
                })
            }
            _ => Ok(()),
        };
        if let Err(e) = r {
            errors.push(e);
        }
    }
    if errors.is_empty() {
        Ok(q)
    } else {
        Err(errors)
    }
}

/// The values at `path` (dotted, with `[*]` for every array element).
fn values_at<'a>(v: &'a Value, path: &str) -> Vec<&'a Value> {
    let mut current = vec![v];
    for part in path.split('.') {
        let (name, all) = match part.strip_suffix("[*]") {
            Some(n) => (n, true),
            None => (part, false),
        };
        current = current
            .into_iter()
            .filter_map(|v| v.get(name))
            .flat_map(|v| match (all, v) {
                (true, Value::Array(a)) => a.iter().collect::<Vec<_>>(),
                (true, _) => Vec::new(),
                (false, v) => vec![v],
            })
            .collect();
    }
    current
}

fn as_text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// Numbers compare as numbers, everything else as text (ISO timestamps order correctly).
fn compare(a: &str, b: &str) -> std::cmp::Ordering {
    match (a.parse::<f64>(), b.parse::<f64>()) {
        (Ok(x), Ok(y)) => x.partial_cmp(&y).unwrap_or(std::cmp::Ordering::Equal),
        _ => a.cmp(b),
    }
}

pub fn matches(item: &Value, c: &Condition) -> bool {
    use std::cmp::Ordering::*;
    values_at(item, &c.field).into_iter().filter_map(as_text).any(|v| match c.op {
        Op::Eq => v == c.value,
        Op::Lt => compare(&v, &c.value) == Less,
        Op::Gt => compare(&v, &c.value) == Greater,
        Op::Lte => compare(&v, &c.value) != Greater,
        Op::Gte => compare(&v, &c.value) != Less,
        Op::In => c.value.split(',').any(|x| x.trim() == v),
    })
}

/// A page of a collection after filtering, ordering, skipping and limiting.
pub struct Page {
    pub items: Vec<Value>,
    /// Items matching the filter, before skip and limit.
    pub total: usize,
    /// A token for the next page, when there is one.
    pub next: Option<String>,
}

pub fn apply(items: Vec<Value>, q: &Query) -> Page {
    let mut items: Vec<Value> = items.into_iter().filter(|i| q.filter.iter().all(|c| matches(i, c))).collect();
    if let Some((field, desc)) = &q.order_by {
        let key = |v: &Value| values_at(v, field).first().and_then(|v| as_text(v)).unwrap_or_default();
        items.sort_by(|a, b| {
            let o = compare(&key(a), &key(b));
            if *desc {
                o.reverse()
            } else {
                o
            }
        });
    }
    let total = items.len();
    let rest: Vec<Value> = items.into_iter().skip(q.skip).collect();
    let (items, next) = match q.limit {
        Some(l) if rest.len() > l => {
            (rest.into_iter().take(l).collect(), Some(STANDARD.encode(format!("skip:{}", q.skip + l))))
        }
        _ => (rest, None),
    };
    Page { items, total, next }
}

/// With `include`, each item becomes the array of the named fields' values, in order.
pub fn project(items: Vec<Value>, include: Option<&[String]>) -> Vec<Value> {
    match include {
        None => items,
        Some(fields) => items
            .into_iter()
            .map(|i| Value::Array(fields.iter().map(|f| i.get(f).cloned().unwrap_or(Value::Null)).collect()))
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn p(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs.iter().map(|(a, b)| (a.to_string(), b.to_string())).collect()
    }

    const ALL: &[&str] = &["include", "limit", "skip", "count", "orderBy", "continue", "filter"];

    #[test]
    fn grammar() {
        let q =
            parse(&p(&[("include", "id,product"), ("limit", "2"), ("filter", "product eq 'A',capacity gt '3'")]), ALL)
                .unwrap();
        assert_eq!(q.include.unwrap(), vec!["id", "product"]);
        assert_eq!(q.limit, Some(2));
        assert_eq!(q.filter.len(), 2);
        for (k, v) in [
            ("limit", "0"),
            ("limit", "-1"),
            ("limit", "01"),
            ("count", "yes"),
            ("include", "a b"),
            ("filter", "product like 'A'"),
            ("filter", "product eq A"),
            ("orderBy", "x sideways"),
            ("continue", "zz"),
            ("nope", "1"),
        ] {
            let e = parse(&p(&[(k, v)]), ALL).unwrap_err();
            assert!(!e[0].unsupported, "{k}={v}");
        }
        let e = parse(&p(&[("skip", "1")]), &["include", "limit", "filter"]).unwrap_err();
        assert!(e[0].unsupported);
    }

    #[test]
    fn filtering_paging_and_projection() {
        let items: Vec<Value> = (1..=5)
            .map(|i| json!({"id": i.to_string(), "capacity": (i * 10).to_string(), "tags": [{"k": "x"}]}))
            .collect();
        let q = parse(
            &p(&[("filter", "capacity gte '20',tags[*].k eq 'x'"), ("limit", "2"), ("orderBy", "capacity desc")]),
            ALL,
        )
        .unwrap();
        let page = apply(items.clone(), &q);
        assert_eq!(page.total, 4);
        assert_eq!(page.items.iter().map(|i| i["id"].clone()).collect::<Vec<_>>(), vec![json!("5"), json!("4")]);
        let next = page.next.unwrap();
        let q2 = parse(
            &p(&[("filter", "capacity gte '20'"), ("limit", "2"), ("orderBy", "capacity desc"), ("continue", &next)]),
            ALL,
        )
        .unwrap();
        let page2 = apply(items.clone(), &q2);
        assert_eq!(page2.items.iter().map(|i| i["id"].clone()).collect::<Vec<_>>(), vec![json!("3"), json!("2")]);
        assert!(page2.next.is_none());
        let q3 = parse(&p(&[("filter", "id in '1,3'")]), ALL).unwrap();
        assert_eq!(apply(items.clone(), &q3).total, 2);
        let projected = project(vec![items[0].clone()], Some(&["capacity".to_string(), "id".to_string()]));
        assert_eq!(projected, vec![json!(["10", "1"])]);
    }
}
