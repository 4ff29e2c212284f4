//! Loading and refreshing one credential, the way every replica agrees on.
//!
//! A refresh (1) takes the credential's lease in the database, waiting a
//! bounded time if another replica holds it; (2) re-reads the row and skips
//! the provider if someone else already refreshed; (3) calls the provider with
//! bounded, jittered retries on transient failures, within the lease; (4)
//! writes access token, expiry and any rotated refresh token in one
//! compare-and-swap on `version`. A permanent failure (`invalid_grant`,
//! `invalid_client`, no way to refresh) sets `needs_reauth`; a transient one
//! never does, and the current token is served while it is still valid.
//!
//! `TokenActor` calls this one credential at a time, so within a process a
//! credential is never refreshed twice concurrently; the lease extends that
//! to every replica on the same PostgreSQL.

use std::time::{Duration, Instant};

use std::sync::Arc;

use chrono::{DateTime, TimeDelta, Utc};
use rand::Rng;
use secrecy::SecretString;

use super::model::{Credential, Grant, Need, Source, TokenError, Trigger};
use crate::oauth::client::{TokenSet, record_upstream_error};
use crate::oauth::{ProviderConfig, UpstreamError};
use crate::services::Deps;
use crate::store::credentials::{CredentialKey, CredentialState, NewTokens};
use crate::store::retry_unavailable;
use crate::telemetry::metrics as m;

/// Attempts per refresh on transient failures (the first included).
const ATTEMPTS: u32 = 3;
const BACKOFF_BASE: Duration = Duration::from_millis(200);
/// A Retry-After longer than this is not waited out inside a request.
const MAX_INLINE_RETRY_AFTER: u64 = 2;
/// How often a refresh waiting for another replica's lease looks again.
const LEASE_POLL: Duration = Duration::from_millis(100);
/// Storage retries of refreshed tokens end this long before the lease does,
/// so no other replica can take the lease while they are still being written.
const LEASE_MARGIN: Duration = Duration::from_secs(2);

/// Reads and opens the stored credential.
pub(crate) async fn load(deps: &Deps, key: &CredentialKey) -> Result<Option<Credential>, TokenError> {
    Ok(deps.store.load_credential(key, &deps.keyring).await?.as_ref().map(Credential::from_stored))
}

/// Refreshes `key`, whose last known state is `current`. Returns what to
/// answer and what to cache now (`None`: nothing, the credential is gone).
#[tracing::instrument(name = "refresh", skip_all, fields(provider = %key.provider, trigger = trigger.as_str()))]
pub(crate) async fn refresh(
    deps: &Deps,
    key: &CredentialKey,
    current: Credential,
    trigger: Trigger,
    need: Need,
) -> (Result<Grant, TokenError>, Option<Credential>) {
    let started = Instant::now();
    let provider = key.provider.clone();
    let (result, cached, outcome, category) = refresh_inner(deps, key, current, need).await;
    metrics::counter!(m::TOKEN_REFRESHES, "provider" => provider.clone(), "trigger" => trigger.as_str(), "outcome" => outcome, "category" => category).increment(1);
    metrics::histogram!(m::TOKEN_REFRESH_DURATION, "provider" => provider, "trigger" => trigger.as_str())
        .record(started.elapsed().as_secs_f64());
    (result, cached)
}

type Outcome = (Result<Grant, TokenError>, Option<Credential>, &'static str, &'static str);

