//! The authorization flow: starting a session, the one-time connect link,
//! the provider's callback, and the session's status.
//!
//! ```text
//! POST /auth/init ─► session (pending) + link <public>/connect/<id>
//! GET link ───────► a page: provider, the email it is for, "Continue" (nothing used:
//!                   mail scanners that fetch every link first change nothing)
//! POST "Continue" ► link marked used ─► 302 to the provider (state, PKCE S256, login_hint)
//! provider ───────► /auth/callback/<p>?code&state ─► state used once ─► code exchanged
//!                   ─► who consented == session's user? ─► credential stored ─► completed
//! ```
//!
//! Every step that may run once runs once across replicas (conditional
//! UPDATEs in [`crate::store::sessions`]); every way out of `pending` tells
//! long-polls, here and on other replicas, through [`crate::events`].

use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, TimeDelta, Utc};
use rand::RngCore;
use secrecy::SecretString;
use sha2::{Digest, Sha256};
use tokio::sync::watch;
use url::Url;
use uuid::Uuid;

use crate::email::Email;
use crate::events::Event;
use crate::oauth::client::{TokenSet, record_upstream_error};
use crate::oauth::identity::{self, same_account};
use crate::oauth::provider::requested_scopes;
use crate::oauth::{IdentityCheck, ProviderConfig, ProviderKind, UpstreamError};
use crate::services::Deps;
use crate::store::credentials::{CredentialKey, NewTokens};
use crate::store::sessions::{CallbackClaim, NewSession};
pub use crate::store::sessions::{SessionRecord, SessionStatus};
use crate::store::{StoreError, retry_unavailable};
use crate::telemetry::metrics as m;

/// Longest `?wait=` a status poll may ask for.
pub const MAX_WAIT: Duration = Duration::from_secs(60);
/// Once the link is opened the user is at the provider, signing in and
/// consenting (MFA included): the session lives at least this much longer.
/// The same as the longest life RFC 6749 §4.1.2 recommends for a code.
pub const LINK_GRACE: Duration = Duration::from_secs(600);

/// Random bytes in `state`, the connect id and the PKCE verifier (256 bits).
const RANDOM_BYTES: usize = 32;

