//! [`Services`]: everything the outer crates (the HTTP API, the command
//! line, the scheduled jobs) may ask of the core, and the one way they reach
//! it. The store is not among what it hands out.
//!
//! Inside the crate, `Deps` is what every actor, flow and refresh shares:
//! the store, the keys, the providers, the clock and the start-up settings.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use actix::{Actor, Addr};
use chrono::{DateTime, TimeDelta, Utc};
use url::Url;
use uuid::Uuid;

use crate::access::audit::{Audit, AuditFilter, AuditRecord};
use crate::access::{Client, Clients, ExchangeUpdate, NewClient};
use crate::actors::ActorSystem;
use crate::actors::session::{self, SessionActor};
use crate::actors::token::RefreshOutcome;
use crate::actors::tokens::TokenRegistry;
use crate::clock::Clock;
use crate::config::Settings;
use crate::credentials::{CredentialKey, CredentialSummary, Grant, Need, TokenError, Trigger};
use crate::crypto::Keyring;
use crate::email::Email;
use crate::events::{Event, Events};
use crate::exchange::{self, ExchangeError, Issuers, VerifiedUser};
use crate::health;
use crate::keys::KeyReport;
use crate::oauth::client::RevocationOutcome;
use crate::oauth::{OAuthClient, ProviderConfig, Providers};
use crate::sessions::{
    CallbackOutcome, CallbackParams, FlowError, LinkError, LinkInfo, SessionRecord, StartRequest, Started,
};
use crate::store::Store;
use crate::store::providers::ProviderRow;

