//! `/admin/*`: keys, re-encryption and the audit log, for operators. Needs
//! an API client with the `admin` action (the bootstrap `AUTH_GATEWAY_API_KEY`
//! has it). Every call is audited.

use std::collections::BTreeMap;

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Serialize;
use utoipa::ToSchema;

use crate::access::Action;
use crate::core::access::audit::{AuditFilter, AuditRecord};
use crate::core::credentials::listing::{ConnectionFilter, ListError};
use crate::core::credentials::{CredentialState, TokenError};
use crate::core::operations::{OffboardError, OffboardReport};
use crate::http::ApiError;
use crate::http::caller::Caller;
use crate::http::extract::{self, ApiPath, ApiQuery};
use crate::http::state::AppState;
use workers::reencrypt::{Pause, Phase, Progress, Run};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/admin/keys", get(keys))
        .route("/admin/keys/reencrypt", post(start_reencryption))
        .route("/admin/keys/reencrypt/pause", post(pause_reencryption))
        .route("/admin/audit", get(audit_log))
        .route("/admin/credentials", get(credentials))
        .route("/admin/stats", get(stats))
        .route("/admin/users/{email}", axum::routing::delete(offboard_user))
        .route("/admin/domains/{domain}", axum::routing::delete(offboard_domain))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct KeysResponse {
    pub primary_key_id: String,
    /// Every key id that is configured or seals a stored value.
    pub keys: Vec<KeyEntry>,
    /// Values under keys other than the primary: what re-encryption still has to do.
    pub pending_values: u64,
    pub reencryption: RotationProgress,
    /// At the current rate, while re-encryption runs.
    pub eta_seconds: Option<f64>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct KeyEntry {
    pub key_id: String,
    pub primary: bool,
    /// False when rows need this key but it is not configured.
    pub configured: bool,
    pub values: u64,
    /// Values per `table.column`.
    pub by_column: BTreeMap<String, u64>,
}

/// Re-encryption's phase.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum PhaseBody {
    Idle,
    Running,
    Paused,
    Done,
}

/// What `GET /admin/keys` reports about re-encryption.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct RotationProgress {
    pub state: PhaseBody,
    /// Rows looked at by the current (or last) walk.
    pub examined: u64,
    pub reencrypted: u64,
    /// Values no configured key could open (left untouched).
    pub undecryptable: Vec<UndecryptableValue>,
    /// Values re-encrypted per second by the current (or last) walk.
    pub rate_per_second: f64,
}

#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct UndecryptableValue {
    pub table: &'static str,
    pub column: &'static str,
    pub row_id: String,
}

impl From<workers::reencrypt::RotationProgress> for RotationProgress {
    fn from(p: workers::reencrypt::RotationProgress) -> Self {
        Self {
            state: match p.state {
                Phase::Idle => PhaseBody::Idle,
                Phase::Running => PhaseBody::Running,
                Phase::Paused => PhaseBody::Paused,
                Phase::Done => PhaseBody::Done,
            },
            examined: p.examined,
            reencrypted: p.reencrypted,
            undecryptable: p
                .undecryptable
                .into_iter()
                .map(|u| UndecryptableValue { table: u.table, column: u.column, row_id: u.row_id })
                .collect(),
            rate_per_second: p.rate_per_second,
        }
    }
}

/// One audit record (never a token).
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct AuditEntry {
    pub occurred_at: chrono::DateTime<chrono::Utc>,
    pub client: String,
    pub action: String,
    pub user_email: Option<String>,
    pub provider: Option<String>,
    pub outcome: String,
    pub request_id: Option<String>,
    pub detail: Option<String>,
}

impl From<AuditRecord> for AuditEntry {
    fn from(r: AuditRecord) -> Self {
        Self {
            occurred_at: r.occurred_at,
            client: r.client,
            action: r.action,
            user_email: r.user_email,
            provider: r.provider,
            outcome: r.outcome,
            request_id: r.request_id,
            detail: r.detail,
        }
    }
}

