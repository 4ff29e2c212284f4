//! The provider's memory and its OAuth rules: codes, grants, tokens, counters and the
//! runtime settings, all behind one mutex.
//!
//! Everything here is synchronous and takes the current time as an argument, so the rules
//! are unit-tested without a server or a clock. Handlers lock [`Shared::store`], call one
//! method and unlock before any `.await`.
//!
//! Model: redeeming a code creates a *grant* (user + client + scopes). Refresh and access
//! tokens belong to a grant. Revoking a refresh token, or replaying a code, revokes the
//! whole grant, which kills every token issued from it (RFC 7009 §2.1, RFC 6749 §4.1.2).

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use url::Url;

use crate::config::{Consent, IdentityClaims, MockConfig};
use crate::counters::Counters;
use crate::error::{ErrorCode, OAuthError};
use crate::faults::FaultQueues;
use crate::jwt::IdTokenClaims;
use crate::tokens::{
    ACCESS_TOKEN_PREFIX, CODE_PREFIX, REFRESH_TOKEN_PREFIX, is_pkce_value, random_token, s256_challenge, subject_for,
};

/// RFC 6749 §4.1.2 recommends at most 10 minutes for authorization codes.
pub(crate) const CODE_TTL: Duration = Duration::from_secs(600);
/// How long an interactive consent page stays answerable.
const PENDING_TTL: Duration = Duration::from_secs(600);
/// id_tokens live one hour, like Google's.
const ID_TOKEN_TTL: Duration = Duration::from_secs(3600);
/// Forget expired and revoked records after this many issued tokens, so long benchmarks do
/// not grow memory without bound. Forgetting is safe: an unknown token is as invalid as an
/// expired one.
const PRUNE_EVERY: u32 = 4096;

/// What the handlers share: the store and the address the server answers on.
#[derive(Debug)]
pub(crate) struct Shared {
    store: Mutex<Store>,
    /// `http://127.0.0.1:PORT`, also the id_token issuer.
    pub(crate) base_url: String,
    /// Copies of the client credentials, which never change, readable without the lock.
    pub(crate) client_id: String,
    pub(crate) client_secret: String,
    /// The test identity provider (its own keys, its own lock).
    pub(crate) idp: crate::idp::Idp,
}

impl Shared {
    pub(crate) fn new(config: MockConfig, base_url: String) -> Self {
        Self {
            client_id: config.client_id.clone(),
            client_secret: config.client_secret.clone(),
            store: Mutex::new(Store::new(config, base_url.clone())),
            base_url,
            idp: crate::idp::Idp::new(),
        }
    }

    /// Locks the store. A panic while locked cannot leave it half-updated in a way that
    /// matters to a test double, so a poisoned lock is simply taken over.
    pub(crate) fn store(&self) -> MutexGuard<'_, Store> {
        self.store.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// A validated authorization request, kept between `/authorize` and the code (or, in
/// interactive mode, between the consent page and the user's decision).
#[derive(Clone, Debug)]
pub(crate) struct AuthorizationRequest {
    pub(crate) redirect_uri: Url,
    /// The redirect URI exactly as the client sent it; the token request must repeat it.
    pub(crate) redirect_uri_raw: String,
    pub(crate) state: Option<String>,
    pub(crate) scopes: Vec<String>,
    pub(crate) code_challenge: Option<String>,
    pub(crate) login_hint: Option<String>,
    pub(crate) nonce: Option<String>,
}

/// A successful token-endpoint answer, before serialisation.
#[derive(Clone, Debug)]
pub(crate) struct Issued {
    pub(crate) access_token: String,
    pub(crate) expires_in: u64,
    pub(crate) scopes: Vec<String>,
    pub(crate) refresh_token: Option<String>,
    pub(crate) id_token: Option<IdTokenClaims>,
}

/// Who an access token speaks for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct TokenOwner {
    pub(crate) email: String,
    pub(crate) scopes: Vec<String>,
}

