//! Client authentication at the token and revocation endpoints: `client_secret_basic` and
//! `client_secret_post` (RFC 6749 §2.3.1).

use axum::http::{HeaderMap, header};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;

use super::params::Params;
use crate::config::MockConfig;
use crate::error::OAuthError;

/// Checks the request's client credentials against the one configured client.
pub(crate) fn authenticate(headers: &HeaderMap, params: &Params, config: &MockConfig) -> Result<(), OAuthError> {
    let Some((id, secret)) = basic_credentials(headers)? else {
        return match (params.get("client_id"), params.get("client_secret")) {
            (Some(id), Some(secret)) if id == config.client_id && secret == config.client_secret => Ok(()),
            _ => Err(OAuthError::invalid_client()),
        };
    };
    if params.get("client_secret").is_some() {
        return Err(OAuthError::invalid_request(
            "use one client authentication method, not Basic and client_secret both",
        ));
    }
    // RFC 6749 §2.3.1 has clients form-urlencode id and secret before base64; many skip
    // that step (and real providers let them), so the raw values are accepted too.
    let matches =
        |sent: &str, expected: &str| sent == expected || form_decode(sent).is_some_and(|decoded| decoded == expected);
    if !matches(&id, &config.client_id) || !matches(&secret, &config.client_secret) {
        return Err(OAuthError::invalid_client());
    }
    // A client_id in the body is allowed next to Basic, but must name the same client.
    match params.get("client_id") {
        Some(body_id) if body_id != config.client_id => Err(OAuthError::invalid_client()),
        _ => Ok(()),
    }
}

/// The `id:secret` pair of an `Authorization: Basic` header, still form-encoded. `None`
/// when the request has no Basic header.
fn basic_credentials(headers: &HeaderMap) -> Result<Option<(String, String)>, OAuthError> {
    let Some(value) = headers.get(header::AUTHORIZATION) else {
        return Ok(None);
    };
    let value = value.to_str().map_err(|_| OAuthError::invalid_client())?;
    let Some((scheme, encoded)) = value.split_once(' ') else {
        return Ok(None);
    };
    if !scheme.eq_ignore_ascii_case("basic") {
        return Ok(None);
    }
    let decoded = STANDARD
        .decode(encoded.trim())
        .ok()
        .and_then(|bytes| String::from_utf8(bytes).ok())
        .ok_or_else(OAuthError::invalid_client)?;
    let (id, secret) = decoded.split_once(':').ok_or_else(OAuthError::invalid_client)?;
    Ok(Some((id.to_owned(), secret.to_owned())))
}

/// Reverses `application/x-www-form-urlencoded` encoding of one value.
fn form_decode(encoded: &str) -> Option<String> {
    let bytes = encoded.as_bytes();
    let mut decoded = Vec::with_capacity(bytes.len());
    let mut index = 0;
    while index < bytes.len() {
        match bytes[index] {
            b'+' => decoded.push(b' '),
            b'%' => {
                let hex = encoded.get(index + 1..index + 3)?;
                decoded.push(u8::from_str_radix(hex, 16).ok()?);
                index += 2;
            }
            byte => decoded.push(byte),
        }
        index += 1;
    }
    String::from_utf8(decoded).ok()
}

#[cfg(test)]
mod tests {
    use axum::http::HeaderValue;

    use super::*;
    use crate::error::ErrorCode;

    fn config() -> MockConfig {
        MockConfig { client_id: "my id".into(), client_secret: "s3cr%t:+".into(), ..MockConfig::default() }
    }

    fn basic(id: &str, secret: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        let value = format!("Basic {}", STANDARD.encode(format!("{id}:{secret}")));
        headers.insert(header::AUTHORIZATION, HeaderValue::from_str(&value).unwrap());
        headers
    }

    #[test]
    fn basic_with_rfc_encoding() {
        let headers = basic("my+id", "s3cr%25t%3A%2B");
        assert!(authenticate(&headers, &Params::default(), &config()).is_ok());
    }

    #[test]
    fn basic_without_encoding() {
        let headers = basic("my id", "s3cr%t:+");
        assert!(authenticate(&headers, &Params::default(), &config()).is_ok());
    }

    #[test]
    fn post_credentials() {
        let params = Params::parse(b"client_id=my+id&client_secret=s3cr%25t%3A%2B");
        assert!(authenticate(&HeaderMap::new(), &params, &config()).is_ok());
    }

    #[test]
    fn wrong_or_missing_credentials() {
        let error = authenticate(&basic("my id", "nope"), &Params::default(), &config());
        assert_eq!(error.unwrap_err().error, ErrorCode::InvalidClient);
        let error = authenticate(&HeaderMap::new(), &Params::default(), &config());
        assert_eq!(error.unwrap_err().error, ErrorCode::InvalidClient);
        let params = Params::parse(b"client_id=my+id");
        let error = authenticate(&HeaderMap::new(), &params, &config());
        assert_eq!(error.unwrap_err().error, ErrorCode::InvalidClient);
    }

    #[test]
    fn two_methods_at_once_are_refused() {
        let params = Params::parse(b"client_secret=x");
        let error = authenticate(&basic("my id", "s3cr%t:+"), &params, &config());
        assert_eq!(error.unwrap_err().error, ErrorCode::InvalidRequest);
    }

    #[test]
    fn form_decode_handles_plus_and_percent() {
        assert_eq!(form_decode("a+b%2Fc").as_deref(), Some("a b/c"));
        assert_eq!(form_decode("%zz"), None);
        assert_eq!(form_decode("%4"), None);
    }
}
