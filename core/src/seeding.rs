//! Many credentials at once, for tests and benchmarks that need tens of
//! thousands of rows quickly. Never used by the gateway itself: real
//! credentials only come from authorizations.

use chrono::{DateTime, Utc};

use crate::admin::Admin;
use crate::store::StoreError;

pub use crate::store::seed::SeedCredential;

/// Inserts `credentials` sealed under the admin's primary key.
pub async fn seed_credentials(
    admin: &Admin,
    credentials: &[SeedCredential],
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    admin.store.seed_credentials(&admin.keyring, credentials, now).await
}

/// The tokens stored for `key`, opened with the admin's keys (tests check
/// what survived a rotation or a crash).
pub async fn stored_tokens(
    admin: &Admin,
    key: &crate::credentials::CredentialKey,
) -> Result<Option<(secrecy::SecretString, Option<secrecy::SecretString>)>, StoreError> {
    Ok(admin.store.load_credential(key, &admin.keyring).await?.map(|c| (c.access_token, c.refresh_token)))
}
