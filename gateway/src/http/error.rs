//! The API's one error type, its one table of codes, and its single mapping
//! to HTTP — JSON for the API, an HTML page for the browser pages.
//!
//! Every JSON error answer is `{"error": <code>, "message": <text>,
//! "request_id": ...}` plus `auth_required`, `missing_scopes` and
//! `retry_after` where they apply. Each code is one row of [`ApiError::row`]
//! (code, status, `auth_required`, `retry_after`) beside its message (the
//! variant's `Display`); domain errors convert with `From` below. 5xx answers
//! carry a generic message while the cause chain goes to the log inside the
//! request's span.

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use crate::core::credentials::{CredentialKey, TokenError};
use crate::core::sessions::{FailReason, FlowError, LinkError};
use crate::core::telemetry::request_id;
use crate::email::EmailError;
use crate::http::pages;

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
    #[error("{0}")]
    ExchangeRequired(String),
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
    // ---- the browser pages (rendered as HTML by `ApiError::page`) ----------
    #[error("This sign-in link was already used or has expired. Ask your assistant for a new one.")]
    LinkUnusable,
    #[error("This sign-in can only be continued from its own page. Open the link you were given again.")]
    NotFromConnectPage,
    #[error("{0}")]
    SignInRefused(&'static str),
    #[error("{}.", .0.message())]
    SignInFailed(FailReason),
    #[error("/metrics requires a bearer token.")]
    MetricsUnauthorized,
}

/// `1 second`, `30 seconds`.
fn seconds(n: u64) -> String {
    if n == 1 { "1 second".to_owned() } else { format!("{n} seconds") }
}

/// One row of the code table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Row {
    /// Stable machine-readable code.
    pub code: &'static str,
    pub status: StatusCode,
    /// Whether the user must (re-)authorize at the provider.
    pub auth_required: Option<bool>,
    /// Seconds to wait before retrying (also the `Retry-After` header).
    pub retry_after: Option<u64>,
}

const fn row(code: &'static str, status: StatusCode) -> Row {
    Row { code, status, auth_required: None, retry_after: None }
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

    /// The code table: one row per code.
    pub fn row(&self) -> Row {
        use StatusCode as S;
        let auth = |r: Row, required: bool| Row { auth_required: Some(required), ..r };
        let wait = |r: Row, secs: u64| Row { retry_after: Some(secs), ..r };
        match self {
            Self::NotAuthenticated { .. } => auth(row("not_authenticated", S::NOT_FOUND), true),
            Self::RefreshFailed { .. } => auth(row("refresh_failed", S::UNAUTHORIZED), true),
            Self::ScopeInsufficient { .. } => auth(row("scope_insufficient", S::FORBIDDEN), true),
            Self::ProviderUnavailable { retry_after_secs, .. } => {
                wait(auth(row("provider_unavailable", S::SERVICE_UNAVAILABLE), false), *retry_after_secs)
            }
            Self::UnknownProvider(_) => row("unknown_provider", S::BAD_REQUEST),
            Self::InvalidEmail(_) => row("invalid_email", S::BAD_REQUEST),
            Self::InvalidRequest(_) => row("invalid_request", S::BAD_REQUEST),
            Self::SessionNotFound => row("session_not_found", S::NOT_FOUND),
            Self::Unauthorized | Self::MetricsUnauthorized => row("unauthorized", S::UNAUTHORIZED),
            Self::Forbidden(_) => row("forbidden", S::FORBIDDEN),
            Self::ExchangeRequired(_) => row("exchange_required", S::FORBIDDEN),
            Self::NotFound => row("not_found", S::NOT_FOUND),
            Self::MethodNotAllowed => row("method_not_allowed", S::METHOD_NOT_ALLOWED),
            Self::PayloadTooLarge { .. } => row("payload_too_large", S::PAYLOAD_TOO_LARGE),
            Self::UnsupportedMediaType => row("unsupported_media_type", S::UNSUPPORTED_MEDIA_TYPE),
            Self::RateLimited { retry_after_secs } => {
                wait(row("rate_limited", S::TOO_MANY_REQUESTS), *retry_after_secs)
            }
            Self::Busy { retry_after_secs } => {
                wait(auth(row("busy", S::SERVICE_UNAVAILABLE), false), *retry_after_secs)
            }
            Self::Unavailable => wait(row("service_unavailable", S::SERVICE_UNAVAILABLE), 1),
            Self::Internal(_) => row("internal_error", S::INTERNAL_SERVER_ERROR),
            Self::LinkUnusable => row("link_unusable", S::NOT_FOUND),
            Self::NotFromConnectPage => row("forbidden", S::FORBIDDEN),
            Self::SignInRefused(_) => row("sign_in_refused", S::BAD_REQUEST),
            // The database failing is ours, not the user's.
            Self::SignInFailed(FailReason::StorageError) => row("sign_in_failed", S::SERVICE_UNAVAILABLE),
            Self::SignInFailed(_) => row("sign_in_failed", S::BAD_REQUEST),
        }
    }

    pub fn code(&self) -> &'static str {
        self.row().code
    }

    pub fn status(&self) -> StatusCode {
        self.row().status
    }

    pub fn body(&self) -> ErrorBody {
        let row = self.row();
        ErrorBody {
            error: row.code,
            message: self.to_string(),
            auth_required: row.auth_required,
            missing_scopes: match self {
                Self::ScopeInsufficient { missing } => Some(missing.clone()),
                _ => None,
            },
            retry_after: row.retry_after,
            request_id: request_id::current(),
        }
    }

    /// The same error as a browser page: its status, its message, no code.
    pub fn page(self) -> Response {
        log_server_error(&self);
        let row = self.row();
        let mut page = pages::failure(row.status, &self.to_string());
        set_retry_after(&mut page, &row);
        if matches!(self, Self::MetricsUnauthorized) {
            page.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        page
    }
}

