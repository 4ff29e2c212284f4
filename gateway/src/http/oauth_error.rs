//! Errors of `POST /oauth/token`, in the wire format OAuth clients expect
//! (RFC 6749 §5.2, RFC 8693 §2.2.2) rather than the API's own: that endpoint
//! speaks OAuth, and OAuth libraries parse `error` and `error_description`.
//!
//! Every answer still carries `message` (the same text) and `request_id`,
//! like every other error of the gateway, and refusals of the subject token
//! carry a stable `reason`. One table, [`OAuthError::row`], maps each variant
//! to its code and status.

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use serde::Serialize;
use uuid::Uuid;

use crate::core::exchange::ExchangeError;
use crate::core::telemetry::request_id;
use crate::http::ApiError;

/// What the user must do when they have no usable grant, and the link to do it.
#[derive(Clone, Debug)]
pub struct AuthorizationRequired {
    /// `not_authenticated`, `refresh_failed` or `scope_insufficient`.
    pub reason: &'static str,
    /// Scopes the stored grant lacks (`scope_insufficient`).
    pub missing_scopes: Option<Vec<String>>,
    /// A connect link bound to the verified user (when the client has the `init` right).
    pub auth_url: Option<String>,
    pub session_id: Option<Uuid>,
    pub expires_at: Option<DateTime<Utc>>,
}

#[derive(Debug, thiserror::Error)]
pub enum OAuthError {
    #[error("{0}")]
    InvalidRequest(String),
    #[error("{0}")]
    InvalidClient(String),
    #[error("The request body is larger than {limit} bytes.")]
    TooLarge { limit: usize },
    #[error("Only grant_type=urn:ietf:params:oauth:grant-type:token-exchange is supported.")]
    UnsupportedGrantType,
    /// `reason`: `unknown_provider` or `provider_not_allowed`.
    #[error("{message}")]
    InvalidTarget { message: String, reason: &'static str },
    /// `reason`: `action_not_allowed`, `no_audience_registered` or `domain_not_allowed`.
    #[error("{message}")]
    UnauthorizedClient { message: String, reason: &'static str },
    /// The subject token was refused.
    #[error(transparent)]
    InvalidGrant(ExchangeError),
    #[error("The user must authorize this gateway at the provider ({}).", .0.reason)]
    AuthorizationRequired(Box<AuthorizationRequired>),
    #[error("{message}")]
    SlowDown { message: String, retry_after_secs: u64 },
    #[error("{message}")]
    TemporarilyUnavailable { message: String, retry_after_secs: u64 },
    #[error("Internal error.")]
    ServerError(#[source] anyhow::Error),
}

/// The JSON body of every `/oauth/token` error.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct OAuthErrorBody {
    /// RFC 6749 §5.2 code, or `authorization_required`.
    pub error: &'static str,
    pub error_description: String,
    /// The same text, as in every other error of the gateway.
    pub message: String,
    /// Why: for `invalid_grant` the subject token's refusal (`expired`,
    /// `wrong_audience`, `replayed`, ...); for `unauthorized_client`
    /// `action_not_allowed`, `no_audience_registered` or `domain_not_allowed`;
    /// for `invalid_target` `unknown_provider` or `provider_not_allowed`;
    /// for `authorization_required` `not_authenticated`, `refresh_failed` or
    /// `scope_insufficient`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<&'static str>,
    // The fields of `authorization_required`, spelled out rather than
    // flattened: a flattened optional struct documents its required fields
    // as required on every error.
    /// `authorization_required`, `scope_insufficient`: scopes the stored grant lacks.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub missing_scopes: Option<Vec<String>>,
    /// `authorization_required`: a connect link bound to the verified user
    /// (when the client has the `init` right).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub auth_url: Option<String>,
    /// `authorization_required`: the connect link's session.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub session_id: Option<Uuid>,
    /// `authorization_required`: when the connect link expires.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<DateTime<Utc>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retry_after: Option<u64>,
    pub request_id: Option<String>,
}

impl OAuthError {
    /// The code table: (code, status).
    pub fn row(&self) -> (&'static str, StatusCode) {
        use StatusCode as S;
        match self {
            Self::InvalidRequest(_) => ("invalid_request", S::BAD_REQUEST),
            Self::InvalidClient(_) => ("invalid_client", S::UNAUTHORIZED),
            Self::TooLarge { .. } => ("invalid_request", S::PAYLOAD_TOO_LARGE),
            Self::UnsupportedGrantType => ("unsupported_grant_type", S::BAD_REQUEST),
            Self::InvalidTarget { .. } => ("invalid_target", S::BAD_REQUEST),
            Self::UnauthorizedClient { .. } => ("unauthorized_client", S::BAD_REQUEST),
            Self::InvalidGrant(_) => ("invalid_grant", S::BAD_REQUEST),
            Self::AuthorizationRequired(_) => ("authorization_required", S::BAD_REQUEST),
            Self::SlowDown { .. } => ("slow_down", S::TOO_MANY_REQUESTS),
            Self::TemporarilyUnavailable { .. } => ("temporarily_unavailable", S::SERVICE_UNAVAILABLE),
            Self::ServerError(_) => ("server_error", S::INTERNAL_SERVER_ERROR),
        }
    }

    /// The stable outcome for metrics and the audit log.
    pub fn outcome(&self) -> &'static str {
        match self {
            Self::AuthorizationRequired(_) => "authorization_required",
            other => other.reason().unwrap_or(other.row().0),
        }
    }

    /// The finer code beside `error`, where one code has several causes.
    pub fn reason(&self) -> Option<&'static str> {
        match self {
            Self::InvalidGrant(e) => Some(e.reason()),
            Self::InvalidTarget { reason, .. } | Self::UnauthorizedClient { reason, .. } => Some(reason),
            _ => None,
        }
    }