/// Checks the admin right and audits the call.
fn admin(state: &AppState, caller: &Caller, what: &str) -> Result<(), ApiError> {
    caller.allow(state, Action::Admin, None, None)?;
    state.services.audit().record(crate::core::access::audit::record(
        &caller.client.name,
        what,
        "ok",
        state.services.now(),
    ));
    Ok(())
}

/// Keys, the values each seals, and re-encryption's progress.
#[utoipa::path(get, path = "/admin/keys", tag = "admin", security(("api_key" = [])),
    responses((status = 200, body = KeysResponse), crate::http::responses::Guarded))]
pub async fn keys(caller: Caller, State(state): State<AppState>) -> Result<Json<KeysResponse>, ApiError> {
    admin(&state, &caller, "admin_keys")?;
    let report = state.services.key_report().await?;
    let keys: Vec<KeyEntry> = report
        .keys
        .into_iter()
        .map(|k| KeyEntry {
            key_id: k.key_id,
            primary: k.primary,
            configured: k.configured,
            values: k.values,
            by_column: k.by_column,
        })
        .collect();
    let reencryption: RotationProgress =
        state.workers.rotation().send(Progress).await.map_err(ApiError::internal)?.into();
    let eta_seconds =
        (reencryption.rate_per_second > 0.0).then(|| report.pending_values as f64 / reencryption.rate_per_second);
    Ok(Json(KeysResponse {
        primary_key_id: report.primary_key_id,
        keys,
        pending_values: report.pending_values,
        reencryption,
        eta_seconds,
    }))
}

/// Starts re-encryption in the background (202), or says it is already running.
#[utoipa::path(post, path = "/admin/keys/reencrypt", tag = "admin", security(("api_key" = [])),
    responses((status = 202, body = RotationProgress), crate::http::responses::Guarded))]
pub async fn start_reencryption(
    caller: Caller,
    State(state): State<AppState>,
) -> Result<(StatusCode, Json<RotationProgress>), ApiError> {
    admin(&state, &caller, "admin_reencrypt")?;
    let run = state.workers.rotation().send(Run);
    tokio::spawn(async move {
        match run.await {
            Ok(Ok(report)) => {
                tracing::info!(reencrypted = report.reencrypted, finished = report.finished, "re-encryption ended")
            }
            Ok(Err(refused)) => tracing::info!(%refused, "re-encryption not started"),
            Err(err) => tracing::warn!(error = %err, "re-encryption actor unavailable"),
        }
    });
    let progress = state.workers.rotation().send(Progress).await.map_err(ApiError::internal)?;
    Ok((StatusCode::ACCEPTED, Json(progress.into())))
}

/// Pauses re-encryption after its current batch.
#[utoipa::path(post, path = "/admin/keys/reencrypt/pause", tag = "admin", security(("api_key" = [])),
    responses((status = 202, body = RotationProgress), crate::http::responses::Guarded))]
pub async fn pause_reencryption(
    caller: Caller,
    State(state): State<AppState>,
) -> Result<(StatusCode, Json<RotationProgress>), ApiError> {
    admin(&state, &caller, "admin_reencrypt_pause")?;
    state.workers.rotation().send(Pause).await.map_err(ApiError::internal)?;
    let progress = state.workers.rotation().send(Progress).await.map_err(ApiError::internal)?;
    Ok((StatusCode::ACCEPTED, Json(progress.into())))
}

#[derive(Debug, serde::Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct AuditQuery {
    /// Only records about this user.
    pub user: Option<String>,
    /// Only records of this API client.
    pub client: Option<String>,
    /// RFC 3339; records at or after.
    pub since: Option<chrono::DateTime<chrono::Utc>>,
    /// RFC 3339; records before.
    pub until: Option<chrono::DateTime<chrono::Utc>>,
    /// At most this many (1 to 1000, default 100), newest first.
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<u64>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct AuditResponse {
    pub records: Vec<AuditEntry>,
}

