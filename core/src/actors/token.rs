//! `TokenActor`: one per credential `(user_email, provider)`.
//!
//! **State**: the decrypted access token, its expiry, scopes and version, as
//! last read or written ([`Credential`]).
//! **Lifetime**: started by [`super::tokens::TokenRegistry`] when a
//! credential needs I/O that must happen once (a refresh, tokens waiting to
//! be stored, a revocation), on an arbiter chosen by hashing the key; stops
//! itself once no message has reached it for `QUIET_CHECK_EVERY` (30–60 s)
//! and it holds nothing unsaved. The token it published stays warm in the
//! registry without it: a warm credential costs its [`Shared`] snapshot, not
//! an actor (mailbox, timers, task), which keeps memory per warm credential small.
//! **Who holds its address**: only the registry (handlers and jobs go through it).
//!
//! The actor is the only writer of its credential's in-memory state. Every
//! handler that may do I/O returns an [`AtomicResponse`], so the actor handles
//! nothing else until it finishes: however many callers arrive while a
//! refresh is in flight, they queue in the mailbox and are answered from the
//! refreshed cache — a single flight per credential.
//!
//! It also *publishes* each usable token to a [`Shared`] snapshot. A request
//! whose token is fresh (outside the refresh buffer, with the required
//! scopes) is answered from that snapshot by the registry without a mailbox
//! hop — two cross-thread wake-ups saved on the hottest path. Everything else
//! (first load, refresh, refusals) goes through the mailbox.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, LazyLock};
use std::time::{Duration, Instant};

use actix::prelude::*;

use super::tokens::TokenRegistry;
use crate::credentials::{self, Credential, Grant, Need, Settled, Source, TokenError, Trigger};
use crate::oauth::client::RevocationOutcome;
use crate::services::Deps;
use crate::store::credentials::{CredentialKey, CredentialState};

/// How often an actor checks whether any message reached it since the last
/// check; it stops at the first check that finds none.
const QUIET_CHECK_EVERY: Duration = Duration::from_secs(30);
/// How soon an actor holding unsaved refreshed tokens tries to store them
/// again; the pause doubles up to [`UNSAVED_RETRY_MAX`]. Short, because the
/// refresh lease that keeps other replicas from using the stored (possibly
/// rotated-away) refresh token runs out.
const UNSAVED_RETRY_FIRST: Duration = Duration::from_secs(1);
const UNSAVED_RETRY_MAX: Duration = Duration::from_secs(8);
/// Queued callers per credential before `send` applies backpressure.
const MAILBOX_CAPACITY: usize = 1024;

/// Get a token for a request.
#[derive(Message)]
#[rtype(result = "Result<Grant, TokenError>")]
pub struct GetToken {
    pub required_scopes: Vec<String>,
    /// Whether a caller is served (recorded as a use) or the gateway itself
    /// looks (the connection probe), which must not make a credential look used.
    pub serves_caller: bool,
}

/// Refresh now if needed (from the proactive worker).
#[derive(Message)]
#[rtype(result = "Result<RefreshOutcome, TokenError>")]
pub struct RefreshNow {
    pub trigger: Trigger,
    pub need: Need,
}

/// What a requested refresh did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RefreshOutcome {
    /// The token was already fresh enough; nothing was asked of the provider.
    NotNeeded,
    Refreshed,
    /// The provider failed transiently; the current token still works.
    Deferred,
}

/// Forget the cached token (the stored credential changed elsewhere).
#[derive(Message)]
#[rtype(result = "()")]
pub struct Invalidate;

/// Try again to store refreshed tokens the database refused.
#[derive(Message)]
#[rtype(result = "()")]
struct StoreUnsaved;

/// Revoke at the provider, delete the credential, forget the token.
#[derive(Message)]
#[rtype(result = "Result<RevocationOutcome, TokenError>")]
pub struct Revoke;

