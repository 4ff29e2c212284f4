//! `GET|POST /token`: the authorization_code, refresh_token and Meta-style
//! fb_exchange_token grants (RFC 6749 §4.1.3, §6; RFC 7636 §4.5).

use std::sync::Arc;
use std::time::SystemTime;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{ConnectInfo, RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, Method, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use super::client_auth::authenticate;
use super::fault_gate;
use super::params::Params;
use crate::error::{ErrorCode, OAuthError};
use crate::faults::Endpoint;
use crate::jwt::sign_hs256;
use crate::listener::ConnInfo;
use crate::state::{Issued, Lies, Shared};

/// Meta's grant, which Meta also serves over GET with everything in the query string.
const FB_EXCHANGE: &str = "fb_exchange_token";

/// The successful answer (RFC 6749 §5.1).
#[derive(Debug, Serialize)]
struct TokenResponse {
    access_token: String,
    token_type: &'static str,
    /// An integer: clients such as the `oauth2` crate refuse a string here.
    expires_in: u64,
    scope: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    refresh_token: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    id_token: Option<String>,
    /// Only when the provider is told to pad its answers.
    #[serde(skip_serializing_if = "Option::is_none")]
    padding: Option<String>,
}

pub(super) async fn token(
    State(shared): State<Arc<Shared>>,
    ConnectInfo(conn): ConnectInfo<ConnInfo>,
    method: Method,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
    body: Bytes,
) -> Response {
    let _in_flight = InFlight::enter(&shared);
    let latency = shared.store().config.token_latency.sample();
    if !latency.is_zero() {
        tokio::time::sleep(latency).await;
    }
    if let Some(response) = fault_gate(&shared, Endpoint::Token, &conn).await {
        return response;
    }
    let request =
        TokenRequest { method: &method, headers: &headers, query: query.as_deref().unwrap_or(""), body: &body };
    match grant(&shared, &request, SystemTime::now()) {
        Ok(response) => response,
        Err(error) => {
            shared.store().counters.token_errors += 1;
            tracing::debug!(?error, "token request refused");
            error.into_response()
        }
    }
}

/// Counts a token request in flight until it is answered, or dropped with its connection.
struct InFlight<'a>(&'a Shared);

impl<'a> InFlight<'a> {
    fn enter(shared: &'a Shared) -> Self {
        shared.store().token_request_started();
        Self(shared)
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.store().token_request_ended();
    }
}

struct TokenRequest<'a> {
    method: &'a Method,
    headers: &'a HeaderMap,
    query: &'a str,
    body: &'a [u8],
}

/// Authenticates the client, runs the grant and renders the answer.
fn grant(shared: &Shared, request: &TokenRequest<'_>, now: SystemTime) -> Result<Response, OAuthError> {
    let params = parameters(request)?;
    if let Some(name) = params.duplicate() {
        return Err(OAuthError::invalid_request(format!("parameter {name} sent twice")));
    }
    let (issued, client_secret, lies) = {
        let mut store = shared.store();
        authenticate(request.headers, &params, &store.config)?;
        // There is one client, so an authenticated client owns every code and token.
        let issued = match params.get("grant_type") {
            Some("authorization_code") => store.redeem_code(
                required(&params, "code")?,
                params.get("redirect_uri"),
                params.get("code_verifier"),
                now,
            )?,
            Some("refresh_token") => store.refresh(required(&params, "refresh_token")?, params.get("scope"), now)?,
            Some(FB_EXCHANGE) => store.exchange(required(&params, FB_EXCHANGE)?, now)?,
            Some(other) => {
                return Err(OAuthError::new(
                    ErrorCode::UnsupportedGrantType,
                    format!("grant_type {other:?} is not supported"),
                ));
            }
            None => return Err(OAuthError::invalid_request("missing grant_type")),
        };
        let mut issued = issued;
        if matches!(store.identity, crate::IdentityClaims::Microsoft { .. }) {
            // Entra answers granted Graph scopes by their short names.
            for scope in &mut issued.scopes {
                if let Some(short) = scope.strip_prefix(crate::state::GRAPH) {
                    *scope = short.to_owned();
                }
            }
        }
        (issued, store.config.client_secret.clone(), store.lies.clone())
    };
    // Signing happens outside the lock; it needs nothing from the store.
    Ok(render(issued, &client_secret, &lies))
}

/// Where the parameters come from: the body for the standard grants (RFC 6749 §4.1.3), and
/// the query string as well for Meta's exchange, which Meta documents as a GET.
fn parameters(request: &TokenRequest<'_>) -> Result<Params, OAuthError> {
    let query = Params::parse(request.query.as_bytes());
    if *request.method == Method::GET {
        return if query.get("grant_type") == Some(FB_EXCHANGE) {
            Ok(query)
        } else {
            Err(OAuthError::invalid_request(
                "token requests must be POSTed (only fb_exchange_token is allowed over GET)",
            ))
        };
    }
    if !request.body.is_empty() && !is_form(request.headers) {
        return Err(OAuthError::invalid_request("the body must be application/x-www-form-urlencoded"));
    }
    let body = Params::parse(request.body);
    let grant_type = body.get("grant_type").or_else(|| query.get("grant_type"));
    if grant_type == Some(FB_EXCHANGE) { Ok(Params::overlaid(&query, &body)) } else { Ok(body) }
}

fn is_form(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.split(';').next())
        .is_some_and(|mime| mime.trim().eq_ignore_ascii_case("application/x-www-form-urlencoded"))
}

fn required<'a>(params: &'a Params, name: &str) -> Result<&'a str, OAuthError> {
    params.get(name).ok_or_else(|| OAuthError::invalid_request(format!("missing {name}")))
}

fn render(issued: Issued, client_secret: &str, lies: &Lies) -> Response {
    let id_token = issued.id_token.and_then(|claims| {
        sign_hs256(&claims, client_secret.as_bytes())
            .map_err(|error| tracing::error!(%error, "cannot sign id_token"))
            .ok()
    });
    let body = TokenResponse {
        access_token: issued.access_token,
        token_type: "Bearer",
        expires_in: lies.expires_in.unwrap_or(issued.expires_in),
        scope: issued.scopes.join(" "),
        refresh_token: issued.refresh_token,
        id_token,
        padding: (lies.padding > 0).then(|| "x".repeat(lies.padding)),
    };
    let mut response = Json(body).into_response();
    // RFC 6749 §5.1: token responses must not be cached.
    let headers = response.headers_mut();
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
    response
}
