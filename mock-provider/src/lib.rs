//! A real OAuth 2.0 authorization server over HTTP, standing in for Google, Microsoft and
//! Meta in the gateway's integration tests, benchmarks, the Python client's tests and the
//! local demo.
//!
//! It is the one thing the project fakes, so it fakes it at the wire: authorization codes
//! with PKCE, client authentication, refresh (with or without rotation), Meta's token
//! exchange, revocation, an OIDC id_token, a protected API, and injectable faults (5xx,
//! 429, slowness, OAuth errors, dropped connections). Beside it runs a small identity
//! provider ([`idp`]) that mints the JWTs MCP servers exchange at the gateway.
//!
//! ```no_run
//! # async fn demo() -> std::io::Result<()> {
//! use mock_provider::{Endpoint, Fault, MockProvider};
//!
//! let provider = MockProvider::start().await?;
//! provider.inject(Endpoint::Token, Fault::ServerError, 1);
//! println!("authorize at {}", provider.authorize_url());
//! # Ok(()) }
//! ```

mod config;
mod counters;
mod error;
mod faults;
pub mod idp;
pub mod jwt;
mod listener;
mod routes;
mod server;
mod state;
mod tokens;

pub use config::{Consent, ConsentMode, IdentityClaims, Latency, MockConfig};
pub use counters::Counters;
pub use faults::{Endpoint, Fault};
pub use server::MockProvider;
pub use tokens::{ACCESS_TOKEN_PREFIX, CODE_PREFIX, REFRESH_TOKEN_PREFIX, s256_challenge, subject_for};
