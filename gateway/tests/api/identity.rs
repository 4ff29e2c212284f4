//! The token handed out is provably the right person's: a consent counts only
//! when the provider proves who gave it — a verified email (or a provider the
//! operator vouches for), in an id_token issued to us by the provider, and
//! at Microsoft an address vouched for by a trusted tenant.

use mock_provider::{IdentityClaims, MockProvider};
use serde_json::Value;

use crate::helpers::{Backend, TestApp, TestDb, fernet_key, spawn_app, spawn_app_with_vars};
use crate::on_both_backends;

on_both_backends!(
    a_consent_without_a_verified_email_is_refused_and_revoked,
    a_verified_email_sent_as_a_string_counts,
    a_provider_the_operator_vouches_for_needs_no_email_verified,
    an_id_token_for_another_client_or_from_another_issuer_is_refused,
    microsoft_accounts_are_vouched_for_by_their_tenant,
    a_multi_tenant_microsoft_app_trusts_only_the_listed_tenants,
);

const ALICE: &str = "alice@company.com";
const TENANT: &str = "72f988bf-86f1-41af-91ab-2d7cd011db47";
const OTHER_TENANT: &str = "11111111-2222-3333-4444-555555555555";

/// Runs a consent for `email` at `provider` and returns the session's status.
async fn consent(app: &TestApp, provider: &str, email: &str) -> Value {
    let (auth_url, session_id) = app.init_ok(provider, email).await;
    app.browse(&auth_url).await;
    app.status_json(&session_id).await
}

async fn a_consent_without_a_verified_email_is_refused_and_revoked(backend: Backend) {
    let app = spawn_app(backend).await;
    for (n, claims) in [IdentityClaims::Omitted, IdentityClaims::Unverified].into_iter().enumerate() {
        app.mock.set_identity_claims(claims.clone());
        let status = consent(&app, "mock", ALICE).await;
        assert_eq!(status["status"], "failed", "{claims:?}");
        assert_eq!(status["reason"], "identity_unverified", "{claims:?}: {status}");
        assert_eq!(app.count("oauth_credentials").await, 0, "{claims:?}: nothing stored");
        assert_eq!(app.mock.counters().revocations, n as u64 + 1, "{claims:?}: the tokens obtained are revoked");
    }
    assert_eq!(app.token("mock", ALICE, None).await.status(), 404);
    app.stop().await;
}

async fn a_verified_email_sent_as_a_string_counts(backend: Backend) {
    let app = spawn_app(backend).await;
    app.mock.set_identity_claims(IdentityClaims::VerifiedAsString);
    assert_eq!(consent(&app, "mock", ALICE).await["status"], "completed");
    app.token_ok("mock", ALICE).await;
    app.stop().await;
}

async fn a_provider_the_operator_vouches_for_needs_no_email_verified(backend: Backend) {
    let mock = MockProvider::start().await.unwrap();
    let vars = vec![("MOCK_TRUST_UNVERIFIED_EMAIL".to_owned(), "true".to_owned())];
    let app = spawn_app_with_vars(TestDb::new(backend).await, fernet_key(), mock, vars).await;
    app.mock.set_identity_claims(IdentityClaims::Omitted);
    assert_eq!(consent(&app, "mock", ALICE).await["status"], "completed");
    // Trusting the provider's addresses does not make another account Alice.
    app.mock.set_consent(mock_provider::Consent::ApproveAs("mallory@company.com".into()));
    let status = consent(&app, "mock", "bob@company.com").await;
    assert_eq!(status["reason"], "account_mismatch", "{status}");
    app.stop().await;
}

async fn an_id_token_for_another_client_or_from_another_issuer_is_refused(backend: Backend) {
    let app = spawn_app(backend).await;
    app.mock.set_omit_id_token_audience(true);
    let status = consent(&app, "mock", ALICE).await;
    assert_eq!(status["reason"], "identity_unverified", "no aud: {status}");
    app.mock.set_omit_id_token_audience(false);
    app.mock.set_id_token_issuer(Some("https://evil.example".into()));
    let status = consent(&app, "mock", ALICE).await;
    assert_eq!(status["reason"], "identity_unverified", "wrong iss: {status}");
    assert_eq!(app.count("oauth_credentials").await, 0);
    app.mock.set_id_token_issuer(None);
    assert_eq!(consent(&app, "mock", ALICE).await["status"], "completed");
    app.stop().await;
}

