//! The pages a user's browser visits: the connect link, and the provider's
//! redirect back. No API key here; the `state` and the connect id are the
//! capabilities.
//!
//! A GET (or HEAD) of the connect link changes nothing: mail and chat
//! security scanners (Safe Links, unfurlers) fetch every link before the
//! user does. It shows which provider and account the link is for and a
//! "Continue" button; the POST that button sends uses the link and redirects
//! to the provider. The POST must come from that page: it carries a random
//! value that must equal a `SameSite=Strict` cookie set beside the page
//! (double submit), which a form on another site cannot send, and a present
//! `Origin` or `Sec-Fetch-Site` header must say the same origin. Otherwise a
//! page elsewhere could make a victim's browser consent into someone else's
//! flow (login CSRF).

use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use axum::{Router, extract::RawQuery};

use crate::core::sessions::{CallbackOutcome, CallbackParams};
use crate::http::ApiError;
use crate::http::extract::ApiPath;
use crate::http::pages;
use crate::http::state::AppState;

/// The browser pages' rate limit, per source address: over it, a 429 page
/// with `Retry-After`.
pub struct BrowserLimit;

impl axum::extract::FromRequestParts<AppState> for BrowserLimit {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut axum::http::request::Parts, state: &AppState) -> Result<Self, Response> {
        let address = crate::http::caller::source_address(parts, &state.trusted_proxies);
        match state.limits.check(crate::access::limits::Limited::Browser, None, address) {
            Ok(()) => Ok(Self),
            Err(wait) => {
                let route =
                    parts.extensions.get::<axum::extract::MatchedPath>().map_or("unmatched", |p| p.as_str()).to_owned();
                metrics::counter!(crate::telemetry::metrics::RATE_LIMITED, "route" => route).increment(1);
                Err(ApiError::RateLimited { retry_after_secs: wait }.page())
            }
        }
    }
}

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/connect/{connect_id}", get(show_connect).post(continue_connect))
        .route("/auth/callback/{provider}", get(callback))
}

/// The cookie holding the connect page's double-submit value.
const CONNECT_COOKIE: &str = "gw_connect";
/// How long the connect page's cookie lives (longer than a session).
const CONNECT_COOKIE_MAX_AGE: u32 = 3600;

/// Shows what a connect link is for, without using it.
#[utoipa::path(get, path = "/connect/{connect_id}", tag = "browser",
    params(("connect_id" = String, Path, description = "The opaque id from auth_url")),
    responses(
        crate::http::responses::BrowserErrors,
        (status = 200, description = "HTML page: the provider, the account the link is for, and a \"Continue\" button (a form POSTing back to this URL). Sets a SameSite=Strict cookie the POST must carry. Fetching it (scanners do) uses nothing.",
            body = String, content_type = "text/html", headers(("Set-Cookie" = String, description = "gw_connect: the form's double-submit value"))),
        (status = 404, description = "HTML page: the link was used, expired or never existed", body = String, content_type = "text/html"),
    ))]
pub async fn show_connect(
    _limit: BrowserLimit,
    State(state): State<AppState>,
    ApiPath(connect_id): ApiPath<String>,
) -> Response {
    let info = match state.services.show_link(&connect_id).await {
        Ok(info) => info,
        Err(err) => return ApiError::from(err).page(),
    };
    let csrf = crate::core::sessions::random_token();
    let mut response = pages::connect(&connect_id, &info.provider_name, &info.provider_origin, &info.email, &csrf);
    let secure = if state.services.settings().public_url.scheme() == "https" { "; Secure" } else { "" };
    let cookie = format!(
        "{CONNECT_COOKIE}={csrf}; Path=/connect/{connect_id}; Max-Age={CONNECT_COOKIE_MAX_AGE}; HttpOnly; SameSite=Strict{secure}"
    );
    if let Ok(value) = HeaderValue::from_str(&cookie) {
        response.headers_mut().insert(header::SET_COOKIE, value);
    }
    response
}

