//! The event bus that keeps caches honest: when a credential changes or a
//! session finishes, every interested part of this process — and, through
//! PostgreSQL LISTEN/NOTIFY, of every other replica — hears about it.
//!
//! A revoke on replica A reaches replica B's token cache this way, and a
//! callback on A wakes a `/auth/status?wait=` long-poll held on B.

use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::sync::broadcast;
use uuid::Uuid;

use crate::store::Store;
use crate::store::notify::Heard;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Event {
    /// The stored credential changed or was deleted: drop any cached token.
    Credential { provider: String, email: String },
    /// The session left `pending`.
    Session { id: Uuid },
    /// API clients changed (added, disabled, rotated): reload them.
    Clients,
    /// A provider was added, replaced or removed, or started or stopped
    /// refusing our client: reload the providers.
    Providers,
    /// Notices may have been missed (the listener reconnected): treat every
    /// cache as stale.
    Resync,
}

/// Keeps a cache of `T` fresh: calls `reload` every `every`, and at once when
/// an event `wants` arrives (or notices may have been missed), until the bus
/// closes or the cache is dropped. `what` names it in the logs.
/// Asks the core's background tasks to finish. Each checks it only where it
/// waits for work, so a reload or a forward in progress completes: shutdown
/// drains them rather than cutting them off mid-way.
#[derive(Clone, Debug)]
pub struct Stop(tokio::sync::watch::Receiver<bool>);

impl Stop {
    /// A signal, and its sender (send `true` to stop).
    pub fn new() -> (tokio::sync::watch::Sender<bool>, Self) {
        let (tx, rx) = tokio::sync::watch::channel(false);
        (tx, Self(rx))
    }

    /// Resolves once stopping was asked for (or the sender is gone).
    pub async fn requested(&mut self) {
        // An error means the sender was dropped: stop as well.
        let _ = self.0.wait_for(|stop| *stop).await;
    }
}

pub fn spawn_reloader<T, F, Fut, E>(
    cache: &Arc<T>,
    mut events: broadcast::Receiver<Event>,
    every: Duration,
    wants: fn(&Event) -> bool,
    what: &'static str,
    mut stop: Stop,
    reload: F,
) -> tokio::task::JoinHandle<()>
where
    T: Send + Sync + 'static,
    F: Fn(Arc<T>) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = Result<(), E>> + Send,
    E: std::fmt::Display,
{
    use broadcast::error::RecvError;
    let weak = Arc::downgrade(cache);
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(every);
        loop {
            tokio::select! {
                biased;
                () = stop.requested() => return,
                _ = tick.tick() => {}
                event = events.recv() => match event {
                    Ok(Event::Resync) | Err(RecvError::Lagged(_)) => {}
                    Ok(event) if wants(&event) => {}
                    Ok(_) => continue,
                    Err(RecvError::Closed) => return,
                },
            }
            let Some(cache) = weak.upgrade() else { return };
            if let Err(err) = reload(cache).await {
                tracing::warn!(error = %err, "could not reload {what}");
            }
        }
    })
}

#[derive(Serialize, Deserialize)]
struct Envelope {
    origin: String,
    event: Event,
}

/// Buffer for slow local subscribers; a lagging one is told to resync.
const LOCAL_CAPACITY: usize = 1024;

#[derive(Clone, Debug)]
pub struct Events {
    tx: broadcast::Sender<Event>,
    store: Store,
    /// This process's id, so it ignores its own notices coming back.
    origin: Arc<str>,
}

impl Events {
    pub fn new(store: Store, origin: &str) -> Self {
        let (tx, _) = broadcast::channel(LOCAL_CAPACITY);
        Self { tx, store, origin: origin.into() }
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Event> {
        self.tx.subscribe()
    }

    /// Tells this process now and the other replicas through the database.
    /// A failed NOTIFY is logged: the other replicas' caches then expire on
    /// their own, which is slower but safe (CAS writes never trust a cache).
    pub async fn publish(&self, event: Event) {
        let _ = self.tx.send(event.clone());
        let envelope = Envelope { origin: self.origin.to_string(), event };
        match serde_json::to_string(&envelope) {
            Ok(payload) => {
                if let Err(err) = self.store.notify(&payload).await {
                    tracing::warn!(error = %err, "could not notify other replicas");
                }
            }
            Err(err) => tracing::warn!(error = %err, "could not encode an event"),
        }
    }

    /// Forwards other replicas' notices to local subscribers until the
    /// process stops (PostgreSQL only). Reconnects with backoff.
    pub fn spawn_listener(&self, mut stop: Stop) -> tokio::task::JoinHandle<()> {
        let this = self.clone();
        tokio::spawn(async move {
            let mut backoff = Duration::from_millis(200);
            loop {
                let connected = tokio::select! {
                    biased;
                    () = stop.requested() => return,
                    connected = this.store.listener() => connected,
                };
                match connected {
                    Ok(None) => return,
                    Ok(Some(mut listener)) => {
                        backoff = Duration::from_millis(200);
                        // Anything sent before we listened is unknown to us.
                        let _ = this.tx.send(Event::Resync);
                        loop {
                            let heard = tokio::select! {
                                biased;
                                () = stop.requested() => return,
                                heard = listener.recv() => heard,
                            };
                            match heard {
                                Ok(Heard::Payload(p)) => this.forward(&p),
                                Ok(Heard::Reconnected) => {
                                    let _ = this.tx.send(Event::Resync);
                                }
                                Err(err) => {
                                    tracing::warn!(error = %err, "event listener lost its connection");
                                    break;
                                }
                            }
                        }
                    }
                    Err(err) => tracing::warn!(error = %err, "event listener cannot connect"),
                }
                tokio::select! {
                    biased;
                    () = stop.requested() => return,
                    () = tokio::time::sleep(backoff) => {}
                }
                backoff = (backoff * 2).min(Duration::from_secs(5));
            }
        })
    }

    fn forward(&self, payload: &str) {
        match serde_json::from_str::<Envelope>(payload) {
            Ok(envelope) if *envelope.origin != *self.origin => {
                let _ = self.tx.send(envelope.event);
            }
            Ok(_) => {}
            Err(err) => tracing::warn!(error = %err, "ignoring a malformed event notice"),
        }
    }
}
