//! Credential metric handles for the hot path. Registering a metric by name and
//! labels builds and hashes a key on every call; a warm `/auth/token` request
//! instead finds its handles in a small map (bounded: routes × methods ×
//! statuses, providers × outcomes) and only touches atomics.

use std::collections::HashMap;
use std::sync::{LazyLock, RwLock};

use axum::http::Method;
use metrics::{Counter, Histogram};

use super::metrics as m;

type HttpKey = (Method, u16);
/// route pattern → (method, status) → handles.
type HttpHandles = HashMap<String, HashMap<HttpKey, (Counter, Histogram)>>;
static HTTP: LazyLock<RwLock<HttpHandles>> = LazyLock::new(Default::default);
static TOKEN_REQUESTS: LazyLock<RwLock<HashMap<String, HashMap<&'static str, Counter>>>> =
    LazyLock::new(Default::default);

/// `http_requests_total` and `http_request_duration_seconds` for one route pattern, method and status.
pub fn http(route: &str, method: &Method, status: u16) -> (Counter, Histogram) {
    let key = (method.clone(), status);
    if let Ok(map) = HTTP.read()
        && let Some(handles) = map.get(route).and_then(|by| by.get(&key))
    {
        return handles.clone();
    }
    let labels = [("route", route.to_owned()), ("method", method.as_str().to_owned()), ("status", status.to_string())];
    let handles =
        (metrics::counter!(m::HTTP_REQUESTS, &labels), metrics::histogram!(m::HTTP_REQUEST_DURATION, &labels));
    if let Ok(mut map) = HTTP.write() {
        map.entry(route.to_owned()).or_default().insert(key, handles.clone());
    }
    handles
}

/// `token_requests_total` for one provider and outcome.
pub fn token_request(provider: &str, outcome: &'static str) -> Counter {
    if let Ok(map) = TOKEN_REQUESTS.read()
        && let Some(counter) = map.get(provider).and_then(|by| by.get(outcome))
    {
        return counter.clone();
    }
    let counter = metrics::counter!(m::TOKEN_REQUESTS, "provider" => provider.to_owned(), "outcome" => outcome);
    if let Ok(mut map) = TOKEN_REQUESTS.write() {
        map.entry(provider.to_owned()).or_default().insert(outcome, counter.clone());
    }
    counter
}