#[derive(Debug, thiserror::Error)]
pub enum FlowError {
    #[error("unknown provider {0:?}")]
    UnknownProvider(String),
    #[error("{0}")]
    InvalidRequest(String),
    #[error("no such session")]
    SessionNotFound,
    #[error("the session belongs to another API client")]
    NotYours,
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("the session actor is unavailable")]
    Actor(#[source] actix::MailboxError),
    #[error("the flow's task failed")]
    Task(#[source] tokio::task::JoinError),
    #[error("the public URL cannot hold a connect link")]
    ConnectUrl(#[source] url::ParseError),
    #[error("the session has no connect id")]
    NoConnectId,
}

/// `POST /auth/init`, parsed.
#[derive(Debug)]
pub struct StartRequest {
    pub provider: String,
    pub email: Email,
    pub scopes: Option<Vec<String>>,
    pub redirect_after: Option<String>,
    /// The API client starting the flow (only it may read the session).
    pub client: String,
}

#[derive(Debug)]
pub struct Started {
    pub session: SessionRecord,
    pub auth_url: Url,
    /// An earlier identical request's session was returned.
    pub reused: bool,
}

/// 256 random bits, base64url: states, connect ids, verifiers, form values.
pub fn random_token() -> String {
    let mut bytes = [0u8; RANDOM_BYTES];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    URL_SAFE_NO_PAD.encode(bytes)
}

/// Order-independent fingerprint of a scope set.
fn scopes_hash(scopes: &[String]) -> String {
    let mut sorted: Vec<&str> = scopes.iter().map(String::as_str).collect();
    sorted.sort_unstable();
    sorted.dedup();
    let digest = Sha256::digest(sorted.join(" ").as_bytes());
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

fn connect_url(deps: &Deps, connect_id: &str) -> Result<Url, FlowError> {
    deps.settings.public_url.join(&format!("connect/{connect_id}")).map_err(FlowError::ConnectUrl)
}

/// Checks `redirect_after` against the allow-list: http(s), a listed host.
pub fn check_redirect(target: &str, allowed_hosts: &[String]) -> Result<String, FlowError> {
    let url =
        Url::parse(target).map_err(|_| FlowError::InvalidRequest("redirect_after is not an absolute URL.".into()))?;
    if !matches!(url.scheme(), "https" | "http") {
        return Err(FlowError::InvalidRequest("redirect_after must be an http(s) URL.".into()));
    }
    let host = url.host_str().unwrap_or_default().to_ascii_lowercase();
    if !allowed_hosts.contains(&host) {
        return Err(FlowError::InvalidRequest(format!(
            "redirect_after's host {host:?} is not allowed; the operator lists allowed hosts in AUTH_GATEWAY_REDIRECT_HOSTS."
        )));
    }
    Ok(url.to_string())
}

/// Starts a flow, or hands back the identical one still waiting for its user.
#[tracing::instrument(name = "start_flow", skip_all, fields(provider = %req.provider))]
pub(crate) async fn start(deps: &Deps, req: StartRequest) -> Result<Started, FlowError> {
    let provider =
        deps.providers.get(&req.provider).await.ok_or_else(|| FlowError::UnknownProvider(req.provider.clone()))?;
    let redirect_after =
        req.redirect_after.as_deref().map(|r| check_redirect(r, &deps.settings.redirect_hosts)).transpose()?;
    let scopes = requested_scopes(&provider, req.scopes.as_deref());
    let now = deps.clock.now();
    let expiry = TimeDelta::from_std(deps.settings.session_expiry).unwrap_or(TimeDelta::minutes(15));
    let new = NewSession {
        id: Uuid::new_v4(),
        email: req.email.to_string(),
        provider: provider.id.clone(),
        state: random_token(),
        connect_id: random_token(),
        pkce_verifier: provider.pkce.then(|| SecretString::from(random_token())),
        scopes_hash: scopes_hash(&scopes),
        scopes,
        redirect_after,
        expires_at: now + expiry,
        client: req.client.clone(),
    };
    let (session, reused) = deps.store.create_or_reuse_session(new, &deps.keyring, now).await?;
    if !reused {
        metrics::counter!(m::SESSIONS_CREATED, "provider" => provider.id.clone()).increment(1);
    }
    let connect_id = session.connect_id.clone().ok_or(FlowError::NoConnectId)?;
    Ok(Started { auth_url: connect_url(deps, &connect_id)?, session, reused })
}

/// Why a connect link cannot be followed.
#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    #[error("this link was already used, has expired, or does not exist")]
    Unusable,
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("the session actor is unavailable")]
    Actor(#[source] actix::MailboxError),
    #[error("the link's task failed")]
    Task(#[source] tokio::task::JoinError),
    #[error("the provider's redirect URI cannot be built")]
    RedirectUri(#[source] url::ParseError),
    #[error("the session's stored email is not valid")]
    StoredEmail(#[source] crate::email::EmailError),
    #[error("the provider's authorization URL cannot be built")]
    AuthorizeUrl(#[source] crate::oauth::UpstreamError),
}

/// What the connect page shows about a link that can still be followed.
#[derive(Clone, Debug)]
pub struct LinkInfo {
    /// The provider's name as users know it (`Google`, or the id of a generic one).
    pub provider_name: String,
    /// The origin of the provider's authorization endpoint: the page's form
    /// may lead there (after our own redirect).
    pub provider_origin: String,
    /// The account the link is for.
    pub email: String,
}

fn plausible_connect_id(connect_id: &str) -> bool {
    (1..=64).contains(&connect_id.len())
        && connect_id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// What a connect link is for, without using it (a GET of the link: mail and
/// chat scanners fetch links before the user does).
pub(crate) async fn show_link(deps: &Deps, connect_id: &str) -> Result<LinkInfo, LinkError> {
    if !plausible_connect_id(connect_id) {
        return Err(LinkError::Unusable);
    }
    let session = deps.store.peek_link(connect_id, deps.clock.now()).await?.ok_or(LinkError::Unusable)?;
    let provider = deps.providers.get(&session.provider).await.ok_or(LinkError::Unusable)?;
    Ok(LinkInfo {
        provider_name: provider.display_name(),
        provider_origin: provider.auth_url.origin().ascii_serialization(),
        email: session.email,
    })
}

/// Opens a connect link (once: the user pressed "Continue") and returns the
/// provider URL to send the browser to.
pub(crate) async fn open_link(deps: &Deps, connect_id: &str) -> Result<Url, LinkError> {
    if !plausible_connect_id(connect_id) {
        return Err(LinkError::Unusable);
    }
    let now = deps.clock.now();
    let until = now + TimeDelta::from_std(LINK_GRACE).unwrap_or(TimeDelta::MAX);
    let opened = deps.store.open_link(connect_id, &deps.keyring, now, until).await?.ok_or(LinkError::Unusable)?;
    let session = &opened.session;
    let provider = deps.providers.get(&session.provider).await.ok_or(LinkError::Unusable)?;
    let redirect_uri = provider.redirect_uri(&deps.settings.public_url).map_err(LinkError::RedirectUri)?;
    let email = Email::parse(&session.email).map_err(LinkError::StoredEmail)?;
    deps.oauth
        .authorize_url(
            &provider,
            &redirect_uri,
            &session.state,
            opened.pkce_verifier.as_ref(),
            &session.scopes,
            Some(&email),
        )
        .map_err(LinkError::AuthorizeUrl)
}

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

/// Why a flow failed: a bounded code (metric label, status `reason`) and the
/// human text `/auth/status` reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FailReason {
    Expired,
    AccessDenied,
    ProviderError,
    InvalidCallback,
    TokenExchangeFailed,
    ProviderUnavailable,
    AccountMismatch,
    IdentityUnverified,
    NoRefreshToken,
    StorageError,
}

impl FlowError {
    /// The audit outcome of a failed start.
    pub fn code(&self) -> &'static str {
        match self {
            Self::UnknownProvider(_) => "unknown_provider",
            Self::InvalidRequest(_) => "invalid_request",
            Self::SessionNotFound => "session_not_found",
            Self::NotYours => "forbidden",
            Self::Store(_) | Self::Actor(_) | Self::Task(_) | Self::ConnectUrl(_) | Self::NoConnectId => "error",
        }
    }
}

impl FailReason {
    pub fn code(self) -> &'static str {
        match self {
            Self::Expired => "expired",
            Self::AccessDenied => "access_denied",
            Self::ProviderError => "provider_error",
            Self::InvalidCallback => "invalid_callback",
            Self::TokenExchangeFailed => "token_exchange_failed",
            Self::ProviderUnavailable => "provider_unavailable",
            Self::AccountMismatch => "account_mismatch",
            Self::IdentityUnverified => "identity_unverified",
            Self::NoRefreshToken => "no_refresh_token",
            Self::StorageError => "storage_error",
        }
    }

    pub fn parse(code: &str) -> Option<Self> {
        [
            Self::Expired,
            Self::AccessDenied,
            Self::ProviderError,
            Self::InvalidCallback,
            Self::TokenExchangeFailed,
            Self::ProviderUnavailable,
            Self::AccountMismatch,
            Self::IdentityUnverified,
            Self::NoRefreshToken,
            Self::StorageError,
        ]
        .into_iter()
        .find(|r| r.code() == code)
    }

    pub fn message(self) -> &'static str {
        match self {
            Self::Expired => "Session expired",
            Self::AccessDenied => "The user did not grant access",
            Self::ProviderError => "The provider reported an error",
            Self::InvalidCallback => "The provider's redirect was incomplete",
            Self::TokenExchangeFailed => "The provider refused to issue tokens",
            Self::ProviderUnavailable => "The provider could not be reached; try again",
            Self::AccountMismatch => "A different account signed in than the one this link was for",
            Self::IdentityUnverified => {
                "The provider did not prove which account signed in (no verified email address), so nothing was stored"
            }
            Self::NoRefreshToken => {
                "The provider issued no refresh token; remove the app's access in the account settings and authorize again"
            }
            Self::StorageError => {
                "Your consent could not be saved because the gateway's database is unavailable; nothing was stored. Ask your assistant for a new link and try again"
            }
        }
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
                deps.providers.accepted(&provider.id).await;
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

/// A session's status for `/auth/status`, waiting up to `wait` for it to
/// leave `pending`. `changes` ticks whenever an event names this session.
pub(crate) async fn wait_status(
    deps: &Deps,
    id: Uuid,
    client: &str,
    mut changes: watch::Receiver<u64>,
    wait: Duration,
) -> Result<SessionRecord, FlowError> {
    let deadline = tokio::time::Instant::now() + wait.min(MAX_WAIT);
    loop {
        let record = deps.store.find_session(id).await?.ok_or(FlowError::SessionNotFound)?;
        // Only the client that started a flow may read it (checked before any wait).
        if record.client.as_deref() != Some(client) {
            return Err(FlowError::NotYours);
        }
        let now = deps.clock.now();
        if record.status != SessionStatus::Pending || record.is_expired(now) || tokio::time::Instant::now() >= deadline
        {
            return Ok(record);
        }
        // Wake for a change, for the session's expiry, or at the deadline.
        let until_expiry = (record.expires_at - now).to_std().unwrap_or_default();
        let wake_at = deadline.min(tokio::time::Instant::now() + until_expiry);
        tokio::select! {
            changed = changes.changed() => {
                if changed.is_err() {
                    // The actor dropped the channel; fall back to the deadline.
                    tokio::time::sleep_until(wake_at).await;
                }
            }
            () = tokio::time::sleep_until(wake_at) => {}
        }
    }
}

/// What `/auth/status` reports for a record at `now`.
pub fn reported_status(record: &SessionRecord, now: DateTime<Utc>) -> (SessionStatus, Option<FailReason>) {
    if record.is_expired(now) {
        return (SessionStatus::Failed, Some(FailReason::Expired));
    }
    let reason = record.failure_reason.as_deref().map(|r| FailReason::parse(r).unwrap_or(FailReason::ProviderError));
    (record.status, reason)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scope_hashes_ignore_order_and_duplicates() {
        let a = scopes_hash(&["b".into(), "a".into()]);
        assert_eq!(a, scopes_hash(&["a".into(), "b".into(), "a".into()]));
        assert_ne!(a, scopes_hash(&["a".into()]));
    }

    #[test]
    fn random_tokens_carry_256_bits() {
        let t = random_token();
        assert_eq!(URL_SAFE_NO_PAD.decode(&t).unwrap().len(), 32);
        assert_ne!(t, random_token());
    }

    #[test]
    fn redirects_only_to_allowed_hosts() {
        let allowed = vec!["app.example.com".to_owned()];
        assert!(check_redirect("https://app.example.com/done?x=1", &allowed).is_ok());
        for bad in ["https://evil.example.com/", "javascript:alert(1)", "//app.example.com", "ftp://app.example.com/"] {
            assert!(check_redirect(bad, &allowed).is_err(), "{bad}");
        }
        assert!(check_redirect("https://app.example.com/", &[]).is_err());
    }

    #[test]
    fn every_reason_round_trips_and_has_a_message() {
        for code in ["expired", "access_denied", "account_mismatch", "no_refresh_token", "storage_error"] {
            let reason = FailReason::parse(code).unwrap();
            assert_eq!(reason.code(), code);
            assert!(!reason.message().is_empty());
        }
        assert_eq!(FailReason::Expired.message(), "Session expired");
    }

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
