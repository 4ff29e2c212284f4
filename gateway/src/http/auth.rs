//! The `X-API-Key` check, as an extractor: a handler that takes [`ApiCaller`]
//! cannot run without a valid key. Keys are compared as SHA-256 digests in
//! constant time; the key itself is never kept after start-up.

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::ApiError;
use crate::app::AppState;

pub const HEADER: &str = "x-api-key";

pub fn digest(key: &[u8]) -> [u8; 32] {
    Sha256::digest(key).into()
}

/// Proof that the request carried a valid API key.
#[derive(Clone, Copy, Debug)]
pub struct ApiCaller;

impl FromRequestParts<AppState> for ApiCaller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let presented = parts.headers.get(HEADER).ok_or(ApiError::Unauthorized)?;
        let presented = digest(presented.as_bytes());
        if bool::from(presented.ct_eq(&state.api_key_digest)) {
            Ok(Self)
        } else {
            Err(ApiError::Forbidden("Invalid API key.".to_owned()))
        }
    }
}
