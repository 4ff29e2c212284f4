//! What the provider has served, for tests and benchmarks to assert on.

use serde::{Deserialize, Serialize};

/// A snapshot of everything the provider has counted since it started.
///
/// Injected faults count only in `faults_served`, never in the counter of the endpoint they
/// replaced, so a test can tell "the gateway retried after a 500" from "the provider said
/// invalid_grant".
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counters {
    /// `/authorize` requests that issued a code.
    pub authorizations: u64,
    /// `/authorize` requests the user denied.
    pub denials: u64,
    /// Successful authorization-code exchanges.
    pub authorization_code_grants: u64,
    /// Successful refresh_token grants.
    pub refresh_grants: u64,
    /// Successful fb_exchange_token grants.
    pub exchange_grants: u64,
    /// Token endpoint answers that were OAuth errors (4xx JSON), injected faults excluded.
    pub token_errors: u64,
    /// Requests answered by an injected fault (a `Slow` fault counts when it is served).
    pub faults_served: u64,
    /// `/revoke` requests answered with 200, whether or not the token was known.
    pub revocations: u64,
    /// `/userinfo` requests handled, valid token or not.
    pub userinfo_calls: u64,
    /// `/api/me` requests handled, valid token or not.
    pub api_calls: u64,
    /// `/idp/jwks` requests answered with the key set.
    #[serde(default)]
    pub jwks_fetches: u64,
    /// The most token requests ever in flight at once (received, not yet answered): how a
    /// test proves a client's concurrency bound held.
    #[serde(default)]
    pub max_token_requests_in_flight: u64,
}
