//! Every injectable fault, as an HTTP client sees it.

use std::time::{Duration, Instant};

use mock_provider::{Endpoint, Fault, MockProvider};
use reqwest::StatusCode;
use serde_json::Value;

use crate::helpers::*;

/// Logs in and returns (access token, refresh token).
async fn tokens(provider: &MockProvider, client: &reqwest::Client) -> (String, String) {
    let body = login(provider, client, "alice@example.com").await;
    (str_field(&body, "access_token").to_owned(), str_field(&body, "refresh_token").to_owned())
}

#[tokio::test]
async fn server_error_is_html_500_and_is_consumed_after_times() {
    let provider = MockProvider::start().await.unwrap();
    let client = client();
    let (_, refresh_token) = tokens(&provider, &client).await;
    provider.inject(Endpoint::Token, Fault::ServerError, 2);
    for _ in 0..2 {
        let response = refresh(&provider, &client, &refresh_token).await;
        assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
        assert!(response.headers()["content-type"].to_str().unwrap().starts_with("text/html"));
        let body = response.text().await.unwrap();
        assert!(serde_json::from_str::<Value>(&body).is_err(), "not an OAuth body");
    }
    assert_eq!(refresh(&provider, &client, &refresh_token).await.status(), StatusCode::OK);
    let counters = provider.counters();
    assert_eq!(counters.faults_served, 2);
    assert_eq!(counters.refresh_grants, 1);
    assert_eq!(counters.token_errors, 0);
}

#[tokio::test]
async fn too_many_requests_carries_retry_after() {
    let provider = MockProvider::start().await.unwrap();
    let client = client();
    provider.inject(Endpoint::Userinfo, Fault::TooManyRequests { retry_after_secs: 5 }, 1);
    let response = userinfo(&provider, &client, "anything").await;
    assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(response.headers()["retry-after"], "5");
}

#[tokio::test]
async fn slow_answers_late_but_normally() {
    let provider = MockProvider::start().await.unwrap();
    let client = client();
    let (access, _) = tokens(&provider, &client).await;
    provider.inject(Endpoint::Api, Fault::Slow(Duration::from_millis(200)), 1);
    let started = Instant::now();
    let response = client.get(provider.api_url()).bearer_auth(&access).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert!(started.elapsed() >= Duration::from_millis(200));
    assert_eq!(provider.counters().api_calls, 1);
}

#[tokio::test]
async fn slow_trips_client_timeouts() {
    let provider = MockProvider::start().await.unwrap();
    provider.inject(Endpoint::Token, Fault::Slow(Duration::from_secs(5)), 1);
    let impatient = reqwest::Client::builder().timeout(Duration::from_millis(100)).build().unwrap();
    let error = impatient.post(provider.token_url()).form(&[("grant_type", "refresh_token")]).send().await.unwrap_err();
    assert!(error.is_timeout(), "{error:?}");
}

#[tokio::test]
async fn oauth_error_faults() {
    let provider = MockProvider::start().await.unwrap();
    let client = client();
    let (_, refresh_token) = tokens(&provider, &client).await;
    provider.inject(Endpoint::Token, Fault::InvalidGrant, 1);
    provider.inject(Endpoint::Token, Fault::InvalidClient, 1);
    let response = refresh(&provider, &client, &refresh_token).await;
    let body = expect_oauth_error(response, StatusCode::BAD_REQUEST, "invalid_grant").await;
    assert!(body["error_description"].is_string());
    let response = refresh(&provider, &client, &refresh_token).await;
    expect_oauth_error(response, StatusCode::UNAUTHORIZED, "invalid_client").await;
    // The refresh token itself is untouched.
    assert_eq!(refresh(&provider, &client, &refresh_token).await.status(), StatusCode::OK);
}

#[tokio::test]
async fn status_fault_sends_a_non_oauth_json_body() {
    let provider = MockProvider::start().await.unwrap();
    let client = client();
    provider.inject(Endpoint::Revoke, Fault::Status(502), 1);
    let response = client.post(provider.revoke_url()).form(&[("token", "x")]).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::BAD_GATEWAY);
    let body: Value = response.json().await.unwrap();
    assert!(body.get("error").is_none(), "{body}");
}

#[tokio::test]
async fn faults_are_fifo_per_endpoint() {
    let provider = MockProvider::start().await.unwrap();
    let client = client();
    let (access, _) = tokens(&provider, &client).await;
    provider.inject(Endpoint::Userinfo, Fault::ServerError, 1);
    provider.inject(Endpoint::Userinfo, Fault::Status(503), 1);
    provider.inject(Endpoint::Api, Fault::Status(504), 1);
    let statuses = [
        userinfo(&provider, &client, &access).await.status(),
        userinfo(&provider, &client, &access).await.status(),
        userinfo(&provider, &client, &access).await.status(),
    ];
    assert_eq!(statuses, [StatusCode::INTERNAL_SERVER_ERROR, StatusCode::SERVICE_UNAVAILABLE, StatusCode::OK]);
    provider.clear_faults();
    let api = client.get(provider.api_url()).bearer_auth(&access).send().await.unwrap();
    assert_eq!(api.status(), StatusCode::OK);
}

#[tokio::test]
async fn authorize_faults_apply_too() {
    let provider = MockProvider::start().await.unwrap();
    let client = client();
    provider.inject(Endpoint::Authorize, Fault::ServerError, 1);
    let response = client.get(authorize_url(&provider, &[])).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(provider.counters().authorizations, 0);
}

#[tokio::test]
async fn drop_connection_gives_a_connection_error_on_fresh_and_reused_connections() {
    let provider = MockProvider::start().await.unwrap();
    let client = client();
    let (access, refresh_token) = tokens(&provider, &client).await;

    // The client's pool now holds a keep-alive connection: the fault must work there too.
    provider.inject(Endpoint::Token, Fault::DropConnection, 1);
    let started = Instant::now();
    let error = client
        .post(provider.token_url())
        .basic_auth(provider.client_id(), Some(provider.client_secret()))
        .form(&[("grant_type", "refresh_token"), ("refresh_token", refresh_token.as_str())])
        .send()
        .await
        .unwrap_err();
    assert!(!error.is_timeout(), "{error:?}");
    assert!(error.status().is_none());
    assert!(started.elapsed() < REQUEST_TIMEOUT);

    // A brand-new client on a brand-new connection.
    provider.inject(Endpoint::Userinfo, Fault::DropConnection, 1);
    let error = reqwest::Client::new()
        .get(provider.userinfo_url())
        .bearer_auth(&access)
        .timeout(REQUEST_TIMEOUT)
        .send()
        .await
        .unwrap_err();
    assert!(!error.is_timeout(), "{error:?}");

    // Consumed: the next requests succeed, and the refresh token was never used.
    assert_eq!(refresh(&provider, &client, &refresh_token).await.status(), StatusCode::OK);
    assert_eq!(userinfo(&provider, &client, &access).await.status(), StatusCode::OK);
    let counters = provider.counters();
    assert_eq!(counters.faults_served, 2);
    assert_eq!(counters.refresh_grants, 1);
}
