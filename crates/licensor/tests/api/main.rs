//! Integration tests: one binary, each test against a real server over real HTTP.

mod helpers;

mod accounts;
mod errors;
mod licenses;
mod policies;
mod resources;
mod tokens;