type GrantId = u64;

#[derive(Debug)]
struct Grant {
    email: String,
    scopes: Vec<String>,
    revoked: bool,
}

#[derive(Debug)]
struct CodeRecord {
    request: AuthorizationRequest,
    email: String,
    /// Scopes granted, which may differ from those requested.
    scopes: Vec<String>,
    expires_at: SystemTime,
    /// Set on first redemption, so a replay can revoke what the first one produced.
    redeemed_into: Option<GrantId>,
}

#[derive(Debug)]
struct AccessRecord {
    grant: GrantId,
    scopes: Vec<String>,
    expires_at: SystemTime,
    revoked: bool,
}

#[derive(Debug)]
struct RefreshRecord {
    grant: GrantId,
    /// `false` once rotated away or invalidated by the user.
    active: bool,
}

#[derive(Debug)]
struct Pending {
    request: AuthorizationRequest,
    expires_at: SystemTime,
}

/// How token answers lie, for tests of a gateway's distrust: the tokens
/// themselves stay real and keep their real lifetime.
#[derive(Clone, Debug, Default)]
pub(crate) struct Lies {
    /// Announce this `expires_in` instead of the real one.
    pub(crate) expires_in: Option<u64>,
    /// Pad the JSON answer with a field of this many bytes.
    pub(crate) padding: usize,
    /// id_tokens without an `aud` claim.
    pub(crate) omit_audience: bool,
    /// id_tokens with this `iss` instead of the provider's own.
    pub(crate) issuer: Option<String>,
}

/// The Graph resource prefix Microsoft leaves out of the scopes it grants.
pub(crate) const GRAPH: &str = "https://graph.microsoft.com/";

/// What the provider says about `email` being verified, per its dialect.
pub(crate) fn email_verified_claim(identity: &IdentityClaims) -> Option<serde_json::Value> {
    match identity {
        IdentityClaims::Verified => Some(serde_json::Value::Bool(true)),
        IdentityClaims::Unverified => Some(serde_json::Value::Bool(false)),
        IdentityClaims::VerifiedAsString => Some(serde_json::Value::String("true".into())),
        IdentityClaims::Omitted | IdentityClaims::Microsoft { .. } => None,
    }
}

/// All mutable state of one provider.
#[derive(Debug)]
pub(crate) struct Store {
    /// The id_token `iss`: the provider's base URL.
    issuer: String,
    pub(crate) config: MockConfig,
    pub(crate) consent: Consent,
    /// `Some`: grant exactly these scopes at `/authorize` and on refresh.
    pub(crate) granted_scopes: Option<Vec<String>>,
    /// What a lying provider adds to its token answers.
    pub(crate) lies: Lies,
    /// How id_tokens and userinfo say who signed in.
    pub(crate) identity: IdentityClaims,
    pub(crate) faults: FaultQueues,
    pub(crate) counters: Counters,
    pub(crate) last_authorize_query: Option<Vec<(String, String)>>,
    refresh_counts: HashMap<String, u64>,
    codes: HashMap<String, CodeRecord>,
    pending: HashMap<String, Pending>,
    grants: HashMap<GrantId, Grant>,
    next_grant: GrantId,
    access_tokens: HashMap<String, AccessRecord>,
    refresh_tokens: HashMap<String, RefreshRecord>,
    issued_since_prune: u32,
    /// Token requests received and not yet answered.
    token_in_flight: u64,
}

impl Store {
    pub(crate) fn new(config: MockConfig, issuer: String) -> Self {
        Self {
            issuer,
            config,
            consent: Consent::default(),
            granted_scopes: None,
            lies: Lies::default(),
            identity: IdentityClaims::default(),
            faults: FaultQueues::default(),
            counters: Counters::default(),
            last_authorize_query: None,
            refresh_counts: HashMap::new(),
            codes: HashMap::new(),
            pending: HashMap::new(),
            grants: HashMap::new(),
            next_grant: 1,
            access_tokens: HashMap::new(),
            refresh_tokens: HashMap::new(),
            issued_since_prune: 0,
            token_in_flight: 0,
        }
    }

