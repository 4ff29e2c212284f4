//! The API MCP servers call: `/auth/init`, `/auth/status`, `/auth/token`,
//! `/auth/providers`, `/auth/revoke`. Each handler validates, sends one
//! message, and maps the answer.

use axum::extract::State;
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use chrono::{DateTime, Utc};
use secrecy::ExposeSecret;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use crate::access::Action;
use crate::core::credentials::CredentialKey;
use crate::core::sessions::{self, SessionStatus, StartRequest};
use crate::email::Email;
use crate::http::ApiError;
use crate::http::caller::Caller;
use crate::http::dto::{CredentialStateBody, RevocationBody};
use crate::http::error::TokenFailure;
use crate::http::extract::{self, ApiJson, ApiPath, ApiQuery, MAX_URL_LEN};
use crate::http::state::AppState;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/auth/init", post(init))
        .route("/auth/status/{session_id}", get(status))
        .route("/auth/token", post(token))
        .route("/auth/providers/{user_email}", get(providers))
        .route("/auth/revoke", delete(revoke))
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct InitRequest {
    /// Provider id, e.g. `google`.
    #[schema(pattern = "^[a-z0-9_-]{1,50}$")]
    pub provider: String,
    #[schema(pattern = "^[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\\.[A-Za-z]{2,}$", max_length = 255)]
    pub user_email: String,
    /// Scopes to ask for; the provider's defaults when omitted.
    #[serde(default)]
    pub scopes: Option<Vec<String>>,
    /// Where the browser goes after a successful sign-in (allow-listed hosts only).
    #[serde(default)]
    pub redirect_after: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct InitResponse {
    /// The link the user must open: a one-time connect page on this gateway.
    pub auth_url: String,
    pub session_id: Uuid,
    pub expires_at: DateTime<Utc>,
}

#[derive(Debug, Deserialize, ToSchema, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct StatusQuery {
    /// Seconds to wait for the session to leave `pending` (0 to 60).
    #[param(minimum = 0, maximum = 60)]
    pub wait: Option<u64>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct StatusResponse {
    /// `pending`, `completed` or `failed`.
    pub status: &'static str,
    pub session_id: Uuid,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<DateTime<Utc>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user_email: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub provider: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub completed_at: Option<DateTime<Utc>>,
    /// Why the session failed, in words (`Session expired`, ...).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<&'static str>,
    /// Why the session failed, as a stable code (`expired`, `access_denied`, `account_mismatch`, ...).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<&'static str>,
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct TokenRequest {
    #[schema(pattern = "^[a-z0-9_-]{1,50}$")]
    pub provider: String,
    #[schema(pattern = "^[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\\.[A-Za-z]{2,}$", max_length = 255)]
    pub user_email: String,
    /// Scopes the token must carry; a grant lacking any is never returned.
    #[serde(default)]
    pub required_scopes: Option<Vec<String>>,
}

#[derive(Serialize, ToSchema)]
pub struct TokenResponse {
    pub access_token: String,
    /// Always `Bearer`.
    pub token_type: &'static str,
    pub expires_at: Option<DateTime<Utc>>,
    pub scopes: Vec<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ProvidersResponse {
    pub user_email: String,
    pub providers: Vec<ProviderEntry>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ProviderEntry {
    pub provider: String,
    pub scopes: Vec<String>,
    pub authenticated_at: DateTime<Utc>,
    pub token_expires_at: Option<DateTime<Utc>>,
    pub state: CredentialStateBody,
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct RevokeRequest {
    #[schema(pattern = "^[a-z0-9_-]{1,50}$")]
    pub provider: String,
    #[schema(pattern = "^[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\\.[A-Za-z]{2,}$", max_length = 255)]
    pub user_email: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct RevokeResponse {
    pub success: bool,
    pub message: String,
    /// What the provider did with the grant.
    pub provider_revocation: RevocationBody,
}

/// Checks a provider id names a provider this gateway serves.
async fn known_provider(state: &AppState, raw: &str) -> Result<String, ApiError> {
    let id = extract::provider_id(raw)?;
    match state.services.provider(id).await {
        Some(p) => Ok(p.id.clone()),
        None => Err(ApiError::UnknownProvider(id.to_owned())),
    }
}

/// Queues an audit record for this request.
fn audit(
    state: &AppState,
    caller: &Caller,
    action: &str,
    email: Option<&Email>,
    provider: Option<&str>,
    outcome: &str,
    detail: Option<String>,
) {
    let mut record = crate::core::access::audit::record(&caller.client.name, action, outcome, state.services.now());
    record.user_email = email.map(ToString::to_string);
    record.provider = provider.map(str::to_owned);
    record.detail = detail;
    state.services.audit().record(record);
}

/// Start an OAuth flow for a user, or get back the one already waiting.
#[utoipa::path(post, path = "/auth/init", tag = "auth", request_body = InitRequest,
    security(("api_key" = [])),
    responses(
        crate::http::responses::Guarded, crate::http::responses::WithBody,
        (status = 200, description = "The link the user must open", body = InitResponse),
    ))]
pub async fn init(
    caller: Caller,
    State(state): State<AppState>,
    ApiJson(req): ApiJson<InitRequest>,
) -> Result<Json<InitResponse>, ApiError> {
    let email = extract::email(&req.user_email)?;
    let provider = known_provider(&state, &req.provider).await?;
    let scopes = req.scopes.map(|s| extract::scopes("scopes", Some(s))).transpose()?;
    if req.redirect_after.as_ref().is_some_and(|r| r.len() > MAX_URL_LEN) {
        return Err(ApiError::InvalidRequest(format!("redirect_after is longer than {MAX_URL_LEN} characters.")));
    }
    caller.allow(&state, Action::Init, Some(&provider), Some(&email))?;
    caller.must_not_name_users(&state, Some(&provider), &email)?;
    let request = StartRequest {
        provider: provider.clone(),
        email: email.clone(),
        scopes,
        redirect_after: req.redirect_after,
        client: caller.client.name.clone(),
    };
    let result = state.services.start_flow(request).await;
    let outcome = match &result {
        Ok(started) if started.reused => "session_reused",
        Ok(_) => "session_created",
        Err(err) => err.code(),
    };
    let detail = result.as_ref().ok().map(|s| format!("session {}", s.session.id));
    audit(&state, &caller, "init", Some(&email), Some(&provider), outcome, detail);
    let started = result.map_err(ApiError::from)?;
    Ok(Json(InitResponse {
        auth_url: started.auth_url.to_string(),
        session_id: started.session.id,
        expires_at: started.session.expires_at,
    }))
}

/// A flow's status; with `wait`, answers as soon as it leaves `pending`.
#[utoipa::path(get, path = "/auth/status/{session_id}", tag = "auth",
    params(("session_id" = Uuid, Path, description = "From /auth/init"), StatusQuery),
    security(("api_key" = [])),
    responses(
        crate::http::responses::Guarded,
        (status = 200, description = "pending, completed or failed", body = StatusResponse),
        (status = 400, description = "invalid_request", body = crate::http::error::ErrorBody),
        (status = 404, description = "session_not_found", body = crate::http::error::ErrorBody),
    ))]
pub async fn status(
    caller: Caller,
    State(state): State<AppState>,
    ApiPath(session_id): ApiPath<String>,
    ApiQuery(query): ApiQuery<StatusQuery>,
) -> Result<Json<StatusResponse>, ApiError> {
    let id = Uuid::parse_str(&session_id).map_err(|_| ApiError::InvalidRequest("session_id is not a UUID.".into()))?;
    let wait = query.wait.unwrap_or(0);
    if wait > sessions::MAX_WAIT.as_secs() {
        return Err(ApiError::InvalidRequest(format!(
            "wait must be between 0 and {} seconds.",
            sessions::MAX_WAIT.as_secs()
        )));
    }
    caller.allow(&state, Action::Status, None, None)?;
    let record = state.services.flow_status(id, &caller.client.name, std::time::Duration::from_secs(wait)).await?;
    let (status, reason) = sessions::reported_status(&record, state.services.now());
    let mut body = StatusResponse {
        status: status.as_str(),
        session_id: record.id,
        expires_at: None,
        user_email: None,
        provider: None,
        completed_at: None,
        error: None,
        reason: None,
    };
    match status {
        SessionStatus::Pending => body.expires_at = Some(record.expires_at),
        SessionStatus::Completed => {
            body.user_email = Some(record.email);
            body.provider = Some(record.provider);
            body.completed_at = record.completed_at;
        }
        SessionStatus::Failed => {
            let reason = reason.unwrap_or(sessions::FailReason::ProviderError);
            body.error = Some(reason.message());
            body.reason = Some(reason.code());
        }
    }
    Ok(Json(body))
}

/// A valid access token for the user, refreshed when it is about to expire.
#[utoipa::path(post, path = "/auth/token", tag = "auth", request_body = TokenRequest,
    security(("api_key" = [])),
    responses(
        crate::http::responses::Guarded, crate::http::responses::WithBody,
        (status = 200, description = "A valid token", body = TokenResponse),
        (status = 401, description = "unauthorized (no X-API-Key) or refresh_failed (auth_required)", body = crate::http::error::ErrorBody),
        (status = 403, description = "forbidden (wrong X-API-Key), exchange_required (the client must use POST /oauth/token) or scope_insufficient (auth_required, missing_scopes)", body = crate::http::error::ErrorBody),
        (status = 404, description = "not_authenticated (auth_required)", body = crate::http::error::ErrorBody),
        (status = 503, description = "provider_unavailable, busy or service_unavailable, with Retry-After", body = crate::http::error::ErrorBody),
    ))]
