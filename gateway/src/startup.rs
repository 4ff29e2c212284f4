//! Start-up: from validated [`Settings`] to a bound, ready [`Application`],
//! in named steps, each of which can refuse to go on with the fix in its
//! error:
//!
//! 1. [`open_database`]: resolve secrets (generating development ones),
//!    derive keys, connect, migrate, check the keys read what is stored,
//!    give configured providers their rows;
//! 2. [`bind`]: the listener, and the public URL (which may depend on the
//!    port actually bound);
//! 3. the core's [`Services`] (providers, actors, caches kept honest);
//! 4. [`telemetry`]: the Prometheus recorder and `/metrics`;
//! 5. [`workers()`](fn@workers): the jobs and, unless tests run them by hand, the scheduler;
//! 6. the HTTP state.
//!
//! [`Application::run_until`] serves until the shutdown signal — or until
//! the actor system stops on its own, which ends the process with a clear
//! error rather than leaving it half alive — then drains requests, stops the
//! scheduler and the core, and flushes the audit queue.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use secrecy::ExposeSecret;
use tokio::net::TcpListener;
use url::Url;
use workers::{JobError, Scheduler, Workers};

use crate::clock::Clock;
use crate::config::{ConfigError, ConfigErrors, ServerLimits, Settings, vars};
use crate::core::admin::Admin;
use crate::core::setup::{self, SetupError};
use crate::core::{Services, ServicesError};
use crate::http::AppState;
use crate::http::routes::metrics::MetricsState;

