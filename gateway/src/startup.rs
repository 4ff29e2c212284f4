//! Start-up: from validated [`Settings`] to a bound, ready [`Application`].
//!
//! Order matters and each step can refuse to go on, with the fix in the error:
//! resolve secrets (generating development ones), derive keys, connect,
//! migrate, check that the configured keys can read what is stored, bind.

use std::collections::BTreeMap;
use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use tokio::net::TcpListener;

use actix::Actor;

use crate::actors::ActorSystem;
use crate::actors::registry::TokenRegistry;
use crate::actors::rotation::KeyRotationActor;
use crate::actors::session::SessionActor;
use crate::app::{AppState, Deps, Tuning};
use crate::clock::Clock;
use crate::config::{ConfigErrors, Environment, Settings, vars};
use crate::crypto::{self, CryptoError, Key, KeyError, Keyring};
use crate::events::Events;
use crate::http::routes::metrics::MetricsState;
use crate::jobs::Jobs;
use crate::oauth::{OAuthClient, Providers};
use crate::store::keys::{Canary, CanaryError};
use crate::store::{Store, StoreError};

/// How long start-up keeps retrying an unreachable database.
const DB_CONNECT_PATIENCE: Duration = Duration::from_secs(30);

#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    #[error("{0}")]
    Config(#[from] ConfigErrors),
    #[error("{variable}: {source}. Fix: set it to a key from `gateway keys generate`.")]
    Key { variable: String, source: KeyError },
    #[error("the encryption keys are misconfigured: {0}")]
    Crypto(#[from] CryptoError),
    #[error("could not write the development secret {path}: {source}")]
    DevSecret { path: PathBuf, source: std::io::Error },
    #[error("database: {0}")]
    Store(#[from] StoreError),
    #[error(
        "the configured encryption keys cannot read this database: the key canary was sealed by key id \
         {stored_key_id}, which matches no configured key. Fix: configure that key again \
         (AUTH_GATEWAY_ENCRYPTION_KEY or AUTH_GATEWAY_ROTATION_KEYS); if it is lost, stored tokens cannot be recovered"
    )]
    CanaryUnreadable { stored_key_id: String },
    #[error("{}", missing_keys_message(.0))]
    MissingKeys(BTreeMap<String, u64>),
    #[error("could not listen on {addr}: {source}")]
    Bind { addr: SocketAddr, source: std::io::Error },
    #[error("could not start: {0}")]
    Actors(String),
}

fn missing_keys_message(missing: &BTreeMap<String, u64>) -> String {
    let total: u64 = missing.values().sum();
    let list: Vec<String> = missing.iter().map(|(id, n)| format!("{id} ({n} values)")).collect();
    format!(
        "{total} stored values are sealed under key ids that no configured key matches: {}. \
         Fix: put the removed key back in AUTH_GATEWAY_ROTATION_KEYS, run `gateway reencrypt`, \
         and remove it only once `gateway keys status` shows 0 values under it",
        list.join(", ")
    )
}

impl From<CanaryError> for StartupError {
    fn from(err: CanaryError) -> Self {
        match err {
            CanaryError::Unreadable { stored_key_id } => Self::CanaryUnreadable { stored_key_id },
            CanaryError::Store(e) => Self::Store(e),
        }
    }
}

/// What start-up may skip.
#[derive(Clone, Copy, Debug)]
pub struct StartOptions {
    /// Apply pending migrations before serving (`gateway serve --no-migrate` turns it off).
    pub migrate: bool,
    /// Run the scheduled jobs (tests turn it off and run jobs by hand).
    pub scheduler: bool,
}

impl Default for StartOptions {
    fn default() -> Self {
        Self { migrate: true, scheduler: true }
    }
}

