//! The trusted identity providers and their signing keys.
//!
//! Each issuer's JWKS is fetched on first use (from `IDP_<ID>_JWKS_URL`, or
//! the `jwks_uri` of its OIDC discovery document) and cached. The cache is
//! refreshed when it is older than [`KEYS_MAX_AGE`], and when a token names a
//! `kid` it does not hold — key rotation — but such a refetch happens at most
//! once per `jwks_refetch_interval`, so a flood of tokens with made-up `kid`s
//! costs the IdP one request, not one per token. A failed fetch keeps the keys
//! already held; with none held (a cold cache and an unreachable IdP) the
//! exchange answers 503 until the next attempt is allowed.
//!
//! One fetch runs at a time per issuer (concurrent cold requests wait for it
//! instead of each fetching); the warm path takes only a read lock.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use jsonwebtoken::jwk::{Jwk, KeyAlgorithm, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey};
use serde_json::Value;
use url::Url;

use super::ExchangeError;
use crate::oauth::OAuthClient;

/// Keys older than this are fetched again on next use.
pub const KEYS_MAX_AGE: Duration = Duration::from_secs(3600);

/// Where an issuer's keys come from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum JwksSource {
    /// `<issuer>/.well-known/openid-configuration`'s `jwks_uri`.
    Discovery,
    Url(Url),
}

/// One trusted identity provider, as configured.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IssuerConfig {
    /// The name in `AUTH_GATEWAY_TRUSTED_ISSUERS`.
    pub id: String,
    /// The exact `iss` of its tokens.
    pub issuer: String,
    pub jwks: JwksSource,
    /// Asymmetric algorithms only (config refuses `none` and `HS*`).
    pub algorithms: Vec<Algorithm>,
    pub clock_skew: Duration,
    /// `None`: tokens are not refused for their age (only for `exp`).
    pub max_token_age: Option<Duration>,
    /// The claim holding the user's email (`email`, or `upn`/`preferred_username`).
    pub email_claim: String,
    /// Whether `email_verified` must be `true`.
    pub require_verified_email: bool,
    /// The least time between two fetches caused by an unknown `kid` or a failure.
    pub jwks_refetch_interval: Duration,
}

/// A published key, ready to verify with.
#[derive(Clone)]
pub(crate) struct PublishedKey {
    pub(crate) decoding: DecodingKey,
    /// The JWK's `alg`, when it states one: a token must then use exactly it.
    pub(crate) alg: Option<Algorithm>,
}

impl std::fmt::Debug for PublishedKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PublishedKey").field("alg", &self.alg).finish_non_exhaustive()
    }
}

/// A JWK's `alg` as a JWS algorithm (`None` for encryption algorithms and HMAC).
pub(crate) fn signing_alg(alg: KeyAlgorithm) -> Option<Algorithm> {
    Some(match alg {
        KeyAlgorithm::RS256 => Algorithm::RS256,
        KeyAlgorithm::RS384 => Algorithm::RS384,
        KeyAlgorithm::RS512 => Algorithm::RS512,
        KeyAlgorithm::PS256 => Algorithm::PS256,
        KeyAlgorithm::PS384 => Algorithm::PS384,
        KeyAlgorithm::PS512 => Algorithm::PS512,
        KeyAlgorithm::ES256 => Algorithm::ES256,
        KeyAlgorithm::ES384 => Algorithm::ES384,
        KeyAlgorithm::EdDSA => Algorithm::EdDSA,
        _ => return None,
    })
}

/// The usable signing keys of a JWKS, by `kid`. Keys without a `kid`, for
/// encryption, symmetric (`oct`) or not understood are skipped one by one: a
/// key of a type we do not know must not hide the others.
pub(crate) fn parse_jwks(body: &Value) -> HashMap<String, PublishedKey> {
    let mut out = HashMap::new();
    for raw in body.get("keys").and_then(Value::as_array).into_iter().flatten() {
        let Ok(jwk) = serde_json::from_value::<Jwk>(raw.clone()) else { continue };
        if let Some(key) = usable(&jwk)
            && let Some(kid) = jwk.common.key_id.clone()
        {
            out.insert(kid, key);
        }
    }
    out
}

/// A public signing key from a JWK, or `None` if it is not one.
pub(crate) fn usable(jwk: &Jwk) -> Option<PublishedKey> {
    if matches!(jwk.common.public_key_use, Some(PublicKeyUse::Encryption)) {
        return None;
    }
    if matches!(jwk.algorithm, jsonwebtoken::jwk::AlgorithmParameters::OctetKey(_)) {
        return None;
    }
    let alg = match jwk.common.key_algorithm {
        Some(a) => Some(signing_alg(a)?),
        None => None,
    };
    let decoding = DecodingKey::from_jwk(jwk).ok()?;
    Some(PublishedKey { decoding, alg })
}

