//! The refresh_token grant: Google-like reuse, Microsoft-like rotation, user revocation.

use mock_provider::{MockConfig, MockProvider};
use reqwest::StatusCode;
use serde_json::Value;

use crate::helpers::*;

#[tokio::test]
async fn without_rotation_the_same_refresh_token_keeps_working() {
    let provider = MockProvider::start().await.unwrap();
    let client = client();
    let body = login(&provider, &client, "alice@example.com").await;
    let refresh_token = str_field(&body, "refresh_token");
    for _ in 0..3 {
        let response = refresh(&provider, &client, refresh_token).await;
        assert_eq!(response.status(), StatusCode::OK);
        let refreshed: Value = response.json().await.unwrap();
        assert!(refreshed.get("refresh_token").is_none(), "{refreshed}");
        assert!(refreshed.get("id_token").is_none());
        assert_eq!(refreshed["expires_in"].as_u64(), Some(3600));
        assert_eq!(refreshed["scope"], body["scope"]);
        let access = str_field(&refreshed, "access_token");
        assert_ne!(access, str_field(&body, "access_token"));
        assert!(provider.access_token_is_valid(access));
    }
    assert_eq!(provider.refresh_count_for("alice@example.com"), 3);
    assert_eq!(provider.refresh_count_for("bob@example.com"), 0);
    assert_eq!(provider.counters().refresh_grants, 3);
}

#[tokio::test]
async fn with_rotation_the_old_refresh_token_dies() {
    let provider =
        MockProvider::start_with(MockConfig { rotate_refresh_tokens: true, ..MockConfig::default() }).await.unwrap();
    let client = client();
    let body = login(&provider, &client, "alice@example.com").await;
    let first = str_field(&body, "refresh_token");

    let rotated: Value = refresh(&provider, &client, first).await.json().await.unwrap();
    let second = str_field(&rotated, "refresh_token");
    assert!(second.starts_with("mock_rt_"));
    assert_ne!(first, second);

    let stale = refresh(&provider, &client, first).await;
    expect_oauth_error(stale, StatusCode::BAD_REQUEST, "invalid_grant").await;
    assert_eq!(refresh(&provider, &client, second).await.status(), StatusCode::OK);
    assert_eq!(provider.refresh_count_for("alice@example.com"), 2);
    assert_eq!(provider.counters().token_errors, 1);
}

#[tokio::test]
async fn rotation_can_be_switched_at_runtime() {
    let provider = MockProvider::start().await.unwrap();
    let client = client();
    let body = login(&provider, &client, "alice@example.com").await;
    provider.set_rotate_refresh_tokens(true);
    let rotated: Value = refresh(&provider, &client, str_field(&body, "refresh_token")).await.json().await.unwrap();
    assert!(rotated["refresh_token"].is_string());
}

#[tokio::test]
async fn invalidated_user_gets_invalid_grant() {
    let provider = MockProvider::start().await.unwrap();
    let client = client();
    let alice = login(&provider, &client, "alice@example.com").await;
    let bob = login(&provider, &client, "bob@example.com").await;
    provider.invalidate_refresh_tokens_for("alice@example.com");
    let response = refresh(&provider, &client, str_field(&alice, "refresh_token")).await;
    let error = expect_oauth_error(response, StatusCode::BAD_REQUEST, "invalid_grant").await;
    assert!(error["error_description"].is_string());
    let response = refresh(&provider, &client, str_field(&bob, "refresh_token")).await;
    assert_eq!(response.status(), StatusCode::OK);
}

#[tokio::test]
async fn unknown_refresh_token_is_invalid_grant() {
    let provider = MockProvider::start().await.unwrap();
    let response = refresh(&provider, &client(), "mock_rt_nope").await;
    expect_oauth_error(response, StatusCode::BAD_REQUEST, "invalid_grant").await;
}

#[tokio::test]
async fn scope_can_be_narrowed_not_widened() {
    let provider = MockProvider::start().await.unwrap();
    let client = client();
    let body = login(&provider, &client, "alice@example.com").await;
    let form = |scope: &'static str| {
        [("grant_type", "refresh_token"), ("refresh_token", str_field(&body, "refresh_token")), ("scope", scope)]
    };
    let auth = (provider.client_id(), Some(provider.client_secret()));
    let narrowed: Value = client
        .post(provider.token_url())
        .basic_auth(auth.0, auth.1)
        .form(&form("email"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(narrowed["scope"], "email");
    let widened =
        client.post(provider.token_url()).basic_auth(auth.0, auth.1).form(&form("email admin")).send().await.unwrap();
    expect_oauth_error(widened, StatusCode::BAD_REQUEST, "invalid_scope").await;
}
