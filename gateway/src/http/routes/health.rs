//! `GET /health`: the design document's health answer.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::core::health::Report;
use crate::http::state::AppState;

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct HealthResponse {
    /// `healthy`, or `degraded` when the database or encryption fails.
    pub status: &'static str,
    /// `connected` or `disconnected`.
    pub database: &'static str,
    /// `operational` or `failed` (a real encrypt/decrypt round trip).
    pub encryption: &'static str,
    pub version: &'static str,
    pub timestamp: DateTime<Utc>,
    /// Providers that refuse the gateway's client (`invalid_client`,
    /// `unauthorized_client`), by id. Present only when there are any; they
    /// do not make the gateway unhealthy.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub providers: BTreeMap<String, ProviderHealth>,
    /// Trusted identity providers (token exchange) and their signing-key
    /// caches. Present only when some are configured; a failing one makes
    /// exchanges answer 503, not the gateway unhealthy.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub issuers: Vec<IssuerHealth>,
}

/// A trusted identity provider's key cache.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct IssuerHealth {
    /// Its id in `AUTH_GATEWAY_TRUSTED_ISSUERS`.
    pub id: String,
    pub issuer: String,
    /// Signing keys held.
    pub keys: usize,
    /// Seconds since they were fetched (absent: never).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub keys_age_seconds: Option<u64>,
    /// Whether the last fetch failed.
    pub last_fetch_failed: bool,
}

/// A provider refusing the gateway's client.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ProviderHealth {
    /// Always `failing`.
    pub status: &'static str,
    /// Since when.
    pub since: DateTime<Utc>,
    /// `invalid_client` or `unauthorized_client`.
    pub category: String,
}

pub fn router() -> Router<AppState> {
    Router::new().route("/health", get(health))
}

#[utoipa::path(get, path = "/health", tag = "health",
    responses(
        (status = 200, description = "Healthy", body = HealthResponse),
        (status = 503, description = "Degraded: the database is unreachable or encryption fails", body = HealthResponse),
    ))]
pub async fn health(State(state): State<AppState>) -> Response {
    let report: Report = state.services.health().await;
    let status = if report.healthy() { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    let body = HealthResponse {
        status: if report.healthy() { "healthy" } else { "degraded" },
        database: if report.database_ok { "connected" } else { "disconnected" },
        encryption: if report.encryption_ok { "operational" } else { "failed" },
        version: env!("CARGO_PKG_VERSION"),
        timestamp: report.checked_at,
        providers: report
            .failing_providers
            .into_iter()
            .map(|(id, f)| (id, ProviderHealth { status: "failing", since: f.since, category: f.category }))
            .collect(),
        issuers: state
            .services
            .issuers_health()
            .into_iter()
            .map(|i| IssuerHealth {
                id: i.id,
                issuer: i.issuer,
                keys: i.keys,
                keys_age_seconds: i.keys_age_seconds,
                last_fetch_failed: i.last_fetch_failed,
            })
            .collect(),
    };
    (status, Json(body)).into_response()
}
