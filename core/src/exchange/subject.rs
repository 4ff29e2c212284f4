//! An identity provider's token, checked into the user it proves.
//!
//! In order: the algorithm (asymmetric and configured for the issuer), the
//! issuer (trusted, exactly), the key (`kid`, published by that issuer, of
//! the token's algorithm), the signature, then — on the verified claims only
//! — the audience (one the *calling client* registered: one MCP server cannot
//! replay another's user tokens), `exp`, `nbf`, the token's age, and the
//! email (the configured claim, verified unless the operator said otherwise).
//!
//! An MCP server presents the same access token on every tool call, so a
//! token that passed is remembered ([`Verified`], keyed by the client and the
//! token's SHA-256) for at most [`REMEMBER_FOR`]: a repeat costs a hash and
//! the time checks, not a signature verification. Refusals are never
//! remembered, and the audience is checked again against the client's
//! current list.

use chrono::{DateTime, Utc};
use serde_json::Value;

use std::collections::HashMap;

use super::issuers::{IssuerConfig, Issuers, TrustedIssuer};
use super::{ExchangeError, VerifiedUser, Via, excerpt, jwt};
use crate::access::Client;
use crate::email::Email;

/// How long a verified token is remembered (never past its `exp`).
pub const REMEMBER_FOR: std::time::Duration = std::time::Duration::from_secs(300);
/// Verified tokens remembered at most; past it, the expired are dropped, then all.
const REMEMBER_AT_MOST: usize = 100_000;

/// The time claims of a verified token, checked again on every use.
#[derive(Clone, Copy, Debug)]
struct Times {
    exp: i64,
    nbf: Option<i64>,
    iat: Option<i64>,
}

#[derive(Clone, Debug)]
struct Remembered {
    user: VerifiedUser,
    times: Times,
    issuer: std::sync::Arc<TrustedIssuer>,
    until: i64,
}

/// Tokens that passed, by SHA-256 of (client id, token).
#[derive(Debug, Default)]
pub struct Verified {
    map: std::sync::RwLock<HashMap<[u8; 32], Remembered>>,
}

impl Verified {
    fn key(client: &Client, token: &str) -> [u8; 32] {
        use sha2::Digest;
        let mut h = sha2::Sha256::new();
        h.update(client.id.as_bytes());
        h.update([0]);
        h.update(token.as_bytes());
        h.finalize().into()
    }

    fn get(&self, key: &[u8; 32]) -> Option<Remembered> {
        self.map.read().ok()?.get(key).cloned()
    }

    fn put(&self, key: [u8; 32], entry: Remembered, now: i64) {
        let Ok(mut map) = self.map.write() else { return };
        if map.len() >= REMEMBER_AT_MOST {
            map.retain(|_, e| e.until > now);
            if map.len() >= REMEMBER_AT_MOST {
                map.clear();
            }
        }
        map.insert(key, entry);
    }
}

/// Verifies `token` as an access token (or id_token) of a trusted issuer,
/// issued for the MCP server `client` stands for.
pub async fn verify(
    issuers: &Issuers,
    client: &Client,
    token: &str,
    now: DateTime<Utc>,
) -> Result<VerifiedUser, ExchangeError> {
    let key = Verified::key(client, token);
    if let Some(hit) = issuers.verified.get(&key)
        && hit.until > now.timestamp()
    {
        // The client may have dropped the audience since.
        if !client.audiences.contains(&hit.user.audience) {
            return Err(ExchangeError::WrongAudience(client.name.clone()));
        }
        check_times(&hit.issuer.config, hit.times, now)?;
        return Ok(hit.user);
    }
    let (user, times, issuer) = verify_signed(issuers, client, token, now).await?;
    let until = times.exp.min(now.timestamp() + i64::try_from(REMEMBER_FOR.as_secs()).unwrap_or(300));
    issuers.verified.put(key, Remembered { user: user.clone(), times, issuer, until }, now.timestamp());
    Ok(user)
}