/// Builds the keyring, generating a development key file when none is set.
pub async fn keyring(settings: &Settings) -> Result<Keyring, StartupError> {
    let primary = match &settings.keys.primary {
        Some(key) => key.clone(),
        None => dev_secret(settings, "encryption.key", vars::ENCRYPTION_KEY, crypto::key::generate_fernet_key)?,
    };
    let keys = settings.keys.clone();
    // PBKDF2 with 600 000 iterations is deliberately slow: keep it off the runtime's threads.
    let derived = tokio::task::spawn_blocking(move || {
        let salt = keys.salt.as_ref();
        let primary = Key::parse(&primary, salt)
            .map_err(|source| StartupError::Key { variable: vars::ENCRYPTION_KEY.to_owned(), source })?;
        let rotation = keys
            .rotation
            .iter()
            .enumerate()
            .map(|(i, k)| {
                Key::parse(k, salt).map_err(|source| StartupError::Key {
                    variable: format!("{} (entry {})", vars::ROTATION_KEYS, i + 1),
                    source,
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok::<_, StartupError>(Keyring::new(primary, rotation)?)
    })
    .await
    .map_err(|e| StartupError::Store(StoreError::Corrupt(format!("key derivation task failed: {e}"))))??;
    Ok(derived)
}

/// The API key's SHA-256 digest; the key itself is dropped here.
pub fn api_key_digest(settings: &Settings) -> Result<[u8; 32], StartupError> {
    let key = match &settings.api_key {
        Some(key) => key.clone(),
        None => dev_secret(settings, "api-key", vars::API_KEY, crypto::key::generate_api_key)?,
    };
    Ok(crate::http::auth::digest(key.expose_secret().as_bytes()))
}

/// Reads `<data_dir>/<file>`, creating it (mode 0600) with `generate()` on
/// first use. Development only: configuration refuses to get here otherwise.
fn dev_secret(
    settings: &Settings,
    file: &str,
    variable: &str,
    generate: fn() -> SecretString,
) -> Result<SecretString, StartupError> {
    debug_assert_eq!(settings.environment, Environment::Development);
    let path = settings.data_dir.join(file);
    let wrap = |source| StartupError::DevSecret { path: path.clone(), source };
    if let Ok(existing) = std::fs::read_to_string(&path) {
        let trimmed = existing.trim();
        if !trimmed.is_empty() {
            tracing::warn!(path = %path.display(), "{variable} is not set: using the development secret in this file");
            return Ok(SecretString::from(trimmed.to_owned()));
        }
    }
    std::fs::create_dir_all(&settings.data_dir).map_err(wrap)?;
    let secret = generate();
    write_private(&path, secret.expose_secret()).map_err(wrap)?;
    tracing::warn!(
        path = %path.display(),
        "{variable} is not set: GENERATED a development secret into this file (mode 0600). \
         Keep it: what it protects is unreadable without it. Set {variable} in production."
    );
    Ok(secret)
}

fn write_private(path: &Path, contents: &str) -> std::io::Result<()> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(path)?;
    file.write_all(contents.as_bytes())?;
    file.write_all(b"\n")?;
    file.sync_all()
}

/// Connects, retrying an unreachable database for a while (a database
/// container may start after the gateway).
pub async fn connect(settings: &Settings) -> Result<Store, StartupError> {
    let deadline = tokio::time::Instant::now() + DB_CONNECT_PATIENCE;
    let mut wait = Duration::from_millis(250);
    loop {
        match Store::connect(&settings.database).await {
            Ok(store) => return Ok(store),
            Err(StoreError::Unavailable(err)) if tokio::time::Instant::now() + wait < deadline => {
                tracing::warn!(error = %err, retry_in_ms = wait.as_millis() as u64, "database unreachable, retrying");
                tokio::time::sleep(wait).await;
                wait = (wait * 2).min(Duration::from_secs(4));
            }
            Err(err) => return Err(err.into()),
        }
    }
}

/// Refuses to go on when stored values need a key that is not configured.
pub async fn check_keys(store: &Store, keyring: &Keyring, clock: &Clock) -> Result<(), StartupError> {
    // Key ids first: they say how many values each missing key seals.
    let missing = store.key_usage().await?.unknown_to(keyring);
    if !missing.is_empty() {
        return Err(StartupError::MissingKeys(missing));
    }
    // Then the canary: a configured key id whose key cannot open it means the
    // key material changed under the same id (or the row was tampered with).
    match store.check_canary(keyring, clock.now()).await? {
        Canary::Created => tracing::info!(primary_key_id = %keyring.primary_id(), "key canary written"),
        Canary::Readable { key_id } => tracing::debug!(%key_id, "key canary readable"),
    }
    Ok(())
}

/// A bound gateway, ready to serve.
pub struct Application {
    listener: TcpListener,
    state: AppState,
    actors: ActorSystem,
    background: Vec<tokio::task::JoinHandle<()>>,
    metrics: MetricsState,
    /// `/metrics` on its own address (`METRICS_ADDR`), or on the API's when `None`.
    metrics_listener: Option<TcpListener>,
    scheduler: Option<workers::Scheduler>,
    server_limits: crate::http::server::ServerLimits,
}

/// How long a replica may hold a refresh lease: every attempt of one refresh
/// (3 × the provider timeout, plus backoff) fits inside it.
fn refresh_lease(provider_timeout: Duration) -> Duration {
    provider_timeout * 3 + Duration::from_secs(10)
}

impl Application {
    pub async fn build(settings: Settings, options: StartOptions) -> Result<Self, StartupError> {
        Self::build_with_clock(settings, options, Clock::system()).await
    }

    pub async fn build_with_clock(
        settings: Settings,
        options: StartOptions,
        clock: Clock,
    ) -> Result<Self, StartupError> {
        for warning in settings.warnings() {
            tracing::warn!("{warning}");
        }
        let keyring = Arc::new(keyring(&settings).await?);
        let api_key_digest = api_key_digest(&settings)?;
        let store = connect(&settings).await?;
        if options.migrate {
            store.migrate_up().await?;
        }
        check_keys(&store, &keyring, &clock).await?;

        // Providers from the environment get a row, so credentials can reference them.
        for provider in &settings.providers {
            store.upsert_provider(provider, &keyring, clock.now()).await?;
        }
        let instance_id: Arc<str> = uuid::Uuid::new_v4().to_string().into();
        let events = Events::new(store.clone(), &instance_id);
        let providers = Arc::new(Providers::new(
            settings.providers.clone(),
            store.clone(),
            keyring.clone(),
            events.clone(),
            settings.environment == Environment::Production,
        ));
        providers.reload().await?;

        let addr = SocketAddr::new(settings.http.host, settings.http.port);
        let listener = TcpListener::bind(addr).await.map_err(|source| StartupError::Bind { addr, source })?;
        let bound = listener.local_addr().map_err(|source| StartupError::Bind { addr, source })?;
        let public_url = settings.http.public_url(bound).map_err(|e| {
            ConfigErrors::single(crate::config::ConfigError::new(
                vars::PUBLIC_BASE_URL,
                format!("cannot be derived ({e})"),
                "set PUBLIC_BASE_URL",
            ))
        })?;

        let oauth = OAuthClient::new(settings.provider_timeout).map_err(|e| StartupError::Actors(e.to_string()))?;
        let tuning = Tuning {
            public_url,
            session_expiry: settings.session_expiry,
            refresh_buffer: settings.token_refresh_buffer,
            redirect_hosts: settings.redirect_hosts.clone(),
            refresh_lease: refresh_lease(settings.provider_timeout),
            lock_wait: settings.provider_timeout + Duration::from_secs(5),
            provider_timeout: settings.provider_timeout,
            actor_idle: settings.token_actor_idle,
            storage_retry: settings.storage_retry,
        };
        let (audit, _audit_writer) = crate::access::audit::Audit::start(store.clone(), settings.access.token_reads);
        let deps = Deps {
            audit,
            store,
            keyring,
            providers,
            oauth,
            events: events.clone(),
            clock,
            tuning: Arc::new(tuning),
            instance_id,
            runtime: tokio::runtime::Handle::current(),
        };

        let actors = ActorSystem::start(settings.actor_threads).map_err(|e| StartupError::Actors(e.to_string()))?;
        let tokens = TokenRegistry::new(deps.clone(), actors.arbiters().to_vec());
        let session_deps = deps.clone();
        let first_arbiter = actors.arbiters().first().ok_or_else(|| StartupError::Actors("no arbiter".into()))?;
        let sessions = SessionActor::start_in_arbiter(first_arbiter, move |_| SessionActor::new(session_deps));
        let background = vec![
            events.spawn_listener(),
            deps.providers.spawn_reloader(),
            tokens.spawn_invalidator(),
            SessionActor::spawn_relay(&deps, sessions.clone()),
        ];

        let handle = crate::telemetry::prometheus::install().map_err(StartupError::Actors)?;
        crate::telemetry::prometheus::initialize_series(&deps.providers.ids());
        deps.providers.health().publish(&deps.providers.ids());
        if let Err(err) =
            crate::telemetry::gauges::refresh(&deps.store, &deps.keyring, &deps.providers.ids(), deps.clock.now()).await
        {
            tracing::warn!(error = %err, "could not compute the database gauges");
        }
        let metrics = MetricsState {
            handle: handle.clone(),
            bearer_digest: settings
                .metrics
                .bearer_token
                .as_ref()
                .map(|t| Arc::new(crate::http::auth::digest(t.expose_secret().as_bytes()))),
        };
        let metrics_listener = match settings.metrics.addr {
            Some(addr) => Some(TcpListener::bind(addr).await.map_err(|source| StartupError::Bind { addr, source })?),
            None => None,
        };
        let mut background = background;
        background.push(crate::telemetry::prometheus::spawn_upkeep(handle));

        let reencrypt_config = workers::jobs::reencrypt::ReencryptConfig {
            batch_size: settings.jobs.reencrypt_batch,
            max_rows_per_second: settings.jobs.reencrypt_rate,
        };
        let rotation_deps = deps.clone();
        let rotation = KeyRotationActor::start_in_arbiter(first_arbiter, move |_| {
            KeyRotationActor::new(rotation_deps, reencrypt_config)
        });
        let jobs = Arc::new(Jobs {
            deps: deps.clone(),
            tokens: tokens.clone(),
            settings: settings.jobs.clone(),
            backoff: Default::default(),
            audit_retention: settings.access.audit_retention,
        });
        let scheduler = if options.scheduler {
            let specs = crate::jobs::specs(jobs.clone(), rotation.clone());
            Some(crate::jobs::start(specs, &deps).await.map_err(|e| StartupError::Actors(e.to_string()))?)
        } else {
            None
        };

        let clients = Arc::new(crate::access::Clients::new(deps.store.clone(), Some(api_key_digest)));
        clients.reload().await?;
        background.push(clients.spawn_reloader(deps.events.subscribe()));
        let limits = Arc::new(crate::access::limits::Limits::new(settings.access.limits));
        background.push(limits.spawn_cleanup());

        let state = AppState::new(crate::app::AppInner {
            deps,
            tokens,
            sessions,
            rotation,
            jobs,
            clients,
            limits,
            trusted_proxies: settings.access.trusted_proxies.clone(),
            cors_origins: settings.access.cors_origins.clone(),
        });
        tracing::info!(
            address = %bound,
            public_url = %state.deps.tuning.public_url,
            environment = settings.environment.as_str(),
            backend = ?settings.database.backend,
            providers = ?state.deps.providers.ids(),
            "gateway ready"
        );
        Ok(Self {
            listener,
            state,
            actors,
            background,
            metrics,
            metrics_listener,
            scheduler,
            server_limits: settings.http.limits,
        })
    }

    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    pub fn state(&self) -> &AppState {
        &self.state
    }

    /// The separate `/metrics` listener's address, when `METRICS_ADDR` is set.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics_listener.as_ref().and_then(|l| l.local_addr().ok())
    }

    /// Serves until `shutdown` resolves, then drains in-flight requests and
    /// stops the actors.
    pub async fn run_until(self, shutdown: impl Future<Output = ()> + Send + 'static) -> std::io::Result<()> {
        let Self { listener, state, actors, background, metrics, metrics_listener, scheduler, server_limits } = self;
        let store = state.deps.store.clone();
        let audit = state.deps.audit.clone();
        // One stop signal for every listener.
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        let stopped = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
            let _ = rx.wait_for(|stop| *stop).await;
        };
        let metrics_server = match metrics_listener {
            Some(metrics_listener) => {
                let router = crate::http::routes::metrics::router::<()>(metrics.clone());
                let signal = stopped(stop_rx.clone());
                Some(tokio::spawn(
                    async move { axum::serve(metrics_listener, router).with_graceful_shutdown(signal).await },
                ))
            }
            None => None,
        };
        let router = crate::http::router(state, metrics_server.is_none().then_some(metrics));
        tokio::spawn(async move {
            shutdown.await;
            let _ = stop_tx.send(true);
        });
        let result = crate::http::server::serve(listener, router, server_limits, stopped(stop_rx)).await;
        if let Some(server) = metrics_server {
            let _ = server.await;
        }
        for task in background {
            task.abort();
        }
        if let Some(scheduler) = scheduler {
            scheduler.shutdown().await;
        }
        actors.stop().await;
        // Whatever the audit queue still holds is written before the pool closes.
        audit.flush().await;
        store.close().await;
        result
    }
}
