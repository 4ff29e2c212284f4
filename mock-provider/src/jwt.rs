//! Hand-made HS256 JWTs (RFC 7519) for the OIDC id_token.
//!
//! OIDC Core §10.1 lets a provider sign id_tokens with the client secret (HS256), which
//! spares us a key pair and a JWKS endpoint. Verification is here too so tests, and the
//! gateway's tests, can check what the provider signed.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use serde::Serialize;
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

/// Why a token failed [`verify_hs256`].
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum JwtError {
    /// Not three base64url segments of JSON.
    #[error("malformed JWT")]
    Malformed,
    /// The header does not say `"alg":"HS256"`.
    #[error("unexpected JWT algorithm")]
    WrongAlgorithm,
    /// The signature does not match the key.
    #[error("bad JWT signature")]
    BadSignature,
    /// The claims could not be serialised.
    #[error("cannot serialise JWT claims")]
    Encode,
    /// The key was refused by HMAC (cannot happen for HMAC, which takes any length).
    #[error("unusable HMAC key")]
    Key,
}

/// The claims of the id_tokens this provider issues.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub(crate) struct IdTokenClaims {
    pub(crate) iss: String,
    pub(crate) sub: String,
    /// `None` only when a test makes the provider leave it out.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) aud: Option<String>,
    pub(crate) email: String,
    /// As the provider's [`crate::IdentityClaims`] says (absent, a boolean or a string).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) email_verified: Option<serde_json::Value>,
    /// Microsoft's tenant id.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) tid: Option<String>,
    pub(crate) iat: u64,
    pub(crate) exp: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) nonce: Option<String>,
}

/// Signs `claims` as a compact JWS with HS256 and `key`.
pub fn sign_hs256(claims: &impl Serialize, key: &[u8]) -> Result<String, JwtError> {
    let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"HS256","typ":"JWT"}"#);
    let payload = URL_SAFE_NO_PAD.encode(serde_json::to_vec(claims).map_err(|_| JwtError::Encode)?);
    let signing_input = format!("{header}.{payload}");
    let signature = URL_SAFE_NO_PAD.encode(mac(key, signing_input.as_bytes())?.finalize().into_bytes());
    Ok(format!("{signing_input}.{signature}"))
}

/// Checks an HS256 JWT's signature with `key` and returns its claims. Expiry is not
/// checked: that is the relying party's business, and tests want to read old tokens too.
pub fn verify_hs256(token: &str, key: &[u8]) -> Result<serde_json::Value, JwtError> {
    let mut parts = token.split('.');
    let (Some(header), Some(payload), Some(signature), None) = (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(JwtError::Malformed);
    };
    let header: serde_json::Value = decode_json(header)?;
    if header.get("alg").and_then(|alg| alg.as_str()) != Some("HS256") {
        return Err(JwtError::WrongAlgorithm);
    }
    let signature = URL_SAFE_NO_PAD.decode(signature).map_err(|_| JwtError::Malformed)?;
    let signing_input = &token[..header_and_payload_len(token)];
    // verify_slice compares in constant time.
    mac(key, signing_input.as_bytes())?.verify_slice(&signature).map_err(|_| JwtError::BadSignature)?;
    decode_json(payload)
}

fn mac(key: &[u8], data: &[u8]) -> Result<HmacSha256, JwtError> {
    let mut mac = <HmacSha256 as Mac>::new_from_slice(key).map_err(|_| JwtError::Key)?;
    mac.update(data);
    Ok(mac)
}

fn decode_json(segment: &str) -> Result<serde_json::Value, JwtError> {
    let bytes = URL_SAFE_NO_PAD.decode(segment).map_err(|_| JwtError::Malformed)?;
    serde_json::from_slice(&bytes).map_err(|_| JwtError::Malformed)
}

/// Length of `header.payload`, the part the signature covers.
fn header_and_payload_len(token: &str) -> usize {
    token.rfind('.').unwrap_or(token.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claims() -> IdTokenClaims {
        IdTokenClaims {
            iss: "http://127.0.0.1:1".into(),
            sub: "123".into(),
            aud: Some("client".into()),
            email: "a@example.com".into(),
            email_verified: Some(serde_json::Value::Bool(true)),
            tid: None,
            iat: 1,
            exp: 3601,
            nonce: None,
        }
    }

    #[test]
    fn round_trip() {
        let token = sign_hs256(&claims(), b"secret").unwrap();
        let decoded = verify_hs256(&token, b"secret").unwrap();
        assert_eq!(decoded["email"], "a@example.com");
        assert_eq!(decoded["aud"], "client");
        assert!(decoded.get("nonce").is_none());
    }

    #[test]
    fn wrong_key_or_tampering_is_refused() {
        let token = sign_hs256(&claims(), b"secret").unwrap();
        assert_eq!(verify_hs256(&token, b"other"), Err(JwtError::BadSignature));
        let mut forged = claims();
        forged.email = "mallory@example.com".into();
        let forged_payload = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&forged).unwrap());
        let parts: Vec<&str> = token.split('.').collect();
        let tampered = format!("{}.{}.{}", parts[0], forged_payload, parts[2]);
        assert_eq!(verify_hs256(&tampered, b"secret"), Err(JwtError::BadSignature));
    }

    #[test]
    fn garbage_is_malformed() {
        assert_eq!(verify_hs256("a.b", b"k"), Err(JwtError::Malformed));
        assert_eq!(verify_hs256("a.b.c.d", b"k"), Err(JwtError::Malformed));
    }

    #[test]
    fn verifies_the_jwt_io_example() {
        // The canonical HS256 example from jwt.io, signed by someone else's implementation.
        let token = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.\
                     eyJzdWIiOiIxMjM0NTY3ODkwIiwibmFtZSI6IkpvaG4gRG9lIiwiaWF0IjoxNTE2MjM5MDIyfQ.\
                     SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c";
        let claims = verify_hs256(token, b"your-256-bit-secret").unwrap();
        assert_eq!(claims["name"], "John Doe");
    }
}
