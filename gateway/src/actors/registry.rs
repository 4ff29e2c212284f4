//! `TokenRegistry`: finds a credential's `TokenActor`, starting it on first
//! use on an arbiter chosen by hashing the credential, so actors spread over
//! the arbiters' threads. It also relays cache invalidations from the event
//! bus to the actors.

use std::collections::HashMap;
use std::hash::BuildHasher;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use actix::prelude::*;

use super::token::{GetToken, Invalidate, RefreshNow, RefreshReport, Revoke, TokenActor};
use crate::app::Deps;
use crate::events::Event;
use crate::oauth::client::RevocationOutcome;
use crate::refresh::{Grant, Need, TokenError, Trigger};
use crate::store::credentials::CredentialKey;

/// A request waits at most this long for its credential's actor (a refresh
/// in flight included) before answering busy.
const SEND_TIMEOUT: Duration = Duration::from_secs(60);

pub struct TokenRegistry {
    actors: Mutex<HashMap<CredentialKey, Addr<TokenActor>>>,
    arbiters: Vec<ArbiterHandle>,
    hasher: std::collections::hash_map::RandomState,
    deps: Deps,
    this: std::sync::Weak<TokenRegistry>,
}

impl std::fmt::Debug for TokenRegistry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenRegistry")
            .field("actors", &self.len())
            .finish()
    }
}

impl TokenRegistry {
    pub fn new(deps: Deps, arbiters: Vec<ArbiterHandle>) -> Arc<Self> {
        Arc::new_cyclic(|this| Self {
            actors: Mutex::new(HashMap::new()),
            arbiters,
            hasher: std::collections::hash_map::RandomState::new(),
            deps,
            this: this.clone(),
        })
    }

    /// Live actors (credentials warm in memory).
    pub fn len(&self) -> usize {
        self.actors.lock().map_or(0, |m| m.len())
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn addr(&self, key: &CredentialKey) -> Result<Addr<TokenActor>, TokenError> {
        let mut actors = self
            .actors
            .lock()
            .map_err(|_| TokenError::Internal("registry lock poisoned".into()))?;
        if let Some(addr) = actors.get(key)
            && addr.connected()
        {
            return Ok(addr.clone());
        }
        let index = (self.hasher.hash_one(key) % self.arbiters.len().max(1) as u64) as usize;
        let arbiter = self
            .arbiters
            .get(index)
            .ok_or_else(|| TokenError::Internal("no arbiters".into()))?;
        let (k, deps, registry) = (key.clone(), self.deps.clone(), self.this.clone());
        let addr =
            TokenActor::start_in_arbiter(arbiter, move |_| TokenActor::new(k, deps, registry));
        actors.insert(key.clone(), addr.clone());
        Ok(addr)
    }

    /// Called by an actor as it stops.
    pub fn forget(&self, key: &CredentialKey, addr: &Addr<TokenActor>) {
        if let Ok(mut actors) = self.actors.lock()
            && actors.get(key).is_some_and(|a| a == addr)
        {
            actors.remove(key);
        }
    }

    /// Sends `msg` to the credential's actor; retries once if the actor
    /// stopped between lookup and delivery.
    async fn send<M>(
        &self,
        key: &CredentialKey,
        make: impl Fn() -> M,
    ) -> Result<M::Result, TokenError>
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

    pub async fn get_token(
        &self,
        key: &CredentialKey,
        required_scopes: &[String],
    ) -> Result<Grant, TokenError> {
        self.send(key, || GetToken {
            required_scopes: required_scopes.to_vec(),
        })
        .await?
    }

    pub async fn refresh(
        &self,
        key: &CredentialKey,
        trigger: Trigger,
        need: Need,
    ) -> Result<RefreshReport, TokenError> {
        self.send(key, || RefreshNow { trigger, need }).await?
    }

    pub async fn revoke(&self, key: &CredentialKey) -> Result<RevocationOutcome, TokenError> {
        self.send(key, || Revoke).await?
    }

    /// Drops the cached token of `key` (if its actor is alive).
    pub fn invalidate(&self, key: &CredentialKey) {
        if let Ok(actors) = self.actors.lock()
            && let Some(addr) = actors.get(key)
        {
            addr.do_send(Invalidate);
        }
    }

    fn invalidate_all(&self) {
        if let Ok(actors) = self.actors.lock() {
            for addr in actors.values() {
                addr.do_send(Invalidate);
            }
        }
    }

    /// Relays credential events (from this process and other replicas) to
    /// the actors' caches, until the event bus closes.
    pub fn spawn_invalidator(self: &Arc<Self>) -> tokio::task::JoinHandle<()> {
        let mut events = self.deps.events.subscribe();
        let this = Arc::downgrade(self);
        tokio::spawn(async move {
            loop {
                let event = events.recv().await;
                let Some(registry) = this.upgrade() else {
                    return;
                };
                match event {
                    Ok(Event::Credential { provider, email }) => {
                        if let Ok(email) = crate::email::Email::parse(&email) {
                            registry.invalidate(&CredentialKey { email, provider });
                        }
                    }
                    Ok(Event::Resync)
                    | Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {
                        registry.invalidate_all()
                    }
                    Ok(Event::Session { .. }) => {}
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
                }
            }
        })
    }
}
