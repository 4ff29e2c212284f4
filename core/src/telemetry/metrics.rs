//! The metric catalogue: every metric the gateway records, with its type,
//! labels and unit, in one place. docs/observability.md's table is generated from it.
//!
//! Labels are bounded: provider, outcome, trigger, category, route *pattern*,
//! method, status, job, key id, column. Never an email, a credential id or a
//! raw path.

/// One entry of the catalogue.
#[derive(Clone, Copy, Debug)]
pub struct Metric {
    pub name: &'static str,
    pub kind: Kind,
    pub labels: &'static [&'static str],
    pub help: &'static str,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Counter,
    Gauge,
    /// Seconds, with the buckets of [`buckets_for`].
    Histogram,
}

// --- HTTP ---
pub const HTTP_REQUESTS: &str = "http_requests_total";
pub const HTTP_REQUEST_DURATION: &str = "http_request_duration_seconds";
// --- /auth/token ---
pub const TOKEN_REQUESTS: &str = "token_requests_total";
// --- refreshes and upstream calls ---
pub const TOKEN_REFRESHES: &str = "token_refresh_total";
pub const TOKEN_REFRESH_DURATION: &str = "token_refresh_duration_seconds";
pub const UPSTREAM_ERRORS: &str = "upstream_errors_total";
// --- OAuth sessions ---
pub const SESSIONS_CREATED: &str = "oauth_session_created_total";
pub const SESSIONS_COMPLETED: &str = "oauth_session_completed_total";
pub const SESSIONS_FAILED: &str = "oauth_session_failed_total";
// --- encryption ---
pub const ENCRYPTION_DURATION: &str = "encryption_duration_seconds";
pub const DECRYPTION_DURATION: &str = "decryption_duration_seconds";
pub const ENCRYPTION_ERRORS: &str = "encryption_error_total";
pub const PRIMARY_KEY_AGE: &str = "encryption_primary_key_age_seconds";
pub const REENCRYPTION_PENDING: &str = "reencryption_pending_values";
pub const REENCRYPTED: &str = "reencrypted_values_total";
pub const REENCRYPTION_UNDECRYPTABLE: &str = "reencryption_undecryptable_values";
// --- jobs ---
// (recorded by the `workers` scheduler, which owns the names)
pub const JOB_RUNS: &str = "job_runs_total";
pub const JOB_FAILURES: &str = "job_failures_total";
pub const JOB_DURATION: &str = "job_duration_seconds";
pub const JOB_LAST_SUCCESS: &str = "job_last_success_timestamp_seconds";
// --- actors, database, credentials ---
pub const TOKEN_ACTORS: &str = "token_actors_live";
pub const CREDENTIALS_WARM: &str = "credentials_warm";
pub const DB_UP: &str = "db_up";
pub const DB_POOL_CONNECTIONS: &str = "db_pool_connections";
pub const CREDENTIALS: &str = "credentials";
pub const CREDENTIALS_EXPIRING: &str = "credentials_expiring_soon";
// --- abuse limits ---
pub const RATE_LIMITED: &str = "rate_limited_total";
pub const AUDIT_DROPPED: &str = "audit_dropped_total";
pub const PROVIDER_FAILING: &str = "provider_failing";
// --- token exchange ---
pub const TOKEN_EXCHANGES: &str = "token_exchange_total";
pub const JWKS_FETCHES: &str = "jwks_fetch_total";
// --- webhooks and offboarding ---
pub const WEBHOOK_DELIVERIES: &str = "webhook_deliveries_total";
pub const WEBHOOK_BACKLOG: &str = "webhook_deliveries";
pub const PENDING_REVOCATIONS: &str = "pending_revocations";
// --- build ---
pub const BUILD_INFO: &str = "gateway_build_info";

