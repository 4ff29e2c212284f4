//! The one middleware every request passes: its request id (accepted from
//! `X-Request-Id` when it is sane, generated otherwise, echoed in the
//! response header, attached to the request's span, readable by error bodies
//! through the core's task-local) and its HTTP metrics. One layer, not a stack of
//! them: the token endpoint answers in microseconds, and each layer costs.

use axum::extract::{MatchedPath, Request};
use axum::http::{HeaderName, HeaderValue};
use axum::middleware::Next;
use axum::response::Response;
use tracing::Instrument;

pub static HEADER: HeaderName = HeaderName::from_static("x-request-id");
const MAX_LEN: usize = 128;

pub use crate::core::telemetry::request_id::current;

/// Accept ids made of safe, visible characters only, so they can be logged
/// and echoed without escaping.
fn accept(value: &HeaderValue) -> Option<String> {
    let s = value.to_str().ok()?;
    let ok =
        !s.is_empty() && s.len() <= MAX_LEN && s.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.:".contains(&b));
    ok.then(|| s.to_owned())
}

pub async fn middleware(request: Request, next: Next) -> Response {
    let id = request.headers().get(&HEADER).and_then(accept).unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
    let route = request.extensions().get::<MatchedPath>().cloned();
    let route = route.as_ref().map_or("unmatched", MatchedPath::as_str);
    let method = request.method().clone();
    let span = tracing::info_span!("request", request_id = %id, method = %method, route = %route);
    let header = HeaderValue::from_str(&id).ok();
    let started = std::time::Instant::now();
    let mut response = crate::core::telemetry::request_id::scope(id, next.run(request)).instrument(span.clone()).await;
    let elapsed = started.elapsed();
    let status = response.status().as_u16();
    span.in_scope(|| tracing::debug!(status, elapsed_ms = elapsed.as_secs_f64() * 1000.0, "request completed"));
    // Labels: the route *pattern* (never the raw path), method and status.
    let (count, duration) = crate::telemetry::handles::http(route, &method, status);
    count.increment(1);
    duration.record(elapsed.as_secs_f64());
    if let Some(header) = header {
        response.headers_mut().insert(HEADER.clone(), header);
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_safe_ids_are_accepted() {
        assert_eq!(accept(&HeaderValue::from_static("abc-123_x.y:z")).as_deref(), Some("abc-123_x.y:z"));
        assert_eq!(accept(&HeaderValue::from_static("has space")), None);
        assert_eq!(accept(&HeaderValue::from_static("<script>")), None);
        assert_eq!(accept(&HeaderValue::from_str(&"a".repeat(129)).unwrap()), None);
    }
}
