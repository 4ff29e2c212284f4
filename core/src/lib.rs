//! The core of mcp-auth-gateway: everything that decides what happens to a
//! user's OAuth grant, below the HTTP API and the scheduled jobs.
//!
//! **What it owns.** Configuration ([`config`]) and time ([`clock`]); keys and
//! sealing ([`crypto`]); the store, which is private to this crate; the
//! providers and how to talk to them ([`oauth`]); API clients, rights, rate
//! limits and the audit log ([`access`]); the actors that hold warm tokens and
//! flows ([`actors`]); the domain services — [`credentials`] (load, refresh,
//! revoke), [`sessions`] (start, link, callback, status), [`keys`] (what each
//! key seals) — and the [`services::Services`] facade through which the outer
//! crates use them; the event bus that keeps replicas' caches honest
//! ([`events`]); the metric catalogue ([`telemetry`]).
//!
//! **What it must not do.** Know about HTTP (axum), the OpenAPI document
//! (utoipa), the command line or the scheduler: those are the `gateway` and
//! `workers` crates, which depend on this one, never the other way round.
//! Nothing outside this crate reaches the database except through
//! [`services::Services`].

pub mod access;
pub mod actors;
pub mod admin;
pub mod clock;
pub mod config;
pub mod credentials;
pub mod crypto;
pub mod email;
pub mod events;
pub mod exchange;
pub mod health;
pub mod keys;
pub mod oauth;
pub mod operations;
pub mod seeding;
pub mod services;
pub mod sessions;
pub mod setup;
pub mod stats;
mod store;
pub mod telemetry;
pub mod webhooks;

pub use services::{Services, ServicesError};
pub use store::StoreError;