    fn retry_after(&self) -> Option<u64> {
        match self {
            Self::SlowDown { retry_after_secs, .. } | Self::TemporarilyUnavailable { retry_after_secs, .. } => {
                Some(*retry_after_secs)
            }
            _ => None,
        }
    }

    pub fn body(&self) -> OAuthErrorBody {
        let text = self.to_string();
        let authorization = match self {
            Self::AuthorizationRequired(a) => Some((**a).clone()),
            _ => None,
        };
        OAuthErrorBody {
            error: self.row().0,
            error_description: text.clone(),
            message: text,
            reason: self.reason().or(authorization.as_ref().map(|a| a.reason)),
            missing_scopes: authorization.as_ref().and_then(|a| a.missing_scopes.clone()),
            auth_url: authorization.as_ref().and_then(|a| a.auth_url.clone()),
            session_id: authorization.as_ref().and_then(|a| a.session_id),
            expires_at: authorization.and_then(|a| a.expires_at),
            retry_after: self.retry_after(),
            request_id: request_id::current(),
        }
    }
}

impl From<ExchangeError> for OAuthError {
    fn from(err: ExchangeError) -> Self {
        match err {
            ExchangeError::NoAudienceRegistered(_) => {
                Self::UnauthorizedClient { message: err.to_string(), reason: err.reason() }
            }
            ExchangeError::IssuerUnavailable { retry_after_secs, .. } => {
                Self::TemporarilyUnavailable { message: err.to_string(), retry_after_secs }
            }
            ExchangeError::Store(store) => ApiError::from(store).into(),
            refused => Self::InvalidGrant(refused),
        }
    }
}

/// The API's errors (the caller check, the store, the credential), in OAuth's words.
impl From<ApiError> for OAuthError {
    fn from(err: ApiError) -> Self {
        let message = err.to_string();
        match err {
            ApiError::Unauthorized | ApiError::Forbidden(_) => Self::InvalidClient(message),
            ApiError::RateLimited { retry_after_secs } => Self::SlowDown { message, retry_after_secs },
            ApiError::ProviderUnavailable { retry_after_secs, .. } | ApiError::Busy { retry_after_secs } => {
                Self::TemporarilyUnavailable { message, retry_after_secs }
            }
            ApiError::Unavailable => Self::TemporarilyUnavailable { message, retry_after_secs: 1 },
            ApiError::UnknownProvider(_) => Self::InvalidTarget { message, reason: "unknown_provider" },
            ApiError::PayloadTooLarge { limit } => Self::TooLarge { limit },
            ApiError::InvalidRequest(_) | ApiError::InvalidEmail(_) => Self::InvalidRequest(message),
            ApiError::Internal(cause) => Self::ServerError(cause),
            other => Self::ServerError(anyhow::anyhow!("unexpected error on /oauth/token: {}", other.code())),
        }
    }
}

impl IntoResponse for OAuthError {
    fn into_response(self) -> Response {
        let (_, status) = self.row();
        if let Self::ServerError(cause) = &self {
            tracing::error!(error = format!("{cause:#}"), "token exchange failed");
        }
        let retry_after = self.retry_after();
        let mut response = (status, Json(self.body())).into_response();
        let headers = response.headers_mut();
        // RFC 6749 §5.1/§5.2: token endpoint answers are never cached.
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        if let Some(secs) = retry_after
            && let Ok(value) = HeaderValue::from_str(&secs.to_string())
        {
            headers.insert(header::RETRY_AFTER, value);
        }
        if matches!(self, Self::InvalidClient(_)) {
            headers.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("ApiKey header=\"X-API-Key\""));
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_callers_failures_read_as_oauth_codes() {
        assert_eq!(OAuthError::from(ApiError::Unauthorized).row(), ("invalid_client", StatusCode::UNAUTHORIZED));
        assert_eq!(OAuthError::from(ApiError::Forbidden("x".into())).row().0, "invalid_client");
        assert_eq!(OAuthError::from(ApiError::RateLimited { retry_after_secs: 3 }).retry_after(), Some(3));
        let unknown = OAuthError::from(ApiError::UnknownProvider("x".into()));
        assert_eq!((unknown.row().0, unknown.reason()), ("invalid_target", Some("unknown_provider")));
        assert_eq!(OAuthError::from(ApiError::Unavailable).row().1, StatusCode::SERVICE_UNAVAILABLE);
    }

    #[test]
    fn refused_subject_tokens_are_invalid_grant_with_a_reason() {
        let err = OAuthError::from(ExchangeError::Expired);
        assert_eq!(err.row(), ("invalid_grant", StatusCode::BAD_REQUEST));
        assert_eq!(err.body().reason, Some("expired"));
        let unavailable =
            OAuthError::from(ExchangeError::IssuerUnavailable { issuer: "okta".into(), retry_after_secs: 5 });
        assert_eq!(unavailable.row().0, "temporarily_unavailable");
        assert_eq!(unavailable.retry_after(), Some(5));
    }
}