async fn refresh_inner(deps: &Deps, key: &CredentialKey, current: Credential, need: Need) -> Outcome {
    let Some(provider) = deps.providers.get(&key.provider).await else {
        return serve_or(
            current,
            TokenError::UnknownProvider,
            deps.clock.now(),
            "transient_failure",
            "unknown_provider",
        );
    };
    let owner = deps.instance_id.to_string();

    // 1. The lease: one replica refreshes, the others wait and then read its result.
    let wait_until = Instant::now() + deps.settings.lock_wait;
    let lease_ends = loop {
        let now = deps.clock.now();
        let lease_until = now + TimeDelta::from_std(deps.settings.refresh_lease).unwrap_or(TimeDelta::seconds(60));
        match deps.store.try_lease(key, &owner, now, lease_until).await {
            Ok(true) => break Instant::now() + deps.settings.refresh_lease,
            Ok(false) => {}
            Err(err) => return serve_or(current, err.into(), now, "transient_failure", "database"),
        }
        // Held elsewhere (or the row is gone): has someone else refreshed?
        match load(deps, key).await {
            Ok(None) => {
                return (Err(TokenError::NotAuthenticated), None, "skipped", "deleted");
            }
            Ok(Some(latest)) if need.satisfied_by(&latest, &current, now) => {
                return (Ok(latest.grant(Source::Refreshed)), Some(latest), "skipped", "none");
            }
            Ok(Some(_)) => {}
            Err(err) => return serve_or(current, err, now, "transient_failure", "database"),
        }
        if Instant::now() >= wait_until {
            // A lock wait that times out is "busy", never a provider failure.
            return serve_or(current, TokenError::Busy, now, "skipped", "busy");
        }
        tokio::time::sleep(LEASE_POLL).await;
    };

    // 2. Under the lease: re-read; skip the provider if the work is done.
    let now = deps.clock.now();
    let stored = match deps.store.load_credential(key, &deps.keyring).await {
        Ok(Some(stored)) => stored,
        Ok(None) => {
            return (Err(TokenError::NotAuthenticated), None, "skipped", "deleted");
        }
        Err(err) => {
            release(deps, key, &owner).await;
            return serve_or(current, err.into(), now, "transient_failure", "database");
        }
    };
    let latest = Credential::from_stored(&stored);
    if latest.state == CredentialState::NeedsReauth {
        release(deps, key, &owner).await;
        return (Err(TokenError::RefreshFailed), Some(latest), "skipped", "needs_reauth");
    }
    if need.satisfied_by(&latest, &current, now) {
        release(deps, key, &owner).await;
        return (Ok(latest.grant(Source::Refreshed)), Some(latest), "skipped", "none");
    }

    // 3. The provider call.
    let call = if provider.renews_by_exchange() {
        if latest.still_valid(now) { Some(RefreshCall::Exchange(stored.access_token.clone())) } else { None }
    } else {
        stored.refresh_token.clone().map(RefreshCall::RefreshToken)
    };
    let Some(call) = call else {
        // No way to refresh. While the token works, serve it; once it has
        // expired the user must authorize again.
        if latest.still_valid(now) {
            release(deps, key, &owner).await;
            return (Ok(latest.grant(Source::Memory)), Some(latest), "skipped", "no_refresh_token");
        }
        return fail_permanently(deps, key, latest, "no_refresh_token", now).await;
    };
    // A provider refusing our client is called by one probe at a time.
    if let Err(wait) = deps.providers.health().gate(&provider.id, now) {
        release(deps, key, &owner).await;
        let retry_after = wait.as_secs().max(1);
        return serve_or(latest, TokenError::ProviderUnavailable { retry_after }, now, "skipped", "provider_failing");
    }
    match call_with_retries(deps, &provider, &call).await {
        Ok(tokens) => {
            deps.providers.accepted(&provider.id, deps.clock.now()).await;
            let now = deps.clock.now();
            let new = NewTokens {
                expires_at: tokens.expires_at(now),
                access_token: tokens.access_token,
                refresh_token: tokens.refresh_token,
                scopes: tokens.scopes,
            };
            let budget = lease_ends.saturating_duration_since(Instant::now()).saturating_sub(LEASE_MARGIN);
            store_new_tokens(deps, key, latest, new, budget).await
        }
        Err(err) if err.is_permanent() => fail_permanently(deps, key, latest, err.category(), deps.clock.now()).await,
        Err(err) if err.is_client_error() => {
            // Not the user's fault: the credential stays active, the provider is marked failing.
            let now = deps.clock.now();
            deps.providers.refused(&provider.id, err.category(), now).await;
            record_failure(deps, key, &owner, &latest, err.category(), false, now).await;
            let retry_after = crate::oauth::health::PROBE_FIRST.as_secs();
            serve_or(latest, TokenError::ProviderUnavailable { retry_after }, now, "transient_failure", err.category())
        }
        Err(err) => {
            let now = deps.clock.now();
            record_failure(deps, key, &owner, &latest, err.category(), false, now).await;
            let retry_after = err.retry_after().unwrap_or(5).max(1);
            serve_or(latest, TokenError::ProviderUnavailable { retry_after }, now, "transient_failure", err.category())
        }
    }
}

