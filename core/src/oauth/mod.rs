//! Talking OAuth 2.0 to providers: their configuration, the authorization
//! URL, token requests, revocation, and who consented.

pub mod client;
pub mod health;
pub mod identity;
pub mod provider;
pub mod providers;

pub use client::{OAuthClient, TokenSet, UpstreamError};
pub use provider::{ClientAuth, IdentityCheck, ProviderConfig, ProviderKind, ProviderSource, TenantRule};
pub use providers::Providers;
