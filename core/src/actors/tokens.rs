//! `TokenRegistry`: the warm credentials, and their actors when they have
//! I/O to do.
//!
//! A warm credential is a [`Shared`] snapshot of its token in one map. A
//! request whose token is fresh is served from it without a mailbox hop. A
//! cold credential is read from the store by the request itself and, when its
//! token is fresh, published there — no actor for a credential that needs no
//! more I/O. Anything else (a refresh, unsaved tokens, a revocation) goes to
//! the credential's `TokenActor`, started on an arbiter chosen by hashing the
//! key, so actors spread over the arbiters' threads and each refresh happens
//! once. The registry also relays cache invalidations from the event bus,
//! clearing the snapshot at once and then telling the actor, and sweeps
//! every [`SWEEP_EVERY`]: uses are written to `last_used_at` in batches, and
//! credentials idle for `TOKEN_ACTOR_IDLE_MINUTES` are forgotten.

use std::collections::HashMap;
use std::hash::BuildHasher;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use actix::prelude::*;

use super::token::{GetToken, Invalidate, RefreshNow, RefreshOutcome, Revoke, Shared, TokenActor, answer_from_cache};
use crate::credentials::{self, Grant, Need, Source, TokenError, Trigger};
use crate::events::Event;
use crate::oauth::client::RevocationOutcome;
use crate::services::Deps;
use crate::store::credentials::{CredentialKey, CredentialState};
use crate::telemetry::metrics as m;

/// A request waits at most this long for its credential's actor (a refresh
/// in flight included) before answering busy.
const SEND_TIMEOUT: Duration = Duration::from_secs(60);
/// How often uses are written and idle credentials forgotten.
pub const SWEEP_EVERY: Duration = Duration::from_secs(30);

/// A warm credential, and its actor while it has one.
struct Entry {
    addr: Option<Addr<TokenActor>>,
    shared: Arc<Shared>,
}

impl Entry {
    fn new() -> Self {
        metrics::gauge!(m::CREDENTIALS_WARM).increment(1.0);
        Self { addr: None, shared: Arc::new(Shared::new()) }
    }

    fn live_actor(&self) -> Option<&Addr<TokenActor>> {
        self.addr.as_ref().filter(|a| a.connected())
    }

    /// No token and no actor: nothing worth keeping.
    fn holds_nothing(&self) -> bool {
        self.live_actor().is_none() && self.shared.snapshot().is_none()
    }

    /// No actor, and nobody used it for `idle`.
    fn forgettable(&self, idle: Duration) -> bool {
        self.live_actor().is_none() && self.shared.idle_for() >= idle
    }
}

impl Drop for Entry {
    fn drop(&mut self) {
        metrics::gauge!(m::CREDENTIALS_WARM).decrement(1.0);
    }
}

/// What the registry holds in memory.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct InMemory {
    /// Credentials known to this replica (warm, or loading).
    pub credentials: usize,
    /// Of those, the ones with a live actor.
    pub actors: usize,
}

pub struct TokenRegistry {
    /// The warm credentials (an actor among them only while it has I/O to do).
    entries: RwLock<HashMap<CredentialKey, Entry>>,
    arbiters: Vec<ArbiterHandle>,
    hasher: std::collections::hash_map::RandomState,
    /// Shared by every actor: one pointer each rather than a copy of every handle.
    deps: Arc<Deps>,
    this: std::sync::Weak<TokenRegistry>,
    /// First uses waiting to be written ([`TokenRegistry::record_first_use`]).
    first_uses: std::sync::Mutex<Vec<CredentialKey>>,
    first_use_queued: Arc<tokio::sync::Notify>,
}

impl std::fmt::Debug for TokenRegistry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenRegistry").field("in_memory", &self.in_memory()).finish()
    }
}

impl TokenRegistry {
    pub(crate) fn new(deps: Deps, arbiters: Vec<ArbiterHandle>) -> Arc<Self> {
        Arc::new_cyclic(|this| Self {
            entries: RwLock::new(HashMap::new()),
            arbiters,
            hasher: std::collections::hash_map::RandomState::new(),
            deps: Arc::new(deps),
            this: this.clone(),
            first_uses: std::sync::Mutex::new(Vec::new()),
            first_use_queued: Arc::new(tokio::sync::Notify::new()),
        })
    }

    /// Warm credentials and live actors.
    pub fn in_memory(&self) -> InMemory {
        let entries = self.read();
        InMemory { credentials: entries.len(), actors: entries.values().filter(|e| e.live_actor().is_some()).count() }
    }