/// A warm credential, as the registry keeps it: the token last loaded or
/// refreshed, and when it was used. Outlives the credential's actor.
#[derive(Default)]
pub struct Shared {
    /// The token last loaded or refreshed, while it is active.
    snapshot: std::sync::RwLock<Option<Arc<Credential>>>,
    /// Counts every change of `snapshot` (made under its lock), so a load
    /// that read the store before a revocation or a refresh cannot publish
    /// what it read over the newer state ([`Shared::publish_if_unchanged`]).
    generation: AtomicU64,
    /// When the credential was last busy: served, or its actor started
    /// (milliseconds since [`EPOCH`]); the registry forgets it after being
    /// idle for `TOKEN_ACTOR_IDLE_MINUTES`.
    last_used_ms: AtomicU64,
    /// When the credential was last served to a caller (0: never). Only this
    /// is recorded as `last_used_at`: a proactive refresh starting the actor
    /// is not a use, or every refreshed credential would look used and be
    /// refreshed ahead forever.
    served_ms: AtomicU64,
    /// `served_ms` as of the last `last_used_at` write (0: none yet).
    recorded_ms: AtomicU64,
    /// A request is reading the credential from the store; others go to the
    /// actor meanwhile, so a crowd on a cold credential reads it once or twice, not once each.
    loading: AtomicBool,
}

/// Holds `Shared::loading` until dropped (a cancelled request included).
pub struct Loading(Arc<Shared>);

impl Drop for Loading {
    fn drop(&mut self) {
        self.0.loading.store(false, Ordering::Release);
    }
}

static EPOCH: LazyLock<Instant> = LazyLock::new(Instant::now);

fn now_ms() -> u64 {
    u64::try_from(EPOCH.elapsed().as_millis()).unwrap_or(u64::MAX)
}

impl Shared {
    /// A new warm entry: busy now, so it is not forgotten before its first use.
    pub fn new() -> Self {
        let shared = Self::default();
        shared.touch();
        shared
    }

    pub fn snapshot(&self) -> Option<Arc<Credential>> {
        self.snapshot.read().ok()?.clone()
    }

    /// Where the snapshot stands; see [`Shared::publish_if_unchanged`].
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// Replaces the snapshot (the actor, with what it loaded or refreshed).
    fn publish(&self, value: Option<Arc<Credential>>) {
        let mut snapshot = self.snapshot.write().unwrap_or_else(std::sync::PoisonError::into_inner);
        *snapshot = value;
        self.generation.fetch_add(1, Ordering::AcqRel);
    }

    /// Publishes `value`, read from the store when the snapshot stood at
    /// `seen`, unless anything changed the snapshot since: an invalidation or
    /// a revocation (the row read may be gone) or a refresh (it is older).
    pub fn publish_if_unchanged(&self, seen: u64, value: Arc<Credential>) -> bool {
        let mut snapshot = self.snapshot.write().unwrap_or_else(std::sync::PoisonError::into_inner);
        if self.generation.load(Ordering::Acquire) != seen {
            return false;
        }
        *snapshot = Some(value);
        self.generation.fetch_add(1, Ordering::AcqRel);
        true
    }

    pub fn clear(&self) {
        self.publish(None);
    }

    /// The right to read the credential from the store, unless another
    /// request holds it.
    pub fn start_loading(self: &Arc<Self>) -> Option<Loading> {
        (!self.loading.swap(true, Ordering::AcqRel)).then(|| Loading(self.clone()))
    }

    pub fn touch(&self) {
        self.last_used_ms.store(now_ms(), Ordering::Relaxed);
    }

    /// The credential was served to a caller.
    pub fn serve(&self) {
        let now = now_ms().max(1);
        self.last_used_ms.store(now, Ordering::Relaxed);
        self.served_ms.store(now, Ordering::Relaxed);
    }

    pub fn idle_for(&self) -> Duration {
        Duration::from_millis(now_ms().saturating_sub(self.last_used_ms.load(Ordering::Relaxed)))
    }

    /// The first use while warm, claimed once: a user who comes back is
    /// recorded as active at once, not at the next sweep.
    pub fn claim_first_use(&self) -> bool {
        // A plain load first: the hot path must not write a shared cache line.
        if self.recorded_ms.load(Ordering::Relaxed) != 0 {
            return false;
        }
        let served = self.served_ms.load(Ordering::Relaxed);
        served != 0 && self.recorded_ms.compare_exchange(0, served, Ordering::AcqRel, Ordering::Relaxed).is_ok()
    }

    /// A use not yet written to `last_used_at`, if any.
    pub fn unrecorded_use(&self) -> Option<u64> {
        let served = self.served_ms.load(Ordering::Relaxed);
        (served != 0 && served != self.recorded_ms.load(Ordering::Relaxed)).then_some(served)
    }