    /// The email that approves an automatic authorization, or `None` when the user denies.
    pub(crate) fn automatic_decision(&self, login_hint: Option<&str>) -> Option<String> {
        match &self.consent {
            Consent::ApproveAsLoginHint => {
                Some(login_hint.filter(|hint| !hint.is_empty()).unwrap_or(&self.config.default_email).to_owned())
            }
            Consent::ApproveAs(email) => Some(email.clone()),
            Consent::Deny => None,
        }
    }

    /// The user approved as `email`: mint a single-use code bound to the request.
    pub(crate) fn issue_code(&mut self, request: AuthorizationRequest, email: String, now: SystemTime) -> String {
        let code = random_token(CODE_PREFIX);
        let scopes = self.granted_scopes.clone().unwrap_or_else(|| request.scopes.clone());
        self.codes.insert(
            code.clone(),
            CodeRecord { request, email, scopes, expires_at: now + CODE_TTL, redeemed_into: None },
        );
        self.counters.authorizations += 1;
        self.note_issued(now);
        code
    }

    pub(crate) fn record_denial(&mut self) {
        self.counters.denials += 1;
    }

    /// Parks a request while a human looks at the consent page; returns the page's handle.
    pub(crate) fn park(&mut self, request: AuthorizationRequest, now: SystemTime) -> String {
        let id = random_token("mock_req_");
        self.pending.insert(id.clone(), Pending { request, expires_at: now + PENDING_TTL });
        id
    }

    /// Takes back a parked request; each consent page can be answered once.
    pub(crate) fn unpark(&mut self, id: &str, now: SystemTime) -> Option<AuthorizationRequest> {
        self.pending.remove(id).filter(|pending| pending.expires_at > now).map(|pending| pending.request)
    }

    /// `grant_type=authorization_code` for the authenticated `client_id`.
    pub(crate) fn redeem_code(
        &mut self,
        code: &str,
        redirect_uri: Option<&str>,
        code_verifier: Option<&str>,
        now: SystemTime,
    ) -> Result<Issued, OAuthError> {
        let Some(record) = self.codes.get(code) else {
            return Err(OAuthError::invalid_grant("unknown authorization code"));
        };
        if let Some(grant) = record.redeemed_into {
            // RFC 6749 §4.1.2: a replayed code may mean it was stolen; revoke what the
            // first redemption produced.
            self.revoke_grant(grant);
            return Err(OAuthError::invalid_grant(
                "authorization code already used; tokens issued from it are revoked",
            ));
        }
        if record.expires_at <= now {
            return Err(OAuthError::invalid_grant("authorization code expired"));
        }
        let Some(redirect_uri) = redirect_uri else {
            return Err(OAuthError::invalid_request("missing redirect_uri"));
        };
        if redirect_uri != record.request.redirect_uri_raw {
            return Err(OAuthError::invalid_grant("redirect_uri does not match the authorization request"));
        }
        check_pkce(record.request.code_challenge.as_deref(), code_verifier)?;

        let email = record.email.clone();
        let scopes = record.scopes.clone();
        let nonce = record.request.nonce.clone();
        let grant = self.new_grant(email.clone(), scopes.clone());
        if let Some(record) = self.codes.get_mut(code) {
            record.redeemed_into = Some(grant);
        }
        let ttl = self.config.access_token_ttl;
        let access_token = self.mint_access_token(grant, scopes.clone(), ttl, now);
        let refresh_token = self.config.issue_refresh_tokens.then(|| self.mint_refresh_token(grant));
        let tid = match &self.identity {
            IdentityClaims::Microsoft { tenant } => Some(tenant.clone()),
            _ => None,
        };
        let iss = match (&self.lies.issuer, &tid) {
            (Some(lie), _) => lie.clone(),
            (None, Some(tid)) => format!("{}/{tid}/v2.0", self.issuer),
            (None, None) => self.issuer.clone(),
        };
        let id_token = self.config.issue_id_token.then(|| IdTokenClaims {
            iss,
            sub: subject_for(&email),
            aud: (!self.lies.omit_audience).then(|| self.config.client_id.clone()),
            email,
            email_verified: email_verified_claim(&self.identity),
            tid,
            iat: unix_secs(now),
            exp: unix_secs(now + ID_TOKEN_TTL),
            nonce,
        });
        self.counters.authorization_code_grants += 1;
        Ok(Issued { access_token, expires_in: ttl.as_secs(), scopes, refresh_token, id_token })
    }

