//! Business rules. Pure rules (policy, license, metadata, keys) are unit-tested without a
//! server; `issuance` is the one path that creates licenses for every surface.

pub mod issuance;
pub mod keys;
pub mod license;
pub mod metadata;
pub mod policy;