/// Values fixed at start-up that flows and refreshes consult.
#[derive(Clone, Debug)]
pub struct ServiceSettings {
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

impl ServiceSettings {
    /// The settings of `settings`, with connect links built on `public_url`.
    pub fn new(settings: &Settings, public_url: Url) -> Self {
        Self {
            public_url,
            session_expiry: settings.session_expiry,
            refresh_buffer: settings.token_refresh_buffer,
            redirect_hosts: settings.redirect_hosts.clone(),
            // Every attempt of one refresh (3 × the provider timeout, plus backoff) fits inside it.
            refresh_lease: settings.provider_timeout * 3 + Duration::from_secs(10),
            lock_wait: settings.provider_timeout + Duration::from_secs(5),
            provider_timeout: settings.provider_timeout,
            actor_idle: settings.token_actor_idle,
            storage_retry: settings.storage_retry,
        }
    }
}

/// What actors, flows and refreshes share. Cheap to clone.
#[derive(Clone, Debug)]
pub(crate) struct Deps {
    pub store: Store,
    pub keyring: Arc<Keyring>,
    pub providers: Arc<Providers>,
    pub oauth: OAuthClient,
    pub events: Events,
    pub clock: Clock,
    pub settings: Arc<ServiceSettings>,
    /// This process's id: the owner of the leases it takes.
    pub instance_id: Arc<str>,
    /// The main runtime: actors run their I/O here, not on their arbiter's
    /// small single-threaded runtime.
    pub runtime: tokio::runtime::Handle,
    pub audit: Audit,
}

/// Why the services could not start.
#[derive(Debug, thiserror::Error)]
pub enum ServicesError {
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    #[error("could not build the HTTP client for providers")]
    HttpClient(#[source] reqwest::Error),
    #[error(transparent)]
    Actors(#[from] crate::actors::ActorSystemError),
}

/// The running core: cheap to clone (one `Arc`).
#[derive(Clone, Debug)]
pub struct Services(Arc<Inner>);

#[derive(Debug)]
struct Inner {
    deps: Deps,
    tokens: Arc<TokenRegistry>,
    sessions: Addr<SessionActor>,
    clients: Arc<Clients>,
    /// Trusted identity providers and their key caches (token exchange).
    issuers: Arc<Issuers>,
    /// What a worker assertion's `aud` may be: this gateway's public URL and token endpoint.
    assertion_audiences: Vec<String>,
    /// Webhook deliveries: their own HTTP client (no redirects) and retry schedule.
    webhook_http: reqwest::Client,
    webhook_settings: crate::config::webhooks::WebhookSettings,
    /// The arbiter other crates start their actors on (the key rotation actor).
    arbiter: actix::ArbiterHandle,
    actors: Mutex<Option<ActorSystem>>,
    background: Mutex<Vec<tokio::task::JoinHandle<()>>>,
    /// Tells the background tasks to finish.
    stop: tokio::sync::watch::Sender<bool>,
}

/// How the background tasks ended at shutdown.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Drained {
    /// Tasks that finished their work and ended by themselves.
    pub ended: usize,
    /// Tasks still busy after [`DRAIN_WAIT`], cut off.
    pub aborted: usize,
}

/// How long shutdown waits for a background task to finish what it is doing.
pub const DRAIN_WAIT: Duration = Duration::from_secs(5);

impl Services {
    /// Starts the core on an opened database: the providers, the audit
    /// writer, the actor system with its session actor and token registry,
    /// and the background tasks that keep caches honest across replicas.
    pub async fn start(
        admin: crate::admin::Admin,
        settings: &Settings,
        public_url: Url,
        api_key_digest: [u8; 32],
    ) -> Result<Self, ServicesError> {
        let crate::admin::Admin { store, keyring, clock } = admin;
        let instance_id: Arc<str> = Uuid::new_v4().to_string().into();
        let events = Events::new(store.clone(), &instance_id);
        let providers = Arc::new(Providers::new(
            settings.providers.clone(),
            store.clone(),
            keyring.clone(),
            events.clone(),
            settings.environment == crate::config::Environment::Production,
        ));
        providers.reload().await?;
        let oauth = OAuthClient::new(settings.provider_timeout).map_err(ServicesError::HttpClient)?;
        let issuers = Arc::new(Issuers::new(&settings.issuers, oauth.clone()));
        let base = public_url.as_str().trim_end_matches('/').to_owned();
        let assertion_audiences = vec![format!("{base}/oauth/token"), base];
        let webhook_http =
            crate::webhooks::delivery::http_client(&settings.webhooks).map_err(ServicesError::HttpClient)?;
        // The writer ends by itself once every `Audit` is dropped; shutdown flushes it first.
        let (audit, _writer) = Audit::start(store.clone(), settings.access.token_reads);
        let deps = Deps {
            audit,
            store: store.clone(),
            keyring,
            providers,
            oauth,
            events: events.clone(),
            clock,
            settings: Arc::new(ServiceSettings::new(settings, public_url)),
            instance_id,
            runtime: tokio::runtime::Handle::current(),
        };
        let actors = ActorSystem::start(settings.actor_threads)?;
        let tokens = TokenRegistry::new(deps.clone(), actors.arbiters().to_vec());
        let session_deps = deps.clone();
        let sessions = SessionActor::start_in_arbiter(actors.first(), move |_| SessionActor::new(session_deps));
        let clients = Arc::new(Clients::new(store, Some(api_key_digest)));
        clients.reload().await?;
        let (stop_tx, stop) = crate::events::Stop::new();
        let background = vec![
            events.spawn_listener(stop.clone()),
            deps.providers.spawn_reloader(stop.clone()),
            tokens.spawn_invalidator(stop.clone()),
            tokens.spawn_sweeper(stop.clone()),
            SessionActor::spawn_relay(&deps, sessions.clone(), stop.clone()),
            clients.spawn_reloader(events.subscribe(), stop),
        ];
        Ok(Self(Arc::new(Inner {
            deps,
            tokens,
            sessions,
            clients,
            issuers,
            assertion_audiences,
            webhook_http,
            webhook_settings: settings.webhooks.clone(),
            arbiter: actors.first().clone(),
            actors: Mutex::new(Some(actors)),
            background: Mutex::new(background),
            stop: stop_tx,
        })))
    }

