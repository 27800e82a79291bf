//! The HTTP surfaces. Each speaks its own wire format over the same core model; what they
//! share of request checking lives here.

pub mod astra;
pub mod keygen;
pub mod licensing;
pub mod opswat;

use serde_json::Value;

/// Whether any string (or key) in `v` holds a NUL character.
pub fn holds_nul(v: &Value) -> bool {
    match v {
        Value::String(s) => s.contains('\0'),
        Value::Array(items) => items.iter().any(holds_nul),
        Value::Object(o) => o.iter().any(|(k, v)| k.contains('\0') || holds_nul(v)),
        _ => false,
    }
}