    /// `grant_type=refresh_token`, with the optional narrowing `scope` parameter.
    pub(crate) fn refresh(
        &mut self,
        refresh_token: &str,
        scope: Option<&str>,
        now: SystemTime,
    ) -> Result<Issued, OAuthError> {
        let grant_id = match self.refresh_tokens.get(refresh_token) {
            Some(record) if record.active => record.grant,
            _ => {
                return Err(OAuthError::invalid_grant("refresh token is invalid, expired or revoked"));
            }
        };
        let Some(grant) = self.grants.get(&grant_id).filter(|grant| !grant.revoked) else {
            return Err(OAuthError::invalid_grant("refresh token was revoked"));
        };
        let requested = match scope.map(parse_scopes) {
            Some(requested) if !requested.is_empty() => {
                if let Some(extra) = requested.iter().find(|s| !grant.scopes.contains(s)) {
                    return Err(OAuthError::new(ErrorCode::InvalidScope, format!("scope {extra:?} was not granted")));
                }
                requested
            }
            _ => grant.scopes.clone(),
        };
        let scopes = self.granted_scopes.clone().unwrap_or(requested);
        let email = grant.email.clone();

        let new_refresh_token = if self.config.rotate_refresh_tokens {
            if let Some(old) = self.refresh_tokens.get_mut(refresh_token) {
                old.active = false;
            }
            Some(self.mint_refresh_token(grant_id))
        } else {
            None
        };
        let ttl = self.config.access_token_ttl;
        let access_token = self.mint_access_token(grant_id, scopes.clone(), ttl, now);
        self.counters.refresh_grants += 1;
        *self.refresh_counts.entry(email).or_default() += 1;
        Ok(Issued { access_token, expires_in: ttl.as_secs(), scopes, refresh_token: new_refresh_token, id_token: None })
    }

    /// Meta's `grant_type=fb_exchange_token`: a valid access token buys a long-lived one.
    pub(crate) fn exchange(&mut self, access_token: &str, now: SystemTime) -> Result<Issued, OAuthError> {
        let Some(grant) = self.valid_access_record(access_token, now).map(|record| record.grant) else {
            return Err(OAuthError::invalid_grant("fb_exchange_token is invalid, expired or revoked"));
        };
        let scopes = self.access_tokens.get(access_token).map(|record| record.scopes.clone()).unwrap_or_default();
        let ttl = self.config.long_lived_ttl;
        let access_token = self.mint_access_token(grant, scopes.clone(), ttl, now);
        self.counters.exchange_grants += 1;
        Ok(Issued { access_token, expires_in: ttl.as_secs(), scopes, refresh_token: None, id_token: None })
    }

    /// RFC 7009: a refresh token takes its whole grant down, an access token only itself.
    /// Unknown tokens are ignored.
    pub(crate) fn revoke(&mut self, token: &str) {
        if let Some(grant) = self.refresh_tokens.get(token).map(|record| record.grant) {
            self.revoke_grant(grant);
        } else if let Some(record) = self.access_tokens.get_mut(token) {
            record.revoked = true;
        }
        self.counters.revocations += 1;
    }

