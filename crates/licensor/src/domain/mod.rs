//! Business rules. Pure rules (policy, license, heartbeat, validation, metadata, keys) are
//! unit-tested without a server; `issuance` is the one path that creates licenses for every
//! surface.

pub mod account;
pub mod activation;
pub mod collection_query;
pub mod heartbeat;
pub mod issuance;
pub mod keys;
pub mod license;
pub mod license_file;
pub mod licensing_code;
pub mod metadata;
pub mod nlf;
pub mod policy;
pub mod projection;
pub mod validation;
