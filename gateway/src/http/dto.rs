//! The shapes of the core's answers in the API and its OpenAPI document.
//! The core's own types carry no serde or utoipa derives: what the API
//! promises is written down here, and converted at the edge.

use serde::Serialize;
use utoipa::ToSchema;

use crate::core::credentials::CredentialState;
use crate::core::oauth::client::RevocationOutcome;

/// `active` or `needs_reauth`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum CredentialStateBody {
    Active,
    NeedsReauth,
}

impl From<CredentialState> for CredentialStateBody {
    fn from(state: CredentialState) -> Self {
        match state {
            CredentialState::Active => Self::Active,
            CredentialState::NeedsReauth => Self::NeedsReauth,
        }
    }
}

/// What RFC 7009 revocation achieved.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum RevocationBody {
    Revoked,
    /// The provider says the token was already invalid.
    AlreadyInvalid,
    /// The provider could not be asked, or failed; the credential is deleted anyway.
    Failed,
    /// The provider has no revocation endpoint.
    NotSupported,
}

impl From<RevocationOutcome> for RevocationBody {
    fn from(outcome: RevocationOutcome) -> Self {
        match outcome {
            RevocationOutcome::Revoked => Self::Revoked,
            RevocationOutcome::AlreadyInvalid => Self::AlreadyInvalid,
            RevocationOutcome::Failed => Self::Failed,
            RevocationOutcome::NotSupported => Self::NotSupported,
        }
    }
}
