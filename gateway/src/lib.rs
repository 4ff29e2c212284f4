//! mcp-auth-gateway: holds every user's OAuth credentials for every MCP server,
//! so that no MCP server handles OAuth itself.
//!
//! Layers, from the outside in: [`cli`] and [`startup`] wire things together;
//! [`http`] is the API (thin handlers); [`actors`] own per-credential token
//! caches and the session lifecycle; [`flow`], [`refresh`] and [`revoke`] are
//! what they do; [`oauth`] talks to providers; [`store`] is the only module
//! that speaks SQL; [`events`] keeps replicas' caches honest; [`crypto`]
//! seals values at rest; [`config`] turns the environment into settings.

pub mod access;
pub mod actors;
pub mod app;
pub mod cli;
pub mod clock;
pub mod config;
pub mod crypto;
pub mod email;
pub mod events;
pub mod flow;
pub mod health;
pub mod http;
pub mod jobs;
pub mod oauth;
pub mod refresh;
pub mod revoke;
pub mod shutdown;
pub mod startup;
pub mod store;
pub mod telemetry;