    /// Uses up to `served` are written.
    pub fn recorded(&self, served: u64) {
        self.recorded_ms.fetch_max(served, Ordering::AcqRel);
    }
}

pub struct TokenActor {
    key: CredentialKey,
    deps: Arc<Deps>,
    registry: std::sync::Weak<TokenRegistry>,
    shared: Arc<Shared>,
    /// The same allocation as the published snapshot while it is active:
    /// a warm credential's token is held once, not twice.
    cache: Option<Arc<Credential>>,
    /// No message has arrived since the last quiet check.
    quiet: bool,
    /// The pause before the next [`StoreUnsaved`] (grows while the database refuses).
    unsaved_pause: Duration,
    /// A [`StoreUnsaved`] is already scheduled.
    unsaved_scheduled: bool,
}

impl TokenActor {
    /// Replaces the cache and republishes the snapshot.
    fn set_cache(&mut self, cache: Option<Credential>) {
        let cache = cache.map(Arc::new);
        let publish = cache.as_ref().filter(|c| c.state == CredentialState::Active).cloned();
        self.shared.publish(publish);
        self.cache = cache;
    }

    /// A copy of the cache for work done off the actor (which may change it).
    fn cache_copy(&self) -> Option<Credential> {
        self.cache.as_deref().cloned()
    }

    pub(crate) fn new(
        key: CredentialKey,
        deps: Arc<Deps>,
        registry: std::sync::Weak<TokenRegistry>,
        shared: Arc<Shared>,
    ) -> Self {
        shared.touch();
        // A warm credential's actor starts from its snapshot: no second read.
        let cache = shared.snapshot();
        Self {
            key,
            deps,
            registry,
            shared,
            cache,
            quiet: false,
            unsaved_pause: UNSAVED_RETRY_FIRST,
            unsaved_scheduled: false,
        }
    }

    fn holds_unsaved(&self) -> bool {
        self.cache.as_ref().is_some_and(|c| c.unsaved.is_some())
    }

    /// Replaces the cache after I/O; if it holds unsaved tokens, schedules
    /// the next attempt to store them (with backoff).
    fn update(&mut self, cache: Option<Credential>, ctx: &mut Context<Self>) {
        self.set_cache(cache);
        if !self.holds_unsaved() {
            self.unsaved_pause = UNSAVED_RETRY_FIRST;
            return;
        }
        if !self.unsaved_scheduled {
            self.unsaved_scheduled = true;
            ctx.notify_later(StoreUnsaved, self.unsaved_pause);
            self.unsaved_pause = (self.unsaved_pause * 2).min(UNSAVED_RETRY_MAX);
        }
    }
}

impl Actor for TokenActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.set_mailbox_capacity(MAILBOX_CAPACITY);
        metrics::gauge!(crate::telemetry::metrics::TOKEN_ACTORS).increment(1.0);
        ctx.run_interval(QUIET_CHECK_EVERY, |act, ctx| {
            // An actor holding unsaved tokens is their only copy: it stays.
            if act.quiet && !act.holds_unsaved() {
                ctx.stop();
            }
            act.quiet = true;
        });
    }

    fn stopped(&mut self, ctx: &mut Self::Context) {
        metrics::gauge!(crate::telemetry::metrics::TOKEN_ACTORS).decrement(1.0);
        // The snapshot stays: the registry serves it until it is idle.
        if let Some(registry) = self.registry.upgrade() {
            registry.forget(&self.key, &ctx.address());
        }
    }
}

/// Runs `work` on the main runtime and resumes the actor with its result.
fn on_runtime<T, F>(deps: &Deps, work: F) -> impl ActorFuture<TokenActor, Output = Result<T, TokenError>> + 'static
where
    T: Send + 'static,
    F: std::future::Future<Output = T> + Send + 'static,
{
    let handle = deps.runtime.spawn(work);
    actix::fut::wrap_future(async move { handle.await.map_err(|e| TokenError::Task(Arc::new(e))) })
}

impl Handler<GetToken> for TokenActor {
    type Result = AtomicResponse<Self, Result<Grant, TokenError>>;