#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    #[error("{0}")]
    Config(#[from] ConfigErrors),
    #[error(transparent)]
    Setup(#[from] SetupError),
    #[error("could not listen on {addr}: {source}")]
    Bind { addr: SocketAddr, source: std::io::Error },
    #[error("could not start the core: {0}")]
    Services(#[from] ServicesError),
    #[error("could not install the metrics recorder: {0}")]
    Telemetry(#[from] metrics_exporter_prometheus::BuildError),
    #[error("could not start the scheduler: {0}")]
    Scheduler(#[from] JobError),
}

/// Why serving ended other than by the shutdown signal.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("the HTTP listener failed: {0}")]
    Listener(#[from] std::io::Error),
    #[error("the actor system stopped on its own; the gateway cannot serve tokens without it")]
    ActorsStopped,
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

/// A bound gateway, ready to serve.
pub struct Application {
    listener: TcpListener,
    state: AppState,
    metrics: MetricsState,
    /// `/metrics` on its own address (`METRICS_ADDR`), or on the API's when `None`.
    metrics_listener: Option<TcpListener>,
    scheduler: Option<Scheduler>,
    server_limits: ServerLimits,
    /// The HTTP layer's own housekeeping (rate-limit cleanup, recorder upkeep).
    background: Background,
}

/// Step 1: keys, database, migrations, key checks, configured providers.
pub async fn open_database(settings: &Settings, options: StartOptions, clock: Clock) -> Result<Admin, StartupError> {
    let admin = Admin::open(settings, options.migrate, clock).await?;
    admin.sync_configured_providers(settings).await.map_err(SetupError::from)?;
    Ok(admin)
}

/// Step 2: the listener, and the public URL built on the address bound.
pub async fn bind(settings: &Settings) -> Result<(TcpListener, Url), StartupError> {
    let addr = SocketAddr::new(settings.http.host, settings.http.port);
    let listener = TcpListener::bind(addr).await.map_err(|source| StartupError::Bind { addr, source })?;
    let bound = listener.local_addr().map_err(|source| StartupError::Bind { addr, source })?;
    let public_url = settings.http.public_url(bound).map_err(|e| {
        ConfigErrors::single(ConfigError::new(
            vars::PUBLIC_BASE_URL,
            format!("cannot be derived ({e})"),
            "set PUBLIC_BASE_URL",
        ))
    })?;
    Ok((listener, public_url))
}

/// Step 4: the recorder (once per process), its series, `/metrics`.
pub async fn telemetry(
    settings: &Settings,
    services: &Services,
) -> Result<(MetricsState, Option<TcpListener>, metrics_exporter_prometheus::PrometheusHandle), StartupError> {
    let handle = crate::telemetry::prometheus::install()?;
    let providers = services.providers().ids();
    let issuers: Vec<String> = services.issuers_health().into_iter().map(|i| i.id).collect();
    crate::telemetry::prometheus::initialize_series(&providers, &issuers);
    services.providers().health().publish(&providers);
    let metrics = MetricsState {
        handle: handle.clone(),
        bearer_digest: settings
            .metrics
            .bearer_token
            .as_ref()
            .map(|t| Arc::new(crate::http::caller::digest(t.expose_secret().as_bytes()))),
    };
    let metrics_listener = match settings.metrics.addr {
        Some(addr) => Some(TcpListener::bind(addr).await.map_err(|source| StartupError::Bind { addr, source })?),
        None => None,
    };
    Ok((metrics, metrics_listener, handle))
}

/// Step 5: the jobs, their gauges computed once, and the scheduler.
pub async fn workers(
    settings: &Settings,
    services: &Services,
    options: StartOptions,
) -> Result<(Arc<Workers>, Option<Scheduler>), StartupError> {
    let workers = Workers::new(services.clone(), settings.jobs.clone(), settings.access.audit_retention);
    if let Err(err) = workers.gauges_once(services.now()).await {
        tracing::warn!(error = %err, "could not compute the database gauges");
    }
    let scheduler = if options.scheduler { Some(workers.start_scheduler().await?) } else { None };
    Ok((workers, scheduler))
}

/// The HTTP layer's own background tasks and their stop signal.
#[derive(Debug)]
struct Background {
    tasks: Vec<tokio::task::JoinHandle<()>>,
    stop: tokio::sync::watch::Sender<bool>,
}

impl Background {
    /// Asks them to finish and waits (bounded) for them to end.
    async fn drain(self) {
        let _ = self.stop.send(true);
        for mut task in self.tasks {
            if tokio::time::timeout(crate::core::services::DRAIN_WAIT, &mut task).await.is_err() {
                tracing::warn!("a background task did not finish in time and was stopped");
                task.abort();
            }
        }
    }
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
        let admin = open_database(&settings, options, clock).await?;
        let api_key_digest = setup::api_key_digest(&settings)?;
        let (listener, public_url) = bind(&settings).await?;
        let services = Services::start(admin, &settings, public_url, api_key_digest).await?;
        let (metrics, metrics_listener, prometheus) = telemetry(&settings, &services).await?;
        let (workers, scheduler) = workers(&settings, &services, options).await?;

        let limits = Arc::new(crate::core::access::limits::Limits::new(settings.access.limits));
        let (stop_background, stop) = crate::core::events::Stop::new();
        let background = Background {
            tasks: vec![
                crate::telemetry::prometheus::spawn_upkeep(prometheus, stop.clone()),
                limits.spawn_cleanup(stop),
            ],
            stop: stop_background,
        };
        let state = AppState::new(crate::http::state::AppInner {
            services,
            workers,
            limits,
            trusted_proxies: settings.access.trusted_proxies.clone(),
            cors_origins: settings.access.cors_origins.clone(),
        });
        tracing::info!(
            address = %listener.local_addr().map_err(|source| StartupError::Bind { addr: SocketAddr::new(settings.http.host, settings.http.port), source })?,
            public_url = %state.services.settings().public_url,
            environment = settings.environment.as_str(),
            backend = ?settings.database.backend,
            providers = ?state.services.providers().ids(),
            "gateway ready"
        );
        Ok(Self {
            listener,
            state,
            metrics,
            metrics_listener,
            scheduler,
            server_limits: settings.http.limits,
            background,
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

    /// Serves until `shutdown` resolves (or the actor system stops on its
    /// own), then drains in-flight requests and stops everything in order.
    pub async fn run_until(self, shutdown: impl Future<Output = ()> + Send + 'static) -> Result<(), ServeError> {
        let Self { listener, state, metrics, metrics_listener, scheduler, server_limits, background } = self;
        let services = state.services.clone();
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
        let actors_gone = services.actors_stopped();
        let watcher = tokio::spawn(async move {
            let failed = tokio::select! {
                () = shutdown => false,
                () = actors_gone => true,
            };
            let _ = stop_tx.send(true);
            failed
        });
        let served = crate::http::server::serve(listener, router, server_limits, stopped(stop_rx)).await;
        if let Some(server) = metrics_server {
            let _ = server.await;
        }
        let actors_failed = watcher.await.unwrap_or(false);
        background.drain().await;
        if let Some(scheduler) = scheduler {
            scheduler.shutdown().await;
        }
        // Stops the core's tasks and actors, flushes the audit queue, closes the pool.
        services.shutdown().await;
        served?;
        if actors_failed {
            return Err(ServeError::ActorsStopped);
        }
        Ok(())
    }
}
