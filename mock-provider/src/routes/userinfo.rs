//! `GET|POST /userinfo`: the OIDC UserInfo endpoint (OIDC Core §5.3).

use std::sync::Arc;

use axum::Json;
use axum::extract::{ConnectInfo, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};

use super::bearer::authorize_bearer;
use super::fault_gate;
use crate::faults::Endpoint;
use crate::listener::ConnInfo;
use crate::state::{Shared, email_verified_claim};
use crate::tokens::subject_for;

pub(super) async fn userinfo(
    State(shared): State<Arc<Shared>>,
    ConnectInfo(conn): ConnectInfo<ConnInfo>,
    headers: HeaderMap,
) -> Response {
    if let Some(response) = fault_gate(&shared, Endpoint::Userinfo, &conn).await {
        return response;
    }
    let verified = {
        let mut store = shared.store();
        store.counters.userinfo_calls += 1;
        email_verified_claim(&store.identity)
    };
    match authorize_bearer(&shared, &headers) {
        Ok(owner) => {
            let mut body = serde_json::json!({ "sub": subject_for(&owner.email), "email": owner.email });
            if let Some(verified) = verified {
                body["email_verified"] = verified;
            }
            Json(body).into_response()
        }
        Err(error) => error.into_response(),
    }
}