/// What `/health` says about an issuer (no key material).
#[derive(Clone, Debug)]
pub struct IssuerHealth {
    pub id: String,
    pub issuer: String,
    /// Signing keys held.
    pub keys: usize,
    /// Seconds since the keys were fetched, if ever.
    pub keys_age_seconds: Option<u64>,
    /// Whether the last fetch failed.
    pub last_fetch_failed: bool,
}

#[derive(Debug, Default)]
struct Cache {
    keys: Arc<HashMap<String, PublishedKey>>,
    fetched_at: Option<Instant>,
    /// When a fetch was last attempted because of a miss or after a failure.
    last_forced: Option<Instant>,
    last_failed: bool,
    /// The discovered `jwks_uri`, once known.
    jwks_url: Option<Url>,
}

/// One trusted issuer: its configuration and its key cache.
#[derive(Debug)]
pub struct TrustedIssuer {
    pub config: IssuerConfig,
    cache: RwLock<Cache>,
    /// Held while fetching: one fetch at a time.
    fetching: tokio::sync::Mutex<()>,
}

/// Every trusted issuer, by `iss`.
#[derive(Debug)]
pub struct Issuers {
    by_issuer: HashMap<String, Arc<TrustedIssuer>>,
    http: OAuthClient,
    /// Tokens that passed every check, remembered briefly.
    pub(crate) verified: super::subject::Verified,
}

impl Issuers {
    pub fn new(configs: &[IssuerConfig], http: OAuthClient) -> Self {
        let by_issuer = configs
            .iter()
            .map(|c| {
                let issuer = TrustedIssuer {
                    config: c.clone(),
                    cache: RwLock::new(Cache::default()),
                    fetching: tokio::sync::Mutex::new(()),
                };
                (c.issuer.clone(), Arc::new(issuer))
            })
            .collect();
        Self { by_issuer, http, verified: super::subject::Verified::default() }
    }

    pub fn is_empty(&self) -> bool {
        self.by_issuer.is_empty()
    }

    /// The issuer whose tokens carry `iss`.
    pub fn get(&self, iss: &str) -> Option<&Arc<TrustedIssuer>> {
        self.by_issuer.get(iss)
    }

    /// The key `kid` of `issuer`, fetching the JWKS when it is cold, stale,
    /// or lacks `kid` (subject to the refetch interval).
    pub(crate) async fn key(&self, issuer: &TrustedIssuer, kid: &str) -> Result<PublishedKey, ExchangeError> {
        if let Some(key) = issuer.fresh_key(kid) {
            return Ok(key);
        }
        let _one_fetch = issuer.fetching.lock().await;
        // Another request may have fetched while this one waited.
        if let Some(key) = issuer.fresh_key(kid) {
            return Ok(key);
        }
        if let Some(why) = issuer.fetch_due() {
            self.refresh(issuer, why).await;
        }
        let cache = issuer.read();
        match cache.keys.get(kid) {
            Some(key) => Ok(key.clone()),
            None if cache.fetched_at.is_none() => Err(ExchangeError::IssuerUnavailable {
                issuer: issuer.config.id.clone(),
                retry_after_secs: issuer.config.jwks_refetch_interval.as_secs().max(1),
            }),
            None => Err(ExchangeError::UnknownKey),
        }
    }

    /// Fetches the JWKS once; on failure keeps the keys already held.
    async fn refresh(&self, issuer: &TrustedIssuer, why: Fetch) {
        let fetched = self.fetch(issuer).await;
        let mut cache = issuer.write();
        if why == Fetch::Forced || fetched.is_err() {
            cache.last_forced = Some(Instant::now());
        }
        match fetched {
            Ok((keys, url)) => {
                metrics::counter!(crate::telemetry::metrics::JWKS_FETCHES, "issuer" => issuer.config.id.clone(), "outcome" => "ok")
                    .increment(1);
                cache.keys = Arc::new(keys);
                cache.fetched_at = Some(Instant::now());
                cache.jwks_url = Some(url);
                cache.last_failed = false;
            }
            Err(reason) => {
                metrics::counter!(crate::telemetry::metrics::JWKS_FETCHES, "issuer" => issuer.config.id.clone(), "outcome" => "failed")
                    .increment(1);
                tracing::warn!(issuer = %issuer.config.id, %reason, "could not fetch the identity provider's signing keys");
                cache.last_failed = true;
            }
        }
    }

    async fn fetch(&self, issuer: &TrustedIssuer) -> Result<(HashMap<String, PublishedKey>, Url), String> {
        let known = issuer.read().jwks_url.clone();
        let url = match (&issuer.config.jwks, known) {
            (JwksSource::Url(url), _) => url.clone(),
            (JwksSource::Discovery, Some(url)) => url,
            (JwksSource::Discovery, None) => self.discover(&issuer.config).await?,
        };
        let body = self.http.get_json(&url).await.map_err(|e| format!("JWKS: {e}"))?;
        Ok((parse_jwks(&body), url))
    }

