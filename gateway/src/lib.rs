//! mcp-auth-gateway: holds every user's OAuth credentials for every MCP server,
//! so that no MCP server handles OAuth itself.
//!
//! Layers, from the outside in: [`cli`] and [`startup`] wire things together;
//! [`http`] is the API (thin handlers); [`app`] is the state they share;
//! [`store`] is the only module that speaks SQL; [`crypto`] seals values at
//! rest; [`config`] turns the environment into typed settings.

pub mod app;
pub mod cli;
pub mod clock;
pub mod config;
pub mod crypto;
pub mod email;
pub mod health;
pub mod http;
pub mod shutdown;
pub mod startup;
pub mod store;
pub mod telemetry;
