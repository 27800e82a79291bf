//! Licensor: a self-hosted software-licensing server.
//!
//! Layout:
//! - [`api`]: the HTTP surfaces (the Keygen-compatible v1 API first), thin handlers.
//! - [`service`]: the use cases every surface calls (issue, activate, validate, …).
//! - [`domain`]: licensing rules with no I/O.
//! - [`store`]: every SQL statement, over SQLite or PostgreSQL ([`db`]).
//! - [`model`]: the core types everything else shares; depends on nothing in the crate.
//! - [`wire`]: Keygen's JSON:API resource objects of the model (responses and webhook payloads).
//! - [`auth`], [`crypto`]: who is calling; tokens, passwords, keys.
//! - [`app`], [`jobs`], [`config`], [`bootstrap`]: wiring, background work, settings, setup.

pub mod api;
pub mod app;
pub mod auth;
pub mod backup;
pub mod bootstrap;
pub mod config;
pub mod console;
pub mod crypto;
pub mod db;
pub mod domain;
pub mod error;
pub mod events;
pub mod fsutil;
pub mod jobs;
pub mod license_cache;
pub mod metrics;
pub mod model;
pub mod ratelimit;
pub mod server;
pub mod service;
pub mod state;
pub mod store;
pub mod telemetry;
pub mod time;
pub mod tls;
pub mod webhooks;
pub mod wire;
