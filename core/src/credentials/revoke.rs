//! Revoking a credential: at the provider (RFC 7009 where it has an endpoint),
//! then in the database, then in every replica's cache.

use crate::credentials::TokenError;
use crate::events::Event;
use crate::oauth::client::RevocationOutcome;
use crate::services::Deps;
use crate::store::credentials::{CredentialKey, CredentialState, NewTokens, Retry};

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
    // A refresh token stands for the whole grant: revoking it revokes the
    // access tokens issued from it too.
    let (token, kind) = match &stored.refresh_token {
        Some(refresh) => (refresh, "refresh_token"),
        None => (&stored.access_token, "access_token"),
    };
    let outcome = match deps.providers.get(&key.provider).await {
        None => RevocationOutcome::NotSupported,
        Some(_) if kind == "access_token" && stored.state == CredentialState::NeedsReauth => {
            RevocationOutcome::AlreadyInvalid
        }
        Some(provider) => deps.oauth.revoke(&provider, token, kind).await,
    };
    let now = deps.clock.now();
    // A provider that is down does not keep the grant here: the credential
    // goes, and the revocation is retried by a job until the provider takes it.
    let retry = (outcome == RevocationOutcome::Failed).then_some(Retry {
        token,
        kind,
        next_attempt_at: now + super::revocations::first_retry(),
    });
    deps.store.delete_credential(key, outcome.as_str(), retry, &deps.keyring, now).await?;
    deps.events.publish(Event::Credential { provider: key.provider.clone(), email: key.email.to_string() }).await;
    tracing::info!(provider = %key.provider, outcome = outcome.as_str(), "credential revoked");
    Ok(outcome)
}