/// The audit log, newest first (a client limited to providers or domains
/// sees only the records about them).
#[utoipa::path(get, path = "/admin/audit", tag = "admin", security(("api_key" = [])), params(AuditQuery),
    responses((status = 200, body = AuditResponse), (status = 400, body = crate::http::error::ErrorBody), crate::http::responses::Guarded))]
pub async fn audit_log(
    caller: Caller,
    State(state): State<AppState>,
    ApiQuery(query): ApiQuery<AuditQuery>,
) -> Result<Json<AuditResponse>, ApiError> {
    let user = query.user.as_deref().map(extract::email).transpose()?;
    let limit = query.limit.unwrap_or(100);
    if !(1..=1000).contains(&limit) {
        return Err(ApiError::InvalidRequest("limit must be between 1 and 1000.".into()));
    }
    admin(&state, &caller, "admin_audit")?;
    let filter = AuditFilter {
        user_email: user.map(|e| e.to_string()),
        client: query.client,
        since: query.since,
        until: query.until,
        limit,
        allowed_providers: caller.client.providers.clone(),
        allowed_domains: caller.client.domains.clone(),
    };
    let records = state.services.read_audit(&filter).await?.into_iter().map(AuditEntry::from).collect();
    Ok(Json(AuditResponse { records }))
}

#[derive(Debug, serde::Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct CredentialsQuery {
    /// Only this provider's.
    pub provider: Option<String>,
    /// `active` or `needs_reauth`.
    pub state: Option<String>,
    /// Only users of this email domain.
    pub domain: Option<String>,
    /// RFC 3339: access tokens expiring before.
    pub expiring_before: Option<chrono::DateTime<chrono::Utc>>,
    /// RFC 3339: not served since (or never).
    pub not_used_since: Option<chrono::DateTime<chrono::Utc>>,
    /// RFC 3339: not refreshed since (or never).
    pub not_refreshed_since: Option<chrono::DateTime<chrono::Utc>>,
    /// `next_cursor` of the previous page.
    pub cursor: Option<String>,
    /// Entries per page (1 to 1000, default 100).
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<u64>,
}

/// One credential: who, where, in what state, and when it was last authorized,
/// refreshed, used and proven to work. Never a token.
#[derive(Debug, Serialize, ToSchema)]
pub struct CredentialEntry {
    pub provider: String,
    pub user_email: String,
    pub scopes: Vec<String>,
    pub state: crate::http::dto::CredentialStateBody,
    pub last_error_category: Option<String>,
    pub last_error_at: Option<chrono::DateTime<chrono::Utc>>,
    pub consecutive_failures: i32,
    pub authorized_at: chrono::DateTime<chrono::Utc>,
    pub last_refreshed_at: Option<chrono::DateTime<chrono::Utc>>,
    pub last_used_at: Option<chrono::DateTime<chrono::Utc>>,
    /// The last successful refresh, or the last probe the token passed.
    pub last_verified_at: Option<chrono::DateTime<chrono::Utc>>,
    pub expires_at: Option<chrono::DateTime<chrono::Utc>>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct CredentialsResponse {
    pub credentials: Vec<CredentialEntry>,
    /// Pass as `cursor` for the next page; absent on the last.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<String>,
}

/// The caller's limits as a listing filter.
fn limits_of(caller: &Caller) -> ConnectionFilter {
    ConnectionFilter {
        allowed_providers: caller.client.providers.clone(),
        allowed_domains: caller.client.domains.clone(),
        ..ConnectionFilter::default()
    }
}

/// Credentials across users, filtered and paged.
#[utoipa::path(get, path = "/admin/credentials", tag = "admin", security(("api_key" = [])), params(CredentialsQuery),
    responses((status = 200, body = CredentialsResponse), (status = 400, body = crate::http::error::ErrorBody), crate::http::responses::Guarded))]
