//! The gateway's black-box tests: one binary, one module per behaviour.
//! Each test gets its own gateway on port 0 and its own database (a SQLite
//! file, or a PostgreSQL database with a random name that is dropped after).

// Test code: failing loudly is the point.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod helpers;

mod access;
mod bad_input;
mod cli;
mod crowd;
mod exchange;
mod flow;
mod health;
mod identity;
mod keys;
mod logs;
mod metrics;
mod migrations;
mod nothing_lost;
mod operations;
mod pages;
mod refresh_capacity;
mod replicas;
mod rotation;
mod tokens;
mod webhooks;
mod workers;
