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
//! UPDATEs in `crate::store::sessions`); every way out of `pending` tells
//! long-polls, here and on other replicas, through [`crate::events`].

mod callback;
mod link;
mod start;
mod status;

use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rand::RngCore;

use crate::store::StoreError;
pub use crate::store::sessions::{SessionRecord, SessionStatus};
pub(crate) use callback::callback;
pub use callback::{CallbackOutcome, CallbackParams};
pub use link::{LinkError, LinkInfo};
pub(crate) use link::{open_link, show_link};
pub(crate) use start::start;
pub use start::{StartRequest, Started, check_redirect};
pub use status::reported_status;
pub(crate) use status::wait_status;

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

/// 256 random bits, base64url: states, connect ids, verifiers, form values.
pub fn random_token() -> String {
    let mut bytes = [0u8; RANDOM_BYTES];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    URL_SAFE_NO_PAD.encode(bytes)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn random_tokens_carry_256_bits() {
        let t = random_token();
        assert_eq!(URL_SAFE_NO_PAD.decode(&t).unwrap().len(), 32);
        assert_ne!(t, random_token());
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
}
