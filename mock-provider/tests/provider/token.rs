//! The rest of the token endpoint: Meta's exchange, expiry, and malformed requests.

use std::time::Duration;

use mock_provider::{MockConfig, MockProvider};
use reqwest::StatusCode;
use serde_json::Value;

use crate::helpers::*;

const SIXTY_DAYS: u64 = 60 * 24 * 3600;

#[tokio::test]
async fn fb_exchange_over_get_with_query_parameters() {
    let provider =
        MockProvider::start_with(MockConfig { issue_refresh_tokens: false, ..MockConfig::default() }).await.unwrap();
    let client = client();
    let body = login(&provider, &client, "alice@example.com").await;
    assert!(body.get("refresh_token").is_none());
    let short_lived = str_field(&body, "access_token");

    let response = fb_exchange(&provider, &client, short_lived).await;
    assert_eq!(response.status(), StatusCode::OK);
    let long_lived: Value = response.json().await.unwrap();
    assert_eq!(long_lived["expires_in"].as_u64(), Some(SIXTY_DAYS));
    assert!(long_lived.get("refresh_token").is_none());
    let token = str_field(&long_lived, "access_token");
    assert_ne!(token, short_lived);
    let me: Value = userinfo(&provider, &client, token).await.json().await.unwrap();
    assert_eq!(me["email"], "alice@example.com");
    assert_eq!(provider.counters().exchange_grants, 1);
}

#[tokio::test]
async fn fb_exchange_over_post_and_with_a_bad_token() {
    let provider = MockProvider::start().await.unwrap();
    let client = client();
    let body = login(&provider, &client, "alice@example.com").await;
    let response = client
        .post(provider.token_url())
        .form(&[
            ("grant_type", "fb_exchange_token"),
            ("client_id", provider.client_id()),
            ("client_secret", provider.client_secret()),
            ("fb_exchange_token", str_field(&body, "access_token")),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);

    let response = fb_exchange(&provider, &client, "mock_at_unknown").await;
    expect_oauth_error(response, StatusCode::BAD_REQUEST, "invalid_grant").await;
}

#[tokio::test]
async fn expired_access_tokens_are_refused_everywhere() {
    let provider = MockProvider::start().await.unwrap();
    provider.set_access_token_ttl(Duration::ZERO);
    let client = client();
    let body = login(&provider, &client, "alice@example.com").await;
    assert_eq!(body["expires_in"].as_u64(), Some(0));
    let access = str_field(&body, "access_token");
    assert!(!provider.access_token_is_valid(access));
    assert_eq!(userinfo(&provider, &client, access).await.status(), StatusCode::UNAUTHORIZED);
    let api = client.get(provider.api_url()).bearer_auth(access).send().await.unwrap();
    assert_eq!(api.status(), StatusCode::UNAUTHORIZED);
    let exchange = fb_exchange(&provider, &client, access).await;
    expect_oauth_error(exchange, StatusCode::BAD_REQUEST, "invalid_grant").await;

    // A refresh gives a working token again once the TTL is back.
    provider.set_access_token_ttl(Duration::from_secs(60));
    let refreshed: Value = refresh(&provider, &client, str_field(&body, "refresh_token")).await.json().await.unwrap();
    assert_eq!(refreshed["expires_in"].as_u64(), Some(60));
    assert!(provider.access_token_is_valid(str_field(&refreshed, "access_token")));
}

#[tokio::test]
async fn malformed_token_requests() {
    let provider = MockProvider::start().await.unwrap();
    let client = client();
    let auth = (provider.client_id(), Some(provider.client_secret()));

    let unsupported = client
        .post(provider.token_url())
        .basic_auth(auth.0, auth.1)
        .form(&[("grant_type", "password"), ("username", "a"), ("password", "b")])
        .send()
        .await
        .unwrap();
    expect_oauth_error(unsupported, StatusCode::BAD_REQUEST, "unsupported_grant_type").await;

    let missing = client
        .post(provider.token_url())
        .basic_auth(auth.0, auth.1)
        .form(&[("grant_type", "refresh_token")])
        .send()
        .await
        .unwrap();
    expect_oauth_error(missing, StatusCode::BAD_REQUEST, "invalid_request").await;

    let over_get = client
        .get(provider.token_url())
        .basic_auth(auth.0, auth.1)
        .query(&[("grant_type", "refresh_token"), ("refresh_token", "mock_rt_x")])
        .send()
        .await
        .unwrap();
    expect_oauth_error(over_get, StatusCode::BAD_REQUEST, "invalid_request").await;

    let json = client
        .post(provider.token_url())
        .basic_auth(auth.0, auth.1)
        .json(&serde_json::json!({"grant_type": "refresh_token", "refresh_token": "x"}))
        .send()
        .await
        .unwrap();
    expect_oauth_error(json, StatusCode::BAD_REQUEST, "invalid_request").await;

    let twice = client
        .post(provider.token_url())
        .basic_auth(auth.0, auth.1)
        .form(&[("grant_type", "refresh_token"), ("refresh_token", "a"), ("refresh_token", "b")])
        .send()
        .await
        .unwrap();
    expect_oauth_error(twice, StatusCode::BAD_REQUEST, "invalid_request").await;

    assert_eq!(provider.counters().token_errors, 5);
}

#[tokio::test]
async fn discovery_document_points_at_the_endpoints() {
    let provider = MockProvider::start().await.unwrap();
    let url = format!("{}/.well-known/openid-configuration", provider.base_url());
    let document: Value = client().get(url).send().await.unwrap().json().await.unwrap();
    assert_eq!(document["issuer"], provider.base_url());
    assert_eq!(document["token_endpoint"], provider.token_url());
    assert_eq!(document["authorization_endpoint"], provider.authorize_url());
    assert_eq!(document["code_challenge_methods_supported"], serde_json::json!(["S256"]));
}
