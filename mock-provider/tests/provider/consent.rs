//! Who approves: login_hint, a forced email, denial, and the interactive consent page.

use mock_provider::{Consent, ConsentMode, MockConfig, MockProvider};
use reqwest::StatusCode;
use serde_json::Value;

use crate::helpers::*;

async fn email_of(provider: &MockProvider, client: &reqwest::Client, body: &Value) -> String {
    let me: Value = userinfo(provider, client, str_field(body, "access_token")).await.json().await.unwrap();
    me["email"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn login_hint_decides_and_default_email_fills_in() {
    let provider = MockProvider::start().await.unwrap();
    let client = client();
    let alice = login(&provider, &client, "alice@example.com").await;
    assert_eq!(email_of(&provider, &client, &alice).await, "alice@example.com");

    let url = authorize_url(&provider, &[]);
    let code = query_param(&location(&client.get(url).send().await.unwrap()), "code").unwrap();
    let body: Value = exchange(&provider, &client, &code).await.json().await.unwrap();
    assert_eq!(email_of(&provider, &client, &body).await, "user@example.com");
}

#[tokio::test]
async fn forced_email_wins_over_login_hint() {
    let provider = MockProvider::start().await.unwrap();
    let client = client();
    provider.set_consent(Consent::ApproveAs("bob@example.com".into()));
    let body = login(&provider, &client, "alice@example.com").await;
    assert_eq!(email_of(&provider, &client, &body).await, "bob@example.com");
}

#[tokio::test]
async fn denial_redirects_with_access_denied_and_state() {
    let provider = MockProvider::start().await.unwrap();
    let client = client();
    provider.set_consent(Consent::Deny);
    let response = client.get(authorize_url(&provider, &[("login_hint", "alice@example.com")])).send().await.unwrap();
    let location = location(&response);
    assert_eq!(location.as_str().split('?').next(), Some(REDIRECT_URI));
    assert_eq!(query_param(&location, "error").as_deref(), Some("access_denied"));
    assert!(query_param(&location, "error_description").is_some());
    assert_eq!(query_param(&location, "state").as_deref(), Some(STATE));
    assert!(query_param(&location, "code").is_none());
    let counters = provider.counters();
    assert_eq!((counters.denials, counters.authorizations), (1, 0));

    provider.set_consent(Consent::ApproveAsLoginHint);
    login(&provider, &client, "alice@example.com").await;
}

/// The `request_id` hidden field of the consent page.
fn request_id(page: &str) -> String {
    let marker = r#"name="request_id" value=""#;
    let start = page.find(marker).expect("consent page has a request_id") + marker.len();
    let end = start + page[start..].find('"').unwrap();
    page[start..end].to_owned()
}

#[tokio::test]
async fn interactive_consent_page_approves_and_denies() {
    let provider = MockProvider::start_with(MockConfig { consent: ConsentMode::Interactive, ..MockConfig::default() })
        .await
        .unwrap();
    let client = client();
    let page = |hint: &'static str| {
        let client = client.clone();
        let url = authorize_url(&provider, &[("login_hint", hint)]);
        async move {
            let response = client.get(url).send().await.unwrap();
            assert_eq!(response.status(), StatusCode::OK);
            response.text().await.unwrap()
        }
    };

    let html = page("alice@example.com").await;
    assert!(html.contains(r#"value="alice@example.com""#), "email prefilled");
    assert!(html.contains("Approve") && html.contains("Deny"));
    let decision_url = format!("{}/authorize/decision", provider.base_url());
    let response = client
        .post(&decision_url)
        .form(&[("request_id", request_id(&html).as_str()), ("email", "carol@example.com"), ("decision", "approve")])
        .send()
        .await
        .unwrap();
    let redirect = location(&response);
    assert_eq!(query_param(&redirect, "state").as_deref(), Some(STATE));
    let code = query_param(&redirect, "code").unwrap();
    let body: Value = exchange(&provider, &client, &code).await.json().await.unwrap();
    assert_eq!(email_of(&provider, &client, &body).await, "carol@example.com");

    let html = page("alice@example.com").await;
    let id = request_id(&html);
    let deny = [("request_id", id.as_str()), ("decision", "deny")];
    let response = client.post(&decision_url).form(&deny).send().await.unwrap();
    assert_eq!(query_param(&location(&response), "error").as_deref(), Some("access_denied"));
    // A consent page answers once.
    let again = client.post(&decision_url).form(&deny).send().await.unwrap();
    assert_eq!(again.status(), StatusCode::BAD_REQUEST);
}
