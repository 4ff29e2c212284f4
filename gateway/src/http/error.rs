//! The API's one error type and its single mapping to HTTP.
//!
//! Every error answer is `{"error": <code>, "message": <text>, "request_id": ...}`
//! plus `auth_required` where it applies. Codes, statuses and messages come
//! from one table ([`ApiError::code`], [`ApiError::status`]); 5xx answers carry
//! a generic message while the cause chain goes to the log inside the
//! request's span.

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use crate::email::EmailError;
use crate::http::request_id;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("No credentials found for {email} ({provider}). Please authenticate.")]
    NotAuthenticated { email: String, provider: String },
    #[error("The stored grant for {email} ({provider}) can no longer be refreshed. Please re-authenticate.")]
    RefreshFailed { email: String, provider: String },
    #[error("The stored grant lacks required scopes: {}. Please re-authenticate with them.", missing.join(" "))]
    ScopeInsufficient { missing: Vec<String> },
    #[error("The provider {provider} is unavailable; retry in {}.", seconds(*retry_after_secs))]
    ProviderUnavailable { provider: String, retry_after_secs: u64 },
    #[error("Unknown provider {0:?}.")]
    UnknownProvider(String),
    #[error("Invalid user_email: {0}.")]
    InvalidEmail(#[from] EmailError),
    #[error("{0}")]
    InvalidRequest(String),
    #[error("No session with this id.")]
    SessionNotFound,
    #[error("Missing X-API-Key header.")]
    Unauthorized,
    #[error("{0}")]
    Forbidden(String),
    #[error("No route for this path.")]
    NotFound,
    #[error("Method not allowed for this path.")]
    MethodNotAllowed,
    #[error("The request body is larger than {limit} bytes.")]
    PayloadTooLarge { limit: usize },
    #[error("Expected Content-Type: application/json.")]
    UnsupportedMediaType,
    #[error("Too many requests; retry in {}.", seconds(*retry_after_secs))]
    RateLimited { retry_after_secs: u64 },
    #[error("The credential is busy being refreshed; retry shortly.")]
    Busy { retry_after_secs: u64 },
    #[error("The database is unavailable; retry shortly.")]
    Unavailable,
    #[error("Internal error.")]
    Internal(#[source] anyhow::Error),
}

/// `1 second`, `30 seconds`.
fn seconds(n: u64) -> String {
    if n == 1 { "1 second".to_owned() } else { format!("{n} seconds") }
}

/// The JSON body of every error answer.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ErrorBody {
    /// Stable machine-readable code.
    pub error: &'static str,
    /// Human-readable explanation.
    pub message: String,
    /// Whether the user must (re-)authorize at the provider.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub auth_required: Option<bool>,
    /// Scopes the stored grant lacks (`scope_insufficient` only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub missing_scopes: Option<Vec<String>>,
    /// Seconds to wait before retrying (`provider_unavailable`, `busy`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retry_after: Option<u64>,
    pub request_id: Option<String>,
}

impl ApiError {
    pub fn internal(err: impl Into<anyhow::Error>) -> Self {
        Self::Internal(err.into())
    }

