//! The browser pages as a browser shows them: headless Chromium renders the
//! connect page (the PNG is kept as `target/connect-page.png` to look at), and
//! a real browser's visit uses nothing. Chromium comes from Debian's package;
//! `scripts/test` installs it and sets `REQUIRE_CHROMIUM=1`, elsewhere the
//! test is skipped when it is missing.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::helpers::{Backend, spawn_app};

const ALICE: &str = "alice@company.com";

fn chromium() -> Option<PathBuf> {
    let found = ["/usr/bin/chromium", "/usr/bin/chromium-browser"].into_iter().map(PathBuf::from).find(|p| p.exists());
    if found.is_none() {
        assert!(std::env::var("REQUIRE_CHROMIUM").as_deref() != Ok("1"), "REQUIRE_CHROMIUM=1 but no chromium found");
        eprintln!("skipped: no chromium (apt-get install chromium)");
    }
    found
}

/// Runs headless Chromium on `url` with `args`, bounded to a minute.
async fn headless(chromium: &Path, profile: &Path, args: &[String], url: &str) -> std::process::Output {
    let run = tokio::process::Command::new(chromium)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--hide-scrollbars",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(args)
        .arg(url)
        .kill_on_drop(true)
        .output();
    tokio::time::timeout(Duration::from_secs(60), run).await.expect("chromium finished within a minute").unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_connect_page_renders_in_a_real_browser_and_its_visit_uses_nothing() {
    let Some(chromium) = chromium() else { return };
    let app = spawn_app(Backend::Sqlite).await;
    let (auth_url, session_id) = app.init_ok("mock", ALICE).await;
    let profile = tempfile::tempdir().unwrap();

    let dom = headless(&chromium, profile.path(), &["--dump-dom".to_owned()], &auth_url).await;
    let dom = String::from_utf8_lossy(&dom.stdout);
    assert!(dom.contains("Connect your mock account") && dom.contains(ALICE), "{dom}");
    assert!(dom.contains("Continue to mock</button>"), "{dom}");

    let shot = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/connect-page.png");
    let output = headless(
        &chromium,
        profile.path(),
        &[format!("--screenshot={}", shot.display()), "--window-size=900,560".to_owned()],
        &auth_url,
    )
    .await;
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let png = std::fs::read(&shot).unwrap();
    assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n", "a PNG");
    // A blank 900x560 page compresses to about a kilobyte; heading, text and button to many.
    assert!(png.len() > 8_000, "the screenshot looks empty ({} bytes)", png.len());

    // Two real browser visits, and the link is still unused.
    assert_eq!(app.status_json(&session_id).await["status"], "pending");
    assert_eq!(app.mock.counters().authorizations, 0);
    assert_eq!(app.browse(&auth_url).await.status, 200);
    assert_eq!(app.status_json(&session_id).await["status"], "completed");
    app.stop().await;
}
