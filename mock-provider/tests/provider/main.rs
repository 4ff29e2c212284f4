//! End-to-end tests of the mock provider over real HTTP, one module per concern. A single
//! test binary keeps link time down.

// Test code: a failed unwrap is a failed test. clippy.toml allows these inside `#[test]`
// functions only, and the helpers here are plain functions.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod admin;
mod authorize;
mod binary;
mod code_flow;
mod concurrency;
mod consent;
mod faults;
mod helpers;
mod refresh;
mod revoke;
mod token;
