//! Bad input gets a clear 4xx with a stable code and changes nothing; the API
//! key is required where it should be.

use reqwest::Method;
use serde_json::{Value, json};

use crate::helpers::{API_KEY, Backend, TestApp, spawn_app};
use crate::on_both_backends;

on_both_backends!(bad_requests_get_their_code_and_change_nothing, the_api_key_is_required_and_checked);

/// (method, path, content type, body, status, code)
fn cases() -> Vec<(Method, &'static str, &'static str, String, u16, &'static str)> {
    let json = "application/json";
    let long_email = format!("{}@example.com", "a".repeat(300));
    vec![
        (Method::POST, "/auth/init", json, "{not json".into(), 400, "invalid_request"),
        (Method::POST, "/auth/init", json, "[]".into(), 400, "invalid_request"),
        (Method::POST, "/auth/init", json, json!({"provider": "mock"}).to_string(), 400, "invalid_request"),
        (
            Method::POST,
            "/auth/init",
            json,
            json!({"provider": 7, "user_email": "a@b.co"}).to_string(),
            400,
            "invalid_request",
        ),
        (
            Method::POST,
            "/auth/init",
            "text/plain",
            json!({"provider": "mock", "user_email": "a@b.co"}).to_string(),
            415,
            "unsupported_media_type",
        ),
        (
            Method::POST,
            "/auth/init",
            json,
            json!({"provider": "mock", "user_email": "not-an-email"}).to_string(),
            400,
            "invalid_email",
        ),
        (
            Method::POST,
            "/auth/init",
            json,
            json!({"provider": "mock", "user_email": long_email}).to_string(),
            400,
            "invalid_email",
        ),
        (
            Method::POST,
            "/auth/init",
            json,
            json!({"provider": "nosuch", "user_email": "a@b.co"}).to_string(),
            400,
            "unknown_provider",
        ),
        (
            Method::POST,
            "/auth/init",
            json,
            json!({"provider": "x".repeat(500), "user_email": "a@b.co"}).to_string(),
            400,
            "unknown_provider",
        ),
        (
            Method::POST,
            "/auth/init",
            json,
            json!({"provider": "mock", "user_email": "a@b.co", "scopes": ["has space"]}).to_string(),
            400,
            "invalid_request",
        ),
        (
            Method::POST,
            "/auth/init",
            json,
            json!({"provider": "mock", "user_email": "a@b.co", "scopes": vec!["s"; 51]}).to_string(),
            400,
            "invalid_request",
        ),
        (
            Method::POST,
            "/auth/init",
            json,
            json!({"provider": "mock", "user_email": "a@b.co", "redirect_after": "https://evil.example.com/"})
                .to_string(),
            400,
            "invalid_request",
        ),
        (
            Method::POST,
            "/auth/init",
            json,
            json!({"provider": "mock", "user_email": "a@b.co", "pad": "x".repeat(20_000)}).to_string(),
            413,
            "payload_too_large",
        ),
        (
            Method::POST,
            "/auth/token",
            json,
            json!({"provider": "mock", "user_email": "a@@b"}).to_string(),
            400,
            "invalid_email",
        ),
        (
            Method::POST,
            "/auth/token",
            json,
            json!({"provider": "mock", "user_email": "a@b.co", "required_scopes": "mail"}).to_string(),
            400,
            "invalid_request",
        ),
        (
            Method::POST,
            "/auth/token",
            json,
            json!({"provider": "mock", "user_email": "nobody@b.co"}).to_string(),
            404,
            "not_authenticated",
        ),
        (
            Method::DELETE,
            "/auth/revoke",
            json,
            json!({"provider": "mock", "user_email": "nobody@b.co"}).to_string(),
            404,
            "not_authenticated",
        ),
        (Method::DELETE, "/auth/revoke", json, json!({"provider": "mock"}).to_string(), 400, "invalid_request"),
        (Method::GET, "/auth/status/not-a-uuid", json, String::new(), 400, "invalid_request"),
        (
            Method::GET,
            "/auth/status/00000000-0000-0000-0000-000000000000",
            json,
            String::new(),
            404,
            "session_not_found",
        ),
        (
            Method::GET,
            "/auth/status/00000000-0000-0000-0000-000000000000?wait=abc",
            json,
            String::new(),
            400,
            "invalid_request",
        ),
        (Method::GET, "/auth/providers/not-an-email", json, String::new(), 400, "invalid_email"),
        (Method::PUT, "/auth/token", json, "{}".into(), 405, "method_not_allowed"),
    ]
}

async fn table_counts(app: &TestApp) -> Vec<i64> {
    let mut counts = Vec::new();
    for table in ["oauth_sessions", "oauth_credentials", "oauth_providers"] {
        counts.push(app.count(table).await);
    }
    counts
}