/// Writes what a refresh obtained, retrying while the database is
/// unavailable for up to `budget`. If it still cannot, the tokens are kept
/// in memory as `unsaved` (and served: they are the valid ones) rather than
/// thrown away.
async fn store_new_tokens(
    deps: &Deps,
    key: &CredentialKey,
    base: Credential,
    new: NewTokens,
    budget: Duration,
) -> Outcome {
    let now = deps.clock.now();
    let stored = retry_unavailable("store refreshed tokens", budget, || {
        deps.store.store_refreshed(key, base.id, base.version, &new, &deps.keyring, now)
    })
    .await;
    match stored {
        Ok(Some(version)) => {
            let cached = base.updated_by(&new, version);
            (Ok(cached.grant(Source::Refreshed)), Some(cached), "success", "none")
        }
        // The row changed under us (re-authorized or revoked): believe the row.
        Ok(None) => believe_the_row(deps, key).await,
        Err(err) => {
            tracing::error!(provider = %key.provider, error = %err, "refreshed tokens kept in memory until the database takes them");
            let mut cached = base.updated_by(&new, base.version);
            cached.unsaved = Some(Arc::new(new));
            (Ok(cached.grant(Source::Refreshed)), Some(cached), "unsaved", "database")
        }
    }
}

async fn believe_the_row(deps: &Deps, key: &CredentialKey) -> Outcome {
    match load(deps, key).await {
        Ok(Some(row)) => (Ok(row.grant(Source::Store)), Some(row), "skipped", "conflict"),
        Ok(None) => (Err(TokenError::NotAuthenticated), None, "skipped", "deleted"),
        Err(err) => (Err(err), None, "transient_failure", "database"),
    }
}

/// Where a credential stands after `settle`.
pub enum Settled {
    /// Nothing was waiting to be written, or it is written now.
    Ready(Credential),
    /// The credential was deleted meanwhile.
    Gone,
    /// The database still refuses the unsaved tokens; they stay in memory.
    Pending(Credential),
}

/// Writes tokens an earlier refresh could not store, once. A write that
/// finds the row changed (re-authorized, revoked) gives way to the row.
pub(crate) async fn settle(deps: &Deps, key: &CredentialKey, current: Credential) -> Settled {
    let Some(unsaved) = current.unsaved.clone() else {
        return Settled::Ready(current);
    };
    let now = deps.clock.now();
    // Hold the lease again, so no other replica refreshes from the stored,
    // possibly rotated-away, refresh token while we write.
    let lease_until = now + TimeDelta::from_std(deps.settings.refresh_lease).unwrap_or(TimeDelta::seconds(60));
    if let Err(err) = deps.store.try_lease(key, &deps.instance_id, now, lease_until).await {
        tracing::warn!(error = %err, "unsaved refreshed tokens: the database is still unavailable");
        return Settled::Pending(current);
    }
    match deps.store.store_refreshed(key, current.id, current.version, &unsaved, &deps.keyring, now).await {
        Ok(Some(version)) => {
            tracing::info!(provider = %key.provider, "refreshed tokens kept in memory are stored now");
            Settled::Ready(Credential { unsaved: None, version, ..current })
        }
        Ok(None) => {
            tracing::warn!(provider = %key.provider, "the credential changed while refreshed tokens waited to be stored; keeping the stored one");
            release(deps, key, &deps.instance_id).await;
            match load(deps, key).await {
                Ok(Some(row)) => Settled::Ready(row),
                Ok(None) => Settled::Gone,
                Err(_) => Settled::Pending(current),
            }
        }
        Err(err) => {
            tracing::warn!(error = %err, "unsaved refreshed tokens: the database is still unavailable");
            Settled::Pending(current)
        }
    }
}

