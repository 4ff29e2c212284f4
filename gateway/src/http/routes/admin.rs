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
use crate::actors::rotation::{Pause, Progress, RotationProgress, Run};
use crate::app::AppState;
use crate::http::ApiError;
use crate::http::auth::Caller;
use crate::http::extract::{self, ApiQuery};
use crate::store::audit::{AuditFilter, AuditRecord};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/admin/keys", get(keys))
        .route("/admin/keys/reencrypt", post(start_reencryption))
        .route("/admin/keys/reencrypt/pause", post(pause_reencryption))
        .route("/admin/audit", get(audit_log))
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

/// Checks the admin right and audits the call.
fn admin(state: &AppState, caller: &Caller, what: &str) -> Result<(), ApiError> {
    caller.allow(state, Action::Admin, None, None)?;
    state.deps.audit.record(crate::access::audit::record(&caller.client.name, what, "ok", state.deps.clock.now()));
    Ok(())
}

/// Keys, the values each seals, and re-encryption's progress.
#[utoipa::path(get, path = "/admin/keys", tag = "admin", security(("api_key" = [])),
    responses((status = 200, body = KeysResponse), (status = 401, body = crate::http::error::ErrorBody), (status = 403, body = crate::http::error::ErrorBody), (status = 429, body = crate::http::error::ErrorBody, headers(("Retry-After" = u64, description = "Seconds to wait"))), (status = 500, body = crate::http::error::ErrorBody), (status = 503, body = crate::http::error::ErrorBody)))]
pub async fn keys(caller: Caller, State(state): State<AppState>) -> Result<Json<KeysResponse>, ApiError> {
    admin(&state, &caller, "admin_keys")?;
    let usage = state.deps.store.key_usage().await?;
    let keyring = &state.deps.keyring;
    let primary = keyring.primary_id().to_string();
    let mut ids: Vec<String> = keyring.key_ids().map(ToString::to_string).collect();
    ids.extend(usage.rows.keys().filter(|id| !keyring.knows(id)).cloned());
    let keys: Vec<KeyEntry> = ids
        .into_iter()
        .map(|id| KeyEntry {
            primary: id == primary,
            configured: keyring.knows(&id),
            values: usage.total(&id),
            by_column: usage
                .rows
                .get(&id)
                .map(|cols| cols.iter().map(|(c, n)| (format!("{}.{}", c.table, c.column), *n)).collect())
                .unwrap_or_default(),
            key_id: id,
        })
        .collect();
    let pending_values = keys.iter().filter(|k| !k.primary).map(|k| k.values).sum();
    let reencryption = state.rotation.send(Progress).await.map_err(ApiError::internal)?;
    let eta_seconds =
        (reencryption.rate_per_second > 0.0).then(|| pending_values as f64 / reencryption.rate_per_second);
    Ok(Json(KeysResponse { primary_key_id: primary, keys, pending_values, reencryption, eta_seconds }))
}

/// Starts re-encryption in the background (202), or says it is already running.
#[utoipa::path(post, path = "/admin/keys/reencrypt", tag = "admin", security(("api_key" = [])),
    responses((status = 202, body = RotationProgress), (status = 401, body = crate::http::error::ErrorBody), (status = 403, body = crate::http::error::ErrorBody), (status = 429, body = crate::http::error::ErrorBody, headers(("Retry-After" = u64, description = "Seconds to wait"))), (status = 500, body = crate::http::error::ErrorBody), (status = 503, body = crate::http::error::ErrorBody)))]
pub async fn start_reencryption(
    caller: Caller,
    State(state): State<AppState>,
) -> Result<(StatusCode, Json<RotationProgress>), ApiError> {
    admin(&state, &caller, "admin_reencrypt")?;
    let run = state.rotation.send(Run);
    tokio::spawn(async move {
        match run.await {
            Ok(Ok(report)) => {
                tracing::info!(reencrypted = report.reencrypted, finished = report.finished, "re-encryption ended")
            }
            Ok(Err(message)) => tracing::info!(%message, "re-encryption not started"),
            Err(err) => tracing::warn!(error = %err, "re-encryption actor unavailable"),
        }
    });
    let progress = state.rotation.send(Progress).await.map_err(ApiError::internal)?;
    Ok((StatusCode::ACCEPTED, Json(progress)))
}

/// Pauses re-encryption after its current batch.
#[utoipa::path(post, path = "/admin/keys/reencrypt/pause", tag = "admin", security(("api_key" = [])),
    responses((status = 202, body = RotationProgress), (status = 401, body = crate::http::error::ErrorBody), (status = 403, body = crate::http::error::ErrorBody), (status = 429, body = crate::http::error::ErrorBody, headers(("Retry-After" = u64, description = "Seconds to wait"))), (status = 500, body = crate::http::error::ErrorBody), (status = 503, body = crate::http::error::ErrorBody)))]
pub async fn pause_reencryption(
    caller: Caller,
    State(state): State<AppState>,
) -> Result<(StatusCode, Json<RotationProgress>), ApiError> {
    admin(&state, &caller, "admin_reencrypt_pause")?;
    state.rotation.send(Pause).await.map_err(ApiError::internal)?;
    let progress = state.rotation.send(Progress).await.map_err(ApiError::internal)?;
    Ok((StatusCode::ACCEPTED, Json(progress)))
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
    pub records: Vec<AuditRecord>,
}

/// The audit log, newest first.
#[utoipa::path(get, path = "/admin/audit", tag = "admin", security(("api_key" = [])), params(AuditQuery),
    responses((status = 200, body = AuditResponse), (status = 400, body = crate::http::error::ErrorBody), (status = 401, body = crate::http::error::ErrorBody), (status = 403, body = crate::http::error::ErrorBody), (status = 429, body = crate::http::error::ErrorBody, headers(("Retry-After" = u64, description = "Seconds to wait"))), (status = 500, body = crate::http::error::ErrorBody), (status = 503, body = crate::http::error::ErrorBody)))]
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
    };
    Ok(Json(AuditResponse { records: state.deps.store.read_audit(&filter).await? }))
}
