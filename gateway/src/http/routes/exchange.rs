//! `POST /oauth/token`: token exchange (RFC 8693). The MCP server hands over
//! the access token its user's MCP client presented (or its worker's signed
//! assertion) and the provider it needs; the gateway verifies who the user
//! is and answers with that user's provider token. The user is never a
//! request parameter.
//!
//! When the verified user has no usable grant, the answer is
//! `authorization_required` with a connect link bound to that user (the
//! flow's identity check then pins the provider account to the same person).

use axum::body::Bytes;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use secrecy::ExposeSecret;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::access::Action;
use crate::core::credentials::CredentialKey;
use crate::core::exchange::{SUBJECT_TOKEN_TYPES, VerifiedUser, Via};
use crate::core::sessions::StartRequest;
use crate::http::ApiError;
use crate::http::caller::Caller;
use crate::http::error::TokenFailure;
use crate::http::extract;
use crate::http::oauth_error::{AuthorizationRequired, OAuthError};
use crate::http::state::AppState;
use crate::telemetry::metrics as m;

pub const GRANT_TYPE: &str = "urn:ietf:params:oauth:grant-type:token-exchange";
pub const ACCESS_TOKEN_TYPE: &str = "urn:ietf:params:oauth:token-type:access_token";

pub fn router() -> Router<AppState> {
    Router::new().route("/oauth/token", post(exchange))
}

/// The form of an exchange (`application/x-www-form-urlencoded`).
#[derive(Debug, Deserialize, ToSchema)]
pub struct ExchangeForm {
    /// `urn:ietf:params:oauth:grant-type:token-exchange`
    pub grant_type: String,
    /// A JWT: the user's access token from a trusted identity provider, or a worker assertion.
    pub subject_token: String,
    /// `urn:ietf:params:oauth:token-type:access_token`, `…:jwt` or `…:id_token`.
    pub subject_token_type: String,
    /// The provider id whose token is wanted, e.g. `google`.
    pub audience: String,
    /// Space-separated scopes the token must carry.
    pub scope: Option<String>,
    /// If given, `urn:ietf:params:oauth:token-type:access_token`.
    pub requested_token_type: Option<String>,
}

/// RFC 8693 §2.2.1.
#[derive(Serialize, ToSchema)]
pub struct ExchangeResponse {
    pub access_token: String,
    /// Always `urn:ietf:params:oauth:token-type:access_token`.
    pub issued_token_type: &'static str,
    /// Always `Bearer`.
    pub token_type: &'static str,
    /// Seconds until the token expires, when the provider said.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expires_in: Option<i64>,
    /// The token's scopes, space-separated.
    pub scope: String,
}

/// The form's fields, each at most once (RFC 6749 §3.2).
fn parse_form(headers: &HeaderMap, body: &[u8]) -> Result<ExchangeForm, OAuthError> {
    let form_type = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).is_some_and(|v| {
        v.split(';').next().is_some_and(|t| t.trim().eq_ignore_ascii_case("application/x-www-form-urlencoded"))
    });
    if !form_type {
        return Err(OAuthError::InvalidRequest("Expected Content-Type: application/x-www-form-urlencoded.".into()));
    }
    let pairs: Vec<(String, String)> = url::form_urlencoded::parse(body).into_owned().collect();
    let mut seen = std::collections::HashSet::new();
    for (name, _) in &pairs {
        if !seen.insert(name.as_str()) {
            return Err(OAuthError::InvalidRequest(format!("The parameter {} appears more than once.", excerpt(name))));
        }
    }
    let get = |name: &str| pairs.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone()).filter(|v| !v.is_empty());
    if get("actor_token").is_some() {
        return Err(OAuthError::InvalidRequest("actor_token is not supported.".into()));
    }
    let required = |name: &str| get(name).ok_or_else(|| OAuthError::InvalidRequest(format!("{name} is required.")));
    let grant_type = required("grant_type")?;
    if grant_type != GRANT_TYPE {
        return Err(OAuthError::UnsupportedGrantType);
    }
    Ok(ExchangeForm {
        grant_type,
        subject_token: required("subject_token")?,
        subject_token_type: required("subject_token_type")?,
        audience: required("audience")?,
        scope: get("scope"),
        requested_token_type: get("requested_token_type"),
    })
}

fn excerpt(s: &str) -> String {
    s.chars().filter(|c| !c.is_control()).take(60).collect()
}

