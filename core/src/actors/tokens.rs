//! `TokenRegistry`: finds a credential's `TokenActor`, starting it on first
//! use on an arbiter chosen by hashing the credential, so actors spread over
//! the arbiters' threads. A fresh token the actor has published is served
//! from its snapshot without a mailbox hop. The registry also relays cache
//! invalidations from the event bus, clearing the snapshot at once and then
//! telling the actor.

use std::collections::HashMap;
use std::hash::BuildHasher;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use actix::prelude::*;

use super::token::{GetToken, Invalidate, RefreshNow, RefreshOutcome, Revoke, Shared, TokenActor, answer_from_cache};
use crate::credentials::{Grant, Need, TokenError, Trigger};
use crate::events::Event;
use crate::oauth::client::RevocationOutcome;
use crate::services::Deps;
use crate::store::credentials::CredentialKey;

/// A request waits at most this long for its credential's actor (a refresh
/// in flight included) before answering busy.
const SEND_TIMEOUT: Duration = Duration::from_secs(60);

/// A live actor and what it shares with the fast path.
struct Entry {
    addr: Addr<TokenActor>,
    shared: Arc<Shared>,
}

pub struct TokenRegistry {
    actors: RwLock<HashMap<CredentialKey, Entry>>,
    arbiters: Vec<ArbiterHandle>,
    hasher: std::collections::hash_map::RandomState,
    /// Shared by every actor: one pointer each rather than a copy of every handle.
    deps: Arc<Deps>,
    this: std::sync::Weak<TokenRegistry>,
}

impl std::fmt::Debug for TokenRegistry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenRegistry").field("actors", &self.len()).finish()
    }
}

impl TokenRegistry {
    pub(crate) fn new(deps: Deps, arbiters: Vec<ArbiterHandle>) -> Arc<Self> {
        Arc::new_cyclic(|this| Self {
            actors: RwLock::new(HashMap::new()),
            arbiters,
            hasher: std::collections::hash_map::RandomState::new(),
            deps: Arc::new(deps),
            this: this.clone(),
        })
    }

