//! Credentials: one user's grant at one provider, as the store keeps it and
//! as a `TokenActor` holds it in memory; how it is refreshed (every replica
//! agreeing) and revoked; and how operators list them across users.

pub mod due;
pub mod listing;
pub mod model;
pub mod refresh;
pub mod revocations;
pub mod revoke;

pub use crate::store::credentials::{CredentialKey, CredentialState, CredentialSummary, NewTokens};
pub use model::{Credential, Grant, Need, Source, TokenError, Trigger, missing_scopes};
pub use refresh::Settled;
pub(crate) use refresh::{load, refresh, settle};