async fn verify_signed(
    issuers: &Issuers,
    client: &Client,
    token: &str,
    now: DateTime<Utc>,
) -> Result<(VerifiedUser, Times, std::sync::Arc<TrustedIssuer>), ExchangeError> {
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
    let (user, times) = check_claims(issuer, client, &claims, now)?;
    Ok((user, times, issuer.clone()))
}

/// Every check made on verified claims.
fn check_claims(
    issuer: &TrustedIssuer,
    client: &Client,
    claims: &Value,
    now: DateTime<Utc>,
) -> Result<(VerifiedUser, Times), ExchangeError> {
    let config = &issuer.config;
    if jwt::string(claims, "iss") != Some(config.issuer.as_str()) {
        return Err(ExchangeError::UntrustedIssuer(excerpt(jwt::string(claims, "iss").unwrap_or_default())));
    }
    let audience = jwt::audiences(claims)
        .into_iter()
        .find(|a| client.audiences.iter().any(|mine| mine == a))
        .ok_or_else(|| ExchangeError::WrongAudience(client.name.clone()))?;
    let times = Times {
        exp: jwt::seconds(claims, "exp").ok_or(ExchangeError::MissingClaim("exp"))?,
        nbf: jwt::seconds(claims, "nbf"),
        iat: jwt::seconds(claims, "iat"),
    };
    check_times(config, times, now)?;
    let subject = jwt::string(claims, "sub").ok_or(ExchangeError::MissingClaim("sub"))?;
    let raw_email = jwt::string(claims, &config.email_claim).ok_or(ExchangeError::MissingClaim("email"))?;
    let email = Email::parse(raw_email).map_err(|_| ExchangeError::InvalidEmail(config.email_claim.clone()))?;
    if config.require_verified_email && !crate::oauth::identity::asserts_verified(claims.get("email_verified")) {
        return Err(ExchangeError::UnverifiedEmail);
    }
    let user = VerifiedUser {
        email,
        issuer: config.issuer.clone(),
        subject: subject.to_owned(),
        audience,
        via: Via::IdentityProvider(config.id.clone()),
    };
    Ok((user, times))
}

