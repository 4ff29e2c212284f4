//! `GET /health`: healthy on a working gateway, degraded (503) while the
//! database is unreachable, and healthy again once it returns.

use std::time::Duration;

use crate::helpers::{Backend, eventually, postgres_available, spawn_app};
use crate::on_both_backends;

on_both_backends!(a_working_gateway_is_healthy, unknown_paths_get_a_json_404, shutdown_lets_background_tasks_finish);

async fn a_working_gateway_is_healthy(backend: Backend) {
    let app = spawn_app(backend).await;
    let response = app.get_health().await;
    assert_eq!(response.status(), 200);
    assert!(response.headers().contains_key("x-request-id"));
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["status"], "healthy");
    assert_eq!(body["database"], "connected");
    assert_eq!(body["encryption"], "operational");
    assert_eq!(body["version"], env!("CARGO_PKG_VERSION"));
    let timestamp = body["timestamp"].as_str().unwrap();
    assert!(chrono::DateTime::parse_from_rfc3339(timestamp).is_ok(), "{timestamp}");
    app.stop().await;
}

async fn unknown_paths_get_a_json_404(backend: Backend) {
    let app = spawn_app(backend).await;
    let response = app.client.get(app.url("/nope")).header("x-request-id", "req-42").send().await.unwrap();
    assert_eq!(response.status(), 404);
    assert_eq!(response.headers()["x-request-id"], "req-42");
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["error"], "not_found");
    assert_eq!(body["request_id"], "req-42");

    let response = app.client.post(app.url("/health")).send().await.unwrap();
    assert_eq!(response.status(), 405);
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["error"], "method_not_allowed");
    app.stop().await;
}

/// PostgreSQL only: cutting a SQLite file away from a running process is not
/// something an embedded database does.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_degrades_while_postgres_is_unreachable_and_recovers() {
    if !postgres_available() {
        return;
    }
    let app = spawn_app(Backend::Postgres).await;
    assert_eq!(app.get_health().await.status(), 200);

    app.db.cut_off().await;
    let response = app.get_health().await;
    assert_eq!(response.status(), 503);
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["status"], "degraded");
    assert_eq!(body["database"], "disconnected");
    assert_eq!(body["encryption"], "operational");

    app.db.restore().await;
    let recovered = eventually(Duration::from_secs(15), || async { app.get_health().await.status() == 200 }).await;
    assert!(recovered, "the gateway did not recover after the database came back");
    app.stop().await;
}

async fn shutdown_lets_background_tasks_finish(backend: Backend) {
    let app = spawn_app(backend).await;
    // The listener (PostgreSQL), the provider and client reloaders, the token
    // invalidator and the session relay each end at their next wait for work.
    let drained = app.state.services.shutdown().await;
    assert_eq!(drained, gateway::core::services::Drained { ended: 6, aborted: 0 });
    assert_eq!(app.state.services.shutdown().await, Default::default(), "a second shutdown finds nothing to drain");
    // The server notices its core is gone and stops with the reason.
    assert!(matches!(app.stop_result().await, Err(gateway::startup::ServeError::ActorsStopped)));
}
