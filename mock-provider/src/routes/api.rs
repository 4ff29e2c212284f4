//! `GET /api/me`: the protected API the example MCP server calls with a user's token.

use std::sync::Arc;

use axum::Json;
use axum::extract::{ConnectInfo, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};

use super::bearer::authorize_bearer;
use super::fault_gate;
use crate::faults::Endpoint;
use crate::listener::ConnInfo;
use crate::state::Shared;

pub(super) async fn me(
    State(shared): State<Arc<Shared>>,
    ConnectInfo(conn): ConnectInfo<ConnInfo>,
    headers: HeaderMap,
) -> Response {
    if let Some(response) = fault_gate(&shared, Endpoint::Api, &conn).await {
        return response;
    }
    shared.store().counters.api_calls += 1;
    match authorize_bearer(&shared, &headers) {
        Ok(owner) => Json(serde_json::json!({
            "email": owner.email,
            "scopes": owner.scopes,
            "messages": [
                {"id": 1, "subject": "Welcome"},
                {"id": 2, "subject": "Your weekly summary"},
            ],
        }))
        .into_response(),
        Err(error) => error.into_response(),
    }
}
