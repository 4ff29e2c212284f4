//! Compact JWS (RFC 7515) as token exchange reads it: a cheap first look at
//! the header and claims to pick a key, then the signature check that makes
//! the claims worth reading.
//!
//! The first look refuses `alg: none` and the HMAC family outright: a JWKS
//! holds public keys, and a public key used as an HMAC secret is the classic
//! algorithm-confusion forgery. Claims read before the signature is checked
//! only choose *which* key to try; every decision is made on the verified
//! claims.

use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::Value;

use super::{ExchangeError, excerpt};

/// Longer subject tokens are refused unread (real access tokens are 1–4 KiB;
/// Entra ID's with many group claims approach 8 KiB).
pub const MAX_TOKEN_LEN: usize = 12 * 1024;

/// A token's header and claims, read but not yet trusted.
#[derive(Debug)]
pub struct Unverified {
    pub alg: String,
    pub kid: Option<String>,
    /// For choosing the key set only.
    pub issuer: Option<String>,
}

fn segment(part: &str) -> Result<Value, ExchangeError> {
    use base64::Engine;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(part)
        .map_err(|_| ExchangeError::Malformed("a segment is not base64url"))?;
    let value: Value = serde_json::from_slice(&bytes).map_err(|_| ExchangeError::Malformed("a segment is not JSON"))?;
    if value.is_object() { Ok(value) } else { Err(ExchangeError::Malformed("a segment is not a JSON object")) }
}

/// Reads the header and the issuer, refusing what no key could make valid.
pub fn peek(token: &str) -> Result<Unverified, ExchangeError> {
    if token.len() > MAX_TOKEN_LEN {
        return Err(ExchangeError::Malformed("it is longer than 12 KiB"));
    }
    let mut parts = token.split('.');
    let (Some(header), Some(claims), Some(_signature), None) = (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(ExchangeError::Malformed("it does not have three dot-separated segments"));
    };
    let header = segment(header)?;
    let alg = header.get("alg").and_then(Value::as_str).ok_or(ExchangeError::Malformed("the header has no alg"))?;
    if alg.eq_ignore_ascii_case("none") || alg.to_ascii_uppercase().starts_with("HS") {
        return Err(ExchangeError::AlgorithmRefused(excerpt(alg)));
    }
    // `crit` names extensions the verifier must understand; we understand none.
    if header.get("crit").is_some() {
        return Err(ExchangeError::Malformed("the header has crit extensions this gateway does not implement"));
    }
    let kid = header.get("kid").and_then(Value::as_str).map(str::to_owned);
    let issuer = segment(claims)?.get("iss").and_then(Value::as_str).map(str::to_owned);
    Ok(Unverified { alg: alg.to_owned(), kid, issuer })
}

/// `alg` if it is among `allowed` (which config keeps asymmetric).
pub fn accepted(alg: &str, allowed: &[Algorithm]) -> Result<Algorithm, ExchangeError> {
    alg.parse::<Algorithm>()
        .ok()
        .filter(|a| allowed.contains(a))
        .ok_or_else(|| ExchangeError::AlgorithmRefused(excerpt(alg)))
}

/// Checks the signature with `key` under `alg` and returns the claims. Time,
/// issuer and audience are the caller's checks (against the gateway's clock).
pub fn verify(token: &str, key: &DecodingKey, alg: Algorithm) -> Result<Value, ExchangeError> {
    let mut validation = Validation::new(alg);
    validation.validate_exp = false;
    validation.validate_nbf = false;
    validation.validate_aud = false;
    validation.required_spec_claims.clear();
    match jsonwebtoken::decode::<Value>(token, key, &validation) {
        Ok(data) => Ok(data.claims),
        Err(err) => Err(match err.kind() {
            jsonwebtoken::errors::ErrorKind::InvalidAlgorithm => ExchangeError::AlgorithmRefused(format!("{alg:?}")),
            jsonwebtoken::errors::ErrorKind::Json(_) | jsonwebtoken::errors::ErrorKind::Base64(_) => {
                ExchangeError::Malformed("a segment does not decode")
            }
            _ => ExchangeError::BadSignature,
        }),
    }
}

/// A NumericDate claim (seconds since the epoch; fractions are dropped).
pub fn seconds(claims: &Value, name: &str) -> Option<i64> {
    let value = claims.get(name)?;
    #[allow(clippy::cast_possible_truncation)]
    value.as_i64().or_else(|| value.as_f64().filter(|f| f.is_finite()).map(|f| f as i64))
}

/// `aud` as a list (RFC 7519 allows a string or an array of strings).
pub fn audiences(claims: &Value) -> Vec<String> {
    match claims.get("aud") {
        Some(Value::String(s)) => vec![s.clone()],
        Some(Value::Array(items)) => items.iter().filter_map(Value::as_str).map(str::to_owned).collect(),
        _ => Vec::new(),
    }
}

/// A string claim.
pub fn string<'a>(claims: &'a Value, name: &str) -> Option<&'a str> {
    claims.get(name).and_then(Value::as_str)
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine;

    fn token(header: &str, claims: &str) -> String {
        let e = |s: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s);
        format!("{}.{}.c2ln", e(header), e(claims))
    }

    #[test]
    fn none_and_hmac_are_refused_before_any_key_is_chosen() {
        for alg in ["none", "NONE", "HS256", "hs512"] {
            let t = token(&format!(r#"{{"alg":"{alg}"}}"#), r#"{"iss":"x"}"#);
            assert!(matches!(peek(&t), Err(ExchangeError::AlgorithmRefused(_))), "{alg}");
        }
        let ok = peek(&token(r#"{"alg":"ES256","kid":"k1"}"#, r#"{"iss":"https://idp"}"#)).unwrap();
        assert_eq!(
            (ok.alg.as_str(), ok.kid.as_deref(), ok.issuer.as_deref()),
            ("ES256", Some("k1"), Some("https://idp"))
        );
    }

    #[test]
    fn malformed_tokens_say_why() {
        assert!(matches!(peek("a.b"), Err(ExchangeError::Malformed(_))));
        assert!(matches!(peek("a.b.c.d"), Err(ExchangeError::Malformed(_))));
        assert!(matches!(peek(&token("[1]", "{}")), Err(ExchangeError::Malformed(_))));
        assert!(matches!(peek(&token(r#"{"typ":"JWT"}"#, "{}")), Err(ExchangeError::Malformed(_))));
        assert!(matches!(peek(&token(r#"{"alg":"ES256","crit":["b64"]}"#, "{}")), Err(ExchangeError::Malformed(_))));
        assert!(matches!(peek(&"a".repeat(MAX_TOKEN_LEN + 1)), Err(ExchangeError::Malformed(_))));
    }

    #[test]
    fn only_configured_algorithms_are_accepted() {
        assert_eq!(accepted("ES256", &[Algorithm::ES256]).unwrap(), Algorithm::ES256);
        assert!(accepted("RS256", &[Algorithm::ES256]).is_err());
        assert!(accepted("XX999", &[Algorithm::ES256]).is_err());
    }

    #[test]
    fn claims_are_read_leniently_but_typed() {
        let c = serde_json::json!({"exp": 10, "iat": 5.9, "aud": ["a", 3, "b"], "nbf": "soon"});
        assert_eq!(seconds(&c, "exp"), Some(10));
        assert_eq!(seconds(&c, "iat"), Some(5));
        assert_eq!(seconds(&c, "nbf"), None);
        assert_eq!(audiences(&c), vec!["a", "b"]);
        assert_eq!(audiences(&serde_json::json!({"aud": "x"})), vec!["x"]);
    }
}
