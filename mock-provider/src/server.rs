//! [`MockProvider`]: a running provider on a TCP port, with its URLs and runtime controls.

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::config::{Consent, MockConfig};
use crate::counters::Counters;
use crate::faults::{Endpoint, Fault};
use crate::listener::{ConnInfo, KillableListener};
use crate::routes::router;
use crate::state::Shared;

/// A running mock OAuth provider.
///
/// Clones share the same server and state. The server stops when the last clone is dropped
/// or when [`MockProvider::shutdown`] is called on any of them: the port is closed at once,
/// idle keep-alive connections are closed, and requests in flight are allowed to finish.
#[derive(Clone, Debug)]
pub struct MockProvider {
    shared: Arc<Shared>,
    addr: SocketAddr,
    server: Arc<ServerTask>,
}

impl MockProvider {
    /// Starts a provider with the default configuration on `127.0.0.1:<random port>`.
    pub async fn start() -> std::io::Result<Self> {
        Self::start_with(MockConfig::default()).await
    }

    /// Starts a provider with `config` on `127.0.0.1:<random port>`.
    pub async fn start_with(config: MockConfig) -> std::io::Result<Self> {
        Self::bind(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)), config).await
    }

    /// Starts a provider with `config` on `addr` (port 0 picks a free port).
    pub async fn bind(addr: SocketAddr, config: MockConfig) -> std::io::Result<Self> {
        let listener = TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared::new(config, base_url_for(addr)));
        let app = router(Arc::clone(&shared)).into_make_service_with_connect_info::<ConnInfo>();
        let (stop_tx, stop_rx) = oneshot::channel::<()>();
        let handle = tokio::spawn(async move {
            // A dropped sender also means "stop", hence the ignored result.
            let stop = async move {
                let _ = stop_rx.await;
            };
            let served = axum::serve(KillableListener::new(listener), app).with_graceful_shutdown(stop).await;
            if let Err(error) = served {
                tracing::error!(%error, "mock provider stopped with an error");
            }
        });
        tracing::debug!(%addr, "mock provider listening");
        Ok(Self {
            shared,
            addr,
            server: Arc::new(ServerTask { stop: Mutex::new(Some(stop_tx)), handle: Mutex::new(Some(handle)) }),
        })
    }

    /// Stops the server (for every clone) and waits until its port is closed.
    pub async fn shutdown(self) {
        if let Some(handle) = self.server.stop() {
            // The task was aborted; the error only says so.
            let _ = handle.await;
        }
    }

    /// The socket the server listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:PORT`, also the `iss` of the id_tokens.
    pub fn base_url(&self) -> String {
        self.shared.base_url.clone()
    }

    /// The authorization endpoint.
    pub fn authorize_url(&self) -> String {
        format!("{}/authorize", self.shared.base_url)
    }

    /// The token endpoint.
    pub fn token_url(&self) -> String {
        format!("{}/token", self.shared.base_url)
    }

    /// The revocation endpoint (RFC 7009).
    pub fn revoke_url(&self) -> String {
        format!("{}/revoke", self.shared.base_url)
    }

    /// The OIDC UserInfo endpoint.
    pub fn userinfo_url(&self) -> String {
        format!("{}/userinfo", self.shared.base_url)
    }

    /// The protected API (`/api/me`).
    pub fn api_url(&self) -> String {
        format!("{}/api/me", self.shared.base_url)
    }

    /// The one client the provider knows.
    pub fn client_id(&self) -> &str {
        &self.shared.client_id
    }

    /// That client's secret (also the id_token HS256 key).
    pub fn client_secret(&self) -> &str {
        &self.shared.client_secret
    }

    /// What the next automatic authorizations decide, until changed.
    pub fn set_consent(&self, consent: Consent) {
        self.shared.store().consent = consent;
    }

    /// Lifetime of access tokens issued from now on.
    pub fn set_access_token_ttl(&self, ttl: Duration) {
        self.shared.store().config.access_token_ttl = ttl;
    }

    /// Microsoft-like rotation (`true`) or Google-like reuse (`false`) of refresh tokens.
    pub fn set_rotate_refresh_tokens(&self, on: bool) {
        self.shared.store().config.rotate_refresh_tokens = on;
    }

    /// Whether code exchanges from now on return a refresh token.
    pub fn set_issue_refresh_tokens(&self, on: bool) {
        self.shared.store().config.issue_refresh_tokens = on;
    }

    /// Whether code exchanges from now on return an id_token.
    pub fn set_issue_id_token(&self, on: bool) {
        self.shared.store().config.issue_id_token = on;
    }

    /// `Some(list)`: grant exactly these scopes (at `/authorize` and on refresh) instead of
    /// what was requested. `None`: grant what was requested.
    pub fn set_granted_scopes(&self, scopes: Option<Vec<String>>) {
        self.shared.store().granted_scopes = scopes;
    }

    /// `Some(n)`: token answers from now on claim `expires_in: n` (the tokens
    /// still live their real lifetime). `None`: tell the truth.
    pub fn set_claimed_expires_in(&self, seconds: Option<u64>) {
        self.shared.store().lies.expires_in = seconds;
    }

    /// How id_tokens and `/userinfo` say who signed in, from now on.
    pub fn set_identity_claims(&self, identity: crate::IdentityClaims) {
        self.shared.store().identity = identity;
    }

    /// id_tokens from now on leave out `aud` (`true`) or carry it (`false`).
    pub fn set_omit_id_token_audience(&self, omit: bool) {
        self.shared.store().lies.omit_audience = omit;
    }

    /// id_tokens from now on claim this issuer (`None`: the provider's own).
    pub fn set_id_token_issuer(&self, issuer: Option<String>) {
        self.shared.store().lies.issuer = issuer;
    }

    /// How long every token request takes from now on.
    pub fn set_token_latency(&self, latency: crate::Latency) {
        self.shared.store().config.token_latency = latency;
    }

    /// A grant `email` gave earlier, with `scopes`, made without an authorization flow:
    /// returns its refresh token (seed it into the gateway's database). Refreshes with it
    /// count for `email` like any other.
    pub fn grant_refresh_token(&self, email: &str, scopes: &[&str]) -> String {
        self.shared.store().grant_refresh_token(email, scopes.iter().map(|s| (*s).to_owned()).collect())
    }

    /// Token answers from now on carry an extra field of `bytes` bytes (0: none).
    pub fn set_response_padding(&self, bytes: usize) {
        self.shared.store().lies.padding = bytes;
    }

    /// The next `times` requests to `endpoint` get `fault`, after the faults already queued
    /// for that endpoint.
    pub fn inject(&self, endpoint: Endpoint, fault: Fault, times: u32) {
        self.shared.store().faults.push(endpoint, fault, times);
    }

    /// Forgets every queued fault.
    pub fn clear_faults(&self) {
        self.shared.store().faults.clear();
    }

    /// A snapshot of the counters.
    pub fn counters(&self) -> Counters {
        self.shared.store().counters.clone()
    }

    /// Successful refresh_token grants served for `email`.
    pub fn refresh_count_for(&self, email: &str) -> u64 {
        self.shared.store().refresh_count_for(email)
    }

    /// Successful refresh_token grants per email.
    pub fn refresh_counts(&self) -> HashMap<String, u64> {
        self.shared.store().refresh_counts()
    }

    /// The user revoked the app at the provider: their refresh tokens now get
    /// `invalid_grant`. Access tokens already issued stay valid until they expire.
    pub fn invalidate_refresh_tokens_for(&self, email: &str) {
        self.shared.store().invalidate_refresh_tokens_for(email);
    }

    /// Whether `token` is a known access token, not expired and not revoked.
    pub fn access_token_is_valid(&self, token: &str) -> bool {
        self.shared.store().token_owner(token, std::time::SystemTime::now()).is_some()
    }

    /// The test identity provider's issuer (`<base>/idp`), also its discovery base.
    pub fn idp_issuer(&self) -> String {
        format!("{}/idp", self.shared.base_url)
    }

    /// The test identity provider's JWKS.
    pub fn idp_jwks_url(&self) -> String {
        format!("{}/idp/jwks", self.shared.base_url)
    }

    /// A JWT carrying `claims`, signed by the identity provider's current key.
    pub fn mint_idp_token(&self, claims: &serde_json::Value) -> String {
        self.shared.idp.mint(claims, None)
    }

    /// A forged JWT carrying `claims` (for refusal tests).
    pub fn forge_idp_token(&self, claims: &serde_json::Value, forgery: crate::idp::Forgery) -> String {
        self.shared.idp.mint(claims, Some(forgery))
    }

    /// Publishes a new signing key (of `alg`, or the current algorithm) and signs with it
    /// from now on; `retire_previous` drops the older keys from the JWKS. Returns its `kid`.
    pub fn rotate_idp_key(&self, alg: Option<crate::idp::Alg>, retire_previous: bool) -> String {
        self.shared.idp.rotate(alg, retire_previous)
    }

    /// The parameters of the last `/authorize` request, in order, as decoded.
    pub fn last_authorize_query(&self) -> Option<Vec<(String, String)>> {
        self.shared.store().last_authorize_query.clone()
    }
}