    /// The user behind a still-valid access token.
    pub(crate) fn token_owner(&self, access_token: &str, now: SystemTime) -> Option<TokenOwner> {
        let record = self.valid_access_record(access_token, now)?;
        let grant = self.grants.get(&record.grant)?;
        Some(TokenOwner { email: grant.email.clone(), scopes: record.scopes.clone() })
    }

    /// The user removed the app at the provider: their refresh tokens stop working.
    pub(crate) fn invalidate_refresh_tokens_for(&mut self, email: &str) {
        let grants = &self.grants;
        for record in self.refresh_tokens.values_mut() {
            if grants.get(&record.grant).is_some_and(|grant| grant.email == email) {
                record.active = false;
            }
        }
    }

    /// A token request arrived; keeps the high-water mark of concurrent ones.
    pub(crate) fn token_request_started(&mut self) {
        self.token_in_flight += 1;
        self.counters.max_token_requests_in_flight =
            self.counters.max_token_requests_in_flight.max(self.token_in_flight);
    }

    /// A token request was answered (or its connection dropped).
    pub(crate) fn token_request_ended(&mut self) {
        self.token_in_flight = self.token_in_flight.saturating_sub(1);
    }

    /// A grant `email` consented to earlier, outside any flow here: returns its refresh
    /// token. Benchmarks seed thousands of credentials this way without a browser dance.
    pub(crate) fn grant_refresh_token(&mut self, email: &str, scopes: Vec<String>) -> String {
        let grant = self.new_grant(email.to_owned(), scopes);
        self.mint_refresh_token(grant)
    }

    pub(crate) fn refresh_count_for(&self, email: &str) -> u64 {
        self.refresh_counts.get(email).copied().unwrap_or(0)
    }

    pub(crate) fn refresh_counts(&self) -> HashMap<String, u64> {
        self.refresh_counts.clone()
    }

    fn valid_access_record(&self, access_token: &str, now: SystemTime) -> Option<&AccessRecord> {
        self.access_tokens.get(access_token).filter(|record| {
            !record.revoked
                && record.expires_at > now
                && self.grants.get(&record.grant).is_some_and(|grant| !grant.revoked)
        })
    }

    fn new_grant(&mut self, email: String, scopes: Vec<String>) -> GrantId {
        let id = self.next_grant;
        self.next_grant += 1;
        self.grants.insert(id, Grant { email, scopes, revoked: false });
        id
    }

    fn revoke_grant(&mut self, grant: GrantId) {
        if let Some(grant) = self.grants.get_mut(&grant) {
            grant.revoked = true;
        }
    }

    fn mint_access_token(&mut self, grant: GrantId, scopes: Vec<String>, ttl: Duration, now: SystemTime) -> String {
        let token = random_token(ACCESS_TOKEN_PREFIX);
        self.access_tokens.insert(token.clone(), AccessRecord { grant, scopes, expires_at: now + ttl, revoked: false });
        self.note_issued(now);
        token
    }

    fn mint_refresh_token(&mut self, grant: GrantId) -> String {
        let token = random_token(REFRESH_TOKEN_PREFIX);
        self.refresh_tokens.insert(token.clone(), RefreshRecord { grant, active: true });
        token
    }

    /// Counts issued credentials and, now and then, forgets those that can no longer be
    /// used. Refresh tokens and grants are kept: they never expire by themselves.
    fn note_issued(&mut self, now: SystemTime) {
        self.issued_since_prune += 1;
        if self.issued_since_prune < PRUNE_EVERY {
            return;
        }
        self.issued_since_prune = 0;
        let grants = &self.grants;
        self.access_tokens.retain(|_, record| {
            !record.revoked && record.expires_at > now && grants.get(&record.grant).is_some_and(|grant| !grant.revoked)
        });
        // Redeemed codes are kept until they expire so a replay is still detected.
        self.codes.retain(|_, record| record.expires_at > now);
        self.pending.retain(|_, pending| pending.expires_at > now);
    }
}

