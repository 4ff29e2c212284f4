//! Every request body is read before the request is routed.
//!
//! A handler may refuse a request from its headers alone (no API key, a
//! wrong one, a rate limit) and never read the body. HTTP/1.1 cannot then
//! reuse the connection — the unread bytes would be taken for the next
//! request — so hyper closes it, and a client that had already picked that
//! pooled connection for its next request sees it fail. Reading the body
//! first (it is at most [`BODY_LIMIT`]) keeps every refused connection
//! usable. A body announced as larger is not read: the answer says
//! `Connection: close`, so clients do not reuse the connection.

use axum::body::Body;
use axum::extract::Request;
use axum::http::{HeaderValue, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::ApiError;
use super::extract::BODY_LIMIT;

pub async fn read_first(request: Request, next: Next) -> Response {
    let announced =
        request.headers().get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<u64>().ok());
    if announced.is_some_and(|n| n > BODY_LIMIT as u64) {
        // The handler's extractor answers 413 in its own format.
        return closing(next.run(request).await);
    }
    let (parts, body) = request.into_parts();
    match axum::body::to_bytes(body, BODY_LIMIT).await {
        Ok(bytes) => next.run(Request::from_parts(parts, Body::from(bytes))).await,
        // Over the limit without announcing it (chunked), or the client went away.
        Err(_) => closing(ApiError::PayloadTooLarge { limit: BODY_LIMIT }.into_response()),
    }
}

fn closing(mut response: Response) -> Response {
    response.headers_mut().insert(header::CONNECTION, HeaderValue::from_static("close"));
    response
}
