//! Extractors whose rejections are our JSON errors, and the validation of
//! request fields shared by the routes.

use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::StatusCode;
use axum::http::request::Parts;
use serde::de::DeserializeOwned;

use super::ApiError;
use crate::email::Email;

/// Largest request body accepted (the API's bodies are a few hundred bytes).
pub const BODY_LIMIT: usize = 16 * 1024;
/// Limits on caller-supplied scope lists.
pub const MAX_SCOPES: usize = 50;
pub const MAX_SCOPE_LEN: usize = 256;
pub const MAX_URL_LEN: usize = 2048;

/// `Json<T>` with our error codes: 415 for a wrong content type, 413 for an
/// oversized body, 400 `invalid_request` for anything malformed.
pub struct ApiJson<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        match axum::Json::<T>::from_request(req, state).await {
            Ok(axum::Json(value)) => Ok(Self(value)),
            Err(JsonRejection::MissingJsonContentType(_)) => Err(ApiError::UnsupportedMediaType),
            Err(JsonRejection::BytesRejection(r)) if r.status() == StatusCode::PAYLOAD_TOO_LARGE => {
                Err(ApiError::PayloadTooLarge { limit: BODY_LIMIT })
            }
            Err(JsonRejection::JsonDataError(e)) => {
                Err(ApiError::InvalidRequest(format!("Invalid JSON body: {}.", e.body_text())))
            }
            Err(JsonRejection::JsonSyntaxError(_)) => {
                Err(ApiError::InvalidRequest("The body is not valid JSON.".into()))
            }
            Err(other) => Err(ApiError::InvalidRequest(format!("Unreadable request body ({}).", other.status()))),
        }
    }
}

/// `Path<T>` answering 400 `invalid_request`.
pub struct ApiPath<T>(pub T);

impl<T: DeserializeOwned + Send, S: Send + Sync> FromRequestParts<S> for ApiPath<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        axum::extract::Path::<T>::from_request_parts(parts, state)
            .await
            .map(|p| Self(p.0))
            .map_err(|e: PathRejection| ApiError::InvalidRequest(format!("Invalid path: {}.", e.body_text())))
    }
}

/// `Query<T>` answering 400 `invalid_request`.
pub struct ApiQuery<T>(pub T);

impl<T: DeserializeOwned + Send, S: Send + Sync> FromRequestParts<S> for ApiQuery<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        axum::extract::Query::<T>::from_request_parts(parts, state)
            .await
            .map(|q| Self(q.0))
            .map_err(|e: QueryRejection| ApiError::InvalidRequest(format!("Invalid query: {}.", e.body_text())))
    }
}

pub fn email(raw: &str) -> Result<Email, ApiError> {
    Ok(Email::parse(raw)?)
}

/// A provider id as typed by a caller: it must look like one to be looked up.
pub fn provider_id(raw: &str) -> Result<&str, ApiError> {
    if crate::config::providers::valid_provider_id(raw) {
        Ok(raw)
    } else {
        Err(ApiError::UnknownProvider(raw.chars().take(60).collect()))
    }
}

/// An email domain: lower-cased, letters, digits, `-` and `.`, with a dot.
pub fn domain(raw: &str) -> Result<String, ApiError> {
    let d = raw.trim().to_ascii_lowercase();
    let ok = (3..=253).contains(&d.len())
        && d.contains('.')
        && !d.starts_with(['.', '-'])
        && !d.ends_with(['.', '-'])
        && d.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'.' || b == b'-');
    if ok { Ok(d) } else { Err(ApiError::InvalidRequest("domain is not an email domain such as company.com.".into())) }
}

/// Scopes: at most [`MAX_SCOPES`], each 1..=[`MAX_SCOPE_LEN`] visible characters.
pub fn scopes(field: &str, raw: Option<Vec<String>>) -> Result<Vec<String>, ApiError> {
    let scopes = raw.unwrap_or_default();
    if scopes.len() > MAX_SCOPES {
        return Err(ApiError::InvalidRequest(format!("{field} has more than {MAX_SCOPES} entries.")));
    }
    for scope in &scopes {
        let ok = (1..=MAX_SCOPE_LEN).contains(&scope.len()) && scope.chars().all(|c| c.is_ascii_graphic());
        if !ok {
            return Err(ApiError::InvalidRequest(format!(
                "{field} entries must be 1 to {MAX_SCOPE_LEN} visible ASCII characters without spaces."
            )));
        }
    }
    Ok(scopes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scope_lists_are_bounded() {
        assert!(scopes("scopes", Some(vec!["mail.read".into()])).is_ok());
        assert!(scopes("scopes", None).unwrap().is_empty());
        assert!(scopes("scopes", Some(vec!["".into()])).is_err());
        assert!(scopes("scopes", Some(vec!["a b".into()])).is_err());
        assert!(scopes("scopes", Some(vec!["x".repeat(257)])).is_err());
        assert!(scopes("scopes", Some(vec!["s".into(); 51])).is_err());
    }

    #[test]
    fn provider_ids_must_look_like_ids() {
        assert!(provider_id("google").is_ok());
        assert!(matches!(provider_id("Google!"), Err(ApiError::UnknownProvider(_))));
        assert!(provider_id(&"g".repeat(51)).is_err());
    }
}
