//! Who may call the API, and what each caller may do.
//!
//! * [`clients`]: API clients (one key per MCP server) and their rights; the
//!   bootstrap client (`AUTH_GATEWAY_API_KEY`) has every right.
//! * [`limits`]: rate limits per client and per source address.
//! * [`audit`]: the append-only record of who did what to whose credential.

pub mod audit;
pub mod clients;
pub mod limits;

pub use clients::{Action, Client, Clients, Denied};