    // A panic while the map was locked cannot leave it inconsistent: take it over.
    fn read(&self) -> std::sync::RwLockReadGuard<'_, HashMap<CredentialKey, Entry>> {
        self.entries.read().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, HashMap<CredentialKey, Entry>> {
        self.entries.write().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn addr(&self, key: &CredentialKey) -> Result<Addr<TokenActor>, TokenError> {
        if let Some(addr) = self.read().get(key).and_then(Entry::live_actor) {
            return Ok(addr.clone());
        }
        let mut entries = self.write();
        let entry = entries.entry(key.clone()).or_insert_with(Entry::new);
        // Another caller may have started it between our two looks.
        if let Some(addr) = entry.live_actor() {
            return Ok(addr.clone());
        }
        let index = (self.hasher.hash_one(key) % self.arbiters.len().max(1) as u64) as usize;
        let arbiter = self.arbiters.get(index).ok_or(TokenError::NoActorThread)?;
        let (k, deps, registry, s) = (key.clone(), self.deps.clone(), self.this.clone(), entry.shared.clone());
        let addr = TokenActor::start_in_arbiter(arbiter, move |_| TokenActor::new(k, deps, registry, s));
        entry.addr = Some(addr.clone());
        Ok(addr)
    }

    /// Called by an actor as it stops: the credential stays warm if its
    /// actor left a token behind.
    pub fn forget(&self, key: &CredentialKey, addr: &Addr<TokenActor>) {
        let mut entries = self.write();
        if let Some(entry) = entries.get_mut(key)
            && entry.addr.as_ref() == Some(addr)
        {
            entry.addr = None;
            if entry.holds_nothing() {
                entries.remove(key);
            }
        }
    }

    /// Forgets `key` if it holds nothing: no token, no actor (a user with no
    /// credential must not stay in memory, however often asked for).
    fn forget_if_empty(&self, key: &CredentialKey, shared: &Arc<Shared>) {
        let mut entries = self.write();
        if entries.get(key).is_some_and(|entry| Arc::ptr_eq(&entry.shared, shared) && entry.holds_nothing()) {
            entries.remove(key);
        }
    }

    /// The answer straight from the snapshot — a fresh token with the
    /// required scopes, or a refusal for missing ones — or `None` when the
    /// token must be loaded or refreshed.
    fn fast_path(
        &self,
        key: &CredentialKey,
        required: &[String],
        serves_caller: bool,
    ) -> Option<Result<Grant, TokenError>> {
        let shared = self.read().get(key)?.shared.clone();
        let cached = shared.snapshot()?;
        let answer = answer_from_cache(&cached, required, self.deps.clock.now(), self.deps.settings.refresh_buffer)?;
        if serves_caller {
            shared.serve();
            // Warmed by a worker's refresh, this may be the first use.
            self.record_first_use(key, &shared);
        }
        Some(answer)
    }

    /// A cold credential, read from the store by the request itself. Its
    /// answer, when it needs nothing more: a fresh token (then published), a
    /// refusal, or nothing stored. `None` when its actor must decide: it has
    /// one, its token needs a refresh (a warm one missed the fast path), or
    /// another request is reading it already (a crowd queues at the actor).
    async fn load_cold(
        &self,
        key: &CredentialKey,
        required: &[String],
        serves_caller: bool,
    ) -> Option<(Result<Grant, TokenError>, Arc<Shared>)> {
        let (shared, seen) = {
            let mut entries = self.write();
            let entry = entries.entry(key.clone()).or_insert_with(Entry::new);
            if entry.live_actor().is_some() || entry.shared.snapshot().is_some() {
                return None;
            }
            (entry.shared.clone(), entry.shared.generation())
        };
        let _loading = shared.start_loading()?;
        let current = match credentials::load(&self.deps, key).await {
            Ok(Some(current)) => current,
            Ok(None) => {
                self.forget_if_empty(key, &shared);
                return Some((Err(TokenError::NotAuthenticated), shared));
            }
            Err(err) => {
                self.forget_if_empty(key, &shared);
                return Some((Err(err), shared));
            }
        };
        let now = self.deps.clock.now();
        let answer = answer_from_cache(&current, required, now, self.deps.settings.refresh_buffer)?;
        if serves_caller {
            shared.serve();
        }
        if current.state == CredentialState::Active {
            shared.publish_if_unchanged(seen, Arc::new(current));
        } else {
            self.forget_if_empty(key, &shared);
        }
        Some((answer.map(|g| Grant { source: Source::Store, ..g }), shared))
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
        if let Some(answer) = self.fast_path(key, required, serves_caller) {
            return answer;
        }
        if let Some((answer, shared)) = self.load_cold(key, required, serves_caller).await {
            if serves_caller {
                self.record_first_use(key, &shared);
            }
            return answer;
        }
        let answer = self.send(key, || GetToken { required_scopes: required.to_vec(), serves_caller }).await?;
        let shared = self.read().get(key).map(|e| e.shared.clone());
        if serves_caller && let Some(shared) = shared {
            self.record_first_use(key, &shared);
        }
        answer
    }

    /// Queues `last_used_at` for the first use of a credential while warm: a
    /// user who comes back counts as active from this request on. The
    /// sweeper writes the queue at once, a few statements for however many
    /// (after a restart every user's first request is one); later uses wait
    /// for the sweep.
    fn record_first_use(&self, key: &CredentialKey, shared: &Shared) {
        if !shared.claim_first_use() {
            return;
        }
        let mut queue = self.first_uses.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        queue.push(key.clone());
        if queue.len() == 1 {
            self.first_use_queued.notify_one();
        }
    }

    /// Writes the queued first uses.
    async fn write_first_uses(&self) {
        let keys = std::mem::take(&mut *self.first_uses.lock().unwrap_or_else(std::sync::PoisonError::into_inner));
        if keys.is_empty() {
            return;
        }
        let keys: Vec<&CredentialKey> = keys.iter().collect();
        if let Err(err) = self.deps.store.touch_last_used(&keys, self.deps.clock.now()).await {
            // Not retried: the credential's next use is written by the sweep.
            tracing::debug!(error = %err, "could not record first uses");
        }
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
        if let Some(entry) = self.read().get(key) {
            entry.shared.clear();
        }
    }

    /// Drops the cached token of `key` (if it is warm): the snapshot at
    /// once, so no request is served from it, then the actor's cache.
    pub fn invalidate(&self, key: &CredentialKey) {
        if let Some(entry) = self.read().get(key) {
            entry.shared.clear();
            if let Some(addr) = &entry.addr {
                addr.do_send(Invalidate);
            }
        }
    }

    fn invalidate_all(&self) {
        for entry in self.read().values() {
            entry.shared.clear();
            if let Some(addr) = &entry.addr {
                addr.do_send(Invalidate);
            }
        }
    }

    /// Writes the uses since the last sweep to `last_used_at` (a few
    /// statements for all of them, not one per credential) and forgets the
    /// credentials with no actor that nobody used for `TOKEN_ACTOR_IDLE_MINUTES`.
    pub async fn sweep(&self) {
        let idle = self.deps.settings.actor_idle;
        let mut used = Vec::new();
        let mut stale = Vec::new();
        for (key, entry) in self.read().iter() {
            if let Some(served) = entry.shared.unrecorded_use() {
                used.push((key.clone(), entry.shared.clone(), served));
            }
            if entry.forgettable(idle) {
                stale.push(key.clone());
            }
        }
        if !stale.is_empty() {
            let mut entries = self.write();
            for key in stale {
                // Looked at again: it may have been used since.
                if entries.get(&key).is_some_and(|e| e.forgettable(idle)) {
                    entries.remove(&key);
                }
            }
        }
        let now = self.deps.clock.now();
        for chunk in used.chunks(crate::store::credentials::TOUCH_BATCH) {
            let keys: Vec<&CredentialKey> = chunk.iter().map(|(key, _, _)| key).collect();
            match self.deps.store.touch_last_used(&keys, now).await {
                Ok(()) => chunk.iter().for_each(|(_, shared, served)| shared.recorded(*served)),
                // Tried again at the next sweep.
                Err(err) => {
                    tracing::debug!(error = %err, "could not record last uses");
                    return;
                }
            }
        }
    }

    /// Writes queued first uses as they come and sweeps every
    /// [`SWEEP_EVERY`], until asked to stop; then once more, so the last uses
    /// are written before the pool closes.
    pub fn spawn_sweeper(self: &Arc<Self>, mut stop: crate::events::Stop) -> tokio::task::JoinHandle<()> {
        let this = Arc::downgrade(self);
        let queued = self.first_use_queued.clone();
        tokio::spawn(async move {
            let mut every = tokio::time::interval(SWEEP_EVERY);
            every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            every.tick().await;
            loop {
                enum Wake {
                    Stop,
                    Sweep,
                    FirstUse,
                }
                let wake = tokio::select! {
                    biased;
                    () = stop.requested() => Wake::Stop,
                    _ = every.tick() => Wake::Sweep,
                    () = queued.notified() => Wake::FirstUse,
                };
                let Some(registry) = this.upgrade() else {
                    return;
                };
                registry.write_first_uses().await;
                match wake {
                    Wake::FirstUse => {}
                    Wake::Sweep => registry.sweep().await,
                    Wake::Stop => {
                        registry.sweep().await;
                        return;
                    }
                }
            }
        })
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
