//! Fault injection: what can go wrong at a provider, the per-endpoint queues of queued
//! faults, and what each fault looks like on the wire.
//!
//! A gateway must tell permanent OAuth errors (`invalid_grant`, `invalid_client`) from
//! transient trouble (5xx, 429, timeouts, dropped connections). Each [`Fault`] reproduces one
//! of those answers exactly as a real provider would send it, so the gateway's classification
//! is tested against HTTP, not against a mock of its own HTTP client.

use std::collections::{HashMap, VecDeque};
use std::time::Duration;

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};

/// The endpoints a fault can be queued for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Endpoint {
    /// `GET /authorize`.
    Authorize,
    /// `GET|POST /token`.
    Token,
    /// `POST /revoke`.
    Revoke,
    /// `GET /userinfo`.
    Userinfo,
    /// `GET /api/me`, the protected resource.
    Api,
    /// `GET /idp/jwks`, the test identity provider's keys.
    Jwks,
}

/// One misbehaviour, served instead of (or, for [`Fault::Slow`], before) the normal answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Fault {
    /// HTTP 500 with an HTML body, as a load balancer in front of a provider sends it.
    ServerError,
    /// HTTP 429 with a `Retry-After` header.
    TooManyRequests {
        /// Value of the `Retry-After` header, in seconds.
        retry_after_secs: u64,
    },
    /// Wait this long, then answer normally (exercises client timeouts).
    Slow(Duration),
    /// HTTP 400 `{"error":"invalid_grant",...}`.
    InvalidGrant,
    /// HTTP 401 `{"error":"invalid_client"}`.
    InvalidClient,
    /// Close the TCP connection without sending a single response byte.
    DropConnection,
    /// Any other status with a small JSON body that is not an OAuth error.
    Status(u16),
}

/// FIFO queues of pending faults, one per endpoint. Each entry serves `remaining` requests.
#[derive(Debug, Default)]
pub(crate) struct FaultQueues {
    queues: HashMap<Endpoint, VecDeque<(Fault, u32)>>,
}

impl FaultQueues {
    /// Queues `fault` for the next `times` requests to `endpoint`, after those already queued.
    pub(crate) fn push(&mut self, endpoint: Endpoint, fault: Fault, times: u32) {
        if times > 0 {
            self.queues.entry(endpoint).or_default().push_back((fault, times));
        }
    }

    /// Consumes one use of the fault at the head of `endpoint`'s queue.
    pub(crate) fn take(&mut self, endpoint: Endpoint) -> Option<Fault> {
        let queue = self.queues.get_mut(&endpoint)?;
        let (fault, remaining) = queue.front_mut()?;
        let fault = fault.clone();
        *remaining -= 1;
        if *remaining == 0 {
            queue.pop_front();
        }
        Some(fault)
    }

    pub(crate) fn clear(&mut self) {
        self.queues.clear();
    }
}

/// The response a fault produces. [`Fault::Slow`] and [`Fault::DropConnection`] have none of
/// their own: the caller waits, or kills the connection, respectively.
pub(crate) fn fault_response(fault: &Fault) -> Response {
    match fault {
        Fault::ServerError => (
            StatusCode::INTERNAL_SERVER_ERROR,
            [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
            "<html><body><h1>Internal Server Error</h1></body></html>",
        )
            .into_response(),
        Fault::TooManyRequests { retry_after_secs } => {
            let mut response =
                (StatusCode::TOO_MANY_REQUESTS, axum::Json(serde_json::json!({ "message": "Too Many Requests" })))
                    .into_response();
            response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(*retry_after_secs));
            response
        }
        Fault::InvalidGrant => {
            crate::error::OAuthError::invalid_grant("the grant was revoked at the provider (injected fault)")
                .into_response()
        }
        Fault::InvalidClient => crate::error::OAuthError::invalid_client().into_response(),
        Fault::Status(code) => {
            // Status codes outside 100..=999 cannot be sent; a 500 is the honest fallback.
            let status = StatusCode::from_u16(*code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            (
                status,
                axum::Json(serde_json::json!({
                    "status": status.as_u16(),
                    "message": "injected fault",
                })),
            )
                .into_response()
        }
        // Callers handle these two before asking for a response; answering normally-shaped
        // is the least surprising fallback.
        Fault::Slow(_) | Fault::DropConnection => StatusCode::NO_CONTENT.into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queue_is_fifo_and_counts_down() {
        let mut queues = FaultQueues::default();
        queues.push(Endpoint::Token, Fault::ServerError, 2);
        queues.push(Endpoint::Token, Fault::InvalidGrant, 1);
        queues.push(Endpoint::Token, Fault::InvalidClient, 0);
        assert_eq!(queues.take(Endpoint::Token), Some(Fault::ServerError));
        assert_eq!(queues.take(Endpoint::Revoke), None);
        assert_eq!(queues.take(Endpoint::Token), Some(Fault::ServerError));
        assert_eq!(queues.take(Endpoint::Token), Some(Fault::InvalidGrant));
        assert_eq!(queues.take(Endpoint::Token), None);
    }

    #[test]
    fn clear_empties_every_queue() {
        let mut queues = FaultQueues::default();
        queues.push(Endpoint::Api, Fault::ServerError, 5);
        queues.clear();
        assert_eq!(queues.take(Endpoint::Api), None);
    }

    #[test]
    fn too_many_requests_carries_retry_after() {
        let response = fault_response(&Fault::TooManyRequests { retry_after_secs: 7 });
        assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(response.headers()[header::RETRY_AFTER], "7");
    }

    #[test]
    fn impossible_status_falls_back_to_500() {
        let response = fault_response(&Fault::Status(42));
        assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
    }
}
