//! The one shutdown signal: SIGINT (Ctrl-C) or SIGTERM.

use std::future::Future;

use tokio::signal::unix::{SignalKind, signal};

/// Registers for SIGINT and SIGTERM *now* (so a signal sent right after
/// start-up is not lost); the future resolves with the signal's name.
pub fn install() -> std::io::Result<impl Future<Output = &'static str> + Send> {
    let mut interrupt = signal(SignalKind::interrupt())?;
    let mut terminate = signal(SignalKind::terminate())?;
    Ok(async move {
        tokio::select! {
            _ = interrupt.recv() => "SIGINT",
            _ = terminate.recv() => "SIGTERM",
        }
    })
}
