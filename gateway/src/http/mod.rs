//! The HTTP API: routes, extractors, middleware, the error table, the
//! browser pages and the listener. Nothing here touches the database (the
//! core's store is private to it): handlers call the core's services.

pub mod body;
pub mod caller;
pub mod dto;
pub mod error;
pub mod extract;
pub mod oauth_error;
pub mod pages;
pub mod request_id;
pub mod responses;
pub mod routes;
pub mod server;
pub mod state;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::middleware;

pub use error::ApiError;

pub use state::AppState;

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
        .merge(routes::exchange::router())
        .merge(routes::admin::router())
        .merge(routes::browser::router())
        .merge(routes::docs::router())
        .fallback(|| async { ApiError::NotFound })
        .method_not_allowed_fallback(|| async { ApiError::MethodNotAllowed })
        .layer(DefaultBodyLimit::max(extract::BODY_LIMIT))
        .layer(middleware::from_fn(body::read_first))
        .layer(middleware::from_fn(request_id::middleware))
        .layer(cors(&state.cors_origins))
        .with_state(state)
}

/// CORS: off unless origins are configured (this is a server-to-server API;
/// with no layer, browsers on other origins cannot read its answers).
fn cors(origins: &[String]) -> tower::util::Either<tower_http::cors::CorsLayer, tower::layer::util::Identity> {
    use axum::http::{HeaderName, HeaderValue, Method};
    if origins.is_empty() {
        return tower::util::Either::Right(tower::layer::util::Identity::new());
    }
    let origins: Vec<HeaderValue> = origins.iter().filter_map(|o| HeaderValue::from_str(o).ok()).collect();
    tower::util::Either::Left(
        tower_http::cors::CorsLayer::new()
            .allow_origin(origins)
            .allow_methods([Method::GET, Method::POST, Method::DELETE])
            .allow_headers([HeaderName::from_static("x-api-key"), axum::http::header::CONTENT_TYPE])
            .expose_headers([HeaderName::from_static("x-request-id"), axum::http::header::RETRY_AFTER]),
    )
}
