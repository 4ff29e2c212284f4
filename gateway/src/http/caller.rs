//! Who is calling: the `X-API-Key` check, as an extractor: a handler that takes [`Caller`]
//! cannot run without a valid key. The key is hashed (SHA-256) once and the
//! caller's API client found by digest; the bootstrap key
//! (`AUTH_GATEWAY_API_KEY`) is compared in constant time. The extractor also
//! refuses disabled clients and sources outside a client's networks, and
//! applies the rate limits of `/auth/init` and `/auth/token`. What the
//! caller may do with the request is the handler's check ([`Caller::allow`]).

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use super::state::AppState;
use axum::extract::{ConnectInfo, FromRequestParts, MatchedPath};
use axum::http::request::Parts;

use super::ApiError;
use crate::access::limits::Limited;
use crate::access::{Action, Client, Denied, audit};

use crate::email::Email;
use crate::telemetry::metrics as m;

pub const HEADER: &str = "x-api-key";

pub fn digest(key: &[u8]) -> [u8; 32] {
    crate::core::access::digest(key)
}

/// An authenticated caller.
#[derive(Clone, Debug)]
pub struct Caller {
    pub client: Arc<Client>,
    pub address: IpAddr,
}

impl Caller {
    /// Whether this caller may do `action` (for `provider`, for `email`);
    /// refusals are `403 forbidden` with the reason, and audited.
    pub fn allow(
        &self,
        state: &AppState,
        action: Action,
        provider: Option<&str>,
        email: Option<&Email>,
    ) -> Result<(), ApiError> {
        self.client.allow(action, provider, email).map_err(|denied| {
            let mut record = audit::record(&self.client.name, action.as_str(), "forbidden", state.services.now());
            record.user_email = email.map(ToString::to_string);
            record.provider = provider.map(str::to_owned);
            record.detail = Some(denied.0.clone());
            state.services.audit().record(record);
            forbidden(denied)
        })
    }
}

impl Caller {
    /// `/auth/token`, `/auth/init` and `/auth/providers/{email}` name their
    /// user; a client bound to token exchange may not (`403
    /// exchange_required`, audited): it gets tokens, and sign-in links bound
    /// to the verified user, from `POST /oauth/token`.
    pub fn must_not_name_users(&self, state: &AppState, provider: Option<&str>, email: &Email) -> Result<(), ApiError> {
        self.client.check_may_name_users().map_err(|denied| {
            let mut record =
                audit::record(&self.client.name, Action::Token.as_str(), "exchange_required", state.services.now());
            record.user_email = Some(email.to_string());
            record.provider = provider.map(str::to_owned);
            record.detail = Some(denied.0.clone());
            state.services.audit().record(record);
            ApiError::ExchangeRequired(denied.0)
        })
    }
}

fn forbidden(denied: Denied) -> ApiError {
    ApiError::Forbidden(denied.0)
}

/// The request's source: the peer, or — when the peer is a trusted proxy —
/// the right-most `X-Forwarded-For` address that is not one.
pub fn source_address(parts: &Parts, trusted: &[ipnet::IpNet]) -> IpAddr {
    let peer = parts.extensions.get::<ConnectInfo<SocketAddr>>().map_or(IpAddr::from([127, 0, 0, 1]), |c| c.0.ip());
    if !trusted.iter().any(|n| n.contains(&peer)) {
        return peer;
    }
    let forwarded =
        parts.headers.get_all("x-forwarded-for").iter().filter_map(|v| v.to_str().ok()).collect::<Vec<_>>().join(",");
    forwarded
        .split(',')
        .rev()
        .filter_map(|a| a.trim().parse::<IpAddr>().ok())
        .find(|ip| !trusted.iter().any(|n| n.contains(ip)))
        .unwrap_or(peer)
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let presented = parts.headers.get(HEADER).ok_or(ApiError::Unauthorized)?;
        let digest = digest(presented.as_bytes());
        let now = state.services.now();
        let Some(client) = state.services.clients().authenticate(&digest, now).await else {
            return Err(ApiError::Forbidden("Invalid API key.".to_owned()));
        };
        let address = source_address(parts, &state.trusted_proxies);
        let route = parts.extensions.get::<MatchedPath>().map(MatchedPath::as_str);
        if let Err(denied) = client.check_enabled().and_then(|()| client.check_source(address)) {
            let mut record = audit::record(&client.name, route.unwrap_or("unknown"), "forbidden", now);
            record.detail = Some(denied.0.clone());
            state.services.audit().record(record);
            return Err(forbidden(denied));
        }
        let limited = match route {
            Some("/auth/init") => Some(Limited::Init),
            Some("/auth/token" | "/oauth/token") => Some(Limited::Token),
            _ => None,
        };
        if let (Some(kind), Some(route)) = (limited, route)
            && let Err(wait) = state.limits.check(kind, Some(&client.id), address)
        {
            metrics::counter!(m::RATE_LIMITED, "route" => route.to_owned()).increment(1);
            return Err(ApiError::RateLimited { retry_after_secs: wait });
        }
        Ok(Self { client, address })
    }
}
