//! `/authorize` request validation and redirects.

use mock_provider::MockProvider;
use reqwest::StatusCode;

use crate::helpers::*;

#[tokio::test]
async fn unknown_client_or_missing_redirect_uri_shows_an_error_page() {
    let provider = MockProvider::start().await.unwrap();
    let client = client();
    for overrides in
        [[("client_id", "someone-else")], [("client_id", "")], [("redirect_uri", "")], [("redirect_uri", "not a url")]]
    {
        let response = client.get(authorize_url(&provider, &overrides)).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::BAD_REQUEST, "{overrides:?}");
        assert!(!response.headers().contains_key("location"));
        assert!(response.headers()["content-type"].to_str().unwrap().starts_with("text/html"));
    }
    assert_eq!(provider.counters().authorizations, 0);
}

#[tokio::test]
async fn bad_requests_are_redirected_with_an_error() {
    let provider = MockProvider::start().await.unwrap();
    let client = client();
    let cases: [(&[(&str, &str)], &str); 4] = [
        (&[("code_challenge_method", "plain")], "invalid_request"),
        (&[("code_challenge_method", "")], "invalid_request"),
        (&[("code_challenge", "too-short")], "invalid_request"),
        (&[("response_type", "token")], "unsupported_response_type"),
    ];
    for (overrides, error) in cases {
        let response = client.get(authorize_url(&provider, overrides)).send().await.unwrap();
        let location = location(&response);
        assert_eq!(query_param(&location, "error").as_deref(), Some(error), "{overrides:?}");
        assert_eq!(query_param(&location, "state").as_deref(), Some(STATE));
        assert!(query_param(&location, "code").is_none());
    }
}

#[tokio::test]
async fn redirect_keeps_the_redirect_uris_query() {
    let provider = MockProvider::start().await.unwrap();
    let client = client();
    let redirect_uri = "http://localhost:8080/callback?tenant=a%20b";
    let response = client
        .get(authorize_url(&provider, &[("redirect_uri", redirect_uri), ("state", "a b&c=d")]))
        .send()
        .await
        .unwrap();
    let location = location(&response);
    assert_eq!(location.path(), "/callback");
    assert_eq!(query_param(&location, "tenant").as_deref(), Some("a b"));
    assert_eq!(query_param(&location, "state").as_deref(), Some("a b&c=d"));
    let code = query_param(&location, "code").unwrap();

    // The token request must repeat the redirect URI exactly.
    let response = client
        .post(provider.token_url())
        .form(&[
            ("grant_type", "authorization_code"),
            ("code", code.as_str()),
            ("redirect_uri", redirect_uri),
            ("code_verifier", VERIFIER),
            ("client_id", provider.client_id()),
            ("client_secret", provider.client_secret()),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
}

#[tokio::test]
async fn extra_parameters_are_accepted_and_recorded() {
    let provider = MockProvider::start().await.unwrap();
    let client = client();
    assert_eq!(provider.last_authorize_query(), None);
    let url = authorize_url(
        &provider,
        &[
            ("access_type", "offline"),
            ("prompt", "consent"),
            ("include_granted_scopes", "true"),
            ("login_hint", "alice@example.com"),
        ],
    );
    let response = client.get(url).send().await.unwrap();
    assert!(query_param(&location(&response), "code").is_some());
    let recorded = provider.last_authorize_query().unwrap();
    let get = |name: &str| recorded.iter().find(|(key, _)| key == name).map(|(_, value)| value.as_str());
    assert_eq!(get("access_type"), Some("offline"));
    assert_eq!(get("prompt"), Some("consent"));
    assert_eq!(get("include_granted_scopes"), Some("true"));
    assert_eq!(get("redirect_uri"), Some(REDIRECT_URI));
}

#[tokio::test]
async fn pkce_is_optional() {
    let provider = MockProvider::start().await.unwrap();
    let client = client();
    let url = authorize_url(&provider, &[("code_challenge", ""), ("code_challenge_method", "")]);
    let code = query_param(&location(&client.get(url).send().await.unwrap()), "code").unwrap();
    let form = [
        ("grant_type", "authorization_code"),
        ("code", code.as_str()),
        ("redirect_uri", REDIRECT_URI),
        ("client_id", provider.client_id()),
        ("client_secret", provider.client_secret()),
    ];
    let response = client.post(provider.token_url()).form(&form).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
}
