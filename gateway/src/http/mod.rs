//! The HTTP API: routes, extractors, middleware and the error mapping.
//! Nothing here touches the database: handlers call actors or services.

pub mod auth;
pub mod error;
pub mod extract;
pub mod pages;
pub mod request_id;
pub mod routes;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::middleware;

pub use error::ApiError;

use crate::app::AppState;

/// Builds the whole router for `state`; `/metrics` is included when
/// `metrics` is given (otherwise it has a listener of its own, or none).
pub fn router(state: AppState, metrics: Option<routes::metrics::MetricsState>) -> Router {
    let mut router = Router::new();
    if let Some(metrics) = metrics {
        router = router.merge(routes::metrics::router(metrics));
    }
    router
        .merge(routes::health::router())
        .merge(routes::auth::router())
        .merge(routes::admin::router())
        .merge(routes::browser::router())
        .merge(routes::docs::router())
        .fallback(|| async { ApiError::NotFound })
        .method_not_allowed_fallback(|| async { ApiError::MethodNotAllowed })
        .layer(DefaultBodyLimit::max(extract::BODY_LIMIT))
        .layer(middleware::from_fn(request_id::middleware))
        .with_state(state)
}
