//! Keygen's wire representation of the model: the JSON:API resource object of each resource,
//! as pure functions of `model` values. The Keygen surface answers with them, and webhook
//! events carry them whichever surface caused the event, so they sit below both.

pub mod components;
pub mod document;
pub mod entitlements;
pub mod groups;
pub mod keys;
pub mod licenses;
pub mod machines;
pub mod policies;
pub mod processes;
pub mod products;
pub mod second_factors;
pub mod tokens;
pub mod users;