enum RefreshCall {
    RefreshToken(SecretString),
    /// Meta: trade the current long-lived token for a new one.
    Exchange(SecretString),
}

async fn call_with_retries(
    deps: &Deps,
    provider: &ProviderConfig,
    call: &RefreshCall,
) -> Result<TokenSet, UpstreamError> {
    let operation = match call {
        RefreshCall::RefreshToken(_) => "refresh",
        RefreshCall::Exchange(_) => "exchange",
    };
    let mut attempt = 0;
    loop {
        attempt += 1;
        let result = match call {
            RefreshCall::RefreshToken(token) => deps.oauth.refresh(provider, token).await,
            RefreshCall::Exchange(token) => deps.oauth.exchange_long_lived(provider, token).await,
        };
        let err = match result {
            Ok(tokens) => return Ok(tokens),
            Err(err) => err,
        };
        record_upstream_error(provider, operation, &err);
        let retry_after = err.retry_after().unwrap_or(0);
        if err.is_permanent() || err.is_client_error() || attempt >= ATTEMPTS || retry_after > MAX_INLINE_RETRY_AFTER {
            return Err(err);
        }
        // Exponential backoff with full jitter, at least any Retry-After.
        let cap = BACKOFF_BASE * 2u32.pow(attempt - 1);
        let jitter = Duration::from_millis(rand::thread_rng().gen_range(0..=cap.as_millis() as u64));
        tokio::time::sleep(jitter.max(Duration::from_secs(retry_after))).await;
    }
}

async fn fail_permanently(
    deps: &Deps,
    key: &CredentialKey,
    latest: Credential,
    category: &'static str,
    now: DateTime<Utc>,
) -> Outcome {
    tracing::warn!(provider = %key.provider, category, "refresh failed permanently: the user must authorize again");
    record_failure(deps, key, &deps.instance_id, &latest, category, true, now).await;
    let cached = Credential { state: CredentialState::NeedsReauth, version: latest.version + 1, ..latest };
    (Err(TokenError::RefreshFailed), Some(cached), "permanent_failure", category)
}

/// Serves `current` if it has not expired yet, else answers `err`.
fn serve_or(
    current: Credential,
    err: TokenError,
    now: DateTime<Utc>,
    outcome: &'static str,
    category: &'static str,
) -> Outcome {
    if current.state == CredentialState::Active && current.still_valid(now) {
        (Ok(current.grant(Source::Memory)), Some(current), outcome, category)
    } else {
        (Err(err), Some(current), outcome, category)
    }
}

/// Records a failed refresh (which also releases the lease); if the row moved
/// on meanwhile, only releases the lease.
async fn record_failure(
    deps: &Deps,
    key: &CredentialKey,
    owner: &str,
    seen: &Credential,
    category: &str,
    permanent: bool,
    now: DateTime<Utc>,
) {
    match deps.store.record_refresh_failure(key, seen.id, seen.version, category, permanent, now).await {
        Ok(true) => {}
        Ok(false) => release(deps, key, owner).await,
        Err(err) => {
            tracing::warn!(error = %err, "could not record a refresh failure");
            release(deps, key, owner).await;
        }
    }
}

async fn release(deps: &Deps, key: &CredentialKey, owner: &str) {
    if let Err(err) = deps.store.release_lease(key, owner).await {
        // The lease expires on its own; nothing is lost.
        tracing::warn!(error = %err, "could not release a refresh lease");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::credentials::model::tests::cached;

    #[test]
    fn expired_tokens_are_not_served_after_a_failure() {
        let now = crate::clock::Clock::system().now();
        let (result, ..) = serve_or(cached(Some(-5), now), TokenError::Busy, now, "skipped", "busy");
        assert!(matches!(result.err(), Some(TokenError::Busy)));
        let (result, ..) = serve_or(cached(Some(60), now), TokenError::Busy, now, "skipped", "busy");
        assert!(result.is_ok());
    }
}
