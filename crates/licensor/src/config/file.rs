//! Settings from a TOML file and from `*_FILE` variables, below environment variables and
//! flags: `flag > LICENSOR_X > LICENSOR_X_FILE > config file > default`.
//!
//! The file is flat: each key is a setting's flag name (`listen`, `database-url` or
//! `database_url`, `rate-limits`, …), each value a string, number, boolean or array (joined
//! with commas). A key ending in `_file` (or `-file`) names a file holding the value, for
//! secrets (`master_key_file = "/run/secrets/licensor-master-key"`). Unknown keys are an error,
//! so a typo does not silently leave a default in place.
//!
//! Both reach clap as environment variables, set before the runtime starts any thread: clap
//! then applies one precedence to every setting, and `licensor config check` reports where
//! each value came from.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};

/// Where a setting's value came from, for `licensor config check`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    File,
    SecretFile,
}

/// The settings this module put into the environment, by variable name.
#[derive(Debug, Default)]
pub struct Loaded {
    pub origins: BTreeMap<String, Origin>,
    pub path: Option<PathBuf>,
}

/// The `--config` path from the command line (`--config PATH` or `--config=PATH`), else
/// `LICENSOR_CONFIG`.
pub fn config_path(args: &[String]) -> Option<PathBuf> {
    let mut it = args.iter();
    while let Some(a) = it.next() {
        if a == "--config" {
            return it.next().map(PathBuf::from);
        }
        if let Some(p) = a.strip_prefix("--config=") {
            return Some(PathBuf::from(p));
        }
        if a == "--" {
            break;
        }
    }
    std::env::var_os("LICENSOR_CONFIG").map(PathBuf::from)
}

/// The environment variable a file key stands for: `rate-limits` → `LICENSOR_RATE_LIMITS`.
fn variable(key: &str) -> String {
    format!("LICENSOR_{}", key.replace('-', "_").to_ascii_uppercase())
}

fn value_text(key: &str, v: &serde_json::Value) -> anyhow::Result<String> {
    Ok(match v {
        serde_json::Value::String(s) => s.clone(),
        serde_json::Value::Number(n) => n.to_string(),
        serde_json::Value::Bool(b) => b.to_string(),
        serde_json::Value::Array(items) => {
            items.iter().map(|i| value_text(key, i)).collect::<anyhow::Result<Vec<_>>>()?.join(",")
        }
        _ => bail!("{key}: expected a string, number, boolean or array"),
    })
}

fn read_secret(path: &Path) -> anyhow::Result<String> {
    let text = std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    Ok(text.trim_end_matches(['\n', '\r']).to_string())
}

/// Loads `path` (if any) and every `LICENSOR_*_FILE` variable into the environment, each only
/// where the variable itself is unset. `known` lists the variables the command line reads.
///
/// Call before any thread starts: it sets environment variables.
pub fn load(path: Option<&Path>, known: &BTreeSet<String>) -> anyhow::Result<Loaded> {
    let mut loaded = Loaded { path: path.map(Path::to_path_buf), ..Loaded::default() };
    let mut settings: Vec<(String, String, Origin)> = Vec::new();

    // `LICENSOR_X_FILE` from the environment: above the config file, below `LICENSOR_X`.
    for (name, value) in std::env::vars() {
        if let Some(target) = name.strip_suffix("_FILE").filter(|t| t.starts_with("LICENSOR_")) {
            if known.contains(target) {
                settings.push((target.to_string(), read_secret(Path::new(&value))?, Origin::SecretFile));
            }
        }
    }
    if let Some(path) = path {
        let text = std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
        let table: BTreeMap<String, serde_json::Value> =
            basic_toml::from_str(&text).with_context(|| format!("{} is not valid TOML", path.display()))?;
        for (key, value) in table {
            let (name, is_file) = match key.strip_suffix("_file").or_else(|| key.strip_suffix("-file")) {
                Some(base) => (variable(base), true),
                None => (variable(&key), false),
            };
            if !known.contains(&name) || name == "LICENSOR_CONFIG" {
                bail!("{}: unknown setting {key:?}", path.display());
            }
            let text = value_text(&key, &value)?;
            if is_file {
                let secret = read_secret(&resolve(path, &text))?;
                settings.push((name, secret, Origin::File));
            } else {
                settings.push((name, text, Origin::File));
            }
        }
    }
    for (name, value, origin) in settings {
        if std::env::var_os(&name).is_some() || loaded.origins.contains_key(&name) {
            continue;
        }
        // No thread is running yet (see the function's contract).
        std::env::set_var(&name, value);
        loaded.origins.insert(name, origin);
    }
    Ok(loaded)
}