pub async fn token(
    caller: Caller,
    State(state): State<AppState>,
    ApiJson(req): ApiJson<TokenRequest>,
) -> Result<Json<TokenResponse>, ApiError> {
    let email = extract::email(&req.user_email)?;
    let provider = known_provider(&state, &req.provider).await?;
    let required = extract::scopes("required_scopes", req.required_scopes)?;
    caller.allow(&state, Action::Token, Some(&provider), Some(&email))?;
    caller.must_not_name_users(&state, Some(&provider), &email)?;
    let key = CredentialKey { email, provider };
    let result = state.services.token(&key, &required).await;
    let outcome = match &result {
        Ok(grant) => grant.source.as_str(),
        Err(err) => err.outcome(),
    };
    crate::telemetry::handles::token_request(&key.provider, outcome).increment(1);
    state.services.audit().token_read(
        &caller.client.name,
        key.email.as_str(),
        &key.provider,
        outcome,
        state.services.now(),
    );
    let grant = result.map_err(|e| TokenFailure(e, key.clone()))?;
    Ok(Json(TokenResponse {
        access_token: grant.access_token.expose_secret().to_owned(),
        token_type: "Bearer",
        expires_at: grant.expires_at,
        scopes: grant.scopes,
    }))
}

/// The providers a user has authorized.
#[utoipa::path(get, path = "/auth/providers/{user_email}", tag = "auth",
    params(("user_email" = String, Path, description = "The user's email address", pattern = "^[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\\.[A-Za-z]{2,}$", max_length = 255)),
    security(("api_key" = [])),
    responses(
        crate::http::responses::Guarded,
        (status = 200, description = "The user's credentials, without tokens", body = ProvidersResponse),
        (status = 400, description = "invalid_email", body = crate::http::error::ErrorBody),
    ))]
