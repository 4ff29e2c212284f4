//! A credential in memory: what a `TokenActor` holds ([`Credential`]), what
//! it hands out ([`Grant`]) or refuses ([`TokenError`]), and the labels of
//! what asked for a refresh ([`Trigger`]) and what it must achieve ([`Need`]).

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use secrecy::SecretString;
use uuid::Uuid;

use crate::store::StoreError;
use crate::store::credentials::{CredentialState, NewTokens, StoredCredential};

/// What asked for a refresh (a metric label).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Trigger {
    /// A request found the token within the refresh buffer.
    OnDemand,
    /// The worker found the token expiring within its lead window.
    Proactive,
    /// The worker keeps an unused credential's grant alive.
    Keepalive,
}

impl Trigger {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::OnDemand => "on_demand",
            Self::Proactive => "proactive",
            Self::Keepalive => "keepalive",
        }
    }
}

/// Where a served token came from (a metric label).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    Memory,
    Store,
    Refreshed,
}

impl Source {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Memory => "memory",
            Self::Store => "store",
            Self::Refreshed => "refreshed",
        }
    }
}

/// A credential as a `TokenActor` keeps it in memory.
#[derive(Clone)]
pub struct Credential {
    /// The row's id: with `version`, what every compare-and-swap names, so a
    /// write meant for a deleted grant never lands on its re-authorized successor.
    pub id: Uuid,
    pub access_token: SecretString,
    pub expires_at: Option<DateTime<Utc>>,
    pub scopes: Vec<String>,
    pub version: i64,
    pub state: CredentialState,
    pub has_refresh_token: bool,
    /// Tokens a refresh obtained that the database did not take (it was
    /// unavailable). They are the grant now — the provider may have rotated
    /// the stored refresh token away — so they are written before anything
    /// else is asked of the provider, and the actor holding them lives on
    /// until they are.
    pub unsaved: Option<Arc<NewTokens>>,
}

impl Credential {
    pub(crate) fn from_stored(c: &StoredCredential) -> Self {
        Self {
            id: c.id,
            unsaved: None,
            access_token: c.access_token.clone(),
            expires_at: c.expires_at,
            scopes: c.scopes.clone(),
            version: c.version,
            state: c.state,
            has_refresh_token: c.refresh_token.is_some(),
        }
    }

    /// Valid for longer than `margin` from `now` (a token with no known
    /// expiry is always fresh).
    pub fn fresh_for(&self, now: DateTime<Utc>, margin: Duration) -> bool {
        self.expires_at.is_none_or(|exp| exp - now > TimeDelta::from_std(margin).unwrap_or(TimeDelta::MAX))
    }

    /// Not yet expired at all.
    pub fn still_valid(&self, now: DateTime<Utc>) -> bool {
        self.expires_at.is_none_or(|exp| exp > now)
    }

    pub fn grant(&self, source: Source) -> Grant {
        Grant {
            access_token: self.access_token.clone(),
            expires_at: self.expires_at,
            scopes: self.scopes.clone(),
            source,
        }
    }
}

/// A token handed to a caller.
pub struct Grant {
    pub access_token: SecretString,
    pub expires_at: Option<DateTime<Utc>>,
    pub scopes: Vec<String>,
    pub source: Source,
}

