//! `/metrics`: the Prometheus exposition, with the catalogue's metrics,
//! bounded labels, and the optional separate listener and bearer token.

use gateway::telemetry::metrics::CATALOGUE;

use crate::helpers::{Backend, TestDb, fernet_key, spawn_app_on};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_describe_the_catalogue_and_count_requests_by_route_pattern() {
    // With the scheduler on (default schedules), as in production, and a
    // trusted issuer: per-issuer series exist only when one is configured,
    // and this test must not depend on another having configured one.
    let mock = mock_provider::MockProvider::start().await.unwrap();
    let issuer = mock.idp_issuer();
    let app = crate::helpers::spawn_app_with(
        TestDb::new(Backend::Sqlite).await,
        fernet_key(),
        mock,
        &[("TEST_SCHEDULER", "on"), ("AUTH_GATEWAY_TRUSTED_ISSUERS", "corp"), ("IDP_CORP_ISSUER", &issuer)],
    )
    .await;
    app.authorize("mock", "alice@company.com").await;
    app.token_ok("mock", "alice@company.com").await;
    let text = app.client.get(app.url("/metrics")).send().await.unwrap().text().await.unwrap();
    for metric in CATALOGUE {
        assert!(text.contains(&format!("# HELP {} ", metric.name)), "{} is not described", metric.name);
    }
    assert!(text.contains(r#"http_requests_total{route="/auth/token",method="POST",status="200"}"#), "{text}");
    assert!(text.contains("http_request_duration_seconds_bucket{route=\"/auth/token\""), "histograms have buckets");
    assert!(text.contains(r#"token_requests_total{provider="mock",outcome="memory"}"#));
    assert!(text.contains(r#"oauth_session_completed_total{provider="mock"}"#));
    assert!(!text.contains("alice@company.com"), "no email in any label");
    let raw = text.lines().find(|l| !l.starts_with('#') && (l.contains("/connect/") || l.contains("status/0")));
    assert!(raw.is_none() || raw.is_some_and(|l| l.contains("{connect_id}")), "no raw path in any label: {raw:?}");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_can_have_their_own_listener_and_a_bearer_token() {
    let db = TestDb::new(Backend::Sqlite).await;
    let app =
        spawn_app_on(db, fernet_key(), &[("METRICS_ADDR", "127.0.0.1:0"), ("METRICS_BEARER_TOKEN", "scrape-secret")])
            .await;
    assert_eq!(app.client.get(app.url("/metrics")).send().await.unwrap().status(), 404, "not on the API listener");
    let addr = app.metrics_addr.expect("a separate metrics listener");
    let url = format!("http://{addr}/metrics");
    assert_eq!(app.client.get(&url).send().await.unwrap().status(), 401);
    assert_eq!(app.client.get(&url).bearer_auth("wrong").send().await.unwrap().status(), 401);
    let ok = app.client.get(&url).bearer_auth("scrape-secret").send().await.unwrap();
    assert_eq!(ok.status(), 200);
    assert!(ok.text().await.unwrap().contains("gateway_build_info"));
    app.stop().await;
}