/// The connect page's form.
#[derive(Debug, Default, serde::Deserialize, utoipa::ToSchema)]
pub struct ContinueForm {
    /// The value of the page's hidden field; the `gw_connect` cookie set by the page must carry the same.
    csrf: Option<String>,
}

/// "Continue": uses the link and sends the browser to the provider.
#[utoipa::path(post, path = "/connect/{connect_id}", tag = "browser",
    params(("connect_id" = String, Path, description = "The opaque id from auth_url")),
    request_body(content = ContinueForm, content_type = "application/x-www-form-urlencoded"),
    responses(
        crate::http::responses::BrowserErrors,
        (status = 302, description = "To the provider's consent page; the link is used"),
        (status = 400, description = "HTML page: the form was malformed", body = String, content_type = "text/html"),
        (status = 403, description = "HTML page: not sent by the connect page (cross-site, or without its cookie); nothing used", body = String, content_type = "text/html"),
        (status = 404, description = "HTML page: the link was used, expired or never existed", body = String, content_type = "text/html"),
        (status = 413, description = "The form is larger than 16 KiB"),
    ))]
pub async fn continue_connect(
    _limit: BrowserLimit,
    State(state): State<AppState>,
    ApiPath(connect_id): ApiPath<String>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    // Parsed by hand so that a malformed form still gets a page, not plain text.
    let Ok(form) = serde_urlencoded::from_bytes::<ContinueForm>(&body) else {
        return ApiError::SignInRefused("The sign-in form was malformed. Open the link again.").page();
    };
    if !from_the_connect_page(&headers, form.csrf.as_deref(), &state.services.settings().public_url) {
        return ApiError::NotFromConnectPage.page();
    }
    match state.services.open_link(&connect_id).await {
        Ok(url) => {
            let mut response = Redirect::to(url.as_str()).into_response();
            *response.status_mut() = StatusCode::FOUND;
            pages::secure_headers(&mut response);
            response
        }
        Err(err) => ApiError::from(err).page(),
    }
}

/// The POST carries the page's value in both the form and the cookie, and
/// does not say it comes from another origin.
fn from_the_connect_page(headers: &HeaderMap, form_value: Option<&str>, public_url: &url::Url) -> bool {
    use subtle::ConstantTimeEq;
    let cookie = headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == CONNECT_COOKIE)
        .map(|(_, value)| value);
    let (Some(cookie), Some(form_value)) = (cookie, form_value) else { return false };
    if cookie.is_empty() || !bool::from(cookie.as_bytes().ct_eq(form_value.as_bytes())) {
        return false;
    }
    let origin_ok = headers
        .get(header::ORIGIN)
        .is_none_or(|o| o.to_str().is_ok_and(|o| o == public_url.origin().ascii_serialization()));
    let site_ok = headers.get("sec-fetch-site").is_none_or(|s| s.as_bytes() == b"same-origin");
    origin_ok && site_ok
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
        crate::http::responses::BrowserErrors,
        (status = 200, description = "HTML success page", body = String, content_type = "text/html"),
        (status = 303, description = "To redirect_after, when the flow set one"),
        (status = 400, description = "HTML failure page", body = String, content_type = "text/html"),
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
        Err(_) => return ApiError::SignInRefused("The sign-in redirect was malformed.").page(),
    };
    match state.services.callback(provider, params).await {
        CallbackOutcome::Completed { redirect_after: Some(target), .. } => {
            let mut response = StatusCode::SEE_OTHER.into_response();
            if let Ok(location) = HeaderValue::from_str(&target) {
                response.headers_mut().insert(header::LOCATION, location);
            }
            pages::secure_headers(&mut response);
            response
        }
        CallbackOutcome::Completed { provider, .. } => pages::success(&provider),
        CallbackOutcome::Failed(reason) => ApiError::SignInFailed(reason).page(),
        CallbackOutcome::Rejected(message) => ApiError::SignInRefused(message).page(),
    }
}
