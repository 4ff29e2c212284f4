//! The Prometheus recorder and what `/metrics` renders.
//!
//! One recorder per process (metrics are process-global); every gateway
//! built in the process shares it. Histograms get explicit buckets (without
//! them they would render as summaries), the catalogue's help texts are
//! registered, and known label sets start at zero so that rates and alert
//! expressions have data from the first scrape.

use std::sync::OnceLock;
use std::time::Duration;

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

use super::metrics::{self as m, CATALOGUE, Kind};

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// How often histograms are compacted.
const UPKEEP_EVERY: Duration = Duration::from_secs(5);

/// Serialises the first installation: two gateways starting at once in one
/// process (tests) must not both try, or the loser finds no handle yet.
static INSTALLING: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Installs the recorder (once) and returns the handle that renders it.
pub fn install() -> Result<PrometheusHandle, metrics_exporter_prometheus::BuildError> {
    if let Some(handle) = HANDLE.get() {
        return Ok(handle.clone());
    }
    let _installing = INSTALLING.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    if let Some(handle) = HANDLE.get() {
        return Ok(handle.clone());
    }
    let mut builder = PrometheusBuilder::new().upkeep_timeout(UPKEEP_EVERY);
    for metric in CATALOGUE.iter().filter(|c| c.kind == Kind::Histogram) {
        builder = builder.set_buckets_for_metric(Matcher::Full(metric.name.to_owned()), m::buckets_for(metric.name))?;
    }
    let handle = builder.install_recorder()?;
    describe();
    metrics::gauge!(m::BUILD_INFO, "version" => env!("CARGO_PKG_VERSION")).set(1.0);
    Ok(HANDLE.get_or_init(|| handle).clone())
}

fn describe() {
    for metric in CATALOGUE {
        match metric.kind {
            Kind::Counter => metrics::describe_counter!(metric.name, metric.help),
            Kind::Gauge => metrics::describe_gauge!(metric.name, metric.help),
            Kind::Histogram => {
                metrics::describe_histogram!(metric.name, metrics::Unit::Seconds, metric.help)
            }
        }
    }
}

/// The scheduled jobs (values of the `job` label).
pub const JOBS: [&str; 7] = [
    "proactive_refresh",
    "session_sweep",
    "reencrypt",
    "metrics_refresh",
    "webhook_delivery",
    "revocation_retry",
    "connection_probe",
];

/// Starts at zero the series whose label values are known up front, so the
/// whole catalogue is on `/metrics` from the first scrape and rates and
/// alert expressions have data before the first event.
pub fn initialize_series(providers: &[String], issuers: &[String]) {
    const TOKEN_OUTCOMES: [&str; 8] = [
        "memory",
        "store",
        "refreshed",
        "not_authenticated",
        "refresh_failed",
        "scope_insufficient",
        "provider_unavailable",
        "busy",
    ];
    for provider in providers {
        let p = || provider.clone();
        for outcome in TOKEN_OUTCOMES {
            metrics::counter!(m::TOKEN_REQUESTS, "provider" => p(), "outcome" => outcome).absolute(0);
        }
        for trigger in ["on_demand", "proactive", "keepalive"] {
            for outcome in ["success", "permanent_failure", "transient_failure"] {
                metrics::counter!(m::TOKEN_REFRESHES, "provider" => p(), "trigger" => trigger, "outcome" => outcome, "category" => "none").absolute(0);
            }
            // Registering a histogram renders it with zero counts.
            let _ = metrics::histogram!(m::TOKEN_REFRESH_DURATION, "provider" => p(), "trigger" => trigger);
        }
        for operation in ["code_exchange", "refresh", "exchange", "revoke", "userinfo"] {
            metrics::counter!(m::UPSTREAM_ERRORS, "provider" => p(), "operation" => operation, "kind" => "none")
                .absolute(0);
        }
        metrics::counter!(m::SESSIONS_CREATED, "provider" => p()).absolute(0);
        metrics::counter!(m::SESSIONS_COMPLETED, "provider" => p()).absolute(0);
        metrics::counter!(m::SESSIONS_FAILED, "provider" => p(), "reason" => "expired").absolute(0);
        for state in ["active", "needs_reauth"] {
            metrics::gauge!(m::CREDENTIALS, "provider" => p(), "state" => state).increment(0.0);
        }
        metrics::gauge!(m::CREDENTIALS_EXPIRING, "provider" => p()).increment(0.0);
    }
    for job in JOBS {
        metrics::counter!(m::JOB_RUNS, "job" => job).absolute(0);
        metrics::counter!(m::JOB_FAILURES, "job" => job).absolute(0);
        let _ = metrics::histogram!(m::JOB_DURATION, "job" => job);
    }
    for route in ["/auth/init", "/auth/token", "/auth/callback/{provider}", "/connect/{connect_id}"] {
        metrics::counter!(m::RATE_LIMITED, "route" => route).absolute(0);
    }
    for column in crate::core::keys::ENCRYPTED_COLUMNS {
        metrics::counter!(m::REENCRYPTED, "column" => column.column).absolute(0);
    }
    for event in crate::core::webhooks::EventType::ALL {
        for outcome in ["delivered", "failed", "dead"] {
            metrics::counter!(m::WEBHOOK_DELIVERIES, "event" => event.as_str(), "outcome" => outcome).absolute(0);
        }
    }
    for via in ["identity_provider", "worker_assertion"] {
        for outcome in ["memory", "store", "refreshed", "authorization_required"] {
            metrics::counter!(m::TOKEN_EXCHANGES, "via" => via, "outcome" => outcome).absolute(0);
        }
    }
    for issuer in issuers {
        for outcome in ["ok", "failed"] {
            metrics::counter!(m::JWKS_FETCHES, "issuer" => issuer.clone(), "outcome" => outcome).absolute(0);
        }
    }
    metrics::counter!(m::ENCRYPTION_ERRORS, "operation" => "decrypt").absolute(0);
    metrics::counter!(m::AUDIT_DROPPED).absolute(0);
    let _ = metrics::histogram!(m::ENCRYPTION_DURATION);
    let _ = metrics::histogram!(m::DECRYPTION_DURATION);
    metrics::gauge!(m::TOKEN_ACTORS).increment(0.0);
    metrics::gauge!(m::CREDENTIALS_WARM).increment(0.0);
    metrics::gauge!(m::REENCRYPTION_UNDECRYPTABLE).increment(0.0);
    for state in ["in_use", "idle"] {
        metrics::gauge!(m::DB_POOL_CONNECTIONS, "state" => state).increment(0.0);
    }
}

/// Compacts histograms now and then (the exporter leaves that to us).
pub fn spawn_upkeep(handle: PrometheusHandle, mut stop: crate::core::events::Stop) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(UPKEEP_EVERY);
        loop {
            tokio::select! {
                biased;
                () = stop.requested() => return,
                _ = tick.tick() => handle.run_upkeep(),
            }
        }
    })
}
