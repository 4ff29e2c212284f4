//! Events and webhooks: what the gateway tells MCP servers and operators
//! when a grant changes, signed per the Standard Webhooks specification and
//! delivered at least once from an outbox written with each change.
//!
//! * [`events`]: the event types and their payloads.
//! * [`signing`]: `whsec_` secrets and `v1,` signatures.
//! * [`delivery`]: fan-out, claims, attempts with backoff, dead letters.

pub mod delivery;
pub mod events;
pub mod signing;

pub use events::{Event, EventType};
