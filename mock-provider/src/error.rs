//! OAuth error answers (RFC 6749 §5.2, RFC 7009 §2.2.1) of the token and revocation
//! endpoints, with the status code each error code travels with.

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

/// The RFC 6749 error codes this provider sends.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum ErrorCode {
    InvalidRequest,
    InvalidClient,
    InvalidGrant,
    InvalidScope,
    UnsupportedGrantType,
}

impl ErrorCode {
    /// RFC 6749 §5.2: 400 for everything except a failed client authentication.
    fn status(self) -> StatusCode {
        match self {
            Self::InvalidClient => StatusCode::UNAUTHORIZED,
            _ => StatusCode::BAD_REQUEST,
        }
    }
}

/// An OAuth error body: `{"error": "...", "error_description": "..."}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub(crate) struct OAuthError {
    pub(crate) error: ErrorCode,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) error_description: Option<String>,
}

impl OAuthError {
    pub(crate) fn new(error: ErrorCode, description: impl Into<String>) -> Self {
        Self { error, error_description: Some(description.into()) }
    }

    pub(crate) fn invalid_request(description: impl Into<String>) -> Self {
        Self::new(ErrorCode::InvalidRequest, description)
    }

    pub(crate) fn invalid_grant(description: impl Into<String>) -> Self {
        Self::new(ErrorCode::InvalidGrant, description)
    }

    /// Real providers say nothing more about a failed client authentication.
    pub(crate) fn invalid_client() -> Self {
        Self { error: ErrorCode::InvalidClient, error_description: None }
    }
}

impl IntoResponse for OAuthError {
    fn into_response(self) -> Response {
        let status = self.error.status();
        let mut response = (status, Json(self)).into_response();
        let headers = response.headers_mut();
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        if status == StatusCode::UNAUTHORIZED {
            // RFC 6749 §5.2: a 401 names the authentication scheme the client should use.
            headers.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Basic realm=\"mock-provider\""));
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn invalid_client_is_401_with_a_challenge() {
        let response = OAuthError::invalid_client().into_response();
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
        assert!(response.headers().contains_key(header::WWW_AUTHENTICATE));
    }

    #[test]
    fn other_codes_are_400() {
        for code in [
            ErrorCode::InvalidRequest,
            ErrorCode::InvalidGrant,
            ErrorCode::InvalidScope,
            ErrorCode::UnsupportedGrantType,
        ] {
            let response = OAuthError::new(code, "x").into_response();
            assert_eq!(response.status(), StatusCode::BAD_REQUEST);
        }
    }

    #[test]
    fn body_uses_rfc_names() {
        let body = serde_json::to_value(OAuthError::invalid_grant("gone")).unwrap();
        assert_eq!(body, serde_json::json!({"error": "invalid_grant", "error_description": "gone"}));
    }
}
