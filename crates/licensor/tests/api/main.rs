//! Integration tests: one binary, each test against a real server over real HTTP.

mod helpers;
mod keygen_client;

mod accounts;
mod actions;
mod astra;
mod authorization;
mod browser;
mod checkout;
mod cli;
mod concurrency;
mod console;
mod cross_surface;
mod errors;
mod golden;
mod keys;
mod layers;
mod licenses;
mod licensing;
mod machines;
mod migrations;
mod openapi;
mod operations;
mod opswat;
mod passwords;
mod policies;
mod rate_limits;
mod resources;
mod search;
mod signing_oracle;
mod strategies;
mod surface_errors;
mod tokens;
mod validation;
mod validation_limits;
mod webhooks;
