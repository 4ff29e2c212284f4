//! One module per group of endpoints.

pub mod admin;
pub mod auth;
pub mod browser;
pub mod docs;
pub mod exchange;
pub mod health;
pub mod metrics;
