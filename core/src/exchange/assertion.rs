//! Headless workers' assertions: the "privileged worker" of Auth0's Token
//! Vault, for an MCP server's background jobs that run with no user present.
//!
//! The worker signs a short JWT with a private key whose public half was
//! registered for its API client (`gateway clients update NAME
//! --assertion-key-file key.jwk`):
//!
//! ```json
//! {"iss": "<client name>", "sub": "<user email>", "aud": "<gateway public URL>",
//!  "iat": 1764547200, "exp": 1764547230, "jti": "<unique>", "audit_context": "nightly digest"}
//! ```
//!
//! It lives at most [`MAX_LIFETIME`], its `jti` is accepted once (recorded in
//! the database, so across replicas), and its `audit_context` — why the job
//! needs the user's token — goes into the audit log with the exchange. The
//! user is named by the worker, not proven by an IdP: this is a right the
//! operator grants a client by registering its key, and every use is audited.

use std::time::Duration;

use chrono::{DateTime, Utc};
use jsonwebtoken::jwk::Jwk;
use serde_json::Value;

use super::issuers::{PublishedKey, usable};
use super::{ExchangeError, VerifiedUser, Via, jwt};
use crate::access::Client;
use crate::email::Email;

/// The longest an assertion may live (`exp - iat`), and the oldest it may be.
pub const MAX_LIFETIME: Duration = Duration::from_secs(60);
/// Tolerated clock difference between the worker and the gateway.
pub const CLOCK_SKEW: Duration = Duration::from_secs(5);
/// Longer `jti` or `audit_context` values are refused.
pub const MAX_JTI_LEN: usize = 255;
pub const MAX_AUDIT_CONTEXT_LEN: usize = 500;

/// A client's registered public key.
#[derive(Clone, Debug)]
pub struct AssertionKey {
    key: PublishedKey,
    /// The JWK as registered (public members only).
    pub jwk: Value,
}

/// Why a key file cannot be registered.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum AssertionKeyError {
    #[error("the key is not a JSON Web Key")]
    NotJwk,
    #[error("the key holds private members (d, p, q, ...); register the public half only")]
    Private,
    #[error("the key is not an asymmetric signing key (EC P-256/P-384, Ed25519 or RSA)")]
    NotSigningKey,
    #[error("the key must state its alg (ES256, ES384, EdDSA, RS256, PS256, ...)")]
    NoAlgorithm,
}

/// JWK members that only a private (or symmetric) key has.
const PRIVATE_MEMBERS: [&str; 7] = ["d", "p", "q", "dp", "dq", "qi", "k"];

impl AssertionKey {
    /// Parses and checks a public JWK for registration.
    pub fn parse(text: &str) -> Result<Self, AssertionKeyError> {
        let value: Value = serde_json::from_str(text).map_err(|_| AssertionKeyError::NotJwk)?;
        let Some(members) = value.as_object() else { return Err(AssertionKeyError::NotJwk) };
        if PRIVATE_MEMBERS.iter().any(|m| members.contains_key(*m)) {
            return Err(AssertionKeyError::Private);
        }
        let jwk: Jwk = serde_json::from_value(value.clone()).map_err(|_| AssertionKeyError::NotJwk)?;
        let key = usable(&jwk).ok_or(AssertionKeyError::NotSigningKey)?;
        if key.alg.is_none() {
            return Err(AssertionKeyError::NoAlgorithm);
        }
        Ok(Self { key, jwk: value })
    }

    /// The JWK as stored.
    pub fn to_json(&self) -> String {
        self.jwk.to_string()
    }
}

/// A verified assertion: the user, and the `jti` to record before trusting it.
#[derive(Debug)]
pub struct Assertion {
    pub user: VerifiedUser,
    pub jti: String,
    pub expires_at: DateTime<Utc>,
}

/// Whether `token` claims to be `client`'s own assertion (its `iss` is the
/// client's name); only then is [`verify`] the check to make.
pub fn claims_to_be_from(client: &Client, token: &str) -> bool {
    client.assertion_key.is_some() && jwt::peek(token).ok().and_then(|p| p.issuer).as_deref() == Some(&client.name)
}

/// Verifies `client`'s worker assertion. `audiences` are the values `aud`
/// may take (the gateway's public URL and its token endpoint). The caller
/// must still record the `jti` (single use) before trusting the result.
pub fn verify(
    client: &Client,
    token: &str,
    audiences: &[String],
    now: DateTime<Utc>,
) -> Result<Assertion, ExchangeError> {
    let key = client
        .assertion_key
        .as_deref()
        .and_then(|text| AssertionKey::parse(text).ok())
        .ok_or_else(|| ExchangeError::UntrustedIssuer(client.name.clone()))?;
    let peeked = jwt::peek(token)?;
    let alg = key.key.alg.ok_or(ExchangeError::AlgorithmRefused(peeked.alg.clone()))?;
    jwt::accepted(&peeked.alg, &[alg])?;
    let claims = jwt::verify(token, &key.key.decoding, alg)?;
    if jwt::string(&claims, "iss") != Some(client.name.as_str()) {
        return Err(ExchangeError::UntrustedIssuer(super::excerpt(jwt::string(&claims, "iss").unwrap_or_default())));
    }
    let audience = jwt::audiences(&claims)
        .into_iter()
        .find(|a| audiences.iter().any(|mine| mine.trim_end_matches('/') == a.trim_end_matches('/')))
        .ok_or_else(|| ExchangeError::WrongAudience(client.name.clone()))?;
    let iat = jwt::seconds(&claims, "iat").ok_or(ExchangeError::MissingClaim("iat"))?;
    let exp = jwt::seconds(&claims, "exp").ok_or(ExchangeError::MissingClaim("exp"))?;
    check_times(iat, exp, now.timestamp())?;
    let jti = jwt::string(&claims, "jti").filter(|j| !j.is_empty()).ok_or(ExchangeError::MissingClaim("jti"))?;
    if jti.len() > MAX_JTI_LEN {
        return Err(ExchangeError::Malformed("the jti is longer than 255 bytes"));
    }
    let context = jwt::string(&claims, "audit_context")
        .map(str::trim)
        .filter(|c| !c.is_empty())
        .ok_or(ExchangeError::MissingClaim("audit_context"))?;
    if context.len() > MAX_AUDIT_CONTEXT_LEN {
        return Err(ExchangeError::Malformed("the audit_context is longer than 500 bytes"));
    }
    let subject = jwt::string(&claims, "sub").ok_or(ExchangeError::MissingClaim("sub"))?;
    let email = Email::parse(subject).map_err(|_| ExchangeError::InvalidEmail("sub".to_owned()))?;
    let skew = i64::try_from(CLOCK_SKEW.as_secs()).unwrap_or(0);
    let expires_at = DateTime::from_timestamp(exp.saturating_add(skew), 0).unwrap_or(now);
    Ok(Assertion {
        user: VerifiedUser {
            email,
            issuer: client.name.clone(),
            subject: subject.to_owned(),
            audience,
            via: Via::Worker {
                jti: jti.to_owned(),
                audit_context: context.chars().filter(|c| !c.is_control()).collect(),
            },
        },
        jti: jti.to_owned(),
        expires_at,
    })
}