/// The server task and its stop signal; dropping the last handle stops the server.
#[derive(Debug)]
struct ServerTask {
    stop: Mutex<Option<oneshot::Sender<()>>>,
    handle: Mutex<Option<JoinHandle<()>>>,
}

impl ServerTask {
    /// Signals graceful shutdown to the connections, then aborts the accept loop so the
    /// port closes now rather than after the last slow request. Idempotent.
    fn stop(&self) -> Option<JoinHandle<()>> {
        drop(self.stop.lock().unwrap_or_else(PoisonError::into_inner).take());
        let handle = self.handle.lock().unwrap_or_else(PoisonError::into_inner).take()?;
        handle.abort();
        Some(handle)
    }
}

impl Drop for ServerTask {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The URL clients use: a wildcard bind address is reached through loopback.
fn base_url_for(addr: SocketAddr) -> String {
    let mut addr = addr;
    if addr.ip().is_unspecified() {
        addr.set_ip(if addr.is_ipv4() { Ipv4Addr::LOCALHOST.into() } else { std::net::Ipv6Addr::LOCALHOST.into() });
    }
    format!("http://{addr}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcard_addresses_map_to_loopback() {
        assert_eq!(base_url_for("0.0.0.0:9000".parse().unwrap()), "http://127.0.0.1:9000");
        assert_eq!(base_url_for("[::]:9000".parse().unwrap()), "http://[::1]:9000");
        assert_eq!(base_url_for("127.0.0.1:1".parse().unwrap()), "http://127.0.0.1:1");
    }
}
