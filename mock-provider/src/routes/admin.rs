//! `/__admin/*`: the runtime controls of [`crate::MockProvider`] over HTTP, for users in
//! another process (the Python client's tests, the local demo).
//!
//! There is no authentication: this is a test double meant for loopback. The bodies are
//! small DTOs of their own, so the wire format stays stable if the Rust types change.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Deserializer, Serialize};

use crate::config::Consent;
use crate::counters::Counters;
use crate::faults::{Endpoint, Fault};
use crate::state::{Shared, Store};

pub(super) fn router() -> Router<Arc<Shared>> {
    Router::new()
        .route("/counters", get(counters))
        .route("/consent", post(consent))
        .route("/faults", post(inject_fault).delete(clear_faults))
        .route("/settings", get(settings).post(update_settings))
        .route("/invalidate", post(invalidate))
        .route("/refresh-counts", get(refresh_counts))
        .route("/last-authorize", get(last_authorize))
        .route("/idp/mint", post(idp_mint))
        .route("/idp/rotate", post(idp_rotate))
}

async fn counters(State(shared): State<Arc<Shared>>) -> Json<Counters> {
    Json(shared.store().counters.clone())
}

/// `{"mode":"approve_as_login_hint"}`, `{"mode":"approve_as","email":"..."}` or
/// `{"mode":"deny"}`.
#[derive(Debug, Deserialize)]
#[serde(tag = "mode", rename_all = "snake_case", deny_unknown_fields)]
enum ConsentBody {
    ApproveAsLoginHint,
    ApproveAs { email: String },
    Deny,
}

async fn consent(State(shared): State<Arc<Shared>>, Json(body): Json<ConsentBody>) -> StatusCode {
    shared.store().consent = match body {
        ConsentBody::ApproveAsLoginHint => Consent::ApproveAsLoginHint,
        ConsentBody::ApproveAs { email } => Consent::ApproveAs(email),
        ConsentBody::Deny => Consent::Deny,
    };
    StatusCode::NO_CONTENT
}

/// `{"endpoint":"token","fault":{"kind":"server_error"},"times":3}`; `times` defaults to 1.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FaultBody {
    endpoint: Endpoint,
    fault: FaultSpec,
    #[serde(default = "one")]
    times: u32,
}

fn one() -> u32 {
    1
}

#[derive(Debug, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
enum FaultSpec {
    ServerError,
    TooManyRequests { retry_after_secs: u64 },
    Slow { millis: u64 },
    InvalidGrant,
    InvalidClient,
    DropConnection,
    Status { code: u16 },
}

impl FaultSpec {
    fn into_fault(self) -> Result<Fault, String> {
        Ok(match self {
            Self::ServerError => Fault::ServerError,
            Self::TooManyRequests { retry_after_secs } => Fault::TooManyRequests { retry_after_secs },
            Self::Slow { millis } => Fault::Slow(Duration::from_millis(millis)),
            Self::InvalidGrant => Fault::InvalidGrant,
            Self::InvalidClient => Fault::InvalidClient,
            Self::DropConnection => Fault::DropConnection,
            Self::Status { code } if (100..=999).contains(&code) => Fault::Status(code),
            Self::Status { code } => return Err(format!("{code} is not an HTTP status code")),
        })
    }
}

async fn inject_fault(State(shared): State<Arc<Shared>>, Json(body): Json<FaultBody>) -> Response {
    match body.fault.into_fault() {
        Ok(fault) => {
            shared.store().faults.push(body.endpoint, fault, body.times);
            StatusCode::NO_CONTENT.into_response()
        }
        Err(message) => (StatusCode::BAD_REQUEST, message).into_response(),
    }
}

async fn clear_faults(State(shared): State<Arc<Shared>>) -> StatusCode {
    shared.store().faults.clear();
    StatusCode::NO_CONTENT
}

/// Any subset of the settings; `"granted_scopes": null` goes back to granting what was
/// requested, while leaving the field out leaves it unchanged.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SettingsUpdate {
    access_token_ttl_secs: Option<u64>,
    rotate_refresh_tokens: Option<bool>,
    issue_refresh_tokens: Option<bool>,
    issue_id_token: Option<bool>,
    #[serde(default, deserialize_with = "present")]
    granted_scopes: Option<Option<Vec<String>>>,
}

/// Tells "present but null" (`Some(None)`) from "absent" (`None`, via `#[serde(default)]`).
fn present<'de, D, T>(deserializer: D) -> Result<Option<Option<T>>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(deserializer).map(Some)
}

/// The current settings, answered by `GET` and `POST /__admin/settings`.
#[derive(Debug, Serialize)]
struct SettingsView {
    access_token_ttl_secs: u64,
    rotate_refresh_tokens: bool,
    issue_refresh_tokens: bool,
    issue_id_token: bool,
    granted_scopes: Option<Vec<String>>,
}