    /// OIDC Discovery §4: the document must name the same issuer.
    async fn discover(&self, config: &IssuerConfig) -> Result<Url, String> {
        let base = config.issuer.trim_end_matches('/');
        let url = Url::parse(&format!("{base}/.well-known/openid-configuration")).map_err(|e| e.to_string())?;
        let doc = self.http.get_json(&url).await.map_err(|e| format!("discovery: {e}"))?;
        if doc.get("issuer").and_then(Value::as_str) != Some(config.issuer.as_str()) {
            return Err("the discovery document names another issuer".to_owned());
        }
        let jwks = doc.get("jwks_uri").and_then(Value::as_str).ok_or("the discovery document has no jwks_uri")?;
        let jwks = Url::parse(jwks).map_err(|_| "the discovery document's jwks_uri is not a URL".to_owned())?;
        // The key set must be as protected as the issuer itself.
        if jwks.scheme() != "https" && Url::parse(&config.issuer).is_ok_and(|i| i.scheme() == "https") {
            return Err("the discovery document's jwks_uri is not https".to_owned());
        }
        Ok(jwks)
    }

    /// What `/health` reports.
    pub fn health(&self) -> Vec<IssuerHealth> {
        let mut out: Vec<IssuerHealth> = self
            .by_issuer
            .values()
            .map(|i| {
                let cache = i.read();
                IssuerHealth {
                    id: i.config.id.clone(),
                    issuer: i.config.issuer.clone(),
                    keys: cache.keys.len(),
                    keys_age_seconds: cache.fetched_at.map(|t| t.elapsed().as_secs()),
                    last_fetch_failed: cache.last_failed,
                }
            })
            .collect();
        out.sort_by(|a, b| a.id.cmp(&b.id));
        out
    }
}

impl TrustedIssuer {
    fn read(&self) -> std::sync::RwLockReadGuard<'_, Cache> {
        self.cache.read().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Cache> {
        self.cache.write().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// `kid` from keys younger than [`KEYS_MAX_AGE`].
    fn fresh_key(&self, kid: &str) -> Option<PublishedKey> {
        let cache = self.read();
        let fresh = cache.fetched_at.is_some_and(|t| t.elapsed() < KEYS_MAX_AGE);
        if fresh { cache.keys.get(kid).cloned() } else { None }
    }

    /// Why a fetch is due now, if it is: a cold or stale cache fetches at
    /// once (after a failure, once per interval); a miss in a fresh cache —
    /// a `kid` it does not hold — once per interval.
    fn fetch_due(&self) -> Option<Fetch> {
        let cache = self.read();
        let interval_passed = cache.last_forced.is_none_or(|t| t.elapsed() >= self.config.jwks_refetch_interval);
        let stale = cache.fetched_at.is_none_or(|t| t.elapsed() >= KEYS_MAX_AGE);
        match (stale, cache.last_failed, interval_passed) {
            (true, false, _) => Some(Fetch::Scheduled),
            (_, _, true) => Some(Fetch::Forced),
            _ => None,
        }
    }
}

/// Why the JWKS is fetched: forced fetches (a miss, a retry after a failure)
/// are the rate-limited ones.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Fetch {
    Scheduled,
    Forced,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn only_public_signing_keys_with_a_kid_are_kept() {
        let ec = json!({"kty": "EC", "crv": "P-256", "kid": "ec",
            "x": "f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU", "y": "x_FEzRjGHbsbHQx0bi9Rr4YLdsEX7xb5uUmd8kx5oqo"});
        let body = json!({"keys": [
            ec,
            {"kty": "oct", "kid": "hmac", "k": "c2VjcmV0"},
            {"kty": "EC", "crv": "P-256", "x": "f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU",
             "y": "x_FEzRjGHbsbHQx0bi9Rr4YLdsEX7xb5uUmd8kx5oqo"},
            {"kty": "EC", "crv": "P-256", "kid": "enc", "use": "enc",
             "x": "f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU", "y": "x_FEzRjGHbsbHQx0bi9Rr4YLdsEX7xb5uUmd8kx5oqo"},
            {"kty": "AKP", "kid": "future", "alg": "ML-DSA-44", "pub": "AAAA"},
            {"kty": "OKP", "crv": "Ed25519", "kid": "ed", "alg": "EdDSA", "x": "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"},
        ]});
        let keys = parse_jwks(&body);
        let mut kids: Vec<_> = keys.keys().cloned().collect();
        kids.sort();
        assert_eq!(kids, vec!["ec", "ed"]);
        assert_eq!(keys["ed"].alg, Some(Algorithm::EdDSA));
        assert_eq!(keys["ec"].alg, None);
    }

    #[test]
    fn a_jwks_that_is_not_one_yields_no_keys() {
        assert!(parse_jwks(&json!({"keys": "nope"})).is_empty());
        assert!(parse_jwks(&json!({})).is_empty());
    }
}
