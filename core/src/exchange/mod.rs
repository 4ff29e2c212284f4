//! Token exchange (RFC 8693): the user proven by a signed token, never named
//! by the caller.
//!
//! An MCP server that runs with MCP authorization holds the access token its
//! MCP client presented, issued by the organisation's identity provider for
//! that server. It hands that token to `/oauth/token`; the gateway verifies
//! it here and answers with the provider token of the user it names — so a
//! compromised MCP server can only obtain tokens for users who are actually
//! calling it.
//!
//! * [`issuers`]: the trusted identity providers and their JWKS caches (an
//!   unknown `kid` triggers one rate-limited refetch; a cold, unreachable IdP
//!   is [`ExchangeError::IssuerUnavailable`]).
//! * [`subject`]: an IdP's token checked into a [`VerifiedUser`] — signature,
//!   issuer, audience bound to the calling client, time, verified email.
//! * [`assertion`]: the assertions an MCP server's headless workers sign with
//!   a key registered for their client (≤ 60 s, `jti` single-use, an
//!   `audit_context`).
//! * [`jwt`]: the compact-JWS parsing both share, refusing `none` and HMAC
//!   before any key is looked at.

pub mod assertion;
pub mod issuers;
pub mod jwt;
pub mod subject;

pub use assertion::{AssertionKey, AssertionKeyError};
pub use issuers::{IssuerConfig, IssuerHealth, Issuers, JwksSource};

use crate::email::Email;

/// The `subject_token_type` values accepted (all carry a JWT).
pub const SUBJECT_TOKEN_TYPES: [&str; 3] = [
    "urn:ietf:params:oauth:token-type:access_token",
    "urn:ietf:params:oauth:token-type:jwt",
    "urn:ietf:params:oauth:token-type:id_token",
];

/// Who a subject token proved the user to be, and how.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VerifiedUser {
    pub email: Email,
    /// The token's `iss`: an IdP's issuer, or the client's name for a worker assertion.
    pub issuer: String,
    /// The token's `sub`.
    pub subject: String,
    /// The `aud` value that bound the token to the calling client.
    pub audience: String,
    pub via: Via,
}

/// What vouched for the user.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Via {
    /// A trusted identity provider (its configured id).
    IdentityProvider(String),
    /// A headless worker's assertion, signed with its client's registered key.
    Worker { jti: String, audit_context: String },
}

impl Via {
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::IdentityProvider(_) => "identity_provider",
            Self::Worker { .. } => "worker_assertion",
        }
    }
}

/// Why a subject token was refused. Messages name the claim or rule, never
/// the token; values from the token are quoted only when short.
#[derive(Debug, thiserror::Error)]
pub enum ExchangeError {
    #[error("The subject_token is not a compact JWS: {0}.")]
    Malformed(&'static str),
    #[error(
        "The subject_token is signed with {0:?}; only asymmetric algorithms the issuer is configured for are accepted."
    )]
    AlgorithmRefused(String),
    #[error("The subject_token's issuer {0:?} is not trusted by this gateway.")]
    UntrustedIssuer(String),
    #[error("The subject_token names a signing key its issuer does not publish.")]
    UnknownKey,
    #[error("The subject_token's signature does not verify.")]
    BadSignature,
    #[error("The subject_token's audience is not one registered for the API client {0}.")]
    WrongAudience(String),
    #[error(
        "The API client {0} has no registered audience: register the audience of its MCP server's tokens with `gateway clients update {0} --audience <aud>`."
    )]
    NoAudienceRegistered(String),
    #[error("The subject_token has expired.")]
    Expired,
    #[error("The subject_token is not valid yet.")]
    NotYetValid,
    #[error("The subject_token was issued more than {0} seconds ago.")]
    TooOld(u64),
    #[error("The subject_token lacks the {0} claim.")]
    MissingClaim(&'static str),
    #[error("The subject_token's {0} claim is not a valid email address.")]
    InvalidEmail(String),
    #[error("The subject_token does not say its email address is verified (email_verified).")]
    UnverifiedEmail,
    #[error("The assertion lives longer than {max} seconds (exp - iat).", max = assertion::MAX_LIFETIME.as_secs())]
    AssertionLifetime,
    #[error("The assertion was issued more than {max} seconds ago.", max = assertion::MAX_LIFETIME.as_secs())]
    AssertionTooOld,
    #[error("The assertion's jti was already used.")]
    Replayed,
    #[error("The identity provider {issuer} cannot be reached to fetch its signing keys; retry shortly.")]
    IssuerUnavailable { issuer: String, retry_after_secs: u64 },
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
}

impl ExchangeError {
    /// A stable code for each refusal (the answer's `reason`, the audit's outcome).
    pub fn reason(&self) -> &'static str {
        match self {
            Self::Malformed(_) => "malformed",
            Self::AlgorithmRefused(_) => "algorithm_refused",
            Self::UntrustedIssuer(_) => "untrusted_issuer",
            Self::UnknownKey => "unknown_key",
            Self::BadSignature => "bad_signature",
            Self::WrongAudience(_) => "wrong_audience",
            Self::NoAudienceRegistered(_) => "no_audience_registered",
            Self::Expired => "expired",
            Self::NotYetValid => "not_yet_valid",
            Self::TooOld(_) => "too_old",
            Self::MissingClaim(_) => "missing_claim",
            Self::InvalidEmail(_) => "invalid_email",
            Self::UnverifiedEmail => "unverified_email",
            Self::AssertionLifetime => "assertion_lifetime",
            Self::AssertionTooOld => "assertion_too_old",
            Self::Replayed => "replayed",
            Self::IssuerUnavailable { .. } => "issuer_unavailable",
            Self::Store(_) => "store_error",
        }
    }
}

/// Short, printable excerpts of token values for messages (a hostile token
/// cannot flood a log line or an answer).
pub(crate) fn excerpt(value: &str) -> String {
    let mut out: String = value.chars().filter(|c| !c.is_control()).take(100).collect();
    if value.chars().count() > 100 {
        out.push('…');
    }
    out
}