pub async fn credentials(
    caller: Caller,
    State(state): State<AppState>,
    ApiQuery(query): ApiQuery<CredentialsQuery>,
) -> Result<Json<CredentialsResponse>, ApiError> {
    let provider = query.provider.as_deref().map(extract::provider_id).transpose()?.map(str::to_owned);
    let credential_state = match query.state.as_deref() {
        None => None,
        Some("active") => Some(CredentialState::Active),
        Some("needs_reauth") => Some(CredentialState::NeedsReauth),
        Some(_) => return Err(ApiError::InvalidRequest("state must be active or needs_reauth.".into())),
    };
    let domain = query.domain.as_deref().map(extract::domain).transpose()?;
    admin(&state, &caller, "admin_credentials")?;
    let filter = ConnectionFilter {
        provider,
        state: credential_state,
        domain,
        expiring_before: query.expiring_before,
        unused_since: query.not_used_since,
        unrefreshed_since: query.not_refreshed_since,
        ..limits_of(&caller)
    };
    let page =
        state.services.list_connections(&filter, query.cursor.as_deref(), query.limit).await.map_err(|e| match e {
            ListError::Store(store) => ApiError::from(store),
            invalid => ApiError::InvalidRequest(invalid.to_string()),
        })?;
    Ok(Json(CredentialsResponse {
        credentials: page
            .connections
            .into_iter()
            .map(|c| CredentialEntry {
                provider: c.provider,
                user_email: c.user_email,
                scopes: c.scopes,
                state: c.state.into(),
                last_error_category: c.last_error_category,
                last_error_at: c.last_error_at,
                consecutive_failures: c.consecutive_failures,
                authorized_at: c.authorized_at,
                last_refreshed_at: c.last_refreshed_at,
                last_used_at: c.last_used_at,
                last_verified_at: c.last_verified_at,
                expires_at: c.expires_at,
            })
            .collect(),
        next_cursor: page.next_cursor,
    }))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct CountEntry {
    pub provider: String,
    pub count: u64,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct StateCount {
    pub provider: String,
    pub state: String,
    pub count: u64,
}

/// What an on-call person wants first.
#[derive(Debug, Serialize, ToSchema)]
pub struct StatsResponse {
    /// Credentials by provider and state.
    pub credentials: Vec<StateCount>,
    /// Active credentials whose access token expires within the hour, by provider.
    pub expiring_within_1h: Vec<CountEntry>,
    /// ... within 24 hours.
    pub expiring_within_24h: Vec<CountEntry>,
    /// Sessions by status (`pending`, `completed`, `failed`).
    pub sessions: BTreeMap<String, u64>,
}

/// Counts by provider and state, upcoming expiries, sessions by status.
#[utoipa::path(get, path = "/admin/stats", tag = "admin", security(("api_key" = [])),
    responses((status = 200, body = StatsResponse), crate::http::responses::Guarded))]
pub async fn stats(caller: Caller, State(state): State<AppState>) -> Result<Json<StatsResponse>, ApiError> {
    admin(&state, &caller, "admin_stats")?;
    let counts = state.services.counts(&limits_of(&caller)).await?;
    let entries =
        |list: Vec<(String, u64)>| list.into_iter().map(|(provider, count)| CountEntry { provider, count }).collect();
    let [within_1h, within_24h] = counts.expiring;
    Ok(Json(StatsResponse {
        credentials: counts
            .credentials
            .into_iter()
            .map(|(provider, state, count)| StateCount { provider, state, count })
            .collect(),
        expiring_within_1h: entries(within_1h),
        expiring_within_24h: entries(within_24h),
        sessions: counts.sessions.into_iter().collect(),
    }))
}

#[derive(Debug, serde::Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct OffboardQuery {
    /// List what would be removed, change nothing.
    pub dry_run: Option<bool>,
}

/// What happened to one grant.
#[derive(Debug, Serialize, ToSchema)]
pub struct OffboardedEntry {
    pub user_email: String,
    pub provider: String,
    /// `revoked`, `already_invalid`, `failed` (deleted here; the revocation is
    /// retried by a job), `not_supported`, `already_deleted`, or `would_revoke` (dry run).
    pub outcome: &'static str,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct OffboardResponse {
    pub dry_run: bool,
    pub credentials: Vec<OffboardedEntry>,
    /// The users' pending sign-ins, cancelled.
    pub sessions_cancelled: u64,
    /// A domain with more credentials than one call handles: call again.
    pub more: bool,
}

