//! mcp-auth-gateway: holds every user's OAuth credentials for every MCP
//! server, so that no MCP server handles OAuth itself.
//!
//! **What this crate owns.** The outermost layer: the HTTP API ([`http`]:
//! routes, extractors, the error table, the browser pages, the listener), the
//! command line ([`cli`]), start-up and shutdown ([`startup`], [`shutdown`]),
//! and logs and the Prometheus recorder ([`telemetry`]).
//!
//! **What it must not do.** Decide anything about credentials, sessions or
//! keys, or reach the database: handlers call the core's
//! [`Services`](core::Services) (its store is private to it), and scheduled
//! work is the `workers` crate's. Dependencies run one way:
//! `gateway → workers → core → entity, migration`.

pub mod cli;
pub mod http;
pub mod shutdown;
pub mod startup;
pub mod telemetry;

/// The core, reached through the workers crate (the only crate this one
/// depends on), and its modules under their familiar names.
pub use workers::core;
pub use workers::core::{access, clock, config, credentials, crypto, email, events, keys, oauth, seeding, sessions};
