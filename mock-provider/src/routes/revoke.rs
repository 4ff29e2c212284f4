//! `POST /revoke`: token revocation (RFC 7009).

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};

use super::client_auth::authenticate;
use super::fault_gate;
use super::params::Params;
use crate::error::OAuthError;
use crate::faults::Endpoint;
use crate::listener::ConnInfo;
use crate::state::Shared;

pub(super) async fn revoke(
    State(shared): State<Arc<Shared>>,
    ConnectInfo(conn): ConnectInfo<ConnInfo>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if let Some(response) = fault_gate(&shared, Endpoint::Revoke, &conn).await {
        return response;
    }
    let params = Params::parse(&body);
    let mut store = shared.store();
    if let Err(error) = authenticate(&headers, &params, &store.config) {
        return error.into_response();
    }
    let Some(token) = params.get("token") else {
        return OAuthError::invalid_request("missing token").into_response();
    };
    // token_type_hint is only a hint (RFC 7009 §2.1): both kinds are looked up anyway.
    store.revoke(token);
    // RFC 7009 §2.2: 200 even for unknown tokens, so the answer reveals nothing.
    StatusCode::OK.into_response()
}