    /// Resolves if the actor system stops (on its own: a panic in it, or
    /// [`Services::shutdown`]); serving tokens is impossible after that.
    pub fn actors_stopped(&self) -> impl std::future::Future<Output = ()> + Send + 'static + use<> {
        let ended = self.0.actors.lock().ok().and_then(|a| a.as_ref().map(ActorSystem::ended));
        async move {
            if let Some(ended) = ended {
                ended.await;
            }
        }
    }

    /// An arbiter of the core's actor system, for actors of the outer crates.
    pub fn arbiter(&self) -> actix::ArbiterHandle {
        self.0.arbiter.clone()
    }

    /// Asks the background tasks to finish and waits for them (each ends
    /// at its next wait for work, so a reload in progress completes; one
    /// still busy after [`DRAIN_WAIT`] is cut off), stops the actors, writes
    /// what the audit queue still holds, and closes the pool. A second call
    /// finds nothing left to drain.
    pub async fn shutdown(&self) -> Drained {
        let _ = self.0.stop.send(true);
        let tasks: Vec<_> = self.0.background.lock().map(|mut b| std::mem::take(&mut *b)).unwrap_or_default();
        let mut drained = Drained::default();
        for mut task in tasks {
            match tokio::time::timeout(DRAIN_WAIT, &mut task).await {
                Ok(_) => drained.ended += 1,
                Err(_) => {
                    task.abort();
                    drained.aborted += 1;
                }
            }
        }
        if drained.aborted > 0 {
            tracing::warn!(aborted = drained.aborted, "background tasks did not finish in time and were stopped");
        }
        let actors = self.0.actors.lock().ok().and_then(|mut a| a.take());
        if let Some(actors) = actors {
            actors.stop().await;
        }
        self.0.deps.audit.flush().await;
        self.0.deps.store.clone().close().await;
        drained
    }

    // ---- time, identity, settings -----------------------------------------

    /// What the core's services share (for the other service modules of this crate).
    pub(crate) fn deps(&self) -> &Deps {
        &self.0.deps
    }

    pub(crate) fn webhook_http(&self) -> (&reqwest::Client, &crate::config::webhooks::WebhookSettings) {
        (&self.0.webhook_http, &self.0.webhook_settings)
    }

    pub fn clock(&self) -> &Clock {
        &self.0.deps.clock
    }

    pub fn now(&self) -> DateTime<Utc> {
        self.0.deps.clock.now()
    }

    /// Where users reach this gateway, and the other start-up settings.
    pub fn settings(&self) -> &ServiceSettings {
        &self.0.deps.settings
    }

    /// This process's id (the owner of the leases it takes).
    pub fn instance_id(&self) -> &str {
        &self.0.deps.instance_id
    }

    pub fn keyring(&self) -> &Keyring {
        &self.0.deps.keyring
    }

    pub fn events(&self) -> &Events {
        &self.0.deps.events
    }

    // ---- providers ----------------------------------------------------------

    pub fn providers(&self) -> &Providers {
        &self.0.deps.providers
    }

    /// The provider `id`, if this gateway serves it.
    pub async fn provider(&self, id: &str) -> Option<Arc<ProviderConfig>> {
        self.0.deps.providers.get(id).await
    }

    // ---- operators ------------------------------------------------------------

    /// A page of credentials across users (`GET /admin/credentials`).
    pub async fn list_connections(
        &self,
        filter: &crate::credentials::listing::ConnectionFilter,
        cursor: Option<&str>,
        limit: Option<u64>,
    ) -> Result<crate::credentials::listing::Page, crate::credentials::listing::ListError> {
        use crate::credentials::listing::{Page, check_limit, parse_cursor};
        let after = parse_cursor(cursor)?;
        let limit = check_limit(limit)?;
        // One row more than asked says whether there is a next page.
        let mut connections = self.0.deps.store.list_connections(filter, after, limit + 1).await?;
        let more = connections.len() as u64 > limit;
        connections.truncate(usize::try_from(limit).unwrap_or(usize::MAX));
        let next_cursor = if more { connections.last().map(|c| c.id.to_string()) } else { None };
        Ok(Page { connections, next_cursor })
    }