async fn bad_requests_get_their_code_and_change_nothing(backend: Backend) {
    let app = spawn_app(backend).await;
    let before = table_counts(&app).await;
    for (method, path, content_type, body, status, code) in cases() {
        let response = app
            .client
            .request(method.clone(), app.url(path))
            .header("x-api-key", API_KEY)
            .header("content-type", content_type)
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status().as_u16(), status, "{method} {path}");
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["error"], code, "{method} {path}: {body}");
        assert!(body["message"].as_str().is_some_and(|m| !m.is_empty()), "{method} {path}");
        assert!(body["request_id"].is_string(), "{method} {path}");
    }
    assert_eq!(table_counts(&app).await, before, "bad requests changed the database");
    app.stop().await;
}

async fn the_api_key_is_required_and_checked(backend: Backend) {
    let app = spawn_app(backend).await;
    let routes = [
        (Method::POST, "/auth/init"),
        (Method::GET, "/auth/status/00000000-0000-0000-0000-000000000000"),
        (Method::POST, "/auth/token"),
        (Method::GET, "/auth/providers/a@b.co"),
        (Method::DELETE, "/auth/revoke"),
    ];
    let body = json!({"provider": "mock", "user_email": "a@b.co"});
    for (method, path) in routes {
        let missing = app.client.request(method.clone(), app.url(path)).json(&body).send().await.unwrap();
        assert_eq!(missing.status(), 401, "{method} {path}");
        assert_eq!(missing.json::<Value>().await.unwrap()["error"], "unauthorized");
        let wrong = app
            .client
            .request(method.clone(), app.url(path))
            .header("x-api-key", "wrong")
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(wrong.status(), 403, "{method} {path}");
        assert_eq!(wrong.json::<Value>().await.unwrap()["error"], "forbidden");
    }
    // The browser-facing pages and health need no key.
    assert_eq!(app.client.get(app.url("/health")).send().await.unwrap().status(), 200);
    assert_eq!(app.client.get(app.url("/connect/unknown")).send().await.unwrap().status(), 404);
    assert_eq!(app.client.get(app.url("/auth/callback/mock?state=x&code=y")).send().await.unwrap().status(), 400);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openapi_and_docs_are_served_from_the_binary() {
    let app = spawn_app(Backend::Sqlite).await;
    let doc: Value = app.client.get(app.url("/openapi.json")).send().await.unwrap().json().await.unwrap();
    assert!(doc["openapi"].as_str().unwrap().starts_with("3.1"), "{}", doc["openapi"]);
    for path in [
        "/auth/init",
        "/auth/token",
        "/auth/status/{session_id}",
        "/auth/providers/{user_email}",
        "/auth/revoke",
        "/health",
    ] {
        assert!(doc["paths"].get(path).is_some(), "{path} missing from the OpenAPI document");
    }
    let docs = app.client.get(app.url("/docs/")).send().await.unwrap();
    assert_eq!(docs.status(), 200);
    let html = docs.text().await.unwrap();
    assert!(html.contains("swagger"), "the docs page is Swagger UI");
    assert!(!html.contains("cdn.") && !html.contains("unpkg"), "no asset is loaded from a CDN");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_request_leaves_its_keep_alive_connection_usable() {
    // A refusal decided from the headers (no key, a wrong key, a rate limit)
    // must not leave the body unread: the server could then not reuse the
    // connection, and a client that reuses it (as every pooled client does)
    // fails its next request. The body arrives a moment after the headers,
    // as it does from clients that write them separately (httpx, h11).
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let app = crate::helpers::spawn_app(Backend::Sqlite).await;
    let mut conn = tokio::net::TcpStream::connect(app.address.trim_start_matches("http://")).await.unwrap();
    let body = r#"{"provider":"mock","user_email":"alice@company.com"}"#;
    let head = format!(
        "POST /auth/token HTTP/1.1\r\nHost: gw\r\nX-API-Key: wrong\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    conn.write_all(head.as_bytes()).await.unwrap();
    // The slow client: its body is not there yet when the headers are.
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    conn.write_all(body.as_bytes()).await.unwrap();
    let first = read_response(&mut conn).await;
    assert!(first.starts_with("HTTP/1.1 403"), "{first}");
    assert!(!first.to_ascii_lowercase().contains("connection: close"), "{first}");
    conn.write_all(b"GET /health HTTP/1.1\r\nHost: gw\r\n\r\n").await.unwrap();
    let second = read_response(&mut conn).await;
    assert!(second.starts_with("HTTP/1.1 200"), "the connection must still serve: {second:?}");
    app.stop().await;

    async fn read_response(conn: &mut tokio::net::TcpStream) -> String {
        let mut buf = Vec::new();
        let mut chunk = [0u8; 4096];
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(5);
        loop {
            let text = String::from_utf8_lossy(&buf).to_string();
            if let Some(end) = text.find("\r\n\r\n") {
                let length = text[..end]
                    .lines()
                    .find_map(|l| {
                        l.to_ascii_lowercase().strip_prefix("content-length:").map(|v| v.trim().parse().unwrap_or(0))
                    })
                    .unwrap_or(0usize);
                if buf.len() >= end + 4 + length {
                    return text;
                }
            }
            match tokio::time::timeout_at(deadline, conn.read(&mut chunk)).await {
                Ok(Ok(0)) | Ok(Err(_)) | Err(_) => return text,
                Ok(Ok(n)) => buf.extend_from_slice(&chunk[..n]),
            }
        }
    }
}
