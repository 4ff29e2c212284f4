//! `mock-provider`: runs the mock OAuth provider as a process, for local demos and for test
//! suites in other languages.
//!
//! Prints exactly one line to stdout, `mock-provider listening on http://HOST:PORT`, once
//! the port is open (callers wait for it), then serves until SIGINT or SIGTERM.

use std::io::Write;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use clap::Parser;
use mock_provider::{ConsentMode, Latency, MockConfig, MockProvider};
use tracing_subscriber::EnvFilter;

/// A mock OAuth 2.0 provider (authorization code + PKCE, refresh, revocation, fault
/// injection under /__admin).
#[derive(Debug, Parser)]
#[command(name = "mock-provider", version)]
struct Args {
    /// Port to listen on; 0 picks a free one (the printed line tells which).
    #[arg(long, default_value_t = 9000)]
    port: u16,
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1")]
    host: IpAddr,
    /// The client_id the provider accepts.
    #[arg(long, default_value = "mock-client-id")]
    client_id: String,
    /// The client_secret the provider accepts.
    #[arg(long, default_value = "mock-client-secret")]
    client_secret: String,
    /// Show a consent page (email field, Approve/Deny) instead of approving at once.
    #[arg(long)]
    interactive: bool,
    /// Lifetime of access tokens, in seconds.
    #[arg(long, default_value_t = 3600)]
    access_token_ttl_secs: u64,
    /// Return a new refresh token on every refresh and invalidate the old one (Microsoft).
    #[arg(long)]
    rotate_refresh_tokens: bool,
    /// Never issue refresh tokens (Meta).
    #[arg(long)]
    no_refresh_tokens: bool,
    /// Delay every token request: milliseconds (`150`) or a random range (`100-200`).
    #[arg(long, default_value = "0", value_name = "MS|MIN-MAX")]
    token_latency_ms: Latency,
}

impl Args {
    fn config(&self) -> MockConfig {
        MockConfig {
            client_id: self.client_id.clone(),
            client_secret: self.client_secret.clone(),
            access_token_ttl: Duration::from_secs(self.access_token_ttl_secs),
            rotate_refresh_tokens: self.rotate_refresh_tokens,
            issue_refresh_tokens: !self.no_refresh_tokens,
            consent: if self.interactive { ConsentMode::Interactive } else { ConsentMode::AutoApprove },
            token_latency: self.token_latency_ms,
            ..MockConfig::default()
        }
    }
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    // Logs go to stderr: stdout carries only the address line that callers parse.
    tracing_subscriber::fmt()
        .with_env_filter(EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")))
        .with_writer(std::io::stderr)
        .init();
    let args = Args::parse();
    let provider = MockProvider::bind(SocketAddr::new(args.host, args.port), args.config()).await?;

    // Listen for signals before announcing the address: a caller may send
    // SIGTERM as soon as it has read the line.
    let shutdown = shutdown_signal()?;
    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "mock-provider listening on {}", provider.base_url())?;
    stdout.flush()?;
    drop(stdout);

    shutdown.await;
    tracing::info!("shutting down");
    provider.shutdown().await;
    Ok(())
}

/// Registers for SIGINT and SIGTERM now; the returned future resolves on either.
fn shutdown_signal() -> std::io::Result<impl std::future::Future<Output = ()>> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut interrupt = signal(SignalKind::interrupt())?;
    let mut terminate = signal(SignalKind::terminate())?;
    Ok(async move {
        tokio::select! {
            _ = interrupt.recv() => {}
            _ = terminate.recv() => {}
        }
    })
}
