//! The provider's redirect back: the `state` used once, the code exchanged,
//! who consented proven, the tokens stored (retried while the database is
//! unavailable: the code cannot be exchanged again), the session completed.

use std::time::Duration;

use chrono::TimeDelta;
use secrecy::SecretString;
use url::Url;

use crate::email::Email;
use crate::events::Event;
use crate::oauth::client::{TokenSet, record_upstream_error};
use crate::oauth::identity::{self, same_account};
use crate::oauth::{IdentityCheck, ProviderConfig, ProviderKind, UpstreamError};
use crate::services::Deps;
use crate::store::credentials::{CredentialKey, NewTokens};
use crate::store::retry_unavailable;
use crate::store::sessions::CallbackClaim;
use crate::store::sessions::SessionRecord;
use crate::telemetry::metrics as m;

use super::FailReason;

/// The query of the provider's redirect. Unknown parameters (`iss`,
/// `session_state`, ...) are ignored.
#[derive(Clone, Debug, Default, serde::Deserialize)]
pub struct CallbackParams {
    pub code: Option<String>,
    pub state: Option<String>,
    pub error: Option<String>,
    pub error_description: Option<String>,
}

impl std::fmt::Display for CallbackParams {
    // Never shows the code.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "callback(code: {}, state: {}, error: {:?})", self.code.is_some(), self.state.is_some(), self.error)
    }
}

