//! Keygen's search (`POST /search`): the rows of one table matching a list of terms, joined by
//! AND or OR, as SQL both engines run. Terms come from `service::search`, which knows the
//! resources; this module knows only columns.

use serde_json::Value;
use uuid::Uuid;

use crate::db::Db;
use crate::db_run;
use crate::error::Result;
use crate::model::{Listing, Page};

/// One condition on a row of the table searched (its alias is in the column names).
#[derive(Debug, Clone, PartialEq)]
pub enum Term {
    /// Matches no row (Keygen: a `null` value, a full name of one word).
    Nothing,
    /// An id: equal to a whole UUID, else its text contains the term.
    Id { column: &'static str, term: String },
    /// Contains the term, case-insensitively.
    Like { column: &'static str, term: String },
    /// Equal to the term.
    Eq { column: &'static str, term: String },
    /// Every one of these.
    All(Vec<Term>),
    /// A related row (`table`, among the ids `ids` selects for this row) whose id is the term,
    /// whose `column` contains it, or (for a term of hex digits and dashes) whose id starts
    /// with it.
    Related { ids: &'static str, table: &'static str, column: &'static str, term: String },
    /// The metadata holds `key` with a value containing `value` (scalars equal, objects and
    /// arrays in part), as PostgreSQL's `@>` decides.
    Metadata { column: &'static str, key: String, value: Value },
}

/// How terms combine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    And,
    Or,
}

/// A table searched: `from` names it with an alias (`users u`), the alias's columns below.
pub struct Table {
    pub from: &'static str,
    pub id: &'static str,
    pub account: &'static str,
    pub created: &'static str,
}

enum Arg {
    Text(String),
    Uuid(Uuid),
    Int(i64),
    Float(f64),
}

struct Sql {
    args: Vec<Arg>,
    sqlite: bool,
}

impl Sql {
    fn arg(&mut self, a: Arg) -> String {
        self.args.push(a);
        format!("${}", self.args.len())
    }

    /// `%term%` for LIKE, with LIKE's own wildcards matched literally.
    fn pattern(term: &str, prefix_only: bool) -> String {
        let escaped = term.to_lowercase().replace('\\', "\\\\").replace('%', "\\%").replace('_', "\\_");
        if prefix_only {
            format!("{escaped}%")
        } else {
            format!("%{escaped}%")
        }
    }

    fn like(&mut self, column: &str, term: &str) -> String {
        let p = self.arg(Arg::Text(Self::pattern(term, false)));
        format!("LOWER({column}) LIKE {p} ESCAPE '\\'")
    }

    /// An id's text: PostgreSQL's hyphenated form; SQLite stores 16 bytes, shown as 32 hex
    /// digits (the term's dashes are dropped to match them).
    fn id_text(&self, column: &str) -> String {
        if self.sqlite {
            format!("LOWER(HEX({column}))")
        } else {
            format!("{column}::text")
        }
    }

    fn id_term(&self, term: &str) -> String {
        if self.sqlite {
            term.replace('-', "")
        } else {
            term.to_string()
        }
    }

    fn term(&mut self, t: &Term) -> String {
        match t {
            Term::Nothing => "1 = 0".into(),
            Term::Id { column, term } => match Uuid::parse_str(term) {
                Ok(id) => format!("{column} = {}", self.arg(Arg::Uuid(id))),
                Err(_) => {
                    let text = self.id_text(column);
                    let p = self.arg(Arg::Text(Self::pattern(&self.id_term(term), false)));
                    format!("{text} LIKE {p} ESCAPE '\\'")
                }
            },
            Term::Like { column, term } => self.like(column, term),
            Term::Eq { column, term } => format!("{column} = {}", self.arg(Arg::Text(term.clone()))),
            Term::All(terms) => {
                let parts: Vec<String> = terms.iter().map(|t| self.term(t)).collect();
                format!("({})", parts.join(" AND "))
            }
            Term::Related { ids, table, column, term } => {
                if let Ok(id) = Uuid::parse_str(term) {
                    return format!("{} IN ({ids})", self.arg(Arg::Uuid(id)));
                }
                let mut alternatives = vec![self.like(&format!("r.{column}"), term)];
                if term.bytes().all(|b| b.is_ascii_hexdigit() || b == b'-') {
                    let text = self.id_text("r.id");
                    let p = self.arg(Arg::Text(Self::pattern(&self.id_term(term), true)));
                    alternatives.push(format!("{text} LIKE {p} ESCAPE '\\'"));
                }
                format!("EXISTS (SELECT 1 FROM {table} r WHERE r.id IN ({ids}) AND ({}))", alternatives.join(" OR "))
            }
            Term::Metadata { column, key, value } => {
                let mut variants = vec![value.clone()];
                if let Some(cast) = cast(value) {
                    variants.push(cast);
                }
                let parts: Vec<String> = variants.iter().map(|v| self.contains(column, key, v)).collect();
                format!("({})", parts.join(" OR "))
            }
        }
    }

    /// The metadata column holds `key` with a value containing `value`.
    fn contains(&mut self, column: &str, key: &str, value: &Value) -> String {
        if !self.sqlite {
            let doc = serde_json::json!({ key: value }).to_string();
            return format!("{column} @> {}::jsonb", self.arg(Arg::Text(doc)));
        }
        self.sqlite_contains(column, &format!("$.\"{}\"", key.replace('"', "")), value)
    }

    fn sqlite_contains(&mut self, column: &str, path: &str, value: &Value) -> String {
        let at = self.arg(Arg::Text(path.to_string()));
        match value {
            Value::Null => format!("json_type({column}, {at}) = 'null'"),
            Value::Bool(b) => format!("json_type({column}, {at}) = '{b}'"),
            Value::Number(n) => {
                let v = match n.as_i64() {
                    Some(i) => self.arg(Arg::Int(i)),
                    None => self.arg(Arg::Float(n.as_f64().unwrap_or(0.0))),
                };
                format!("(json_type({column}, {at}) IN ('integer', 'real') AND json_extract({column}, {at}) = {v})")
            }
            Value::String(s) => {
                let v = self.arg(Arg::Text(s.clone()));
                format!("(json_type({column}, {at}) = 'text' AND json_extract({column}, {at}) = {v})")
            }
            Value::Object(o) if o.is_empty() => format!("json_type({column}, {at}) = 'object'"),
            Value::Object(o) => {
                let parts: Vec<String> = o
                    .iter()
                    .map(|(k, v)| self.sqlite_contains(column, &format!("{path}.\"{}\"", k.replace('"', "")), v))
                    .collect();
                format!("({})", parts.join(" AND "))
            }
            // Each element is in the array (scalars; objects inside arrays by their text).
            Value::Array(items) => {
                let mut parts = vec![format!("json_type({column}, {at}) = 'array'")];
                for item in items {
                    let each = format!("json_each({column}, {at})");
                    let cond = match item {
                        Value::String(s) => format!("j.type = 'text' AND j.value = {}", self.arg(Arg::Text(s.clone()))),
                        Value::Number(n) => match n.as_i64() {
                            Some(i) => format!("j.type = 'integer' AND j.value = {}", self.arg(Arg::Int(i))),
                            None => format!(
                                "j.type = 'real' AND j.value = {}",
                                self.arg(Arg::Float(n.as_f64().unwrap_or(0.0)))
                            ),
                        },
                        Value::Bool(b) => format!("j.type = '{b}'"),
                        Value::Null => "j.type = 'null'".into(),
                        other => format!("j.value = json({})", self.arg(Arg::Text(other.to_string()))),
                    };
                    parts.push(format!("EXISTS (SELECT 1 FROM {each} j WHERE {cond})"));
                }
                format!("({})", parts.join(" AND "))
            }
        }
    }
}

/// Keygen's second reading of a string value: `"true"`, `"false"`, `"null"` and numbers as
/// the JSON values they spell.
fn cast(value: &Value) -> Option<Value> {
    let Value::String(s) = value else { return None };
    match s.as_str() {
        "true" => Some(Value::Bool(true)),
        "false" => Some(Value::Bool(false)),
        "null" => Some(Value::Null),
        s if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) => s.parse::<i64>().ok().map(Value::from),
        s => {
            let (whole, frac) = s.split_once('.')?;
            let digits = |p: &str| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit());
            (digits(whole) && digits(frac)).then(|| s.parse::<f64>().ok().map(Value::from)).flatten()
        }
    }
}

/// The ids of `table`'s rows in `account` matching `terms`, a page of them, newest first (or
/// oldest with `ascending`), with how many match in all.
pub async fn ids(
    db: &Db,
    account: Uuid,
    table: &Table,
    terms: &[Term],
    op: Op,
    page: Page,
    ascending: bool,
) -> Result<Listing<Uuid>> {
    let mut sql = Sql { args: Vec::new(), sqlite: matches!(db, Db::Sqlite(_)) };
    let acct = sql.arg(Arg::Uuid(account));
    let joined: Vec<String> = terms.iter().map(|t| sql.term(t)).collect();
    let glue = if op == Op::And { " AND " } else { " OR " };
    let matching = if joined.is_empty() { "1 = 1".to_string() } else { joined.join(glue) };
    let filter = format!("FROM {} WHERE {} = {acct} AND ({matching})", table.from, table.account);
    let order = if ascending { "" } else { " DESC" };
    let limit = sql.arg(Arg::Int(page.limit()));
    let offset = sql.arg(Arg::Int(page.offset()));
    let rows_sql = format!(
        "SELECT {} {filter} ORDER BY {}{order}, {}{order} LIMIT {limit} OFFSET {offset}",
        table.id, table.created, table.id
    );
    let count_sql = format!("SELECT COUNT(*) {filter}");
    let count_args = sql.args.len() - 2;
    // Binds `args` in order to a query of whichever engine runs it.
    macro_rules! bound {
        ($q:expr, $args:expr) => {{
            let mut q = $q;
            for a in $args {
                q = match a {
                    Arg::Text(s) => q.bind(s.clone()),
                    Arg::Uuid(u) => q.bind(*u),
                    Arg::Int(i) => q.bind(*i),
                    Arg::Float(f) => q.bind(*f),
                };
            }
            q
        }};
    }
    db_run!(db, |pool| {
        let rows = bound!(sqlx::query_scalar::<_, Uuid>(&rows_sql), &sql.args).fetch_all(pool).await?;
        let total = bound!(sqlx::query_scalar::<_, i64>(&count_sql), &sql.args[..count_args]).fetch_one(pool).await?;
        Ok(Listing { rows, total })
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn strings_are_read_again_as_what_they_spell() {
        assert_eq!(cast(&json!("true")), Some(json!(true)));
        assert_eq!(cast(&json!("42")), Some(json!(42)));
        assert_eq!(cast(&json!("4.5")), Some(json!(4.5)));
        assert_eq!(cast(&json!("null")), Some(Value::Null));
        assert_eq!(cast(&json!("abc")), None);
        assert_eq!(cast(&json!(".5")), None);
        assert_eq!(cast(&json!(7)), None);
    }

    #[test]
    fn like_wildcards_are_literal() {
        assert_eq!(Sql::pattern("50%_Off", false), "%50\\%\\_off%");
        assert_eq!(Sql::pattern("e1fb", true), "e1fb%");
    }
}
