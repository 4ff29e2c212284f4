//! The actors, and the actix system they run on.
//!
//! axum, sea-orm and the scheduler run on the main tokio runtime. Actors run
//! on an actix `System` of their own, on a dedicated thread with a few
//! `Arbiter`s (one single-threaded event loop each), and send their I/O back
//! to the main runtime. `Addr<A>` is `Send + Sync`, so handlers hold addresses.
//!
//! * [`tokens::TokenRegistry`]: the warm credentials (a token snapshot each,
//!   served without a mailbox hop) and their actors.
//! * [`token::TokenActor`]: one per credential while it has I/O that must
//!   happen once — single-flight refreshes, unsaved tokens, revocation.
//! * [`session::SessionActor`]: the authorization flows and long-poll waiters.

pub mod session;
pub mod token;
pub mod tokens;

use actix::prelude::*;
use tokio::sync::oneshot;

/// The actix system thread and its arbiters.
pub struct ActorSystem {
    system: actix::System,
    arbiters: Vec<ArbiterHandle>,
    thread: Option<std::thread::JoinHandle<()>>,
    /// Turns true when the system's thread ends, for whatever reason.
    ended: tokio::sync::watch::Receiver<bool>,
}

impl std::fmt::Debug for ActorSystem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ActorSystem").field("arbiters", &self.arbiters.len()).finish()
    }
}

/// Why the actor system could not start.
#[derive(Debug, thiserror::Error)]
pub enum ActorSystemError {
    #[error("could not start the actor system's thread")]
    Thread(#[source] std::io::Error),
    #[error("the actor system's thread ended before it started its arbiters")]
    Vanished(#[source] std::sync::mpsc::RecvError),
}

impl ActorSystem {
    /// Resolves when the system's thread has ended.
    pub fn ended(&self) -> impl std::future::Future<Output = ()> + Send + 'static + use<> {
        let mut ended = self.ended.clone();
        async move {
            let _ = ended.wait_for(|done| *done).await;
        }
    }

    /// The first arbiter (the session actor runs there).
    pub fn first(&self) -> &ArbiterHandle {
        // `start` refuses zero threads, so there is always one.
        &self.arbiters[0]
    }

    /// Starts the system thread with `threads` arbiters.
    pub fn start(threads: usize) -> Result<Self, ActorSystemError> {
        let (tx, rx) = std::sync::mpsc::channel();
        let (ended_tx, ended) = tokio::sync::watch::channel(false);
        let thread = std::thread::Builder::new()
            .name("actors".into())
            .spawn(move || {
                let runner = actix::System::new();
                let arbiters: Vec<Arbiter> =
                    runner.block_on(async { (0..threads.max(1)).map(|_| Arbiter::new()).collect() });
                let handles = arbiters.iter().map(Arbiter::handle).collect::<Vec<_>>();
                let _ = tx.send((actix::System::current(), handles));
                if let Err(err) = runner.run() {
                    tracing::error!(error = %err, "the actor system stopped with an error");
                }
                for arbiter in arbiters {
                    arbiter.stop();
                    let _ = arbiter.join();
                }
                let _ = ended_tx.send(true);
            })
            .map_err(ActorSystemError::Thread)?;
        let (system, arbiters) = rx.recv().map_err(ActorSystemError::Vanished)?;
        Ok(Self { system, arbiters, thread: Some(thread), ended })
    }

    pub fn arbiters(&self) -> &[ArbiterHandle] {
        &self.arbiters
    }

    /// Stops every actor and waits for the system thread.
    pub async fn stop(mut self) {
        self.system.stop();
        if let Some(thread) = self.thread.take() {
            let (tx, rx) = oneshot::channel();
            std::thread::spawn(move || {
                let _ = thread.join();
                let _ = tx.send(());
            });
            let _ = rx.await;
        }
    }
}