    /// Live actors (credentials warm in memory).
    pub fn len(&self) -> usize {
        self.actors.read().map_or(0, |m| m.len())
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn addr(&self, key: &CredentialKey) -> Result<Addr<TokenActor>, TokenError> {
        if let Ok(actors) = self.actors.read()
            && let Some(entry) = actors.get(key)
            && entry.addr.connected()
        {
            return Ok(entry.addr.clone());
        }
        // A panic while the map was locked cannot leave it inconsistent: take it over.
        let mut actors = self.actors.write().unwrap_or_else(std::sync::PoisonError::into_inner);
        // Another caller may have started it between our two looks.
        if let Some(entry) = actors.get(key)
            && entry.addr.connected()
        {
            return Ok(entry.addr.clone());
        }
        let index = (self.hasher.hash_one(key) % self.arbiters.len().max(1) as u64) as usize;
        let arbiter = self.arbiters.get(index).ok_or(TokenError::NoActorThread)?;
        let shared = Arc::new(Shared::default());
        let (k, deps, registry, s) = (key.clone(), self.deps.clone(), self.this.clone(), shared.clone());
        let addr = TokenActor::start_in_arbiter(arbiter, move |_| TokenActor::new(k, deps, registry, s));
        actors.insert(key.clone(), Entry { addr: addr.clone(), shared });
        Ok(addr)
    }

    /// Called by an actor as it stops.
    pub fn forget(&self, key: &CredentialKey, addr: &Addr<TokenActor>) {
        if let Ok(mut actors) = self.actors.write()
            && actors.get(key).is_some_and(|e| e.addr == *addr)
        {
            actors.remove(key);
        }
    }

    /// A fresh token with the required scopes, straight from the actor's
    /// published snapshot, or `None` when the actor must be asked.
    fn fast_path(&self, key: &CredentialKey, required: &[String], serves_caller: bool) -> Option<Grant> {
        let shared = self.actors.read().ok()?.get(key)?.shared.clone();
        let cached = shared.snapshot()?;
        let answer = answer_from_cache(&cached, required, self.deps.clock.now(), self.deps.settings.refresh_buffer)?;
        let grant = answer.ok()?;
        if serves_caller {
            shared.serve();
        }
        Some(grant)
    }

    /// Sends `msg` to the credential's actor; retries once if the actor
    /// stopped between lookup and delivery.
    async fn send<M>(&self, key: &CredentialKey, make: impl Fn() -> M) -> Result<M::Result, TokenError>
    where
        M: Message + Send + 'static,
        M::Result: Send,
        TokenActor: Handler<M>,
    {
        for _ in 0..2 {
            let addr = self.addr(key)?;
            match addr.send(make()).timeout(SEND_TIMEOUT).await {
                Ok(result) => return Ok(result),
                Err(MailboxError::Closed) => self.forget(key, &addr),
                Err(MailboxError::Timeout) => return Err(TokenError::Busy),
            }
        }
        Err(TokenError::Busy)
    }

    /// A token for a caller: served from memory when warm, and recorded as a
    /// use (`last_used_at`, which decides whether it is refreshed ahead).
    pub async fn get_token(&self, key: &CredentialKey, required_scopes: &[String]) -> Result<Grant, TokenError> {
        self.token(key, required_scopes, true).await
    }

    /// A token the gateway itself needs (the connection probe): not a use.
    pub async fn peek_token(&self, key: &CredentialKey) -> Result<Grant, TokenError> {
        self.token(key, &[], false).await
    }

    async fn token(&self, key: &CredentialKey, required: &[String], serves_caller: bool) -> Result<Grant, TokenError> {
        if let Some(grant) = self.fast_path(key, required, serves_caller) {
            return Ok(grant);
        }
        self.send(key, || GetToken { required_scopes: required.to_vec(), serves_caller }).await?
    }

    pub async fn refresh(
        &self,
        key: &CredentialKey,
        trigger: Trigger,
        need: Need,
    ) -> Result<RefreshOutcome, TokenError> {
        self.send(key, || RefreshNow { trigger, need }).await?
    }

    pub async fn revoke(&self, key: &CredentialKey) -> Result<RevocationOutcome, TokenError> {
        self.clear_snapshot(key);
        self.send(key, || Revoke).await?
    }

    fn clear_snapshot(&self, key: &CredentialKey) {
        if let Ok(actors) = self.actors.read()
            && let Some(entry) = actors.get(key)
        {
            entry.shared.clear();
        }
    }

    /// Drops the cached token of `key` (if its actor is alive): the snapshot
    /// at once, so no request is served from it, then the actor's cache.
    pub fn invalidate(&self, key: &CredentialKey) {
        if let Ok(actors) = self.actors.read()
            && let Some(entry) = actors.get(key)
        {
            entry.shared.clear();
            entry.addr.do_send(Invalidate);
        }
    }

    fn invalidate_all(&self) {
        if let Ok(actors) = self.actors.read() {
            for entry in actors.values() {
                entry.shared.clear();
                entry.addr.do_send(Invalidate);
            }
        }
    }

    /// Relays credential events (from this process and other replicas) to
    /// the actors' caches, until the event bus closes.
    pub fn spawn_invalidator(self: &Arc<Self>, mut stop: crate::events::Stop) -> tokio::task::JoinHandle<()> {
        let mut events = self.deps.events.subscribe();
        let this = Arc::downgrade(self);
        tokio::spawn(async move {
            loop {
                let event = tokio::select! {
                    biased;
                    () = stop.requested() => return,
                    event = events.recv() => event,
                };
                let Some(registry) = this.upgrade() else {
                    return;
                };
                match event {
                    Ok(Event::Credential { provider, email }) => {
                        if let Ok(email) = crate::email::Email::parse(&email) {
                            registry.invalidate(&CredentialKey { email, provider });
                        }
                    }
                    Ok(Event::Resync) | Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {
                        registry.invalidate_all()
                    }
                    Ok(Event::Session { .. } | Event::Clients | Event::Providers) => {}
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
                }
            }
        })
    }
}