fn log_server_error(err: &ApiError) {
    if err.status().is_server_error() {
        // The cause chain stays in the log; the body says only what the code says.
        match err {
            ApiError::Internal(cause) => tracing::error!(error = format!("{cause:#}"), "request failed"),
            other => tracing::warn!(code = other.code(), "request failed"),
        }
    }
}

fn set_retry_after(response: &mut Response, row: &Row) {
    if let Some(secs) = row.retry_after
        && let Ok(value) = HeaderValue::from_str(&secs.to_string())
    {
        response.headers_mut().insert(header::RETRY_AFTER, value);
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        log_server_error(&self);
        let row = self.row();
        let mut response = (row.status, Json(self.body())).into_response();
        set_retry_after(&mut response, &row);
        response
    }
}

// ---- domain errors → API errors -------------------------------------------

impl From<crate::core::StoreError> for ApiError {
    fn from(err: crate::core::StoreError) -> Self {
        match err {
            crate::core::StoreError::Unavailable(_) => Self::Unavailable,
            other => Self::internal(other),
        }
    }
}

impl From<FlowError> for ApiError {
    fn from(err: FlowError) -> Self {
        match err {
            FlowError::UnknownProvider(p) => Self::UnknownProvider(p),
            FlowError::InvalidRequest(m) => Self::InvalidRequest(m),
            FlowError::SessionNotFound => Self::SessionNotFound,
            FlowError::NotYours => Self::Forbidden("This session was started by another API client.".into()),
            FlowError::Store(e) => e.into(),
            other => Self::internal(other),
        }
    }
}

impl From<LinkError> for ApiError {
    fn from(err: LinkError) -> Self {
        match err {
            LinkError::Unusable => Self::LinkUnusable,
            other => Self::internal(other),
        }
    }
}

/// A token request's failure, with the credential it was for (the message names it).
#[derive(Debug)]
pub struct TokenFailure(pub TokenError, pub CredentialKey);

impl From<TokenFailure> for ApiError {
    fn from(TokenFailure(err, key): TokenFailure) -> Self {
        let (email, provider) = (key.email.to_string(), key.provider);
        match err {
            TokenError::NotAuthenticated => Self::NotAuthenticated { email, provider },
            TokenError::RefreshFailed => Self::RefreshFailed { email, provider },
            TokenError::ScopeInsufficient { missing } => Self::ScopeInsufficient { missing },
            TokenError::ProviderUnavailable { retry_after } => {
                Self::ProviderUnavailable { provider, retry_after_secs: retry_after }
            }
            TokenError::Busy => Self::Busy { retry_after_secs: 1 },
            TokenError::UnknownProvider => Self::UnknownProvider(provider),
            TokenError::Unavailable => Self::Unavailable,
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
            (ApiError::ExchangeRequired("Exchange.".into()), 403, "exchange_required", None),
            (ApiError::NotFound, 404, "not_found", None),
            (ApiError::MethodNotAllowed, 405, "method_not_allowed", None),
            (ApiError::PayloadTooLarge { limit: 16384 }, 413, "payload_too_large", None),
            (ApiError::UnsupportedMediaType, 415, "unsupported_media_type", None),
            (ApiError::Busy { retry_after_secs: 1 }, 503, "busy", Some(false)),
            (ApiError::RateLimited { retry_after_secs: 2 }, 429, "rate_limited", None),
            (ApiError::Unavailable, 503, "service_unavailable", None),
            (ApiError::internal(anyhow::anyhow!("secret-detail")), 500, "internal_error", None),
            (ApiError::LinkUnusable, 404, "link_unusable", None),
            (ApiError::NotFromConnectPage, 403, "forbidden", None),
            (
                ApiError::SignInRefused("This sign-in link is unknown or was already used."),
                400,
                "sign_in_refused",
                None,
            ),
            (ApiError::SignInFailed(FailReason::AccessDenied), 400, "sign_in_failed", None),
            (ApiError::SignInFailed(FailReason::StorageError), 503, "sign_in_failed", None),
            (ApiError::MetricsUnauthorized, 401, "unauthorized", None),
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
    async fn browser_errors_are_pages_from_the_same_table() {
        let page = ApiError::RateLimited { retry_after_secs: 3 }.page();
        assert_eq!(page.status(), 429);
        assert_eq!(page.headers()[header::RETRY_AFTER], "3");
        assert!(page.headers()[header::CONTENT_TYPE].to_str().unwrap().starts_with("text/html"));
        let page = ApiError::MetricsUnauthorized.page();
        assert_eq!(
            (page.status().as_u16(), &page.headers()[header::WWW_AUTHENTICATE]),
            (401, &HeaderValue::from_static("Bearer"))
        );
        let body = axum::body::to_bytes(ApiError::LinkUnusable.page().into_body(), 1 << 16).await.unwrap();
        assert!(String::from_utf8_lossy(&body).contains("already used or has expired"));
    }

    #[tokio::test]
    async fn scope_insufficient_lists_the_missing_scopes() {
        let (_, body, _) = render(ApiError::ScopeInsufficient { missing: vec!["a".into(), "b".into()] }).await;
        assert_eq!(body["missing_scopes"], serde_json::json!(["a", "b"]));
    }
}
