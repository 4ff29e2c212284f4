//! How many proactive refreshes call providers at once: at most `total`
//! together (`REFRESH_CONCURRENCY`) and at most `per_provider` to any one
//! provider (`REFRESH_PROVIDER_CONCURRENCY`), from this replica.
//!
//! A call takes its provider's slot first and a total slot second, so one
//! waiting on a saturated provider holds no total slot, and a slow provider
//! cannot starve the others. Both semaphores are fair (first come, first
//! served); neither is ever closed.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

#[derive(Debug)]
pub(super) struct CallLimits {
    total: Arc<Semaphore>,
    per_provider: usize,
    providers: Mutex<HashMap<String, Arc<Semaphore>>>,
}

/// The right to one provider call; the slots free up when it is dropped.
#[derive(Debug)]
pub(super) struct CallPermit {
    _provider: Option<OwnedSemaphorePermit>,
    _total: Option<OwnedSemaphorePermit>,
}

impl CallLimits {
    pub(super) fn new(total: usize, per_provider: usize) -> Self {
        Self {
            total: Arc::new(Semaphore::new(total.max(1))),
            per_provider: per_provider.max(1),
            providers: Mutex::default(),
        }
    }

    /// Waits for a slot at `provider` and then for a total one.
    pub(super) async fn acquire(&self, provider: &str) -> CallPermit {
        let semaphore = {
            let mut providers = self.providers.lock().unwrap_or_else(PoisonError::into_inner);
            providers.entry(provider.to_owned()).or_insert_with(|| Arc::new(Semaphore::new(self.per_provider))).clone()
        };
        // `acquire_owned` fails only on a closed semaphore, and these never close.
        let provider_permit = semaphore.acquire_owned().await.ok();
        let total_permit = self.total.clone().acquire_owned().await.ok();
        CallPermit { _provider: provider_permit, _total: total_permit }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[tokio::test]
    async fn a_saturated_provider_leaves_the_others_their_slots() {
        let limits = Arc::new(CallLimits::new(3, 2));
        let _a1 = limits.acquire("a").await;
        let _a2 = limits.acquire("a").await;
        // A third call to `a` waits for its provider, holding no total slot...
        let third = tokio::spawn({
            let limits = limits.clone();
            async move { drop(limits.acquire("a").await) }
        });
        // ...so `b` still gets the last total slot at once.
        let b = tokio::time::timeout(Duration::from_secs(5), limits.acquire("b")).await;
        assert!(b.is_ok(), "b is not held up by a");
        assert_eq!(limits.total.available_permits(), 0);
        assert!(!third.is_finished(), "a is held to two calls");
        third.abort();
    }

    #[tokio::test]
    async fn permits_come_back_when_dropped() {
        let limits = CallLimits::new(1, 1);
        drop(limits.acquire("a").await);
        let again = tokio::time::timeout(Duration::from_secs(5), limits.acquire("a")).await;
        assert!(again.is_ok(), "the slot was given back");
    }
}
