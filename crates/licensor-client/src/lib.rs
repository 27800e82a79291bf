//! Offline license verification for products licensed by Licensor (or by Keygen: the formats
//! are the same).
//!
//! Everything here runs on the customer's machine, without a network: verify a signed license
//! key ([`key`]), verify and decrypt a license or machine file ([`file`]), verify a signed API
//! response when online ([`response`]), install an air-gapped activation file ([`opswat`],
//! [`product`]), notice a clock set back ([`clock`]) and compute a stable machine fingerprint
//! ([`fingerprint`]). The crate has no dependency on the server.

pub mod clock;
pub mod file;
pub mod fingerprint;
pub mod key;
pub mod opswat;
pub mod product;
pub mod public_key;
pub mod response;

pub use public_key::PublicKey;

/// Why something did not verify. The variants say what to tell the user; none of them carries
/// secret material.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum Error {
    #[error("malformed: {0}")]
    Malformed(String),
    #[error("signature does not verify")]
    BadSignature,
    #[error("unsupported algorithm: {0}")]
    Unsupported(String),
    #[error("cannot decrypt (wrong key or tampered data)")]
    Decrypt,
    #[error("expired at {0}")]
    Expired(String),
    #[error("the system clock appears to have been set back")]
    ClockRollback,
    #[error("issued for another machine or deployment")]
    WrongMachine,
    #[error("public key is invalid: {0}")]
    BadPublicKey(String),
    #[error("i/o: {0}")]
    Io(String),
}

pub type Result<T> = std::result::Result<T, Error>;

fn malformed(what: impl Into<String>) -> Error {
    Error::Malformed(what.into())
}