/// A path in the config file, relative to the file's folder.
fn resolve(config: &Path, p: &str) -> PathBuf {
    let p = Path::new(p);
    if p.is_absolute() {
        p.to_path_buf()
    } else {
        config.parent().unwrap_or(Path::new(".")).join(p)
    }
}

/// `postgres://user:secret@host/db` → `postgres://user:…@host/db`.
pub fn redact_url(url: &str) -> String {
    let (url, query) = match url.split_once('?') {
        Some((u, q)) => (u, Some(q)),
        None => (url, None),
    };
    let mut out = match url.split_once("://").and_then(|(scheme, rest)| Some((scheme, rest.split_once('@')?))) {
        Some((scheme, (userinfo, host))) => match userinfo.split_once(':') {
            Some((user, _)) => format!("{scheme}://{user}:…@{host}"),
            None => url.to_string(),
        },
        None => url.to_string(),
    };
    if let Some(query) = query {
        // libpq takes secrets as parameters too (`password`, `sslpassword`).
        let params: Vec<String> = query
            .split('&')
            .map(|p| match p.split_once('=') {
                Some((k, _)) if k.to_ascii_lowercase().contains("password") => format!("{k}=…"),
                _ => p.to_string(),
            })
            .collect();
        out.push('?');
        out.push_str(&params.join("&"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_printed_without_passwords() {
        assert_eq!(redact_url("postgres://app:secret@db:5432/licensor"), "postgres://app:…@db:5432/licensor");
        assert_eq!(
            redact_url("postgres://db/licensor?user=app&password=secret&sslpassword=x&sslmode=require"),
            "postgres://db/licensor?user=app&password=…&sslpassword=…&sslmode=require"
        );
        assert_eq!(redact_url("sqlite:/var/lib/licensor/licensor.db"), "sqlite:/var/lib/licensor/licensor.db");
    }

    #[test]
    fn keys_name_variables() {
        assert_eq!(variable("rate-limits"), "LICENSOR_RATE_LIMITS");
        assert_eq!(variable("database_url"), "LICENSOR_DATABASE_URL");
    }

    #[test]
    fn the_config_flag_is_found() {
        let args = |a: &[&str]| a.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(config_path(&args(&["licensor", "serve", "--config", "a.toml"])), Some(PathBuf::from("a.toml")));
        assert_eq!(config_path(&args(&["licensor", "--config=b.toml", "serve"])), Some(PathBuf::from("b.toml")));
    }

    #[test]
    fn urls_are_redacted() {
        assert_eq!(redact_url("postgres://app:s3cret@db:5432/licensor"), "postgres://app:…@db:5432/licensor");
        assert_eq!(redact_url("postgres://app@db/licensor"), "postgres://app@db/licensor");
        assert_eq!(redact_url("sqlite:licensor-data/licensor.db"), "sqlite:licensor-data/licensor.db");
    }

    #[test]
    fn arrays_join_with_commas() {
        let v: serde_json::Value = serde_json::json!(["10.0.0.0/8", "::1"]);
        assert_eq!(value_text("k", &v).unwrap(), "10.0.0.0/8,::1");
        assert!(value_text("k", &serde_json::json!({"a": 1})).is_err());
    }
}
