//! Events and webhooks: what changed reaches subscribers signed (Standard
//! Webhooks), at least once, from an outbox written with the change; a
//! failing receiver gets it again, one that never answers ends dead-lettered,
//! and replicas deliver each event once.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use gateway::core::webhooks::EventType;
use gateway::core::webhooks::signing::Secret;
use mock_provider::{Consent, MockProvider};
use secrecy::ExposeSecret;
use serde_json::Value;

use crate::helpers::{Backend, TestApp, TestDb, fernet_key, postgres_available, spawn_app_with};
use crate::on_both_backends;

on_both_backends!(what_changes_reaches_subscribers_signed, a_failing_receiver_gets_the_event_again_until_it_answers);

/// One request the receiver got.
#[derive(Clone, Debug)]
struct Received {
    id: String,
    timestamp: i64,
    signature: String,
    body: String,
}

/// A real HTTP receiver: answers 500 to the first `fail_first` requests,
/// waits `delay` before answering (a receiver that never answers in time).
#[derive(Clone)]
struct Receiver {
    url: String,
    got: Arc<Mutex<Vec<Received>>>,
}

async fn receiver(fail_first: usize, delay: Duration) -> Receiver {
    let got: Arc<Mutex<Vec<Received>>> = Arc::default();
    let failures = Arc::new(AtomicUsize::new(fail_first));
    let (sink, failures2) = (got.clone(), failures.clone());
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(move |headers: axum::http::HeaderMap, body: String| {
            let (sink, failures) = (sink.clone(), failures2.clone());
            async move {
                let header = |n: &str| headers.get(n).and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
                sink.lock().unwrap().push(Received {
                    id: header("webhook-id"),
                    timestamp: header("webhook-timestamp").parse().unwrap_or(0),
                    signature: header("webhook-signature"),
                    body,
                });
                tokio::time::sleep(delay).await;
                let failing = failures.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1)).is_ok();
                if failing { axum::http::StatusCode::INTERNAL_SERVER_ERROR } else { axum::http::StatusCode::NO_CONTENT }
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    Receiver { url, got }
}

impl Receiver {
    fn received(&self) -> Vec<Received> {
        self.got.lock().unwrap().clone()
    }

    /// The event types received, sorted (deliveries run concurrently: no order is promised).
    fn types(&self) -> Vec<String> {
        let mut types: Vec<String> =
            self.received().iter().map(|r| event(r)["type"].as_str().unwrap_or_default().to_owned()).collect();
        types.sort();
        types
    }

    /// The last event of type `kind`.
    fn last(&self, kind: &str) -> Value {
        self.received().iter().rev().map(event).find(|e| e["type"] == kind).unwrap_or(Value::Null)
    }
}

fn event(r: &Received) -> Value {
    serde_json::from_str(&r.body).unwrap()
}

async fn spawn(backend: Backend, extra: &[(&str, &str)]) -> TestApp {
    let mut vars = vec![("WEBHOOK_RETRY_SCHEDULE_SECONDS", "0,0"), ("WEBHOOK_TIMEOUT_SECONDS", "1")];
    vars.extend_from_slice(extra);
    spawn_app_with(TestDb::new(backend).await, fernet_key(), MockProvider::start().await.unwrap(), &vars).await
}

/// Subscribes `receiver` to `events` (the default set when empty); returns the secret.
async fn subscribe(app: &TestApp, receiver: &Receiver, events: &[EventType]) -> Secret {
    let secret = Secret::generate();
    let events = if events.is_empty() { EventType::default_set() } else { events.to_vec() };
    app.state.services.add_webhook(&receiver.url, &events, &secret.to_text()).await.unwrap();
    secret
}

async fn deliver(app: &TestApp) -> gateway::core::webhooks::delivery::DeliveryReport {
    app.state.workers.webhooks_once(app.clock.now()).await.unwrap()
}

async fn what_changes_reaches_subscribers_signed(backend: Backend) {
    let app = spawn(backend, &[]).await;
    let hook = receiver(0, Duration::ZERO).await;
    let secret = subscribe(&app, &hook, &[]).await;
    let everything = receiver(0, Duration::ZERO).await;
    subscribe(&app, &everything, &[EventType::CredentialRefreshed]).await;

    app.authorize("mock", "alice@company.com").await;
    app.mock.set_consent(Consent::Deny);
    let (auth_url, _) = app.init_ok("mock", "bob@company.com").await;
    app.browse(&auth_url).await;
    app.mock.set_consent(Consent::ApproveAsLoginHint);
    assert_eq!(app.revoke("mock", "alice@company.com").await.status(), 200);
    let report = deliver(&app).await;
    assert_eq!(report.delivered, 3, "{report:?}");
    assert_eq!(hook.types(), vec!["credential.connected", "credential.revoked", "session.failed"]);
    let now = app.clock.now().timestamp();
    for r in hook.received() {
        assert!(secret.verify(&r.id, r.timestamp, &r.body, &r.signature, now), "a signature that verifies: {r:?}");
        assert!(!r.body.contains("mock_at_") && !r.body.contains("mock_rt_"), "never a token: {}", r.body);
    }
    let revoked = hook.last("credential.revoked");
    assert_eq!(revoked["data"]["user_email"], "alice@company.com");
    assert_eq!(revoked["data"]["provider_revocation"], "revoked");
    assert_eq!(hook.last("session.failed")["data"]["reason"], "access_denied");
    assert!(everything.received().is_empty(), "credential.refreshed only, and nothing was refreshed");

    // needs_reauth, with its category; refreshed to whoever asked for it.
    app.authorize("mock", "carol@company.com").await;
    let carol = gateway::credentials::CredentialKey {
        email: gateway::email::Email::parse("carol@company.com").unwrap(),
        provider: "mock".into(),
    };
    let refresh_carol = || {
        app.state.services.refresh(
            &carol,
            gateway::credentials::Trigger::Keepalive,
            gateway::credentials::Need::ExpiresWithin(Duration::from_secs(86_400)),
        )
    };
    refresh_carol().await.unwrap();
    app.mock.invalidate_refresh_tokens_for("carol@company.com");
    let _ = refresh_carol().await;
    deliver(&app).await;
    assert_eq!(hook.last("credential.needs_reauth")["data"]["category"], "invalid_grant");
    assert_eq!(everything.types(), vec!["credential.refreshed"]);

    // A test ping goes to the one subscription named.
    let id = app.state.services.list_webhooks().await.unwrap()[0].id;
    app.state.services.test_webhook(id).await.unwrap();
    deliver(&app).await;
    assert_eq!(hook.last("webhook.test")["data"]["webhook_id"], id.to_string());
    assert_eq!(everything.received().len(), 1);
    app.stop().await;
}

async fn a_failing_receiver_gets_the_event_again_until_it_answers(backend: Backend) {
    let app = spawn(backend, &[]).await;
    let hook = receiver(2, Duration::ZERO).await;
    subscribe(&app, &hook, &[]).await;
    app.authorize("mock", "alice@company.com").await;
    let mut reports = Vec::new();
    for _ in 0..4 {
        reports.push(deliver(&app).await);
    }
    let got = hook.received();
    assert_eq!(got.len(), 3, "two failures, then the success: {reports:?}");
    assert!(got.iter().all(|r| r.id == got[0].id && r.body == got[0].body), "the same event each time");
    let delivered = app.state.services.list_deliveries(Some("delivered"), 10).await.unwrap();
    assert_eq!((delivered.len(), delivered[0].attempts), (1, 3));
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_receiver_that_never_answers_ends_in_the_dead_letter_list() {
    let app = spawn(Backend::Sqlite, &[]).await;
    let hook = receiver(0, Duration::from_secs(5)).await;
    subscribe(&app, &hook, &[]).await;
    app.authorize("mock", "alice@company.com").await;
    for _ in 0..4 {
        deliver(&app).await;
    }
    assert_eq!(hook.received().len(), 3, "one attempt and the schedule's two retries");
    let dead = app.state.services.list_deliveries(Some("dead"), 10).await.unwrap();
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].last_error.as_deref(), Some("timeout"));
    assert_eq!(dead[0].event_type, "credential.connected");
    // An operator puts it back once the receiver is fixed: a fresh round of attempts.
    let settings = crate::helpers::settings(&app.db, &app.key, &[]);
    let db = gateway::core::admin::Database::open(&settings).await.unwrap();
    assert_eq!(db.redeliver_dead(None, app.clock.now()).await.unwrap(), 1);
    db.close().await;
    deliver(&app).await;
    assert_eq!(hook.received().len(), 4, "attempted again");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_deliver_each_event_once() {
    if !postgres_available() {
        return;
    }
    let db = TestDb::new(Backend::Postgres).await;
    let (url, key) = (db.url.clone(), fernet_key());
    let mock = MockProvider::start().await.unwrap();
    let vars = [("WEBHOOK_RETRY_SCHEDULE_SECONDS", "0"), ("WEBHOOK_TIMEOUT_SECONDS", "5")];
    let a = spawn_app_with(db, key.clone(), mock.clone(), &vars).await;
    let b = spawn_app_with(TestDb::attach(Backend::Postgres, &url), key, mock, &vars).await;
    let hook = receiver(0, Duration::from_millis(20)).await;
    subscribe(&a, &hook, &[]).await;
    for i in 0..20 {
        a.authorize("mock", &format!("user{i}@company.com")).await;
    }
    // Both replicas run the job at the same time, again and again.
    for _ in 0..3 {
        let (ra, rb) = tokio::join!(deliver(&a), deliver(&b));
        assert_eq!(ra.dead + rb.dead, 0);
    }
    let ids: Vec<String> = hook.received().iter().map(|r| r.id.clone()).collect();
    let unique: std::collections::HashSet<&String> = ids.iter().collect();
    assert_eq!((ids.len(), unique.len()), (20, 20), "each of the 20 events delivered once");
    b.stop().await;
    a.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secrets_are_sealed_and_rotate_with_the_keys() {
    let app = spawn(Backend::Sqlite, &[]).await;
    let hook = receiver(0, Duration::ZERO).await;
    let secret = subscribe(&app, &hook, &[]).await;
    let conn = app.db.connect().await;
    use sea_orm::{ConnectionTrait, Statement};
    let row = conn
        .query_one_raw(Statement::from_string(conn.get_database_backend(), "SELECT secret FROM webhooks"))
        .await
        .unwrap()
        .unwrap();
    let stored: String = row.try_get("", "secret").unwrap();
    assert!(!stored.contains(secret.to_text().expose_secret()), "sealed at rest");
    let report = app.state.services.key_report().await.unwrap();
    let columns: Vec<&String> = report.keys.iter().flat_map(|k| k.by_column.keys()).collect();
    assert!(
        columns.iter().any(|c| c.as_str() == "webhooks.secret"),
        "counted with the other sealed values: {columns:?}"
    );
    app.stop().await;
}
