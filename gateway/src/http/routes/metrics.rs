//! `GET /metrics`: the Prometheus exposition. Unauthenticated by default;
//! with `METRICS_BEARER_TOKEN` it requires `Authorization: Bearer <token>`;
//! with `METRICS_ADDR` it is served on its own listener instead of the API's.

use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use metrics_exporter_prometheus::PrometheusHandle;
use subtle::ConstantTimeEq;

/// What `/metrics` needs: the renderer and the optional token's digest.
#[derive(Clone)]
pub struct MetricsState {
    pub handle: PrometheusHandle,
    pub bearer_digest: Option<Arc<[u8; 32]>>,
}

impl std::fmt::Debug for MetricsState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MetricsState").field("protected", &self.bearer_digest.is_some()).finish()
    }
}

pub fn router<S: Clone + Send + Sync + 'static>(state: MetricsState) -> Router<S> {
    Router::new().route("/metrics", get(metrics)).with_state(state)
}

async fn metrics(State(state): State<MetricsState>, headers: HeaderMap) -> Response {
    if let Some(expected) = &state.bearer_digest {
        let presented = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(|t| crate::http::caller::digest(t.as_bytes()));
        let ok = presented.is_some_and(|p| bool::from(p.ct_eq(expected.as_ref())));
        if !ok {
            return crate::http::ApiError::MetricsUnauthorized.page();
        }
    }
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], state.handle.render()).into_response()
}