impl SettingsView {
    fn of(store: &Store) -> Self {
        Self {
            access_token_ttl_secs: store.config.access_token_ttl.as_secs(),
            rotate_refresh_tokens: store.config.rotate_refresh_tokens,
            issue_refresh_tokens: store.config.issue_refresh_tokens,
            issue_id_token: store.config.issue_id_token,
            granted_scopes: store.granted_scopes.clone(),
        }
    }
}

async fn settings(State(shared): State<Arc<Shared>>) -> Json<SettingsView> {
    Json(SettingsView::of(&shared.store()))
}

async fn update_settings(State(shared): State<Arc<Shared>>, Json(update): Json<SettingsUpdate>) -> Json<SettingsView> {
    let mut store = shared.store();
    if let Some(secs) = update.access_token_ttl_secs {
        store.config.access_token_ttl = Duration::from_secs(secs);
    }
    if let Some(on) = update.rotate_refresh_tokens {
        store.config.rotate_refresh_tokens = on;
    }
    if let Some(on) = update.issue_refresh_tokens {
        store.config.issue_refresh_tokens = on;
    }
    if let Some(on) = update.issue_id_token {
        store.config.issue_id_token = on;
    }
    if let Some(scopes) = update.granted_scopes {
        store.granted_scopes = scopes;
    }
    Json(SettingsView::of(&store))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct InvalidateBody {
    email: String,
}

async fn invalidate(State(shared): State<Arc<Shared>>, Json(body): Json<InvalidateBody>) -> StatusCode {
    shared.store().invalidate_refresh_tokens_for(&body.email);
    StatusCode::NO_CONTENT
}

async fn refresh_counts(State(shared): State<Arc<Shared>>) -> Json<HashMap<String, u64>> {
    Json(shared.store().refresh_counts())
}

async fn last_authorize(State(shared): State<Arc<Shared>>) -> Json<Option<Vec<(String, String)>>> {
    Json(shared.store().last_authorize_query.clone())
}

/// `{"claims":{...},"forgery":"alg_none"}`; `forgery` is optional.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct MintBody {
    claims: serde_json::Value,
    #[serde(default)]
    forgery: Option<crate::idp::Forgery>,
}

/// `{"token": "<jwt>"}`.
async fn idp_mint(State(shared): State<Arc<Shared>>, Json(body): Json<MintBody>) -> Json<serde_json::Value> {
    Json(serde_json::json!({"token": shared.idp.mint(&body.claims, body.forgery)}))
}

/// `{"alg":"EdDSA","retire_previous":true}`; both optional.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RotateBody {
    #[serde(default)]
    alg: Option<crate::idp::Alg>,
    #[serde(default)]
    retire_previous: bool,
}

/// `{"kid": "<the new key's id>"}`.
async fn idp_rotate(State(shared): State<Arc<Shared>>, Json(body): Json<RotateBody>) -> Json<serde_json::Value> {
    Json(serde_json::json!({"kid": shared.idp.rotate(body.alg, body.retire_previous)}))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_tell_null_from_absent() {
        let absent: SettingsUpdate = serde_json::from_str("{}").unwrap();
        assert_eq!(absent.granted_scopes, None);
        let null: SettingsUpdate = serde_json::from_str(r#"{"granted_scopes":null}"#).unwrap();
        assert_eq!(null.granted_scopes, Some(None));
        let set: SettingsUpdate = serde_json::from_str(r#"{"granted_scopes":["a"]}"#).unwrap();
        assert_eq!(set.granted_scopes, Some(Some(vec!["a".to_owned()])));
    }

    #[test]
    fn fault_specs_parse() {
        let body: FaultBody =
            serde_json::from_str(r#"{"endpoint":"token","fault":{"kind":"too_many_requests","retry_after_secs":5}}"#)
                .unwrap();
        assert_eq!(body.endpoint, Endpoint::Token);
        assert_eq!(body.times, 1);
        assert_eq!(body.fault.into_fault(), Ok(Fault::TooManyRequests { retry_after_secs: 5 }));
        let slow: FaultSpec = serde_json::from_str(r#"{"kind":"slow","millis":2000}"#).unwrap();
        assert_eq!(slow.into_fault(), Ok(Fault::Slow(Duration::from_secs(2))));
        let bad: FaultSpec = serde_json::from_str(r#"{"kind":"status","code":42}"#).unwrap();
        assert!(bad.into_fault().is_err());
    }

    #[test]
    fn consent_bodies_parse() {
        let body: ConsentBody = serde_json::from_str(r#"{"mode":"approve_as","email":"bob@example.com"}"#).unwrap();
        assert!(matches!(body, ConsentBody::ApproveAs { email } if email == "bob@example.com"));
        assert!(serde_json::from_str::<ConsentBody>(r#"{"mode":"maybe"}"#).is_err());
    }
}
