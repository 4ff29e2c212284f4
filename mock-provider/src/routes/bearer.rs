//! Bearer-token access to the protected resources (RFC 6750): who the token speaks for, or
//! the 401 a real resource server sends.

use std::time::SystemTime;

use axum::Json;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use crate::state::{Shared, TokenOwner};

/// Why a request was refused; renders as the 401 a real resource server sends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum BearerError {
    Missing,
    Invalid,
}

impl IntoResponse for BearerError {
    fn into_response(self) -> Response {
        match self {
            // RFC 6750 §3.1: no error code when the request carried no credentials at all.
            Self::Missing => unauthorized("Bearer realm=\"mock-provider\"", "missing bearer token"),
            Self::Invalid => {
                unauthorized("Bearer error=\"invalid_token\"", "the access token is invalid, expired or revoked")
            }
        }
    }
}

/// The owner of the request's bearer token.
pub(super) fn authorize_bearer(shared: &Shared, headers: &HeaderMap) -> Result<TokenOwner, BearerError> {
    let token = bearer_token(headers).ok_or(BearerError::Missing)?;
    shared.store().token_owner(token, SystemTime::now()).ok_or(BearerError::Invalid)
}

fn bearer_token(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

fn unauthorized(challenge: &'static str, description: &str) -> Response {
    let mut response = (
        StatusCode::UNAUTHORIZED,
        Json(serde_json::json!({
            "error": "invalid_token",
            "error_description": description,
        })),
    )
        .into_response();
    response.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static(challenge));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_scheme_is_case_insensitive() {
        let mut headers = HeaderMap::new();
        headers.insert(header::AUTHORIZATION, HeaderValue::from_static("bearer abc"));
        assert_eq!(bearer_token(&headers), Some("abc"));
        headers.insert(header::AUTHORIZATION, HeaderValue::from_static("Basic abc"));
        assert_eq!(bearer_token(&headers), None);
        headers.insert(header::AUTHORIZATION, HeaderValue::from_static("Bearer "));
        assert_eq!(bearer_token(&headers), None);
    }
}