    fn handle(&mut self, msg: GetToken, _ctx: &mut Self::Context) -> Self::Result {
        self.quiet = false;
        if msg.serves_caller {
            self.shared.serve();
        }
        let now = self.deps.clock.now();
        let buffer = self.deps.settings.refresh_buffer;
        // The hot path: no I/O at all.
        if let Some(cached) = &self.cache {
            let answer = answer_from_cache(cached, &msg.required_scopes, now, buffer);
            if let Some(answer) = answer {
                return AtomicResponse::new(Box::pin(actix::fut::ready(answer)));
            }
        }
        let deps = self.deps.clone();
        let key = self.key.clone();
        let cached = self.cache_copy();
        let work = async move {
            let (current, source) = match cached {
                Some(c) => (c, Source::Memory),
                None => match credentials::load(&deps, &key).await {
                    Ok(Some(c)) => (c, Source::Store),
                    Ok(None) => return (Err(TokenError::NotAuthenticated), None),
                    Err(err) => return (Err(err), None),
                },
            };
            let current = match credentials::settle(&deps, &key, current).await {
                Settled::Ready(c) => c,
                Settled::Gone => return (Err(TokenError::NotAuthenticated), None),
                // The unsaved token is the grant's newest: serve it while it lasts.
                Settled::Pending(c) => {
                    let answer = answer_from_cache(&c, &msg.required_scopes, deps.clock.now(), Duration::ZERO);
                    return (answer.unwrap_or(Err(TokenError::Unavailable)), Some(c));
                }
            };
            let now = deps.clock.now();
            if let Some(answer) = answer_from_cache(&current, &msg.required_scopes, now, buffer) {
                let answer = answer.map(|g| Grant { source, ..g });
                return (answer, Some(current));
            }
            credentials::refresh(&deps, &key, current, Trigger::OnDemand, Need::ExpiresWithin(buffer)).await
        };
        AtomicResponse::new(Box::pin(on_runtime(&self.deps, work).map(|result, act: &mut Self, ctx| match result {
            Ok((answer, cache)) => {
                // Nothing stored for this user: no reason to keep an actor around.
                if cache.is_none() && matches!(answer, Err(TokenError::NotAuthenticated)) {
                    ctx.stop();
                }
                act.update(cache, ctx);
                answer
            }
            Err(err) => Err(err),
        })))
    }
}

/// Answers from `cached` when no I/O is needed: a fresh token with the
/// required scopes, or a definite refusal. `None` means "refresh".
pub(crate) fn answer_from_cache(
    cached: &Credential,
    required: &[String],
    now: chrono::DateTime<chrono::Utc>,
    buffer: Duration,
) -> Option<Result<Grant, TokenError>> {
    if cached.state == CredentialState::NeedsReauth {
        return Some(Err(TokenError::RefreshFailed));
    }
    let missing = credentials::missing_scopes(&cached.scopes, required);
    if !missing.is_empty() {
        return Some(Err(TokenError::ScopeInsufficient { missing }));
    }
    cached.fresh_for(now, buffer).then(|| Ok(cached.grant(Source::Memory)))
}

impl Handler<RefreshNow> for TokenActor {
    type Result = AtomicResponse<Self, Result<RefreshOutcome, TokenError>>;

    fn handle(&mut self, msg: RefreshNow, _ctx: &mut Self::Context) -> Self::Result {
        self.quiet = false;
        let deps = self.deps.clone();
        let key = self.key.clone();
        let cached = self.cache_copy();
        let work = async move {
            let current = match cached {
                Some(c) => c,
                None => match credentials::load(&deps, &key).await {
                    Ok(Some(c)) => c,
                    Ok(None) => return (Err(TokenError::NotAuthenticated), None),
                    Err(err) => return (Err(err), None),
                },
            };
            let current = match credentials::settle(&deps, &key, current).await {
                Settled::Ready(c) => c,
                Settled::Gone => return (Err(TokenError::NotAuthenticated), None),
                Settled::Pending(c) => return (Err(TokenError::Unavailable), Some(c)),
            };
            if current.state == CredentialState::NeedsReauth {
                return (Err(TokenError::RefreshFailed), Some(current));
            }
            if let Need::ExpiresWithin(lead) = msg.need
                && current.fresh_for(deps.clock.now(), lead)
            {
                return (Ok(RefreshOutcome::NotNeeded), Some(current));
            }
            let version = current.version;
            let (result, cache) = credentials::refresh(&deps, &key, current, msg.trigger, msg.need).await;
            let report = match result {
                Ok(_) if cache.as_ref().is_some_and(|c| c.version != version) => Ok(RefreshOutcome::Refreshed),
                Ok(_) => Ok(RefreshOutcome::Deferred),
                Err(err) => Err(err),
            };
            (report, cache)
        };
        AtomicResponse::new(Box::pin(on_runtime(&self.deps, work).map(|result, act: &mut Self, ctx| match result {
            Ok((answer, cache)) => {
                act.update(cache, ctx);
                answer
            }
            Err(err) => Err(err),
        })))
    }
}

