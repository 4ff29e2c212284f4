//! The pages a user's browser visits: the one-time connect link, and the
//! provider's redirect back. No API key here; the `state` and the connect id
//! are the capabilities.

use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use axum::{Router, extract::RawQuery};

use crate::actors::session::{Callback, OpenLink};
use crate::app::AppState;
use crate::flow::{CallbackOutcome, CallbackParams, FailReason, LinkError};
use crate::http::extract::ApiPath;
use crate::http::pages;

/// The browser pages' rate limit, per source address: over it, a 429 page
/// with `Retry-After`.
pub struct BrowserLimit;

impl axum::extract::FromRequestParts<AppState> for BrowserLimit {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut axum::http::request::Parts, state: &AppState) -> Result<Self, Response> {
        let address = crate::http::auth::source_address(parts, &state.trusted_proxies);
        match state.limits.check(crate::access::limits::Limited::Browser, None, address) {
            Ok(()) => Ok(Self),
            Err(wait) => {
                let route =
                    parts.extensions.get::<axum::extract::MatchedPath>().map_or("unmatched", |p| p.as_str()).to_owned();
                metrics::counter!(crate::telemetry::metrics::RATE_LIMITED, "route" => route).increment(1);
                let mut page = pages::failure(
                    StatusCode::TOO_MANY_REQUESTS,
                    "Too many sign-in attempts from here. Wait a moment and try again.",
                );
                if let Ok(value) = HeaderValue::from_str(&wait.to_string()) {
                    page.headers_mut().insert(header::RETRY_AFTER, value);
                }
                Err(page)
            }
        }
    }
}

pub fn router() -> Router<AppState> {
    Router::new().route("/connect/{connect_id}", get(connect)).route("/auth/callback/{provider}", get(callback))
}

/// Opens a connect link: records its use and sends the browser to the provider.
#[utoipa::path(get, path = "/connect/{connect_id}", tag = "browser",
    params(("connect_id" = String, Path, description = "The opaque id from auth_url")),
    responses(
        (status = 302, description = "To the provider's consent page"),
        (status = 404, description = "HTML page: the link was used, expired or never existed", body = String, content_type = "text/html"),
        (status = 429, description = "HTML page: too many requests from this address", body = String, content_type = "text/html",
            headers(("Retry-After" = u64, description = "Seconds to wait"))),
        (status = 503, description = "HTML page: the gateway could not start the sign-in", body = String, content_type = "text/html"),
    ))]
pub async fn connect(
    _limit: BrowserLimit,
    State(state): State<AppState>,
    ApiPath(connect_id): ApiPath<String>,
) -> Response {
    let opened = match state.sessions.send(OpenLink(connect_id)).await {
        Ok(opened) => opened,
        Err(mailbox) => Err(LinkError::Internal(format!("session actor unavailable: {mailbox}"))),
    };
    match opened {
        Ok(url) => {
            let mut response = Redirect::to(url.as_str()).into_response();
            *response.status_mut() = StatusCode::FOUND;
            pages::secure_headers(&mut response);
            response
        }
        Err(LinkError::Unusable) => pages::failure(
            StatusCode::NOT_FOUND,
            "This sign-in link was already used or has expired. Ask your assistant for a new one.",
        ),
        Err(err) => {
            tracing::error!(error = %err, "connect link failed");
            pages::failure(
                StatusCode::SERVICE_UNAVAILABLE,
                "The gateway could not start this sign-in. Try again shortly.",
            )
        }
    }
}

/// The provider's redirect after consent (or refusal).
#[utoipa::path(get, path = "/auth/callback/{provider}", tag = "browser",
    params(
        ("provider" = String, Path, description = "Provider id", pattern = "^[a-z0-9_-]{1,50}$"),
        ("code" = Option<String>, Query, description = "Authorization code"),
        ("state" = Option<String>, Query, description = "The flow's state"),
        ("error" = Option<String>, Query, description = "The provider's error, e.g. access_denied"),
    ),
    responses(
        (status = 200, description = "HTML success page", body = String, content_type = "text/html"),
        (status = 303, description = "To redirect_after, when the flow set one"),
        (status = 400, description = "HTML failure page", body = String, content_type = "text/html"),
        (status = 429, description = "HTML page: too many requests from this address", body = String, content_type = "text/html",
            headers(("Retry-After" = u64, description = "Seconds to wait"))),
        (status = 503, description = "HTML page: the gateway could not complete the sign-in", body = String, content_type = "text/html"),
    ))]
pub async fn callback(
    _limit: BrowserLimit,
    State(state): State<AppState>,
    ApiPath(provider): ApiPath<String>,
    RawQuery(query): RawQuery,
) -> Response {
    // Parsed by hand so that a malformed query still gets a page, not JSON.
    let params: CallbackParams = match serde_urlencoded::from_str(query.as_deref().unwrap_or_default()) {
        Ok(p) => p,
        Err(_) => {
            return pages::failure(StatusCode::BAD_REQUEST, "The sign-in redirect was malformed.");
        }
    };
    let outcome = match state.sessions.send(Callback { provider, params }).await {
        Ok(outcome) => outcome,
        Err(err) => {
            tracing::error!(error = %err, "session actor unavailable");
            return pages::failure(
                StatusCode::SERVICE_UNAVAILABLE,
                "The gateway could not complete this sign-in. Try again shortly.",
            );
        }
    };
    match outcome {
        CallbackOutcome::Completed { redirect_after: Some(target), .. } => {
            let mut response = StatusCode::SEE_OTHER.into_response();
            if let Ok(location) = HeaderValue::from_str(&target) {
                response.headers_mut().insert(header::LOCATION, location);
            }
            pages::secure_headers(&mut response);
            response
        }
        CallbackOutcome::Completed { provider, .. } => pages::success(&provider),
        // The database failing is ours, not the user's: 503, and the page says nothing was saved.
        CallbackOutcome::Failed(reason @ FailReason::StorageError) => {
            pages::failure(StatusCode::SERVICE_UNAVAILABLE, &format!("{}.", reason.message()))
        }
        CallbackOutcome::Failed(reason) => pages::failure(StatusCode::BAD_REQUEST, &format!("{}.", reason.message())),
        CallbackOutcome::Rejected(message) => pages::failure(StatusCode::BAD_REQUEST, message),
    }
}