/// Exchange a user's access token (or a worker assertion) for their provider token.
#[utoipa::path(post, path = "/oauth/token", tag = "auth",
    request_body(content = ExchangeForm, content_type = "application/x-www-form-urlencoded"),
    security(("api_key" = [])),
    responses(
        (status = 200, description = "The user's provider token (RFC 8693 §2.2.1)", body = ExchangeResponse),
        (status = 400, description = "invalid_request, unsupported_grant_type, invalid_target, unauthorized_client, invalid_grant (with reason), or authorization_required (with auth_url)", body = crate::http::oauth_error::OAuthErrorBody),
        (status = 401, description = "invalid_client: no or a wrong X-API-Key", body = crate::http::oauth_error::OAuthErrorBody),
        (status = 413, description = "invalid_request: the body is larger than 16 KiB", body = crate::http::oauth_error::OAuthErrorBody),
        (status = 429, description = "slow_down, with Retry-After", body = crate::http::oauth_error::OAuthErrorBody),
        (status = 500, description = "server_error", body = crate::http::oauth_error::OAuthErrorBody),
        (status = 503, description = "temporarily_unavailable (identity provider, provider or database), with Retry-After", body = crate::http::oauth_error::OAuthErrorBody),
    ))]
pub async fn exchange(
    caller: Result<Caller, ApiError>,
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let caller = match caller {
        Ok(caller) => caller,
        Err(err) => return finish(&state, None, None, Err(err.into())),
    };
    let body = match body {
        Ok(body) => body,
        Err(rejection) if rejection.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE => {
            return finish(&state, Some(&caller), None, Err(OAuthError::TooLarge { limit: extract::BODY_LIMIT }));
        }
        Err(rejection) => {
            let err =
                OAuthError::InvalidRequest(format!("The request body could not be read ({}).", rejection.status()));
            return finish(&state, Some(&caller), None, Err(err));
        }
    };
    let mut verified = None;
    let result = answer(&state, &caller, &headers, &body, &mut verified).await;
    finish(&state, Some(&caller), verified.as_ref(), result)
}

async fn answer(
    state: &AppState,
    caller: &Caller,
    headers: &HeaderMap,
    body: &[u8],
    verified: &mut Option<(VerifiedUser, String)>,
) -> Result<(ExchangeResponse, &'static str), OAuthError> {
    let form = parse_form(headers, body)?;
    if !SUBJECT_TOKEN_TYPES.contains(&form.subject_token_type.as_str()) {
        return Err(OAuthError::InvalidRequest(format!(
            "subject_token_type must be one of {}.",
            SUBJECT_TOKEN_TYPES.join(", ")
        )));
    }
    if form.requested_token_type.as_deref().is_some_and(|t| t != ACCESS_TOKEN_TYPE) {
        return Err(OAuthError::InvalidRequest(format!("requested_token_type must be {ACCESS_TOKEN_TYPE}.")));
    }
    let provider_id = extract::provider_id(&form.audience).map_err(|_| unknown_target(&form.audience))?;
    let provider = state.services.provider(provider_id).await.ok_or_else(|| unknown_target(&form.audience))?.id.clone();
    let required = extract::scopes(
        "scope",
        form.scope.map(|s| s.split(' ').filter(|s| !s.is_empty()).map(str::to_owned).collect()),
    )?;
    caller
        .client
        .check_action(Action::Token)
        .map_err(|d| OAuthError::UnauthorizedClient { message: d.0, reason: "action_not_allowed" })?;
    caller
        .client
        .check_provider(&provider)
        .map_err(|d| OAuthError::InvalidTarget { message: d.0, reason: "provider_not_allowed" })?;

    let user = state.services.verify_subject(&caller.client, &form.subject_token).await?;
    *verified = Some((user.clone(), provider.clone()));
    caller
        .client
        .check_email(&user.email)
        .map_err(|d| OAuthError::UnauthorizedClient { message: d.0, reason: "domain_not_allowed" })?;

    let key = CredentialKey { email: user.email.clone(), provider: provider.clone() };
    let grant = match state.services.token(&key, &required).await {
        Ok(grant) => grant,
        Err(err) => return Err(authorization_or(state, caller, &key, &required, err).await),
    };
    let expires_in = grant.expires_at.map(|at| (at - state.services.now()).num_seconds().max(0));
    let response = ExchangeResponse {
        access_token: grant.access_token.expose_secret().to_owned(),
        issued_token_type: ACCESS_TOKEN_TYPE,
        token_type: "Bearer",
        expires_in,
        scope: grant.scopes.join(" "),
    };
    Ok((response, grant.source.as_str()))
}