/// What the browser is shown after the callback.
#[derive(Debug)]
pub enum CallbackOutcome {
    Completed {
        provider: String,
        email: String,
        redirect_after: Option<String>,
    },
    /// The session failed (and is marked failed).
    Failed(FailReason),
    /// Nothing was changed: no such state, a replayed state, an expired
    /// session, or a callback for another provider.
    Rejected(&'static str),
}

/// Handles the provider's redirect to `/auth/callback/{provider}`.
#[tracing::instrument(name = "callback", skip_all, fields(provider = provider_id))]
pub(crate) async fn callback(deps: &Deps, provider_id: &str, params: CallbackParams) -> CallbackOutcome {
    let Some(state) = params.state.as_deref().filter(|s| !s.is_empty() && s.len() <= 256) else {
        return CallbackOutcome::Rejected("The link is missing its state parameter.");
    };
    let now = deps.clock.now();
    let until = now + TimeDelta::from_std(callback_budget(deps)).unwrap_or(TimeDelta::MAX);
    let claim = match deps.store.claim_callback(state, provider_id, &deps.keyring, now, until).await {
        Ok(claim) => claim,
        Err(err) => {
            tracing::error!(error = %err, "callback: could not read the session");
            return CallbackOutcome::Rejected("The gateway could not read this sign-in; try again.");
        }
    };
    let claimed = match claim {
        CallbackClaim::Claimed(claimed) => claimed,
        CallbackClaim::Unknown => {
            return CallbackOutcome::Rejected("This sign-in link is unknown or was already used.");
        }
        CallbackClaim::OtherProvider => {
            return CallbackOutcome::Rejected("This sign-in belongs to another provider.");
        }
        CallbackClaim::Unusable(record) if record.is_expired(now) => {
            return CallbackOutcome::Rejected("This sign-in expired. Ask your assistant for a new link.");
        }
        CallbackClaim::Unusable(_) => {
            return CallbackOutcome::Rejected("This sign-in was already completed or used.");
        }
    };
    let session = claimed.session;
    let result = finish(deps, provider_id, &session, claimed.pkce_verifier, &params).await;
    match result {
        Ok(()) => {
            metrics::counter!(m::SESSIONS_COMPLETED, "provider" => provider_id.to_owned()).increment(1);
            audit_flow(deps, &session, "complete", "completed");
            deps.events.publish(Event::Session { id: session.id }).await;
            tracing::info!(provider = provider_id, session_id = %session.id, "authorization completed");
            CallbackOutcome::Completed {
                provider: provider_id.to_owned(),
                email: session.email,
                redirect_after: session.redirect_after,
            }
        }
        Err(reason) => {
            fail(deps, &session, reason).await;
            CallbackOutcome::Failed(reason)
        }
    }
}

/// The most a callback takes once it has claimed its session: the code
/// exchange (two attempts), userinfo and a revocation at the provider, and
/// the storage retries, with a minute to spare. The session lives at least
/// this long after the claim.
fn callback_budget(deps: &Deps) -> Duration {
    deps.settings.provider_timeout * 4 + deps.settings.storage_retry * 2 + Duration::from_secs(60)
}

/// Marks `session` failed (if still pending) and tells the waiters.
pub(crate) async fn fail(deps: &Deps, session: &SessionRecord, reason: FailReason) {
    let now = deps.clock.now();
    let failed = retry_unavailable("fail a session", deps.settings.storage_retry, || {
        deps.store.fail_session(session.id, reason.code(), now)
    })
    .await;
    match failed {
        Ok(true) => {
            metrics::counter!(m::SESSIONS_FAILED, "provider" => session.provider.clone(), "reason" => reason.code())
                .increment(1);
            audit_flow(deps, session, "fail", reason.code());
            tracing::info!(provider = %session.provider, session_id = %session.id, reason = reason.code(), "authorization failed");
            deps.events.publish(Event::Session { id: session.id }).await;
        }
        Ok(false) => {}
        Err(err) => tracing::error!(error = %err, "could not mark a session failed"),
    }
}

/// Audits a flow's end under the client that started it.
fn audit_flow(deps: &Deps, session: &SessionRecord, action: &str, outcome: &str) {
    let client = session.client.as_deref().unwrap_or("unknown");
    let mut record = crate::access::audit::record(client, action, outcome, deps.clock.now());
    record.user_email = Some(session.email.clone());
    record.provider = Some(session.provider.clone());
    record.detail = Some(format!("session {}", session.id));
    deps.audit.record(record);
}

async fn finish(
    deps: &Deps,
    provider_id: &str,
    session: &SessionRecord,
    verifier: Option<SecretString>,
    params: &CallbackParams,
) -> Result<(), FailReason> {
    if let Some(error) = &params.error {
        return Err(if error == "access_denied" { FailReason::AccessDenied } else { FailReason::ProviderError });
    }
    let code = params.code.as_deref().filter(|c| !c.is_empty()).ok_or(FailReason::InvalidCallback)?;
    let provider = deps.providers.get(provider_id).await.ok_or(FailReason::ProviderError)?;
    let redirect_uri = provider.redirect_uri(&deps.settings.public_url).map_err(|_| FailReason::ProviderError)?;
    let code = SecretString::from(code.to_owned());
    let tokens = exchange(deps, &provider, &redirect_uri, &code, verifier.as_ref()).await?;

    verify_identity(deps, &provider, session, &tokens).await?;

    let email = Email::parse(&session.email).map_err(|_| FailReason::InvalidCallback)?;
    let key = CredentialKey { email, provider: provider.id.clone() };
    if provider.kind == ProviderKind::Google && tokens.refresh_token.is_none() {
        // A Google grant without a refresh token dies within the hour. Only a
        // re-consent that keeps a stored refresh token is acceptable.
        let stored = retry_unavailable("read the stored credential", deps.settings.storage_retry, || {
            deps.store.load_credential(&key, &deps.keyring)
        })
        .await
        .map_err(|err| {
            tracing::error!(error = %err, "callback: could not read the stored credential");
            FailReason::StorageError
        })?;
        if stored.is_none_or(|s| s.refresh_token.is_none()) {
            revoke_quietly(deps, &provider, &tokens).await;
            return Err(FailReason::NoRefreshToken);
        }
    }
    let now = deps.clock.now();
    let new = NewTokens {
        expires_at: tokens.expires_at(now),
        access_token: tokens.access_token,
        refresh_token: tokens.refresh_token,
        scopes: Some(tokens.scopes.unwrap_or_else(|| session.scopes.clone())),
    };
    // The code is spent: these tokens cannot be had again, so a database
    // that is briefly unavailable is waited for rather than given up on.
    retry_unavailable("store an authorized credential", deps.settings.storage_retry, || {
        deps.store.upsert_authorized(&key, &new, &deps.keyring, now)
    })
    .await
    .map_err(|err| {
        tracing::error!(error = %err, "callback: could not store the credential");
        FailReason::StorageError
    })?;
    deps.events.publish(Event::Credential { provider: key.provider.clone(), email: key.email.to_string() }).await;
    let completed = retry_unavailable("complete a session", deps.settings.storage_retry, || {
        deps.store.complete_session(session.id, deps.clock.now())
    })
    .await;
    match completed {
        Ok(true) => {}
        Ok(false) => {
            tracing::warn!(session_id = %session.id, "session was no longer pending when its credential was stored")
        }
        // The credential is stored and served; only the session's status lags.
        Err(err) => {
            tracing::error!(error = %err, session_id = %session.id, "callback: stored the credential but could not mark the session completed")
        }
    }
    Ok(())
}

/// The code exchange, retried once on a transient failure.
async fn exchange(
    deps: &Deps,
    provider: &ProviderConfig,
    redirect_uri: &Url,
    code: &SecretString,
    verifier: Option<&SecretString>,
) -> Result<TokenSet, FailReason> {
    let mut last = UpstreamError::Network;
    for attempt in 0..2 {
        match deps.oauth.exchange_code(provider, redirect_uri, code, verifier).await {
            Ok(tokens) => {
                deps.providers.accepted(&provider.id, deps.clock.now()).await;
                return Ok(tokens);
            }
            Err(err) => {
                record_upstream_error(provider, "code_exchange", &err);
                if err.is_client_error() {
                    deps.providers.refused(&provider.id, err.category(), deps.clock.now()).await;
                    return Err(FailReason::TokenExchangeFailed);
                }
                if err.is_permanent() {
                    return Err(FailReason::TokenExchangeFailed);
                }
                last = err;
                if attempt == 0 {
                    tokio::time::sleep(Duration::from_millis(300)).await;
                }
            }
        }
    }
    tracing::warn!(provider = %provider.id, category = last.category(), "code exchange failed");
    Err(FailReason::ProviderUnavailable)
}

/// Who consented must be the session's user, as the provider proves it
/// (the rules are in [`crate::oauth::identity`]). In `required` mode only a
/// verified address counts; in `optional` mode an unproven one is accepted
/// when it is the session's user. Tokens of a refused consent are revoked.
async fn verify_identity(
    deps: &Deps,
    provider: &ProviderConfig,
    session: &SessionRecord,
    tokens: &TokenSet,
) -> Result<(), FailReason> {
    if provider.identity_check == IdentityCheck::Off {
        return Ok(());
    }
    let required = provider.identity_check == IdentityCheck::Required;
    let mut consented = match tokens.id_token.as_ref().map(|t| identity::from_id_token(t, provider)).transpose() {
        Ok(consented) => consented.flatten(),
        Err(refused) => {
            tracing::warn!(provider = %provider.id, session_id = %session.id, %refused, "id_token refused");
            revoke_quietly(deps, provider, tokens).await;
            return Err(FailReason::IdentityUnverified);
        }
    };
    if consented.as_ref().is_none_or(|c| !c.verified) && provider.userinfo_url.is_some() {
        match deps.oauth.userinfo(provider, &tokens.access_token).await {
            Ok(body) => {
                let from_userinfo = body.and_then(|b| identity::from_userinfo(&b, provider));
                // A verified answer wins over an unproven one.
                if from_userinfo.as_ref().is_some_and(|c| c.verified) || consented.is_none() {
                    consented = from_userinfo.or(consented);
                }
            }
            Err(err) => {
                record_upstream_error(provider, "userinfo", &err);
                if required && consented.is_none() {
                    revoke_quietly(deps, provider, tokens).await;
                    return Err(FailReason::ProviderUnavailable);
                }
            }
        }
    }
    let refuse = |reason: FailReason| async move {
        tracing::warn!(provider = %provider.id, session_id = %session.id, reason = reason.code(), "consent refused");
        revoke_quietly(deps, provider, tokens).await;
        Err(reason)
    };
    match consented {
        Some(c) if c.verified && same_account(&c.email, &session.email) => Ok(()),
        Some(c) if c.verified => refuse(FailReason::AccountMismatch).await,
        Some(_) if required => refuse(FailReason::IdentityUnverified).await,
        Some(c) if !same_account(&c.email, &session.email) => refuse(FailReason::AccountMismatch).await,
        Some(_) => Ok(()),
        None if required => refuse(FailReason::IdentityUnverified).await,
        None => Ok(()),
    }
}

/// Tokens we will not store are revoked so that they do not linger.
async fn revoke_quietly(deps: &Deps, provider: &ProviderConfig, tokens: &TokenSet) {
    let (token, hint) = match &tokens.refresh_token {
        Some(refresh) => (refresh, "refresh_token"),
        None => (&tokens.access_token, "access_token"),
    };
    let outcome = deps.oauth.revoke(provider, token, hint).await;
    tracing::debug!(outcome = outcome.as_str(), "revoked tokens that were not stored");
}

#[cfg(test)]
mod tests {
    use super::*;