/// The whole catalogue.
pub const CATALOGUE: &[Metric] = &[
    Metric {
        name: HTTP_REQUESTS,
        kind: Kind::Counter,
        labels: &["route", "method", "status"],
        help: "HTTP requests answered, by route pattern, method and status code.",
    },
    Metric {
        name: HTTP_REQUEST_DURATION,
        kind: Kind::Histogram,
        labels: &["route", "method", "status"],
        help: "Time to answer an HTTP request, in seconds.",
    },
    Metric {
        name: TOKEN_REQUESTS,
        kind: Kind::Counter,
        labels: &["provider", "outcome"],
        help: "POST /auth/token answers by outcome: memory, store, refreshed, not_authenticated, refresh_failed, scope_insufficient, provider_unavailable, busy.",
    },
    Metric {
        name: TOKEN_REFRESHES,
        kind: Kind::Counter,
        labels: &["provider", "trigger", "outcome", "category"],
        help: "Token refresh attempts by trigger (on_demand, proactive, keepalive), outcome (success, unsaved, skipped, permanent_failure, transient_failure) and failure category. unsaved: the provider issued tokens the database could not take yet; they are kept in memory and written once it can.",
    },
    Metric {
        name: TOKEN_REFRESH_DURATION,
        kind: Kind::Histogram,
        labels: &["provider", "trigger"],
        help: "Time a refresh took, lock and provider call included, in seconds.",
    },
    Metric {
        name: UPSTREAM_ERRORS,
        kind: Kind::Counter,
        labels: &["provider", "operation", "kind"],
        help: "Failed calls to a provider by operation (code_exchange, refresh, exchange, revoke, userinfo) and kind (timeout, network, http_5xx, http_429, oauth_error, invalid_response).",
    },
    Metric {
        name: TOKEN_EXCHANGES,
        kind: Kind::Counter,
        labels: &["via", "outcome"],
        help: "POST /oauth/token exchanges by what vouched for the user (identity_provider, worker_assertion, none) and outcome (memory, store, refreshed, authorization_required, or the refusal's reason: wrong_audience, expired, unknown_key, replayed, ...).",
    },
    Metric {
        name: JWKS_FETCHES,
        kind: Kind::Counter,
        labels: &["issuer", "outcome"],
        help: "Fetches of a trusted identity provider's signing keys by issuer id and outcome (ok, failed).",
    },
    Metric {
        name: WEBHOOK_DELIVERIES,
        kind: Kind::Counter,
        labels: &["event", "outcome"],
        help: "Webhook delivery attempts by event type and outcome (delivered, failed: retried later, dead: no attempt left).",
    },
    Metric {
        name: WEBHOOK_BACKLOG,
        kind: Kind::Gauge,
        labels: &["status"],
        help: "Webhook deliveries by status (pending, dead); dead ones wait for an operator (gateway webhooks deliveries --status dead).",
    },
    Metric {
        name: PENDING_REVOCATIONS,
        kind: Kind::Gauge,
        labels: &[],
        help: "Revocations a provider could not take yet (the credential is already deleted); a job retries them.",
    },
    Metric { name: SESSIONS_CREATED, kind: Kind::Counter, labels: &["provider"], help: "OAuth sessions started." },
    Metric {
        name: SESSIONS_COMPLETED,
        kind: Kind::Counter,
        labels: &["provider"],
        help: "OAuth sessions that stored a credential.",
    },
    Metric {
        name: SESSIONS_FAILED,
        kind: Kind::Counter,
        labels: &["provider", "reason"],
        help: "OAuth sessions that failed, by reason (access_denied, account_mismatch, expired, ...).",
    },
    Metric {
        name: ENCRYPTION_DURATION,
        kind: Kind::Histogram,
        labels: &[],
        help: "Time to seal one value, in seconds.",
    },
    Metric {
        name: DECRYPTION_DURATION,
        kind: Kind::Histogram,
        labels: &[],
        help: "Time to open one value, in seconds.",
    },
    Metric {
        name: ENCRYPTION_ERRORS,
        kind: Kind::Counter,
        labels: &["operation"],
        help: "Values that could not be decrypted (no matching key, tampered, or moved).",
    },
    Metric {
        name: PRIMARY_KEY_AGE,
        kind: Kind::Gauge,
        labels: &["key_id"],
        help: "Seconds since the primary key was first seen by this database.",
    },
    Metric {
        name: REENCRYPTION_PENDING,
        kind: Kind::Gauge,
        labels: &["key_id"],
        help: "Stored values sealed under a key that is not the primary (still to re-encrypt).",
    },
    Metric {
        name: REENCRYPTED,
        kind: Kind::Counter,
        labels: &["column"],
        help: "Values re-encrypted under the primary key.",
    },
    Metric {
        name: REENCRYPTION_UNDECRYPTABLE,
        kind: Kind::Gauge,
        labels: &[],
        help: "Values that no configured key can decrypt, found by the last re-encryption run.",
    },
    Metric { name: JOB_RUNS, kind: Kind::Counter, labels: &["job"], help: "Scheduled job runs." },
    Metric { name: JOB_FAILURES, kind: Kind::Counter, labels: &["job"], help: "Scheduled job runs that failed." },
    Metric { name: JOB_DURATION, kind: Kind::Histogram, labels: &["job"], help: "Time a job run took, in seconds." },
    Metric {
        name: JOB_LAST_SUCCESS,
        kind: Kind::Gauge,
        labels: &["job"],
        help: "Unix time of the job's last successful run.",
    },
    Metric {
        name: TOKEN_ACTORS,
        kind: Kind::Gauge,
        labels: &[],
        help: "TokenActors alive: credentials refreshing, storing or revoking now or within the last minute.",
    },
    Metric {
        name: CREDENTIALS_WARM,
        kind: Kind::Gauge,
        labels: &[],
        help: "Credentials held in memory by this replica (served without the database).",
    },
    Metric {
        name: DB_UP,
        kind: Kind::Gauge,
        labels: &[],
        help: "1 when the last database probe succeeded, 0 otherwise.",
    },
    Metric {
        name: DB_POOL_CONNECTIONS,
        kind: Kind::Gauge,
        labels: &["state"],
        help: "Database pool connections by state (in_use, idle).",
    },
    Metric {
        name: CREDENTIALS,
        kind: Kind::Gauge,
        labels: &["provider", "state"],
        help: "Stored credentials by provider and state (active, needs_reauth).",
    },
    Metric {
        name: CREDENTIALS_EXPIRING,
        kind: Kind::Gauge,
        labels: &["provider"],
        help: "Active credentials whose access token expires within the next 15 minutes.",
    },
    Metric {
        name: RATE_LIMITED,
        kind: Kind::Counter,
        labels: &["route"],
        help: "Requests refused with 429 by the rate limits.",
    },
    Metric {
        name: AUDIT_DROPPED,
        kind: Kind::Counter,
        labels: &[],
        help: "Audit records that could not be written (queue full or database error).",
    },
    Metric {
        name: PROVIDER_FAILING,
        kind: Kind::Gauge,
        labels: &["provider"],
        help: "1 while the provider refuses the gateway's client (invalid_client or unauthorized_client: a wrong or rotated client secret, a disabled app), 0 otherwise. Users' grants stay active.",
    },
    Metric {
        name: BUILD_INFO,
        kind: Kind::Gauge,
        labels: &["version"],
        help: "Always 1; the version label says which build is running.",
    },
];

/// Histogram buckets (seconds), chosen per metric so that both microsecond
/// cache hits and multi-second provider calls are resolved.
pub fn buckets_for(name: &str) -> &'static [f64] {
    match name {
        ENCRYPTION_DURATION | DECRYPTION_DURATION => {
            &[0.000_005, 0.000_01, 0.000_025, 0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.005]
        }
        HTTP_REQUEST_DURATION => &[
            0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
            30.0, 60.0,
        ],
        _ => &[0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0],
    }
}
