//! The listener loop: axum's router served by hyper, with the two bounds a
//! public endpoint needs and `axum::serve` does not offer.
//!
//! - **Header-read timeout**: a client must send a request's headers within
//!   [`ServerLimits::header_read_timeout`] or the connection is closed, so a
//!   client trickling one byte a second (slowloris) cannot hold it.
//! - **Connection bound**: at most [`ServerLimits::max_connections`] are open
//!   at once; further clients wait in the kernel's accept queue instead of
//!   costing a task and buffers each.
//!
//! On shutdown the loop stops accepting, asks every connection to finish its
//! request in flight, and returns once they have.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::ConnectInfo;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};
use tower::ServiceExt;

use crate::core::config::ServerLimits;

/// Serves `router` on `listener` until `shutdown` resolves.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    limits: ServerLimits,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let (stop_tx, stop_rx) = watch::channel(false);
    tokio::spawn(async move {
        shutdown.await;
        let _ = stop_tx.send(true);
    });
    let slots = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    // Each connection task holds a clone; all dropped = all connections done.
    let (done_tx, mut done_rx) = tokio::sync::mpsc::channel::<Infallible>(1);
    let mut stopping = stop_rx.clone();
    loop {
        let slot = tokio::select! {
            slot = slots.clone().acquire_owned() => match slot {
                Ok(slot) => slot,
                Err(_) => break,
            },
            () = stopped(&mut stopping) => break,
        };
        let (stream, remote) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                // Per-connection failures (the peer reset before accept, too
                // many open files) must not end the server: pause and go on.
                Err(err) => {
                    tracing::warn!(error = %err, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = stopped(&mut stopping) => break,
        };
        let service = router.clone().map_request(move |request: axum::http::Request<Incoming>| {
            let mut request = request.map(Body::new);
            request.extensions_mut().insert(ConnectInfo(remote));
            request
        });
        let mut stop = stop_rx.clone();
        let done = done_tx.clone();
        tokio::spawn(async move {
            let mut builder = Builder::new(TokioExecutor::new());
            builder.http1().timer(TokioTimer::new()).header_read_timeout(limits.header_read_timeout);
            builder.http2().timer(TokioTimer::new());
            let connection =
                builder.serve_connection_with_upgrades(TokioIo::new(stream), TowerToHyperService::new(service));
            tokio::pin!(connection);
            tokio::select! {
                result = connection.as_mut() => log_end(result, remote),
                () = stopped(&mut stop) => {
                    connection.as_mut().graceful_shutdown();
                    log_end(connection.await, remote);
                }
            }
            drop((slot, done));
        });
    }
    drop(listener);
    drop(done_tx);
    // Resolves once every connection task has dropped its sender.
    let _ = done_rx.recv().await;
    Ok(())
}

/// Resolves once the stop flag is up (the guard `wait_for` returns is not
/// `Send`, so it must not live across the `select!`).
async fn stopped(rx: &mut watch::Receiver<bool>) {
    let _ = rx.wait_for(|stop| *stop).await;
}

fn log_end(result: Result<(), Box<dyn std::error::Error + Send + Sync>>, remote: SocketAddr) {
    if let Err(err) = result {
        // A client that timed out or went away: routine, not an error of ours.
        tracing::debug!(%remote, error = %err, "connection ended");
    }
}