    pub fn code(&self) -> &'static str {
        match self {
            Self::NotAuthenticated { .. } => "not_authenticated",
            Self::RefreshFailed { .. } => "refresh_failed",
            Self::ScopeInsufficient { .. } => "scope_insufficient",
            Self::ProviderUnavailable { .. } => "provider_unavailable",
            Self::UnknownProvider(_) => "unknown_provider",
            Self::InvalidEmail(_) => "invalid_email",
            Self::InvalidRequest(_) => "invalid_request",
            Self::SessionNotFound => "session_not_found",
            Self::Unauthorized => "unauthorized",
            Self::Forbidden(_) => "forbidden",
            Self::NotFound => "not_found",
            Self::MethodNotAllowed => "method_not_allowed",
            Self::PayloadTooLarge { .. } => "payload_too_large",
            Self::UnsupportedMediaType => "unsupported_media_type",
            Self::RateLimited { .. } => "rate_limited",
            Self::Busy { .. } => "busy",
            Self::Unavailable => "service_unavailable",
            Self::Internal(_) => "internal_error",
        }
    }

    pub fn status(&self) -> StatusCode {
        match self {
            Self::NotAuthenticated { .. } | Self::SessionNotFound | Self::NotFound => StatusCode::NOT_FOUND,
            Self::RefreshFailed { .. } | Self::Unauthorized => StatusCode::UNAUTHORIZED,
            Self::ScopeInsufficient { .. } | Self::Forbidden(_) => StatusCode::FORBIDDEN,
            Self::ProviderUnavailable { .. } | Self::Busy { .. } | Self::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            Self::UnknownProvider(_) | Self::InvalidEmail(_) | Self::InvalidRequest(_) => StatusCode::BAD_REQUEST,
            Self::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            Self::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
            Self::PayloadTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            Self::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Self::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn auth_required(&self) -> Option<bool> {
        match self {
            Self::NotAuthenticated { .. } | Self::RefreshFailed { .. } | Self::ScopeInsufficient { .. } => Some(true),
            Self::ProviderUnavailable { .. } | Self::Busy { .. } => Some(false),
            _ => None,
        }
    }

    fn retry_after(&self) -> Option<u64> {
        match self {
            Self::ProviderUnavailable { retry_after_secs, .. }
            | Self::Busy { retry_after_secs }
            | Self::RateLimited { retry_after_secs } => Some(*retry_after_secs),
            Self::Unavailable => Some(1),
            _ => None,
        }
    }

    pub fn body(&self) -> ErrorBody {
        ErrorBody {
            error: self.code(),
            message: self.to_string(),
            auth_required: self.auth_required(),
            missing_scopes: match self {
                Self::ScopeInsufficient { missing } => Some(missing.clone()),
                _ => None,
            },
            retry_after: self.retry_after(),
            request_id: request_id::current(),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        if status.is_server_error() {
            // The cause chain stays in the log; the body says only what the code says.
            match &self {
                Self::Internal(err) => {
                    tracing::error!(error = format!("{err:#}"), "request failed")
                }
                other => tracing::warn!(code = other.code(), "request failed"),
            }
        }
        let body = self.body();
        let mut response = (status, Json(body)).into_response();
        if let Some(secs) = self.retry_after()
            && let Ok(value) = HeaderValue::from_str(&secs.to_string())
        {
            response.headers_mut().insert(header::RETRY_AFTER, value);
        }
        response
    }
}

impl From<crate::store::StoreError> for ApiError {
    fn from(err: crate::store::StoreError) -> Self {
        match err {
            crate::store::StoreError::Unavailable(_) => Self::Unavailable,
            other => Self::internal(other),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn render(err: ApiError) -> (StatusCode, serde_json::Value, Option<String>) {
        let response = err.into_response();
        let status = response.status();
        let retry = response.headers().get(header::RETRY_AFTER).map(|v| v.to_str().unwrap().to_owned());
        let bytes = axum::body::to_bytes(response.into_body(), 1 << 16).await.unwrap();
        (status, serde_json::from_slice(&bytes).unwrap(), retry)
    }

    #[tokio::test]
    async fn every_code_maps_to_its_status_and_shape() {
        let cases: Vec<(ApiError, u16, &str, Option<bool>)> = vec![
            (
                ApiError::NotAuthenticated { email: "a@b.co".into(), provider: "google".into() },
                404,
                "not_authenticated",
                Some(true),
            ),
            (
                ApiError::RefreshFailed { email: "a@b.co".into(), provider: "google".into() },
                401,
                "refresh_failed",
                Some(true),
            ),
            (ApiError::ScopeInsufficient { missing: vec!["mail.send".into()] }, 403, "scope_insufficient", Some(true)),
            (
                ApiError::ProviderUnavailable { provider: "google".into(), retry_after_secs: 7 },
                503,
                "provider_unavailable",
                Some(false),
            ),
            (ApiError::UnknownProvider("nope".into()), 400, "unknown_provider", None),
            (ApiError::InvalidEmail(EmailError::Malformed), 400, "invalid_email", None),
            (ApiError::InvalidRequest("bad".into()), 400, "invalid_request", None),
            (ApiError::SessionNotFound, 404, "session_not_found", None),
            (ApiError::Unauthorized, 401, "unauthorized", None),
            (ApiError::Forbidden("Invalid API key.".into()), 403, "forbidden", None),
            (ApiError::NotFound, 404, "not_found", None),
            (ApiError::MethodNotAllowed, 405, "method_not_allowed", None),
            (ApiError::PayloadTooLarge { limit: 16384 }, 413, "payload_too_large", None),
            (ApiError::UnsupportedMediaType, 415, "unsupported_media_type", None),
            (ApiError::Busy { retry_after_secs: 1 }, 503, "busy", Some(false)),
            (ApiError::RateLimited { retry_after_secs: 2 }, 429, "rate_limited", None),
            (ApiError::Unavailable, 503, "service_unavailable", None),
            (ApiError::internal(anyhow::anyhow!("secret-detail")), 500, "internal_error", None),
        ];
        for (err, status, code, auth_required) in cases {
            let (got_status, body, _) = render(err).await;
            assert_eq!(got_status.as_u16(), status, "{code}");
            assert_eq!(body["error"], code);
            assert!(body["message"].as_str().is_some_and(|m| !m.is_empty()), "{code}");
            assert_eq!(body.get("auth_required").and_then(|v| v.as_bool()), auth_required, "{code}");
            assert!(body.as_object().unwrap().contains_key("request_id"), "{code}");
        }
    }

    #[tokio::test]
    async fn internal_errors_hide_their_cause() {
        let (_, body, _) = render(ApiError::internal(anyhow::anyhow!("password=hunter2"))).await;
        assert_eq!(body["message"], "Internal error.");
        assert!(!body.to_string().contains("hunter2"));
    }

    #[tokio::test]
    async fn retry_hints_are_in_the_header_and_the_body() {
        let (_, body, retry) =
            render(ApiError::ProviderUnavailable { provider: "google".into(), retry_after_secs: 30 }).await;
        assert_eq!(retry.as_deref(), Some("30"));
        assert_eq!(body["retry_after"], 30);
        assert!(body["message"].as_str().unwrap().ends_with("retry in 30 seconds."), "{body}");
        let (_, body, retry) = render(ApiError::RateLimited { retry_after_secs: 1 }).await;
        assert_eq!(retry.as_deref(), Some("1"));
        assert_eq!(body["message"], "Too many requests; retry in 1 second.");
    }

    #[tokio::test]
    async fn scope_insufficient_lists_the_missing_scopes() {
        let (_, body, _) = render(ApiError::ScopeInsufficient { missing: vec!["a".into(), "b".into()] }).await;
        assert_eq!(body["missing_scopes"], serde_json::json!(["a", "b"]));
    }
}