impl Handler<Invalidate> for TokenActor {
    type Result = ();

    fn handle(&mut self, _msg: Invalidate, ctx: &mut Self::Context) {
        self.quiet = false;
        if self.holds_unsaved() {
            // Unsaved tokens are not a stale copy but the only one: stop
            // serving them from the snapshot and let the store decide (a
            // changed row wins over them).
            self.shared.clear();
            ctx.notify(StoreUnsaved);
        } else {
            self.set_cache(None);
        }
    }
}

impl Handler<StoreUnsaved> for TokenActor {
    type Result = AtomicResponse<Self, ()>;

    fn handle(&mut self, _msg: StoreUnsaved, _ctx: &mut Self::Context) -> Self::Result {
        self.unsaved_scheduled = false;
        let Some(cached) = self.cache_copy().filter(|c| c.unsaved.is_some()) else {
            return AtomicResponse::new(Box::pin(actix::fut::ready(())));
        };
        let deps = self.deps.clone();
        let key = self.key.clone();
        let work = async move { credentials::settle(&deps, &key, cached).await };
        AtomicResponse::new(Box::pin(on_runtime(&self.deps, work).map(|result, act: &mut Self, ctx| match result {
            Ok(Settled::Ready(c) | Settled::Pending(c)) => act.update(Some(c), ctx),
            Ok(Settled::Gone) => {
                act.update(None, ctx);
                ctx.stop();
            }
            // The task itself failed: keep what we hold and try again later.
            Err(_) => {
                let cache = act.cache.take().map(Arc::unwrap_or_clone);
                act.update(cache, ctx);
            }
        })))
    }
}

impl Handler<Revoke> for TokenActor {
    type Result = AtomicResponse<Self, Result<RevocationOutcome, TokenError>>;

    fn handle(&mut self, _msg: Revoke, _ctx: &mut Self::Context) -> Self::Result {
        self.quiet = false;
        // Tokens not stored yet belong to the grant being revoked: the newest
        // refresh token among them is the one to revoke at the provider.
        let unsaved = self.cache.as_ref().and_then(|c| c.unsaved.clone());
        // Forget first: nothing is served from memory once revocation began.
        self.set_cache(None);
        let deps = self.deps.clone();
        let key = self.key.clone();
        let work = async move { crate::credentials::revoke::revoke(&deps, &key, unsaved.as_deref()).await };
        AtomicResponse::new(Box::pin(on_runtime(&self.deps, work).map(|result, act: &mut Self, _| {
            act.set_cache(None);
            result.and_then(|r| r)
        })))
    }
}

#[cfg(test)]
mod tests {
    use chrono::TimeDelta;
    use secrecy::SecretString;

    use super::*;

    fn cached(state: CredentialState, expires_in: i64) -> Credential {
        Credential {
            id: uuid::Uuid::nil(),
            unsaved: None,
            access_token: SecretString::from("t".to_owned()),
            expires_at: Some(crate::clock::Clock::system().now() + TimeDelta::seconds(expires_in)),
            scopes: vec!["mail.read".into()],
            version: 3,
            state,
            has_refresh_token: true,
        }
    }

    #[test]
    fn a_fresh_token_with_the_scopes_is_answered_from_memory() {
        let answer = answer_from_cache(
            &cached(CredentialState::Active, 3600),
            &["mail.read".into()],
            crate::clock::Clock::system().now(),
            Duration::from_secs(300),
        );
        assert!(matches!(answer, Some(Ok(Grant { source: Source::Memory, .. }))));
    }