/// Why no token is handed out. `Clone` (actors answer many waiters with
/// one result), so causes are shared.
#[derive(Clone, Debug, thiserror::Error)]
pub enum TokenError {
    #[error("no credential is stored")]
    NotAuthenticated,
    #[error("the grant can no longer be refreshed")]
    RefreshFailed,
    #[error("the grant lacks scopes")]
    ScopeInsufficient { missing: Vec<String> },
    #[error("the provider is unavailable")]
    ProviderUnavailable { retry_after: u64 },
    #[error("another replica is refreshing this credential")]
    Busy,
    #[error("the credential's provider is not configured")]
    UnknownProvider,
    #[error("the database is unavailable")]
    Unavailable,
    #[error("database error")]
    Store(#[source] Arc<StoreError>),
    #[error("the credential's task failed")]
    Task(#[source] Arc<tokio::task::JoinError>),
    #[error("no actor thread is running")]
    NoActorThread,
}

impl From<StoreError> for TokenError {
    fn from(err: StoreError) -> Self {
        match err {
            StoreError::Unavailable(_) => Self::Unavailable,
            other => Self::Store(Arc::new(other)),
        }
    }
}

impl TokenError {
    /// The `token_requests_total` outcome label.
    pub fn outcome(&self) -> &'static str {
        match self {
            Self::NotAuthenticated => "not_authenticated",
            Self::RefreshFailed => "refresh_failed",
            Self::ScopeInsufficient { .. } => "scope_insufficient",
            Self::ProviderUnavailable { .. } => "provider_unavailable",
            Self::Busy => "busy",
            Self::UnknownProvider => "unknown_provider",
            Self::Unavailable | Self::Store(_) | Self::Task(_) | Self::NoActorThread => "error",
        }
    }
}

/// Scopes in `required` that `granted` lacks.
pub fn missing_scopes(granted: &[String], required: &[String]) -> Vec<String> {
    use crate::oauth::provider::scope_satisfies;
    required.iter().filter(|r| !granted.iter().any(|g| scope_satisfies(g, r))).cloned().collect()
}

/// When a refresh is still wanted once the row has been re-read under the lease.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Need {
    /// The token expires within this margin.
    ExpiresWithin(Duration),
    /// Unless the row changed since it was read: any newer write (another
    /// replica's refresh, a re-consent) keeps the grant alive (keep-alive).
    AnyNewerThanSeen,
}

impl Need {
    pub(crate) fn satisfied_by(self, latest: &Credential, seen: &Credential, now: DateTime<Utc>) -> bool {
        match self {
            Self::ExpiresWithin(margin) => latest.fresh_for(now, margin),
            Self::AnyNewerThanSeen => (latest.id, latest.version) != (seen.id, seen.version),
        }
    }
}

impl Credential {
    /// This credential after `new` was written at `version`.
    pub(crate) fn updated_by(&self, new: &NewTokens, version: i64) -> Self {
        Self {
            id: self.id,
            access_token: new.access_token.clone(),
            expires_at: new.expires_at,
            scopes: new.scopes.clone().unwrap_or_else(|| self.scopes.clone()),
            version,
            state: CredentialState::Active,
            has_refresh_token: self.has_refresh_token || new.refresh_token.is_some(),
            unsaved: None,
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A credential whose token expires `expires_in_secs` after `now` (never: `None`).
    pub(crate) fn cached(expires_in_secs: Option<i64>, now: DateTime<Utc>) -> Credential {
        Credential {
            id: Uuid::nil(),
            unsaved: None,
            access_token: SecretString::from("t".to_owned()),
            expires_at: expires_in_secs.map(|s| now + TimeDelta::seconds(s)),
            scopes: vec!["a".into()],
            version: 1,
            state: CredentialState::Active,
            has_refresh_token: true,
        }
    }

    #[test]
    fn freshness_respects_the_buffer() {
        let now = crate::clock::Clock::system().now();
        assert!(cached(Some(600), now).fresh_for(now, Duration::from_secs(300)));
        assert!(!cached(Some(200), now).fresh_for(now, Duration::from_secs(300)));
        assert!(cached(Some(200), now).still_valid(now));
        assert!(!cached(Some(-1), now).still_valid(now));
        assert!(cached(None, now).fresh_for(now, Duration::from_secs(300)));
    }

    #[test]
    fn missing_scopes_are_listed_in_request_order() {
        let granted = vec!["a".to_owned(), "c".to_owned()];
        assert_eq!(missing_scopes(&granted, &["c".into(), "b".into(), "a".into(), "d".into()]), ["b", "d"]);
        assert!(missing_scopes(&granted, &[]).is_empty());
    }
}
