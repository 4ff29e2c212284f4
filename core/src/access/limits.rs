//! Rate limits (GCRA, the `governor` crate): per API client and per source
//! address on `/auth/init` and `/auth/token`, per source address on the
//! browser pages. A refused request gets 429 `rate_limited` with
//! `Retry-After` and is counted in `rate_limited_total{route}`.
//!
//! The checks run inside the API-key extractor (which already knows the
//! client) and the browser handlers, rather than as a separate layer: the
//! token endpoint answers in microseconds, and every layer costs.

use std::net::IpAddr;
use std::num::NonZeroU32;
use std::time::Duration;

use governor::clock::Clock;
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};

/// Which limit applies.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Limited {
    Init,
    Token,
    Browser,
}

/// Requests per second for each kind (0 = unlimited); bursts are twice that.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LimitSettings {
    pub init_per_second: u32,
    pub token_per_second: u32,
    pub browser_per_second: u32,
}

impl Default for LimitSettings {
    fn default() -> Self {
        Self { init_per_second: 20, token_per_second: 2000, browser_per_second: 10 }
    }
}

struct Pair {
    /// Keyed by a hash of the client's id: no allocation per request.
    by_client: DefaultKeyedRateLimiter<u64>,
    by_address: DefaultKeyedRateLimiter<IpAddr>,
}

fn pair(per_second: u32) -> Option<Pair> {
    let rate = NonZeroU32::new(per_second)?;
    let burst = NonZeroU32::new(per_second.saturating_mul(2)).unwrap_or(rate);
    let quota = Quota::per_second(rate).allow_burst(burst);
    Some(Pair { by_client: RateLimiter::keyed(quota), by_address: RateLimiter::keyed(quota) })
}

/// The limiters; `None` where a limit is off.
pub struct Limits {
    init: Option<Pair>,
    token: Option<Pair>,
    browser: Option<Pair>,
}

impl std::fmt::Debug for Limits {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Limits").field("init", &self.init.is_some()).field("token", &self.token.is_some()).finish()
    }
}

impl Limits {
    pub fn new(settings: LimitSettings) -> Self {
        Self {
            init: pair(settings.init_per_second),
            token: pair(settings.token_per_second),
            browser: pair(settings.browser_per_second),
        }
    }

    /// `Err(seconds to wait)` when `client` (if any) or `address` is over its limit.
    pub fn check(&self, kind: Limited, client: Option<&str>, address: IpAddr) -> Result<(), u64> {
        let Some(pair) = (match kind {
            Limited::Init => &self.init,
            Limited::Token => &self.token,
            Limited::Browser => &self.browser,
        }) else {
            return Ok(());
        };
        // The limiter's own clock, read only when refusing (building a clock
        // calibrates it: far too slow for every request).
        let wait =
            |not_until: governor::NotUntil<_>| not_until.wait_time_from(pair.by_address.clock().now()).as_secs().max(1);
        if let Some(client) = client {
            use std::hash::{BuildHasher, BuildHasherDefault};
            let key = BuildHasherDefault::<std::collections::hash_map::DefaultHasher>::default().hash_one(client);
            pair.by_client.check_key(&key).map_err(wait)?;
        }
        pair.by_address.check_key(&address).map_err(wait)
    }

    /// Forgets keys idle long enough to be back at full quota (bounded memory).
    pub fn spawn_cleanup(self: &std::sync::Arc<Self>, mut stop: crate::events::Stop) -> tokio::task::JoinHandle<()> {
        let this = std::sync::Arc::downgrade(self);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(60));
            loop {
                tokio::select! {
                    biased;
                    () = stop.requested() => return,
                    _ = tick.tick() => {}
                }
                let Some(limits) = this.upgrade() else { return };
                for pair in [&limits.init, &limits.token, &limits.browser].into_iter().flatten() {
                    pair.by_client.retain_recent();
                    pair.by_address.retain_recent();
                }
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_beyond_the_quota_is_refused_with_a_wait() {
        let limits = Limits::new(LimitSettings { init_per_second: 1, token_per_second: 0, browser_per_second: 1 });
        let ip: IpAddr = "127.0.0.1".parse().unwrap();
        assert!(limits.check(Limited::Init, Some("c"), ip).is_ok());
        assert!(limits.check(Limited::Init, Some("c"), ip).is_ok(), "burst of two");
        assert_eq!(limits.check(Limited::Init, Some("c"), ip), Err(1));
        // Another client from another address is not affected.
        assert!(limits.check(Limited::Init, Some("d"), "10.0.0.1".parse().unwrap()).is_ok());
        // A limit of 0 is no limit.
        for _ in 0..100 {
            assert!(limits.check(Limited::Token, Some("c"), ip).is_ok());
        }
    }
}