/// `exp`, `nbf` and the token's age against `now`, within the issuer's skew.
fn check_times(config: &IssuerConfig, times: Times, now: DateTime<Utc>) -> Result<(), ExchangeError> {
    let now = now.timestamp();
    let skew = i64::try_from(config.clock_skew.as_secs()).unwrap_or(i64::MAX);
    if now >= times.exp.saturating_add(skew) {
        return Err(ExchangeError::Expired);
    }
    if let Some(nbf) = times.nbf
        && now.saturating_add(skew) < nbf
    {
        return Err(ExchangeError::NotYetValid);
    }
    if let Some(max_age) = config.max_token_age {
        let iat = times.iat.ok_or(ExchangeError::MissingClaim("iat"))?;
        let max = i64::try_from(max_age.as_secs()).unwrap_or(i64::MAX);
        if now.saturating_sub(iat) > max.saturating_add(skew) {
            return Err(ExchangeError::TooOld(max_age.as_secs()));
        }
        if iat > now.saturating_add(skew) {
            return Err(ExchangeError::NotYetValid);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::exchange::issuers::JwksSource;

    fn config(skew: u64, max_age: Option<u64>) -> IssuerConfig {
        IssuerConfig {
            id: "corp".into(),
            issuer: "https://idp.example.com".into(),
            jwks: JwksSource::Discovery,
            algorithms: vec![jsonwebtoken::Algorithm::ES256],
            clock_skew: Duration::from_secs(skew),
            max_token_age: max_age.map(Duration::from_secs),
            email_claim: "email".into(),
            require_verified_email: true,
            jwks_refetch_interval: Duration::from_secs(30),
        }
    }

    fn at(seconds: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(seconds, 0).unwrap()
    }

    #[test]
    fn times_are_checked_to_the_second_within_the_skew() {
        let now = 1_000_000;
        let reason = |config: &IssuerConfig, exp, nbf, iat| {
            check_times(config, Times { exp, nbf, iat }, at(now)).err().map(|e| e.reason())
        };
        let strict = config(0, Some(600));
        assert_eq!(reason(&strict, now + 1, None, Some(now)), None);
        assert_eq!(reason(&strict, now, None, Some(now)), Some("expired"), "exp is the first invalid second");
        assert_eq!(reason(&strict, now + 60, Some(now), Some(now)), None, "valid from nbf on");
        assert_eq!(reason(&strict, now + 60, Some(now + 1), Some(now)), Some("not_yet_valid"));
        assert_eq!(reason(&strict, now + 60, None, Some(now - 600)), None, "exactly the maximum age");
        assert_eq!(reason(&strict, now + 60, None, Some(now - 601)), Some("too_old"));
        assert_eq!(reason(&strict, now + 60, None, Some(now + 1)), Some("not_yet_valid"), "issued in the future");
        assert_eq!(reason(&strict, now + 60, None, None), Some("missing_claim"), "the age needs iat");

        let lenient = config(30, None);
        assert_eq!(reason(&lenient, now - 29, None, None), None, "expired within the skew");
        assert_eq!(reason(&lenient, now - 30, None, None), Some("expired"));
        assert_eq!(reason(&lenient, now + 60, Some(now + 30), None), None, "nbf within the skew");
        assert_eq!(reason(&lenient, now + 60, Some(now + 31), None), Some("not_yet_valid"));
        assert_eq!(reason(&lenient, now + 60, None, Some(now - 10_000_000)), None, "no age limit");
    }

    fn remembered(until: i64) -> Remembered {
        let user = VerifiedUser {
            email: crate::email::Email::parse("alice@company.com").unwrap(),
            issuer: "https://idp.example.com".into(),
            subject: "00u1".into(),
            audience: "api://mail".into(),
            via: Via::IdentityProvider("corp".into()),
        };
        let issuer = Issuers::new(&[config(0, None)], crate::oauth::OAuthClient::new(Duration::from_secs(1)).unwrap());
        let issuer = issuer.get("https://idp.example.com").unwrap().clone();
        Remembered { user, times: Times { exp: until, nbf: None, iat: None }, issuer, until }
    }

    #[test]
    fn a_verified_token_is_remembered_per_client_and_token() {
        let verified = Verified::default();
        let mut client = Client::bootstrap();
        let key = Verified::key(&client, "token-a");
        assert!(verified.get(&key).is_none());
        verified.put(key, remembered(2_000), 1_000);
        assert_eq!(verified.get(&key).map(|r| r.user.subject), Some("00u1".to_owned()));
        assert!(verified.get(&Verified::key(&client, "token-b")).is_none(), "another token");
        client.id = "other-client".into();
        assert!(verified.get(&Verified::key(&client, "token-a")).is_none(), "the same token, another client");
    }

    #[test]
    fn a_full_memory_drops_the_expired_first_then_everything() {
        let verified = Verified::default();
        let client = Client::bootstrap();
        for i in 0..REMEMBER_AT_MOST - 1 {
            verified.put(Verified::key(&client, &format!("old-{i}")), remembered(500), 100);
        }
        let live = Verified::key(&client, "live");
        verified.put(live, remembered(5_000), 100);
        assert_eq!(verified.map.read().unwrap().len(), REMEMBER_AT_MOST);
        // Full: the next one first drops what has expired by now (1 000); the live entry stays.
        verified.put(Verified::key(&client, "new"), remembered(5_000), 1_000);
        assert_eq!(verified.map.read().unwrap().len(), 2);
        assert!(verified.get(&live).is_some());
        // Full of live entries: all are forgotten (they are verified again on next use).
        let verified = Verified::default();
        for i in 0..REMEMBER_AT_MOST {
            verified.put(Verified::key(&client, &format!("live-{i}")), remembered(5_000), 1_000);
        }
        verified.put(Verified::key(&client, "one-more"), remembered(5_000), 1_000);
        assert_eq!(verified.map.read().unwrap().len(), 1);
    }
}
