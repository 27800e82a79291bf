//! Business rules, pure: they decide from model values and never touch the database or the
//! network, so each is unit-tested without a server. The use cases in `service` gather what
//! they need and call them.

pub mod account;
pub mod activation;
pub mod collection_query;
pub mod heartbeat;
pub mod keys;
pub mod license;
pub mod license_file;
pub mod licensing_code;
pub mod metadata;
pub mod nlf;
pub mod policy;
pub mod projection;
pub mod totp;
pub mod validation;