/// RFC 7636 §4.6, plus OAuth 2.1's rule that a verifier without a challenge is refused
/// (it would otherwise hide a client that forgot to send the challenge).
fn check_pkce(challenge: Option<&str>, verifier: Option<&str>) -> Result<(), OAuthError> {
    match (challenge, verifier) {
        (None, None) => Ok(()),
        (None, Some(_)) => {
            Err(OAuthError::invalid_grant("code_verifier sent but the authorization request had no code_challenge"))
        }
        (Some(_), None) => Err(OAuthError::invalid_grant("missing code_verifier")),
        (Some(challenge), Some(verifier)) => {
            if is_pkce_value(verifier) && s256_challenge(verifier) == challenge {
                Ok(())
            } else {
                Err(OAuthError::invalid_grant("code_verifier does not match the code_challenge"))
            }
        }
    }
}

/// Splits a space-separated scope string, dropping duplicates but keeping the order.
pub(crate) fn parse_scopes(scope: &str) -> Vec<String> {
    let mut scopes: Vec<String> = Vec::new();
    for scope in scope.split_whitespace() {
        if !scopes.iter().any(|known| known == scope) {
            scopes.push(scope.to_owned());
        }
    }
    scopes
}

pub(crate) fn unix_secs(time: SystemTime) -> u64 {
    time.duration_since(UNIX_EPOCH).map(|elapsed| elapsed.as_secs()).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    const VERIFIER: &str = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
    const REDIRECT: &str = "http://localhost/cb";

    fn request(challenge: Option<&str>) -> AuthorizationRequest {
        AuthorizationRequest {
            redirect_uri: Url::parse(REDIRECT).unwrap(),
            redirect_uri_raw: REDIRECT.to_owned(),
            state: Some("s".into()),
            scopes: vec!["openid".into(), "email".into()],
            code_challenge: challenge.map(str::to_owned),
            login_hint: None,
            nonce: Some("n".into()),
        }
    }

    fn store(config: MockConfig) -> Store {
        Store::new(config, "http://mock".to_owned())
    }

    fn code_for(store: &mut Store, email: &str, now: SystemTime) -> String {
        let challenge = s256_challenge(VERIFIER);
        store.issue_code(request(Some(&challenge)), email.to_owned(), now)
    }

    fn redeem(store: &mut Store, code: &str, now: SystemTime) -> Result<Issued, OAuthError> {
        store.redeem_code(code, Some(REDIRECT), Some(VERIFIER), now)
    }

    #[test]
    fn code_redeems_once_and_replay_revokes_the_grant() {
        let now = SystemTime::now();
        let mut store = store(MockConfig::default());
        let code = code_for(&mut store, "a@example.com", now);
        let issued = redeem(&mut store, &code, now).unwrap();
        assert!(store.token_owner(&issued.access_token, now).is_some());
        let claims = issued.id_token.unwrap();
        assert_eq!(claims.email, "a@example.com");
        assert_eq!(claims.nonce.as_deref(), Some("n"));

        let replay = redeem(&mut store, &code, now).unwrap_err();
        assert_eq!(replay.error, ErrorCode::InvalidGrant);
        assert!(store.token_owner(&issued.access_token, now).is_none());
        let refresh = issued.refresh_token.unwrap();
        assert!(store.refresh(&refresh, None, now).is_err());
    }

    #[test]
    fn code_expires_after_ten_minutes() {
        let now = SystemTime::now();
        let mut store = store(MockConfig::default());
        let code = code_for(&mut store, "a@example.com", now);
        let err = redeem(&mut store, &code, now + CODE_TTL).unwrap_err();
        assert_eq!(err.error, ErrorCode::InvalidGrant);
    }

    #[test]
    fn pkce_rules() {
        let challenge = s256_challenge(VERIFIER);
        assert!(check_pkce(Some(&challenge), Some(VERIFIER)).is_ok());
        assert!(check_pkce(None, None).is_ok());
        assert!(check_pkce(Some(&challenge), None).is_err());
        assert!(check_pkce(Some(&challenge), Some(&"x".repeat(43))).is_err());
        assert!(check_pkce(None, Some(VERIFIER)).is_err());
    }

    #[test]
    fn missing_redirect_uri_is_invalid_request_and_wrong_one_invalid_grant() {
        let now = SystemTime::now();
        let mut store = store(MockConfig::default());
        let code = code_for(&mut store, "a@example.com", now);
        let missing = store.redeem_code(&code, None, Some(VERIFIER), now);
        assert_eq!(missing.unwrap_err().error, ErrorCode::InvalidRequest);
        let wrong = store.redeem_code(&code, Some("http://localhost/other"), Some(VERIFIER), now);
        assert_eq!(wrong.unwrap_err().error, ErrorCode::InvalidGrant);
    }

    #[test]
    fn access_tokens_expire() {
        let now = SystemTime::now();
        let mut store = store(MockConfig::default());
        let code = code_for(&mut store, "a@example.com", now);
        let issued = redeem(&mut store, &code, now).unwrap();
        let later = now + Duration::from_secs(3600);
        assert!(store.token_owner(&issued.access_token, later).is_none());
        assert!(store.exchange(&issued.access_token, later).is_err());
    }

    #[test]
    fn in_flight_high_water_mark() {
        let mut store = store(MockConfig::default());
        store.token_request_started();
        store.token_request_started();
        store.token_request_ended();
        store.token_request_started();
        store.token_request_ended();
        store.token_request_ended();
        store.token_request_ended();
        assert_eq!(store.counters.max_token_requests_in_flight, 2);
        assert_eq!(store.token_in_flight, 0, "never below zero");
    }

    #[test]
    fn granted_refresh_tokens_refresh_and_count_for_their_user() {
        let mut store = store(MockConfig::default());
        let refresh = store.grant_refresh_token("a@example.com", vec!["email".into()]);
        let issued = store.refresh(&refresh, None, SystemTime::now()).unwrap();
        assert_eq!(issued.scopes, vec!["email".to_owned()]);
        assert_eq!(store.refresh_count_for("a@example.com"), 1);
    }

    #[test]
    fn rotation_retires_the_old_refresh_token() {
        let now = SystemTime::now();
        let mut store = store(MockConfig { rotate_refresh_tokens: true, ..MockConfig::default() });
        let code = code_for(&mut store, "a@example.com", now);
        let first = redeem(&mut store, &code, now).unwrap().refresh_token.unwrap();
        let second = store.refresh(&first, None, now).unwrap().refresh_token.unwrap();
        assert_ne!(first, second);
        assert!(store.refresh(&first, None, now).is_err());
        assert!(store.refresh(&second, None, now).is_ok());
        assert_eq!(store.refresh_count_for("a@example.com"), 2);
    }

    #[test]
    fn refresh_may_narrow_but_not_widen_scopes() {
        let now = SystemTime::now();
        let mut store = store(MockConfig::default());
        let code = code_for(&mut store, "a@example.com", now);
        let refresh = redeem(&mut store, &code, now).unwrap().refresh_token.unwrap();
        let narrowed = store.refresh(&refresh, Some("email"), now).unwrap();
        assert_eq!(narrowed.scopes, vec!["email".to_owned()]);
        let widened = store.refresh(&refresh, Some("email drive"), now).unwrap_err();
        assert_eq!(widened.error, ErrorCode::InvalidScope);
    }

    #[test]
    fn revoking_a_refresh_token_kills_its_access_tokens() {
        let now = SystemTime::now();
        let mut store = store(MockConfig::default());
        let code = code_for(&mut store, "a@example.com", now);
        let issued = redeem(&mut store, &code, now).unwrap();
        let refresh = issued.refresh_token.unwrap();
        let second = store.refresh(&refresh, None, now).unwrap();
        store.revoke(&refresh);
        assert!(store.token_owner(&issued.access_token, now).is_none());
        assert!(store.token_owner(&second.access_token, now).is_none());
        assert!(store.refresh(&refresh, None, now).is_err());
    }

    #[test]
    fn revoking_an_access_token_spares_the_grant() {
        let now = SystemTime::now();
        let mut store = store(MockConfig::default());
        let code = code_for(&mut store, "a@example.com", now);
        let issued = redeem(&mut store, &code, now).unwrap();
        store.revoke(&issued.access_token);
        assert!(store.token_owner(&issued.access_token, now).is_none());
        assert!(store.refresh(&issued.refresh_token.unwrap(), None, now).is_ok());
        store.revoke("mock_at_unknown");
        assert_eq!(store.counters.revocations, 2);
    }

    #[test]
    fn invalidating_a_user_only_touches_their_refresh_tokens() {
        let now = SystemTime::now();
        let mut store = store(MockConfig::default());
        let alice = code_for(&mut store, "alice@example.com", now);
        let alice = redeem(&mut store, &alice, now).unwrap();
        let bob = code_for(&mut store, "bob@example.com", now);
        let bob = redeem(&mut store, &bob, now).unwrap();
        store.invalidate_refresh_tokens_for("alice@example.com");
        assert!(store.refresh(alice.refresh_token.as_deref().unwrap(), None, now).is_err());
        assert!(store.refresh(bob.refresh_token.as_deref().unwrap(), None, now).is_ok());
    }

    #[test]
    fn consent_decides_the_email() {
        let mut store = store(MockConfig::default());
        assert_eq!(store.automatic_decision(Some("alice@example.com")).as_deref(), Some("alice@example.com"));
        assert_eq!(store.automatic_decision(None).as_deref(), Some("user@example.com"));
        store.consent = Consent::ApproveAs("bob@example.com".into());
        assert_eq!(store.automatic_decision(Some("alice@example.com")).as_deref(), Some("bob@example.com"));
        store.consent = Consent::Deny;
        assert_eq!(store.automatic_decision(Some("alice@example.com")), None);
    }

    #[test]
    fn granted_scopes_override_the_request() {
        let now = SystemTime::now();
        let mut store = store(MockConfig::default());
        store.granted_scopes = Some(vec!["email".into()]);
        let code = code_for(&mut store, "a@example.com", now);
        assert_eq!(redeem(&mut store, &code, now).unwrap().scopes, vec!["email"]);
    }

    #[test]
    fn pruning_forgets_only_dead_tokens() {
        let now = SystemTime::now();
        let mut store = store(MockConfig::default());
        let code = code_for(&mut store, "a@example.com", now);
        let issued = redeem(&mut store, &code, now).unwrap();
        let refresh = issued.refresh_token.unwrap();
        store.config.access_token_ttl = Duration::ZERO;
        for _ in 0..PRUNE_EVERY {
            store.refresh(&refresh, None, now).unwrap();
        }
        assert!(store.access_tokens.len() < 10);
        assert!(store.token_owner(&issued.access_token, now).is_some());
    }

    #[test]
    fn parked_requests_answer_once() {
        let now = SystemTime::now();
        let mut store = store(MockConfig::default());
        let id = store.park(request(None), now);
        assert!(store.unpark(&id, now).is_some());
        assert!(store.unpark(&id, now).is_none());
        let id = store.park(request(None), now);
        assert!(store.unpark(&id, now + PENDING_TTL).is_none());
    }

    #[test]
    fn scopes_are_split_and_deduplicated() {
        assert_eq!(parse_scopes(" a  b a\tc "), vec!["a", "b", "c"]);
        assert!(parse_scopes("").is_empty());
    }
}