fn unknown_target(raw: &str) -> OAuthError {
    OAuthError::InvalidTarget {
        message: format!("The audience {:?} is not a provider this gateway serves.", excerpt(raw)),
        reason: "unknown_provider",
    }
}

/// A user without a usable grant gets `authorization_required`, with a
/// connect link bound to them when the client may start flows; any other
/// failure maps as the API maps it.
async fn authorization_or(
    state: &AppState,
    caller: &Caller,
    key: &CredentialKey,
    required: &[String],
    err: crate::core::credentials::TokenError,
) -> OAuthError {
    let (reason, missing_scopes) = match ApiError::from(TokenFailure(err, key.clone())) {
        ApiError::NotAuthenticated { .. } => ("not_authenticated", None),
        ApiError::RefreshFailed { .. } => ("refresh_failed", None),
        ApiError::ScopeInsufficient { missing } => ("scope_insufficient", Some(missing)),
        other => return other.into(),
    };
    let mut needed =
        AuthorizationRequired { reason, missing_scopes, auth_url: None, session_id: None, expires_at: None };
    if caller.client.allow(Action::Init, Some(&key.provider), Some(&key.email)).is_ok() {
        let scopes = match state.services.scopes_to_ask(key, required).await {
            Ok(scopes) => scopes,
            Err(err) => return err.into(),
        };
        let request = StartRequest {
            provider: key.provider.clone(),
            email: key.email.clone(),
            scopes: Some(scopes),
            redirect_after: None,
            client: caller.client.name.clone(),
        };
        match state.services.start_flow(request).await {
            Ok(started) => {
                needed.auth_url = Some(started.auth_url.to_string());
                needed.session_id = Some(started.session.id);
                needed.expires_at = Some(started.session.expires_at);
            }
            Err(err) => return ApiError::from(err).into(),
        }
    }
    OAuthError::AuthorizationRequired(Box::new(needed))
}

/// Audits and counts the exchange, then renders it.
fn finish(
    state: &AppState,
    caller: Option<&Caller>,
    verified: Option<&(VerifiedUser, String)>,
    result: Result<(ExchangeResponse, &'static str), OAuthError>,
) -> Response {
    let outcome = match &result {
        Ok((_, source)) => source,
        Err(err) => err.outcome(),
    };
    let via = verified.map_or("none", |(user, _)| user.via.as_str());
    metrics::counter!(m::TOKEN_EXCHANGES, "via" => via, "outcome" => outcome).increment(1);
    if let Some(caller) = caller {
        let now = state.services.now();
        let audit = state.services.audit();
        match verified {
            // The high-volume case: summarised like token reads (AUDIT_TOKEN_READS).
            Some((user, provider)) if matches!(user.via, Via::IdentityProvider(_)) => {
                audit.exchange(&caller.client.name, user.email.as_str(), provider, outcome, &describe(user), now);
            }
            _ => {
                let mut record = crate::core::access::audit::record(&caller.client.name, "exchange", outcome, now);
                if let Some((user, provider)) = verified {
                    record.user_email = Some(user.email.to_string());
                    record.provider = Some(provider.clone());
                    record.detail = Some(describe(user));
                }
                audit.record(record);
            }
        }
    }
    match result {
        Ok((body, _)) => {
            let mut response = Json(body).into_response();
            let headers = response.headers_mut();
            headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
            headers.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
            response
        }
        Err(err) => err.into_response(),
    }
}

/// The audit detail: who vouched, for whom, for which audience, and why.
fn describe(user: &VerifiedUser) -> String {
    let base = format!("iss={} sub={} aud={}", excerpt(&user.issuer), excerpt(&user.subject), excerpt(&user.audience));
    match &user.via {
        Via::IdentityProvider(id) => format!("via=identity_provider idp={id} {base}"),
        Via::Worker { jti, audit_context } => {
            format!("via=worker_assertion {base} jti={} audit_context={audit_context:?}", excerpt(jti))
        }
    }
}

impl From<crate::core::StoreError> for OAuthError {
    fn from(err: crate::core::StoreError) -> Self {
        ApiError::from(err).into()
    }
}