/// An assertion's lifetime and age at `now` (seconds since the epoch).
fn check_times(iat: i64, exp: i64, now: i64) -> Result<(), ExchangeError> {
    let skew = i64::try_from(CLOCK_SKEW.as_secs()).unwrap_or(0);
    let max = i64::try_from(MAX_LIFETIME.as_secs()).unwrap_or(60);
    if exp.saturating_sub(iat) > max {
        return Err(ExchangeError::AssertionLifetime);
    }
    if now.saturating_sub(iat) > max.saturating_add(skew) {
        return Err(ExchangeError::AssertionTooOld);
    }
    if iat > now.saturating_add(skew) {
        return Err(ExchangeError::NotYetValid);
    }
    if now >= exp.saturating_add(skew) {
        return Err(ExchangeError::Expired);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const EC: &str = r#"{"kty":"EC","crv":"P-256","alg":"ES256","kid":"w1",
        "x":"f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU","y":"x_FEzRjGHbsbHQx0bi9Rr4YLdsEX7xb5uUmd8kx5oqo"}"#;

    #[test]
    fn only_public_asymmetric_keys_with_an_alg_register() {
        let key = AssertionKey::parse(EC).unwrap();
        assert_eq!(serde_json::from_str::<Value>(&key.to_json()).unwrap()["kid"], "w1", "stored as given");
        let private = EC.replace(r#""kid":"w1","#, r#""kid":"w1","d":"secret","#);
        assert_eq!(AssertionKey::parse(&private).unwrap_err(), AssertionKeyError::Private);
        assert_eq!(
            AssertionKey::parse(r#"{"kty":"oct","k":"c2VjcmV0","alg":"HS256"}"#).unwrap_err(),
            AssertionKeyError::Private
        );
        assert_eq!(
            AssertionKey::parse(&EC.replace(r#""alg":"ES256","#, "")).unwrap_err(),
            AssertionKeyError::NoAlgorithm
        );
        assert_eq!(AssertionKey::parse("not json").unwrap_err(), AssertionKeyError::NotJwk);
        assert_eq!(AssertionKey::parse("[1]").unwrap_err(), AssertionKeyError::NotJwk);
        let enc = EC.replace(r#""alg":"ES256""#, r#""alg":"ES256","use":"enc""#);
        assert_eq!(AssertionKey::parse(&enc).unwrap_err(), AssertionKeyError::NotSigningKey);
    }

    #[test]
    fn an_assertion_lives_at_most_60_seconds_within_5_seconds_of_skew() {
        let now = 1_000_000;
        let reason = |iat, exp| check_times(iat, exp, now).err().map(|e| e.reason());
        assert_eq!(reason(now, now + 60), None, "exactly 60 s of life");
        assert_eq!(reason(now, now + 61), Some("assertion_lifetime"));
        assert_eq!(reason(now - 60, now - 1), None, "expired a second ago: within the skew it still counts");
        assert_eq!(reason(now - 59, now - 4), None, "expired 4 s ago: within the 5 s skew");
        assert_eq!(reason(now - 60, now - 5), Some("expired"), "expired 5 s ago: past the skew");
        assert_eq!(reason(now - 65, now - 5), Some("expired"), "65 s old: refused for its exp first");
        assert_eq!(reason(now - 66, now - 6), Some("assertion_too_old"));
        assert_eq!(reason(now + 5, now + 30), None, "issued 5 s ahead: within the skew");
        assert_eq!(reason(now + 6, now + 30), Some("not_yet_valid"));
    }

    #[test]
    fn a_token_claims_to_be_the_clients_by_its_issuer() {
        use base64::Engine;
        let e = |v: Value| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string());
        let token = format!("{}.{}.sig", e(json!({"alg": "ES256"})), e(json!({"iss": "mail-worker"})));
        let mut client = crate::access::Client::bootstrap();
        client.name = "mail-worker".into();
        assert!(!claims_to_be_from(&client, &token), "no key registered");
        client.assertion_key = Some(EC.to_owned());
        assert!(claims_to_be_from(&client, &token));
        client.name = "other".into();
        assert!(!claims_to_be_from(&client, &token));
    }
}
