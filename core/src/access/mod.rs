//! Who may call the API, and what each caller may do.
//!
//! * [`clients`]: API clients (one key per MCP server) and their rights; the
//!   bootstrap client (`AUTH_GATEWAY_API_KEY`) has every right.
//! * [`limits`]: rate limits per client and per source address.
//! * [`audit`]: the append-only record of who did what to whose credential.

pub mod audit;
pub mod clients;
pub mod limits;

pub use crate::store::clients::{ClientExchange, ClientRecord, ExchangeUpdate, NewClient};
pub use clients::{Action, Client, Clients, Denied};

/// The SHA-256 digest of a bearer secret (API keys are stored and compared
/// as digests only).
pub fn digest(secret: &[u8]) -> [u8; 32] {
    use sha2::Digest;
    sha2::Sha256::digest(secret).into()
}