    /// The counts of `GET /admin/stats`, within the caller's limits.
    pub async fn counts(
        &self,
        limits: &crate::credentials::listing::ConnectionFilter,
    ) -> Result<crate::credentials::listing::Counts, crate::StoreError> {
        let windows = crate::credentials::listing::expiry_windows(self.now());
        self.0.deps.store.counts(limits, windows).await
    }

    /// Every provider the database knows, with its credential count and health.
    pub async fn list_providers(&self) -> Result<Vec<ProviderRow>, crate::StoreError> {
        self.0.deps.store.list_providers().await
    }

    // ---- flows ------------------------------------------------------------

    /// What a new consent for `key` asks for so that it takes nothing away:
    /// the provider's default scopes, every scope the user granted before,
    /// and `required`. (A consent replaces the stored grant, and providers
    /// without incremental authorization grant only what is asked.)
    pub async fn scopes_to_ask(
        &self,
        key: &CredentialKey,
        required: &[String],
    ) -> Result<Vec<String>, crate::StoreError> {
        let mut scopes = self.provider(&key.provider).await.map(|p| p.default_scopes.clone()).unwrap_or_default();
        let granted = self.list_credentials(&key.email).await?;
        let before = granted.into_iter().filter(|c| c.provider == key.provider).flat_map(|c| c.scopes);
        for scope in before.chain(required.iter().cloned()) {
            if !scopes.contains(&scope) {
                scopes.push(scope);
            }
        }
        Ok(scopes)
    }

    /// `POST /auth/init`.
    pub async fn start_flow(&self, req: StartRequest) -> Result<Started, FlowError> {
        self.0.sessions.send(session::Start(req)).await.unwrap_or_else(|e| Err(FlowError::Actor(e)))
    }

    /// A session's status, after waiting up to `wait` for it to leave `pending`.
    pub async fn flow_status(&self, id: Uuid, client: &str, wait: Duration) -> Result<SessionRecord, FlowError> {
        let msg = session::GetStatus { id, wait, client: client.to_owned() };
        self.0.sessions.send(msg).await.unwrap_or_else(|e| Err(FlowError::Actor(e)))
    }

    /// What a connect link is for, without using it.
    pub async fn show_link(&self, connect_id: &str) -> Result<LinkInfo, LinkError> {
        self.0
            .sessions
            .send(session::ShowLink(connect_id.to_owned()))
            .await
            .unwrap_or_else(|e| Err(LinkError::Actor(e)))
    }

    /// Uses a connect link: the provider URL to send the browser to.
    pub async fn open_link(&self, connect_id: &str) -> Result<Url, LinkError> {
        self.0
            .sessions
            .send(session::OpenLink(connect_id.to_owned()))
            .await
            .unwrap_or_else(|e| Err(LinkError::Actor(e)))
    }

    /// The provider's redirect back.
    pub async fn callback(&self, provider: String, params: CallbackParams) -> CallbackOutcome {
        self.0.sessions.send(session::Callback { provider, params }).await.unwrap_or_else(|err| {
            tracing::error!(error = %err, "session actor unavailable");
            CallbackOutcome::Rejected("The gateway could not complete this sign-in. Try again shortly.")
        })
    }

    // ---- credentials ------------------------------------------------------

    /// A token for `key` with `required` scopes (from memory when warm),
    /// served to a caller: a use of the credential.
    pub async fn token(&self, key: &CredentialKey, required: &[String]) -> Result<Grant, TokenError> {
        self.0.tokens.get_token(key, required).await
    }

    /// A token the gateway needs for itself (not a use of the credential).
    pub(crate) async fn peek_token(&self, key: &CredentialKey) -> Result<Grant, TokenError> {
        self.0.tokens.peek_token(key).await
    }

