//! sea-orm models of the gateway's tables, and nothing else.
//!
//! Every encrypted column (`access_token`, `refresh_token`, `client_secret`,
//! `pkce_verifier`, the key canary) has a `*_key_id` column beside it naming the
//! key that sealed it, so re-encryption finds rows under old keys with a query.
//! The values themselves are Fernet tokens; see `gateway_core::crypto` for the
//! envelope inside them.
//!
//! **Owns** the tables' shapes. **Must not** hold logic, or be serialised to
//! an HTTP client; only the core's private store uses it.

pub mod api_clients;
pub mod audit_log;
pub mod gateway_metadata;
pub mod oauth_credentials;
pub mod oauth_providers;
pub mod oauth_sessions;
pub mod pending_revocations;
pub mod used_assertions;
pub mod webhook_deliveries;
pub mod webhook_events;
pub mod webhooks;

pub mod prelude {
    pub use super::api_clients::Entity as ApiClients;
    pub use super::audit_log::Entity as AuditLog;
    pub use super::gateway_metadata::Entity as GatewayMetadata;
    pub use super::oauth_credentials::Entity as OauthCredentials;
    pub use super::oauth_providers::Entity as OauthProviders;
    pub use super::oauth_sessions::Entity as OauthSessions;
    pub use super::used_assertions::Entity as UsedAssertions;
}