pub async fn providers(
    caller: Caller,
    State(state): State<AppState>,
    ApiPath(user_email): ApiPath<String>,
) -> Result<Json<ProvidersResponse>, ApiError> {
    let email: Email = extract::email(&user_email)?;
    caller.allow(&state, Action::Status, None, Some(&email))?;
    caller.must_not_name_users(&state, None, &email)?;
    let mut credentials = state.services.list_credentials(&email).await?;
    // A client sees only the providers it may use.
    credentials.retain(|c| caller.client.may_use_provider(&c.provider));
    audit(&state, &caller, "providers", Some(&email), None, "listed", None);
    Ok(Json(ProvidersResponse {
        user_email: email.to_string(),
        providers: credentials
            .into_iter()
            .map(|c| ProviderEntry {
                provider: c.provider,
                scopes: c.scopes,
                authenticated_at: c.authorized_at,
                token_expires_at: c.expires_at,
                state: c.state.into(),
            })
            .collect(),
    }))
}

/// Revoke at the provider and delete the stored credential.
#[utoipa::path(delete, path = "/auth/revoke", tag = "auth", request_body = RevokeRequest,
    security(("api_key" = [])),
    responses(
        crate::http::responses::Guarded, crate::http::responses::WithBody,
        (status = 200, description = "Deleted; provider_revocation says what the provider did", body = RevokeResponse),
        (status = 404, description = "not_authenticated: nothing stored", body = crate::http::error::ErrorBody),
    ))]
pub async fn revoke(
    caller: Caller,
    State(state): State<AppState>,
    ApiJson(req): ApiJson<RevokeRequest>,
) -> Result<Json<RevokeResponse>, ApiError> {
    let email = extract::email(&req.user_email)?;
    let provider = extract::provider_id(&req.provider)?.to_owned();
    caller.allow(&state, Action::Revoke, Some(&provider), Some(&email))?;
    let key = CredentialKey { email, provider };
    let result = state.services.revoke(&key).await;
    let outcome = match &result {
        Ok(outcome) => outcome.as_str(),
        Err(err) => err.outcome(),
    };
    audit(&state, &caller, "revoke", Some(&key.email), Some(&key.provider), outcome, None);
    let outcome = result.map_err(|e| TokenFailure(e, key.clone()))?;
    Ok(Json(RevokeResponse {
        success: true,
        message: format!("Credentials revoked for {} ({})", key.email, key.provider),
        provider_revocation: outcome.into(),
    }))
}
