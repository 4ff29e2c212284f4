//! Revoking a credential: at the provider (RFC 7009 where it has an endpoint),
//! then in the database, then in every replica's cache.

use crate::credentials::TokenError;
use crate::events::Event;
use crate::oauth::client::RevocationOutcome;
use crate::services::Deps;
use crate::store::credentials::{CredentialKey, CredentialState, NewTokens};

/// Revokes and deletes `key`'s credential. The credential is deleted even
/// when the provider cannot be reached: the user asked for it to be gone,
/// and the outcome says what the provider did.
#[tracing::instrument(name = "revoke", skip_all, fields(provider = %key.provider))]
///
/// `unsaved` are tokens a refresh obtained that the database has not taken
/// yet: when they carry a (rotated) refresh token, that one is the grant's.
pub(crate) async fn revoke(
    deps: &Deps,
    key: &CredentialKey,
    unsaved: Option<&NewTokens>,
) -> Result<RevocationOutcome, TokenError> {
    let Some(mut stored) = deps.store.load_credential(key, &deps.keyring).await? else {
        return Err(TokenError::NotAuthenticated);
    };
    if let Some(newer) = unsaved.and_then(|u| u.refresh_token.clone()) {
        stored.refresh_token = Some(newer);
    }
    let outcome = match deps.providers.get(&key.provider).await {
        None => RevocationOutcome::NotSupported,
        // A refresh token stands for the whole grant: revoking it revokes the
        // access tokens issued from it too.
        Some(provider) => match &stored.refresh_token {
            Some(refresh) => deps.oauth.revoke(&provider, refresh, "refresh_token").await,
            None if stored.state == CredentialState::NeedsReauth => RevocationOutcome::AlreadyInvalid,
            None => deps.oauth.revoke(&provider, &stored.access_token, "access_token").await,
        },
    };
    deps.store.delete_credential(key).await?;
    deps.events.publish(Event::Credential { provider: key.provider.clone(), email: key.email.to_string() }).await;
    tracing::info!(provider = %key.provider, outcome = outcome.as_str(), "credential revoked");
    Ok(outcome)
}
