//! The HTTP API: routes, extractors, middleware and the error mapping.
//! Nothing here touches the database: handlers call services or actors.

pub mod auth;
pub mod error;
pub mod request_id;
pub mod routes;

use axum::Router;
use axum::middleware;

pub use error::ApiError;

use crate::app::AppState;

/// Builds the whole router for `state`.
pub fn router(state: AppState) -> Router {
    Router::new()
        .merge(routes::health::router())
        .fallback(|| async { ApiError::NotFound })
        .method_not_allowed_fallback(|| async { ApiError::MethodNotAllowed })
        .layer(middleware::from_fn(request_id::middleware))
        .with_state(state)
}
