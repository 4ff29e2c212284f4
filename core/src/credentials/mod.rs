//! Credentials: one user's grant at one provider, as the store keeps it and
//! as a `TokenActor` holds it in memory; how it is refreshed (every replica
//! agreeing) and revoked.

pub mod due;
pub mod refresh;
pub mod revoke;

pub use crate::store::credentials::{CredentialKey, CredentialState, CredentialSummary, NewTokens};
pub use refresh::{Credential, Grant, Need, Settled, Source, TokenError, Trigger, missing_scopes};
pub(crate) use refresh::{load, refresh, settle};
