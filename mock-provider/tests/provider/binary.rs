//! The `mock-provider` binary: prints its address, serves, stops on a signal.

use std::process::Stdio;
use std::time::Duration;

use reqwest::StatusCode;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;
use tokio::time::timeout;

use crate::helpers::client;

/// Start-up includes process creation on a busy CI machine.
const START_TIMEOUT: Duration = Duration::from_secs(30);
const EXIT_TIMEOUT: Duration = Duration::from_secs(10);

#[tokio::test]
async fn binary_prints_its_address_and_serves() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_mock-provider"))
        .args(["--port", "0", "--client-id", "cli-client", "--rotate-refresh-tokens"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let line = timeout(START_TIMEOUT, BufReader::new(stdout).lines().next_line())
        .await
        .expect("the address line arrives in time")
        .unwrap()
        .expect("the binary printed a line");
    let base_url =
        line.strip_prefix("mock-provider listening on ").unwrap_or_else(|| panic!("unexpected line {line:?}"));
    assert!(base_url.starts_with("http://127.0.0.1:"));
    assert!(!base_url.ends_with(":0"), "the real port is printed");

    let client = client();
    let response = client.get(format!("{base_url}/__admin/settings")).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let settings: serde_json::Value = response.json().await.unwrap();
    assert_eq!(settings["rotate_refresh_tokens"], true);
    let authorize = client
        .get(format!("{base_url}/authorize?response_type=code&client_id=cli-client&redirect_uri=http://localhost/cb"))
        .send()
        .await
        .unwrap();
    assert_eq!(authorize.status(), StatusCode::FOUND);

    stop(&mut child).await;
}

/// SIGTERM where we can (it exercises the graceful path), a kill elsewhere.
async fn stop(child: &mut tokio::process::Child) {
    #[cfg(unix)]
    {
        let pid = child.id().unwrap().to_string();
        let sent = std::process::Command::new("kill").args(["-TERM", &pid]).status().unwrap();
        assert!(sent.success());
        let status = timeout(EXIT_TIMEOUT, child.wait()).await.expect("exits on SIGTERM").unwrap();
        assert!(status.success(), "{status:?}");
    }
    #[cfg(not(unix))]
    {
        child.start_kill().unwrap();
        timeout(EXIT_TIMEOUT, child.wait()).await.unwrap().unwrap();
    }
}
