//! An identity provider's token, checked into the user it proves.
//!
//! In order: the algorithm (asymmetric and configured for the issuer), the
//! issuer (trusted, exactly), the key (`kid`, published by that issuer, of
//! the token's algorithm), the signature, then — on the verified claims only
//! — the audience (one the *calling client* registered: one MCP server cannot
//! replay another's user tokens), `exp`, `nbf`, the token's age, and the
//! email (the configured claim, verified unless the operator said otherwise).

use chrono::{DateTime, Utc};
use serde_json::Value;

use super::issuers::{Issuers, TrustedIssuer};
use super::{ExchangeError, VerifiedUser, Via, excerpt, jwt};
use crate::access::Client;
use crate::email::Email;

/// Verifies `token` as an access token (or id_token) of a trusted issuer,
/// issued for the MCP server `client` stands for.
pub async fn verify(
    issuers: &Issuers,
    client: &Client,
    token: &str,
    now: DateTime<Utc>,
) -> Result<VerifiedUser, ExchangeError> {
    let peeked = jwt::peek(token)?;
    let iss = peeked.issuer.as_deref().ok_or(ExchangeError::MissingClaim("iss"))?;
    let issuer = issuers.get(iss).ok_or_else(|| ExchangeError::UntrustedIssuer(excerpt(iss)))?;
    let alg = jwt::accepted(&peeked.alg, &issuer.config.algorithms)?;
    // Before any network: a client that registered no audience can accept no token.
    if client.audiences.is_empty() {
        return Err(ExchangeError::NoAudienceRegistered(client.name.clone()));
    }
    let kid = peeked.kid.as_deref().ok_or(ExchangeError::Malformed("the header has no kid"))?;
    let key = issuers.key(issuer, kid).await?;
    if key.alg.is_some_and(|a| a != alg) {
        return Err(ExchangeError::AlgorithmRefused(peeked.alg));
    }
    let claims = jwt::verify(token, &key.decoding, alg)?;
    check_claims(issuer, client, &claims, now)
}

/// Every check made on verified claims.
fn check_claims(
    issuer: &TrustedIssuer,
    client: &Client,
    claims: &Value,
    now: DateTime<Utc>,
) -> Result<VerifiedUser, ExchangeError> {
    let config = &issuer.config;
    if jwt::string(claims, "iss") != Some(config.issuer.as_str()) {
        return Err(ExchangeError::UntrustedIssuer(excerpt(jwt::string(claims, "iss").unwrap_or_default())));
    }
    let audience = jwt::audiences(claims)
        .into_iter()
        .find(|a| client.audiences.iter().any(|mine| mine == a))
        .ok_or_else(|| ExchangeError::WrongAudience(client.name.clone()))?;
    let now = now.timestamp();
    let skew = i64::try_from(config.clock_skew.as_secs()).unwrap_or(i64::MAX);
    let exp = jwt::seconds(claims, "exp").ok_or(ExchangeError::MissingClaim("exp"))?;
    if now >= exp.saturating_add(skew) {
        return Err(ExchangeError::Expired);
    }
    if let Some(nbf) = jwt::seconds(claims, "nbf")
        && now.saturating_add(skew) < nbf
    {
        return Err(ExchangeError::NotYetValid);
    }
    if let Some(max_age) = config.max_token_age {
        let iat = jwt::seconds(claims, "iat").ok_or(ExchangeError::MissingClaim("iat"))?;
        let max = i64::try_from(max_age.as_secs()).unwrap_or(i64::MAX);
        if now.saturating_sub(iat) > max.saturating_add(skew) {
            return Err(ExchangeError::TooOld(max_age.as_secs()));
        }
        if iat > now.saturating_add(skew) {
            return Err(ExchangeError::NotYetValid);
        }
    }
    let subject = jwt::string(claims, "sub").ok_or(ExchangeError::MissingClaim("sub"))?;
    let raw_email = jwt::string(claims, &config.email_claim).ok_or(ExchangeError::MissingClaim("email"))?;
    let email = Email::parse(raw_email).map_err(|_| ExchangeError::InvalidEmail(config.email_claim.clone()))?;
    if config.require_verified_email && !crate::oauth::identity::asserts_verified(claims.get("email_verified")) {
        return Err(ExchangeError::UnverifiedEmail);
    }
    Ok(VerifiedUser {
        email,
        issuer: config.issuer.clone(),
        subject: subject.to_owned(),
        audience,
        via: Via::IdentityProvider(config.id.clone()),
    })
}