fn offboard_error(err: OffboardError) -> ApiError {
    match err {
        OffboardError::Store(store) => store.into(),
        OffboardError::Revoke { source: TokenError::Unavailable, .. } => ApiError::Unavailable,
        OffboardError::Revoke { source: TokenError::Busy, .. } => ApiError::Busy { retry_after_secs: 1 },
        other => ApiError::internal(other),
    }
}

/// Audits each grant's outcome and renders the report.
fn offboarded(state: &AppState, caller: &Caller, report: OffboardReport, dry_run: bool) -> Json<OffboardResponse> {
    for c in &report.credentials {
        let action = if dry_run { "offboard_dry_run" } else { "offboard" };
        let mut record =
            crate::core::access::audit::record(&caller.client.name, action, c.outcome, state.services.now());
        record.user_email = Some(c.user_email.clone());
        record.provider = Some(c.provider.clone());
        state.services.audit().record(record);
    }
    Json(OffboardResponse {
        dry_run,
        sessions_cancelled: report.sessions_cancelled,
        more: report.more,
        credentials: report
            .credentials
            .into_iter()
            .map(|c| OffboardedEntry { user_email: c.user_email, provider: c.provider, outcome: c.outcome })
            .collect(),
    })
}

/// Offboards a user: revokes every grant at its provider, deletes the
/// credentials and pending sessions, drops every replica's cached tokens.
/// Idempotent; a provider that is down does not stop the deletion.
#[utoipa::path(delete, path = "/admin/users/{email}", tag = "admin", security(("api_key" = [])),
    params(("email" = String, Path, description = "The user's email address", pattern = "^[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\\.[A-Za-z]{2,}$", max_length = 255), OffboardQuery),
    responses((status = 200, body = OffboardResponse), (status = 400, body = crate::http::error::ErrorBody), crate::http::responses::Guarded))]
pub async fn offboard_user(
    caller: Caller,
    State(state): State<AppState>,
    ApiPath(email): ApiPath<String>,
    ApiQuery(query): ApiQuery<OffboardQuery>,
) -> Result<Json<OffboardResponse>, ApiError> {
    let email = extract::email(&email)?;
    caller.allow(&state, Action::Admin, None, Some(&email))?;
    let dry_run = query.dry_run.unwrap_or(false);
    let report =
        state.services.offboard(&email, dry_run, caller.client.providers.as_deref()).await.map_err(offboard_error)?;
    Ok(offboarded(&state, &caller, report, dry_run))
}

/// Offboards every user of an email domain (at most 500 grants per call; `more` says to call again).
#[utoipa::path(delete, path = "/admin/domains/{domain}", tag = "admin", security(("api_key" = [])),
    params(("domain" = String, Path, description = "An email domain, e.g. company.com"), OffboardQuery),
    responses((status = 200, body = OffboardResponse), (status = 400, body = crate::http::error::ErrorBody), crate::http::responses::Guarded))]
pub async fn offboard_domain(
    caller: Caller,
    State(state): State<AppState>,
    ApiPath(domain): ApiPath<String>,
    ApiQuery(query): ApiQuery<OffboardQuery>,
) -> Result<Json<OffboardResponse>, ApiError> {
    let domain = extract::domain(&domain)?;
    caller.allow(&state, Action::Admin, None, None)?;
    if let Some(domains) = &caller.client.domains
        && !domains.iter().any(|d| d.eq_ignore_ascii_case(&domain))
    {
        return Err(ApiError::Forbidden(format!(
            "The API client {} may not act for users of {domain}.",
            caller.client.name
        )));
    }
    let dry_run = query.dry_run.unwrap_or(false);
    let report = state
        .services
        .offboard_domain(&domain, dry_run, caller.client.providers.as_deref())
        .await
        .map_err(offboard_error)?;
    Ok(offboarded(&state, &caller, report, dry_run))
}
