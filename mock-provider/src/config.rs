//! How a mock provider behaves: the start-up [`MockConfig`] and the consent knobs.
//!
//! The defaults describe a Google-like provider (refresh tokens are issued once and never
//! rotated). Flip [`MockConfig::rotate_refresh_tokens`] for Microsoft-like behaviour and
//! [`MockConfig::issue_refresh_tokens`] off for Meta-like behaviour.

use std::time::Duration;

/// Start-up configuration. Everything except the client credentials can also be changed
/// while the server runs (see the `set_*` methods on [`crate::MockProvider`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MockConfig {
    /// The only client the provider knows.
    pub client_id: String,
    /// That client's secret; also the HS256 key of the id_tokens (OIDC allows this).
    pub client_secret: String,
    /// Lifetime of the access tokens issued by the code and refresh grants.
    pub access_token_ttl: Duration,
    /// `true`: every refresh answers with a new refresh token and the presented one dies
    /// (Microsoft). `false`: the refresh answer omits `refresh_token` (Google).
    pub rotate_refresh_tokens: bool,
    /// `false`: no refresh token is ever issued (Meta, or a Google grant without
    /// `access_type=offline`).
    pub issue_refresh_tokens: bool,
    /// Whether the authorization-code grant also returns an OIDC id_token.
    pub issue_id_token: bool,
    /// Who approves when the authorization request carries no `login_hint`.
    pub default_email: String,
    /// Whether `/authorize` decides by itself or asks a human.
    pub consent: ConsentMode,
    /// Lifetime of the long-lived tokens of the Meta-style `fb_exchange_token` grant.
    pub long_lived_ttl: Duration,
}

impl Default for MockConfig {
    fn default() -> Self {
        Self {
            client_id: "mock-client-id".to_owned(),
            client_secret: "mock-client-secret".to_owned(),
            access_token_ttl: Duration::from_secs(3600),
            rotate_refresh_tokens: false,
            issue_refresh_tokens: true,
            issue_id_token: true,
            default_email: "user@example.com".to_owned(),
            consent: ConsentMode::AutoApprove,
            long_lived_ttl: Duration::from_secs(60 * 24 * 3600),
        }
    }
}

/// Whether `/authorize` answers at once or shows a consent page.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ConsentMode {
    /// Decide immediately according to the current [`Consent`] (tests).
    #[default]
    AutoApprove,
    /// Render an HTML page with an email field and Approve/Deny buttons (local demo). The
    /// human's choice wins over the current [`Consent`].
    Interactive,
}

/// What the next automatic authorizations decide, until changed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum Consent {
    /// Approve as the request's `login_hint`, or as the default email when there is none.
    #[default]
    ApproveAsLoginHint,
    /// Approve as this user whatever the request says: how tests play "Bob opened Alice's
    /// link".
    ApproveAs(String),
    /// The user clicks "Deny": redirect back with `error=access_denied`.
    Deny,
}

/// How the provider says who signed in, in its id_tokens and at `/userinfo`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum IdentityClaims {
    /// OIDC's standard: `email` with `email_verified: true`.
    #[default]
    Verified,
    /// `email_verified: false`.
    Unverified,
    /// No `email_verified` at all, as many standards-compliant servers do.
    Omitted,
    /// `email_verified: "true"`, a string, as some providers send it.
    VerifiedAsString,
    /// Microsoft Entra: no `email_verified`, but the tenant id in `tid` (and in
    /// the issuer, `<base>/<tid>/v2.0`); Graph scopes granted under their
    /// short names (`Mail.Read` for `https://graph.microsoft.com/Mail.Read`).
    Microsoft {
        /// The signing-in user's tenant id.
        tenant: String,
    },
}