    #[test]
    fn missing_scopes_and_reauth_are_answered_without_io() {
        let now = crate::clock::Clock::system().now();
        let answer = answer_from_cache(
            &cached(CredentialState::Active, 3600),
            &["mail.send".into()],
            now,
            Duration::from_secs(300),
        );
        assert!(
            matches!(answer.map(|a| a.err()), Some(Some(TokenError::ScopeInsufficient { missing })) if missing == ["mail.send"])
        );
        let answer = answer_from_cache(&cached(CredentialState::NeedsReauth, 3600), &[], now, Duration::from_secs(300));
        assert!(matches!(answer.map(|a| a.err()), Some(Some(TokenError::RefreshFailed))));
    }

    #[test]
    fn a_token_inside_the_buffer_needs_a_refresh() {
        let answer = answer_from_cache(
            &cached(CredentialState::Active, 100),
            &[],
            crate::clock::Clock::system().now(),
            Duration::from_secs(300),
        );
        assert!(answer.is_none());
    }

    #[test]
    fn starting_an_actor_is_not_a_use_serving_a_caller_is() {
        let shared = Shared::default();
        shared.touch();
        assert_eq!(shared.served_ms.load(Ordering::Relaxed), 0, "a worker's refresh starts the actor: no use");
        assert!(shared.idle_for() < Duration::from_secs(60), "but the actor counts as busy");
        shared.serve();
        assert!(shared.served_ms.load(Ordering::Relaxed) > 0);
    }

    #[test]
    fn a_load_that_read_before_a_change_does_not_publish_over_it() {
        let shared = Shared::new();
        let seen = shared.generation();
        shared.clear(); // a revocation or an invalidation while the row was read
        assert!(!shared.publish_if_unchanged(seen, Arc::new(cached(CredentialState::Active, 3600))));
        assert!(shared.snapshot().is_none(), "the row read before the revocation is not served");

        let seen = shared.generation();
        shared.publish(Some(Arc::new(cached(CredentialState::Active, 3600)))); // a refresh meanwhile
        assert!(!shared.publish_if_unchanged(seen, Arc::new(cached(CredentialState::Active, 60))));
        assert!(shared.snapshot().unwrap().fresh_for(crate::clock::Clock::system().now(), Duration::from_secs(600)));

        let seen = shared.generation();
        assert!(shared.publish_if_unchanged(seen, Arc::new(cached(CredentialState::Active, 60))), "nothing changed");
        assert_ne!(shared.generation(), seen, "a publication is a change too");
    }

    #[test]
    fn idleness_counts_from_the_last_use_or_start() {
        now_ms(); // the epoch starts at its first use: before the wait, not after
        let never = Shared::default();
        std::thread::sleep(Duration::from_millis(30));
        assert!(never.idle_for() >= Duration::from_millis(30), "untouched: idle since the epoch");
        never.touch();
        assert!(never.idle_for() < Duration::from_millis(30), "started now: busy");
        std::thread::sleep(Duration::from_millis(30));
        assert!(never.idle_for() >= Duration::from_millis(30));
        never.serve();
        assert!(never.idle_for() < Duration::from_millis(30), "served now: busy");
    }

    #[test]
    fn one_request_at_a_time_loads_a_cold_credential() {
        let shared = Arc::new(Shared::new());
        let first = shared.start_loading();
        assert!(first.is_some());
        assert!(shared.start_loading().is_none(), "the second goes to the actor");
        drop(first);
        assert!(shared.start_loading().is_some(), "released when the first ends, even cancelled");
    }

    #[test]
    fn each_use_is_recorded_once_and_the_first_at_once() {
        let shared = Shared::new();
        assert!(!shared.claim_first_use(), "not served yet");
        assert_eq!(shared.unrecorded_use(), None);
        shared.serve();
        assert!(shared.claim_first_use());
        assert!(!shared.claim_first_use(), "claimed once");
        assert_eq!(shared.unrecorded_use(), None, "the first use is written by its claimer");
        std::thread::sleep(Duration::from_millis(2));
        shared.serve();
        let served = shared.unrecorded_use().expect("a later use waits for the sweep");
        shared.recorded(served);
        assert_eq!(shared.unrecorded_use(), None);
        assert!(!shared.claim_first_use(), "still not a first use");
    }
}