    proptest::proptest! {
        /// The callback query parser's fuzz target: any query string is parsed
        /// or refused (a page, never a panic), and its Display never shows the code.
        #[test]
        fn any_callback_query_is_parsed_or_refused(query in "[ -~]{0,400}") {
                        if let Ok(params) = serde_urlencoded::from_str::<CallbackParams>(&query) {
                // What is displayed does not depend on the code's value.
                let other = CallbackParams { code: params.code.as_ref().map(|_| "elsewise".to_owned()), ..params.clone() };
                proptest::prop_assert_eq!(params.to_string(), other.to_string());
            }
        }

        #[test]
        fn well_formed_queries_keep_their_fields_and_ignore_extras(
            code in "[A-Za-z0-9._~-]{1,80}", state in "[A-Za-z0-9_-]{1,64}", extra in "[a-z]{1,10}"
        ) {
            let query = format!("code={code}&state={state}&{extra}_x=1&iss=https%3A%2F%2Fidp");
            let params: CallbackParams = serde_urlencoded::from_str(&query).unwrap();
            proptest::prop_assert_eq!(params.code.as_deref(), Some(code.as_str()));
            proptest::prop_assert_eq!(params.state.as_deref(), Some(state.as_str()));
        }
    }

    #[test]
    fn callback_params_never_display_the_code() {
        let p = CallbackParams { code: Some("secret-code".into()), state: Some("s".into()), ..Default::default() };
        assert!(!p.to_string().contains("secret-code"));
    }
}
