//! The test identity provider's public endpoints: OIDC discovery under `/idp` and the
//! JWKS. Faults queued for [`Endpoint::Jwks`] apply to the key set (a cold or failing
//! IdP); discovery always answers.

use std::sync::Arc;

use axum::Json;
use axum::extract::{ConnectInfo, State};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::fault_gate;
use crate::faults::Endpoint;
use crate::listener::ConnInfo;
use crate::state::Shared;

pub(super) async fn openid_configuration(State(shared): State<Arc<Shared>>) -> Json<Value> {
    let issuer = format!("{}/idp", shared.base_url);
    Json(json!({
        "issuer": issuer,
        "jwks_uri": format!("{issuer}/jwks"),
        "response_types_supported": ["code"],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": ["ES256", "EdDSA"],
    }))
}

pub(super) async fn jwks(State(shared): State<Arc<Shared>>, ConnectInfo(conn): ConnectInfo<ConnInfo>) -> Response {
    if let Some(response) = fault_gate(&shared, Endpoint::Jwks, &conn).await {
        return response;
    }
    shared.store().counters.jwks_fetches += 1;
    Json(shared.idp.jwks()).into_response()
}
