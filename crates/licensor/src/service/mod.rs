//! Use cases, surface-neutral. Each takes who is calling (an `auth::Principal`), loads what it
//! needs under the right locks, asks the pure rules in `domain`, writes through `store`, and
//! returns model values or a domain error. The API surfaces only parse requests, call one of
//! these and render the answer in their own format, so a rule lives in one place whichever
//! surface a request comes in on.

pub mod access;
pub mod catalog;
pub mod checkout;
pub mod keys;
pub mod licenses;
pub mod machines;
pub mod search;
pub mod second_factors;
pub mod users;
pub mod validation;
pub mod webhooks;
