//! Many clients at once.

use futures::future::join_all;
use mock_provider::MockProvider;
use reqwest::StatusCode;

use crate::helpers::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_hundred_concurrent_refreshes_all_succeed() {
    let provider = MockProvider::start().await.unwrap();
    let client = client();
    let body = login(&provider, &client, "alice@example.com").await;
    let refresh_token = str_field(&body, "refresh_token");

    let responses = join_all((0..200).map(|_| refresh(&provider, &client, refresh_token))).await;
    let mut access_tokens = Vec::new();
    for response in responses {
        assert_eq!(response.status(), StatusCode::OK);
        let body: serde_json::Value = response.json().await.unwrap();
        access_tokens.push(str_field(&body, "access_token").to_owned());
    }
    access_tokens.sort();
    access_tokens.dedup();
    assert_eq!(access_tokens.len(), 200, "every access token is distinct");
    assert_eq!(provider.refresh_count_for("alice@example.com"), 200);
    assert_eq!(provider.counters().refresh_grants, 200);
}

#[tokio::test]
async fn shutdown_closes_the_port() {
    let provider = MockProvider::start().await.unwrap();
    let url = provider.token_url();
    let client = client();
    assert_eq!(client.get(&url).send().await.unwrap().status(), StatusCode::BAD_REQUEST);
    provider.shutdown().await;
    // A fresh client, so no pooled connection can hide the closed port.
    let error = reqwest::Client::new().get(&url).timeout(REQUEST_TIMEOUT).send().await.unwrap_err();
    assert!(error.is_connect(), "{error:?}");
}
