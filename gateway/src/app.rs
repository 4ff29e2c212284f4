//! The application's shared parts: [`Deps`] (services every actor and job
//! needs) and [`AppState`] (what HTTP handlers hold: actor addresses and a
//! few read-only values). All cheap to clone.

use std::sync::Arc;
use std::time::Duration;

use actix::Addr;
use url::Url;

use crate::actors::registry::TokenRegistry;
use crate::actors::session::SessionActor;
use crate::clock::Clock;
use crate::crypto::Keyring;
use crate::events::Events;
use crate::health;
use crate::oauth::{OAuthClient, Providers};
use crate::store::Store;

/// Values fixed at start-up that the flows and refreshes consult.
#[derive(Clone, Debug)]
pub struct Tuning {
    /// Where users reach this gateway; connect links and redirect URIs start here.
    pub public_url: Url,
    pub session_expiry: Duration,
    /// Refresh a token this long before it expires (`TOKEN_REFRESH_BUFFER_SECONDS`).
    pub refresh_buffer: Duration,
    /// Hosts `redirect_after` may point at.
    pub redirect_hosts: Vec<String>,
    /// How long a replica may hold a credential's refresh lease. Longer than
    /// the provider calls of one refresh (attempts × timeout + backoff).
    pub refresh_lease: Duration,
    /// How long a refresh waits for another replica's lease before answering busy.
    pub lock_wait: Duration,
    pub provider_timeout: Duration,
    pub actor_idle: Duration,
    /// How long the callback retries storing tokens in hand (`STORAGE_RETRY_SECONDS`).
    pub storage_retry: Duration,
}

/// Services shared by actors, jobs and handlers.
#[derive(Clone, Debug)]
pub struct Deps {
    pub store: Store,
    pub keyring: Arc<Keyring>,
    pub providers: Arc<Providers>,
    pub oauth: OAuthClient,
    pub events: Events,
    pub clock: Clock,
    pub tuning: Arc<Tuning>,
    /// This process's id: the owner of the leases it takes.
    pub instance_id: Arc<str>,
    /// The main runtime: actors run their I/O here, not on their arbiter's
    /// small single-threaded runtime.
    pub runtime: tokio::runtime::Handle,
    pub audit: crate::access::audit::Audit,
}

/// What HTTP handlers hold. axum clones the state for every request, so it
/// is one `Arc` (one atomic increment), not a bundle of them.
#[derive(Clone, Debug)]
pub struct AppState(Arc<AppInner>);

#[derive(Debug)]
pub struct AppInner {
    pub deps: Deps,
    pub tokens: Arc<TokenRegistry>,
    pub sessions: Addr<SessionActor>,
    pub rotation: Addr<crate::actors::rotation::KeyRotationActor>,
    /// The scheduled jobs' work, callable directly (tests, admin).
    pub jobs: Arc<crate::jobs::Jobs>,
    /// API clients (keys as digests only) and their rights.
    pub clients: Arc<crate::access::Clients>,
    pub limits: Arc<crate::access::limits::Limits>,
    /// Proxies whose `X-Forwarded-For` names the real source address.
    pub trusted_proxies: Vec<ipnet::IpNet>,
    /// Origins allowed by CORS (none by default).
    pub cors_origins: Vec<String>,
}

impl AppState {
    pub fn new(inner: AppInner) -> Self {
        Self(Arc::new(inner))
    }

    pub async fn health(&self) -> health::Report {
        health::probe(&self.deps.store, &self.deps.keyring, &self.deps.providers, self.deps.clock.now()).await
    }
}

impl std::ops::Deref for AppState {
    type Target = AppInner;

    fn deref(&self) -> &AppInner {
        &self.0
    }
}
