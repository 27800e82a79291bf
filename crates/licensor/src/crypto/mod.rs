//! Secrets and keys: API tokens and passwords (hashed, never stored in clear), account signing
//! keys (private halves encrypted at rest under the server's master key).

pub mod keys;
pub mod secrets;
pub mod sign;

pub use keys::{AccountKeys, MasterKey};