/// A gateway whose `microsoft` provider is the mock speaking as Entra.
async fn microsoft_app(backend: Backend, tenant_vars: &[(&str, &str)]) -> TestApp {
    let mock = MockProvider::start().await.unwrap();
    mock.set_identity_claims(IdentityClaims::Microsoft { tenant: TENANT.into() });
    mock.set_rotate_refresh_tokens(true);
    let mut vars: Vec<(String, String)> = vec![
        ("MICROSOFT_CLIENT_ID".into(), mock.client_id().into()),
        ("MICROSOFT_CLIENT_SECRET".into(), mock.client_secret().into()),
        ("MICROSOFT_AUTH_URL".into(), mock.authorize_url()),
        ("MICROSOFT_TOKEN_URL".into(), mock.token_url()),
        ("MICROSOFT_USERINFO_URL".into(), mock.userinfo_url()),
        ("MICROSOFT_ISSUER".into(), format!("{}/{{tenantid}}/v2.0", mock.base_url())),
        (
            "MICROSOFT_SCOPES".into(),
            "https://graph.microsoft.com/Mail.Read https://graph.microsoft.com/User.Read".into(),
        ),
    ];
    vars.extend(tenant_vars.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())));
    spawn_app_with_vars(TestDb::new(backend).await, fernet_key(), mock, vars).await
}

async fn microsoft_accounts_are_vouched_for_by_their_tenant(backend: Backend) {
    let app = microsoft_app(backend, &[("MICROSOFT_TENANT", TENANT)]).await;
    assert_eq!(consent(&app, "microsoft", ALICE).await["status"], "completed");
    // Entra grants `Mail.Read` for the `https://graph.microsoft.com/Mail.Read` asked: not missing.
    let graph = ["https://graph.microsoft.com/Mail.Read"];
    let token = app.token("microsoft", ALICE, Some(&graph)).await;
    assert_eq!(token.status(), 200, "{}", token.text().await.unwrap());
    let missing = app.token("microsoft", ALICE, Some(&["https://graph.microsoft.com/Mail.Send"])).await;
    assert_eq!(missing.status(), 403, "a scope really not granted is still missing");
    // Rotated refresh tokens, twice.
    for _ in 0..2 {
        app.clock.advance(std::time::Duration::from_secs(3600));
        let token = app.token_ok("microsoft", ALICE).await;
        assert!(app.mock.access_token_is_valid(token["access_token"].as_str().unwrap()));
    }
    assert_eq!(app.mock.refresh_count_for(ALICE), 2);

    // Another tenant's admin gave a user Bob's address: nOAuth, refused.
    app.mock.set_identity_claims(IdentityClaims::Microsoft { tenant: OTHER_TENANT.into() });
    let status = consent(&app, "microsoft", "bob@company.com").await;
    assert_eq!(status["reason"], "identity_unverified", "{status}");
    assert_eq!(app.count("oauth_credentials").await, 1, "only Alice's");
    app.stop().await;
}

async fn a_multi_tenant_microsoft_app_trusts_only_the_listed_tenants(backend: Backend) {
    let app =
        microsoft_app(backend, &[("MICROSOFT_TENANT", "organizations"), ("MICROSOFT_ALLOWED_TENANTS", TENANT)]).await;
    assert_eq!(consent(&app, "microsoft", ALICE).await["status"], "completed");
    app.mock.set_identity_claims(IdentityClaims::Microsoft { tenant: OTHER_TENANT.into() });
    assert_eq!(consent(&app, "microsoft", "bob@company.com").await["reason"], "identity_unverified");
    app.stop().await;
}
