//! The HTTP surface: the router, and the fault gate every OAuth endpoint passes first.

mod admin;
mod api;
mod authorize;
mod bearer;
mod client_auth;
mod discovery;
mod idp;
mod params;
mod revoke;
mod token;
mod userinfo;

use std::sync::Arc;

use axum::Router;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};

use crate::faults::{Endpoint, Fault, fault_response};
use crate::listener::ConnInfo;
use crate::state::Shared;

/// Every route of the provider.
pub(crate) fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/.well-known/openid-configuration", get(discovery::openid_configuration))
        .route("/authorize", get(authorize::authorize))
        .route("/authorize/decision", post(authorize::decision))
        .route("/token", get(token::token).post(token::token))
        .route("/revoke", post(revoke::revoke))
        .route("/userinfo", get(userinfo::userinfo).post(userinfo::userinfo))
        .route("/api/me", get(api::me))
        .route("/idp/.well-known/openid-configuration", get(idp::openid_configuration))
        .route("/idp/jwks", get(idp::jwks))
        .nest("/__admin", admin::router())
        .with_state(shared)
}

/// Serves the next queued fault for `endpoint`, if any. `None` means "answer normally"
/// (no fault, or a [`Fault::Slow`] that has already waited).
async fn fault_gate(shared: &Shared, endpoint: Endpoint, conn: &ConnInfo) -> Option<Response> {
    let fault = {
        let mut store = shared.store();
        let fault = store.faults.take(endpoint)?;
        store.counters.faults_served += 1;
        fault
    };
    tracing::debug!(?endpoint, ?fault, peer = %conn.peer, "serving injected fault");
    match fault {
        Fault::Slow(delay) => {
            tokio::time::sleep(delay).await;
            None
        }
        Fault::DropConnection => {
            // The stream now refuses to write, so this response never reaches the wire.
            conn.kill_switch.kill();
            Some(StatusCode::NO_CONTENT.into_response())
        }
        other => Some(fault_response(&other)),
    }
}