    /// Revokes at the provider and deletes the credential everywhere.
    /// Credentials warm in memory, and the actors among them.
    pub fn tokens_in_memory(&self) -> crate::actors::tokens::InMemory {
        self.0.tokens.in_memory()
    }

    /// Writes recent uses and forgets idle credentials now (the sweeper does
    /// it every [`crate::actors::tokens::SWEEP_EVERY`]).
    pub async fn sweep_tokens(&self) {
        self.0.tokens.sweep().await;
    }

    pub async fn revoke(&self, key: &CredentialKey) -> Result<RevocationOutcome, TokenError> {
        self.0.tokens.revoke(key).await
    }

    /// Refreshes `key` through its single-flight actor (the jobs).
    pub async fn refresh(
        &self,
        key: &CredentialKey,
        trigger: Trigger,
        need: Need,
    ) -> Result<RefreshOutcome, TokenError> {
        self.0.tokens.refresh(key, trigger, need).await
    }

    /// The user's credentials, without secrets.
    pub async fn list_credentials(&self, email: &Email) -> Result<Vec<CredentialSummary>, crate::StoreError> {
        self.0.deps.store.list_credentials(email).await
    }

    /// Leases up to `limit` credentials due for a proactive refresh (or a
    /// keep-alive) at `now` to this replica.
    pub async fn claim_due(
        &self,
        policy: &crate::credentials::due::DuePolicy,
        limit: usize,
        now: DateTime<Utc>,
    ) -> Result<Vec<crate::credentials::due::Due>, crate::StoreError> {
        let lease = TimeDelta::from_std(self.settings().refresh_lease).unwrap_or(TimeDelta::minutes(1));
        let long_lived = self.0.deps.providers.long_lived_ids();
        crate::credentials::due::claim(
            &self.0.deps.store,
            policy,
            &long_lived,
            self.instance_id(),
            now,
            now + lease,
            limit,
        )
        .await
    }

    /// Gives back a claim this replica will not use (it expires on its own otherwise).
    pub async fn release_claim(&self, key: &CredentialKey) {
        if let Err(err) = self.0.deps.store.release_lease(key, self.instance_id()).await {
            tracing::debug!(error = %err, "could not release a refresh claim (it expires on its own)");
        }
    }

    // ---- sessions housekeeping ---------------------------------------------

    /// Fails every pending session past its expiry and tells the waiters;
    /// returns how many.
    pub async fn expire_sessions(&self, now: DateTime<Utc>) -> Result<u64, crate::StoreError> {
        let expired = self.0.deps.store.expire_pending_sessions(now).await?;
        for session in &expired {
            metrics::counter!(crate::telemetry::metrics::SESSIONS_FAILED, "provider" => session.provider.clone(), "reason" => "expired")
                .increment(1);
            self.0.deps.events.publish(Event::Session { id: session.id }).await;
        }
        Ok(expired.len() as u64)
    }

    /// Deletes sessions that finished before `before`.
    pub async fn delete_finished_sessions(&self, before: DateTime<Utc>) -> Result<u64, crate::StoreError> {
        self.0.deps.store.delete_finished_sessions(before).await
    }

    // ---- access -------------------------------------------------------------

    /// API clients (keys as digests only) and their rights.
    pub fn clients(&self) -> &Arc<Clients> {
        &self.0.clients
    }

    /// Adds an API client; false if its name or key is taken.
    pub async fn add_client(&self, new: NewClient) -> Result<bool, crate::StoreError> {
        let added = self.0.deps.store.add_client(new, self.now()).await?;
        self.0.clients.reload().await?;
        Ok(added)
    }

    /// Enables or disables an API client; false if there is no such client.
    pub async fn set_client_enabled(&self, name: &str, enabled: bool) -> Result<bool, crate::StoreError> {
        let changed = self.0.deps.store.set_client_enabled(name, enabled, self.now()).await?;
        self.0.clients.reload().await?;
        Ok(changed)
    }

    /// Gives API client `name` a new key digest; the old one stays valid until `until`.
    pub async fn rotate_client_key(
        &self,
        name: &str,
        digest: String,
        until: DateTime<Utc>,
    ) -> Result<bool, crate::StoreError> {
        let rotated = self.0.deps.store.rotate_client_key(name, digest, until, self.now()).await?;
        self.0.clients.reload().await?;
        Ok(rotated)
    }

    /// Changes how API client `name` takes part in token exchange; false if there is no such client.
    pub async fn update_client_exchange(&self, name: &str, update: ExchangeUpdate) -> Result<bool, crate::StoreError> {
        let changed = self.0.deps.store.update_client_exchange(name, update, self.now()).await?;
        self.0.clients.reload().await?;
        Ok(changed)
    }

    // ---- token exchange -------------------------------------------------------

    /// The user a subject token proves, for the calling `client`: a trusted
    /// identity provider's token bound to one of the client's audiences, or
    /// the client's own worker assertion (whose `jti` is then spent).
    pub async fn verify_subject(&self, client: &Client, token: &str) -> Result<VerifiedUser, ExchangeError> {
        let now = self.now();
        if exchange::assertion::claims_to_be_from(client, token) {
            let assertion = exchange::assertion::verify(client, token, &self.0.assertion_audiences, now)?;
            // The bootstrap client has no row, so no registered key: it never gets here.
            let client_id =
                Uuid::parse_str(&client.id).map_err(|_| ExchangeError::UntrustedIssuer(client.name.clone()))?;
            // One attempt: a retry after a lost acknowledgement would look like a replay.
            let fresh = self.0.deps.store.record_assertion(client_id, &assertion.jti, assertion.expires_at).await?;
            return if fresh { Ok(assertion.user) } else { Err(ExchangeError::Replayed) };
        }
        exchange::subject::verify(&self.0.issuers, client, token, now).await
    }

    /// Forgets spent assertion ids that expired before `before`.
    pub async fn prune_used_assertions(&self, before: DateTime<Utc>) -> Result<u64, crate::StoreError> {
        self.0.deps.store.prune_used_assertions(before).await
    }

    /// The trusted identity providers' key caches, for `/health`.
    pub fn issuers_health(&self) -> Vec<exchange::IssuerHealth> {
        self.0.issuers.health()
    }

    pub fn audit(&self) -> &Audit {
        &self.0.deps.audit
    }

    /// Audit records matching `filter`, newest first.
    pub async fn read_audit(&self, filter: &AuditFilter) -> Result<Vec<AuditRecord>, crate::StoreError> {
        self.0.deps.store.read_audit(filter).await
    }

    /// Deletes audit records older than `before`.
    pub async fn prune_audit(&self, before: DateTime<Utc>) -> Result<u64, crate::StoreError> {
        self.0.deps.store.prune_audit(before).await
    }

    // ---- keys ---------------------------------------------------------------

    /// Every key id configured or sealing a value, with its counts.
    pub async fn key_report(&self) -> Result<KeyReport, crate::StoreError> {
        crate::keys::report(&self.0.deps.store, &self.0.deps.keyring).await
    }

    /// Re-encrypts one batch (the re-encryption job).
    pub async fn reencrypt_batch(
        &self,
        position: &crate::keys::Position,
        limit: usize,
        dry_run: bool,
    ) -> Result<crate::keys::BatchOutcome, crate::StoreError> {
        self.0.deps.store.reencrypt_batch(&self.0.deps.keyring, position, limit, dry_run).await
    }

    // ---- health and statistics ------------------------------------------

    /// `/health`'s checks.
    pub async fn health(&self) -> health::Report {
        let deps = &self.0.deps;
        health::probe(&deps.store, &deps.keyring, &deps.providers, deps.clock.now()).await
    }

    /// The numbers behind the database gauges.
    pub async fn statistics(&self, now: DateTime<Utc>) -> Result<crate::stats::Statistics, crate::StoreError> {
        crate::stats::collect(&self.0.deps.store, &self.0.deps.keyring, now).await
    }
}
