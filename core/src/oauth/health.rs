//! Whether each provider accepts our client: the state behind
//! `provider_failing`, `/health`'s `providers` detail and
//! `gateway providers list`.
//!
//! `invalid_client` and `unauthorized_client` say the *client* is wrong (a
//! rotated secret, a disabled app), not any user's grant: every credential of
//! the provider stays `active`, the provider is marked failing (in the
//! database, so every replica and the CLI see it), and calls to it are held
//! back — one probe at a time, the pause doubling from [`PROBE_FIRST`] to
//! [`PROBE_MAX`] — until a call succeeds or the configuration is replaced.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};

use crate::store::providers::ProviderHealthRow;

/// The first pause after a client-level refusal, doubling up to [`PROBE_MAX`].
pub const PROBE_FIRST: Duration = Duration::from_secs(30);
pub const PROBE_MAX: Duration = Duration::from_secs(900);

/// What a failing provider's record says.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Failing {
    pub since: DateTime<Utc>,
    /// `invalid_client` or `unauthorized_client`.
    pub category: String,
}

#[derive(Debug)]
struct State {
    failing: Failing,
    /// No call to the provider before this (one caller then probes).
    next_probe: DateTime<Utc>,
    pause: Duration,
}

#[derive(Debug, Default)]
pub struct ProviderHealth {
    state: Mutex<HashMap<String, State>>,
}

impl ProviderHealth {
    /// May this caller call provider `id` at `now`? `Err(wait)` while it is
    /// held back; the caller let through is the probe, and the next one waits longer.
    pub fn gate(&self, id: &str, now: DateTime<Utc>) -> Result<(), Duration> {
        let Ok(mut state) = self.state.lock() else { return Ok(()) };
        let Some(s) = state.get_mut(id) else { return Ok(()) };
        if now < s.next_probe {
            return Err((s.next_probe - now).to_std().unwrap_or_default());
        }
        s.next_probe = now + delta(s.pause);
        s.pause = (s.pause * 2).min(PROBE_MAX);
        Ok(())
    }

    /// The provider refused our client. True if it was not failing before.
    pub fn refused(&self, id: &str, category: &str, now: DateTime<Utc>) -> bool {
        let Ok(mut state) = self.state.lock() else { return false };
        if state.contains_key(id) {
            return false;
        }
        state.insert(id.to_owned(), State::new(Failing { since: now, category: category.to_owned() }));
        set_gauge(id, true);
        true
    }

    /// A call to the provider succeeded. True if it was failing before.
    pub fn accepted(&self, id: &str) -> bool {
        let was = self.state.lock().is_ok_and(|mut state| state.remove(id).is_some());
        if was {
            set_gauge(id, false);
        }
        was
    }

    /// Adopts what the database says (another replica's findings, or a
    /// replaced configuration), keeping our own probe schedule where both agree.
    pub fn sync(&self, rows: &[ProviderHealthRow]) {
        let Ok(mut state) = self.state.lock() else { return };
        for row in rows {
            match &row.failing {
                Some((since, category)) => {
                    if !state.contains_key(&row.id) {
                        state.insert(row.id.clone(), State::new(Failing { since: *since, category: category.clone() }));
                    }
                    set_gauge(&row.id, true);
                }
                None => {
                    state.remove(&row.id);
                    set_gauge(&row.id, false);
                }
            }
        }
    }

    /// Sets `provider_failing` for each of `ids` (once the recorder exists).
    pub fn publish(&self, ids: &[String]) {
        let Ok(state) = self.state.lock() else { return };
        for id in ids {
            set_gauge(id, state.contains_key(id));
        }
    }

    /// Every failing provider.
    pub fn failing(&self) -> Vec<(String, Failing)> {
        let Ok(state) = self.state.lock() else { return Vec::new() };
        let mut out: Vec<(String, Failing)> = state.iter().map(|(id, s)| (id.clone(), s.failing.clone())).collect();
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out
    }
}

impl State {
    fn new(failing: Failing) -> Self {
        Self { next_probe: failing.since + delta(PROBE_FIRST), pause: PROBE_FIRST * 2, failing }
    }
}

fn delta(d: Duration) -> TimeDelta {
    TimeDelta::from_std(d).unwrap_or(TimeDelta::MAX)
}

fn set_gauge(id: &str, failing: bool) {
    metrics::gauge!(crate::telemetry::metrics::PROVIDER_FAILING, "provider" => id.to_owned()).set(if failing {
        1.0
    } else {
        0.0
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refused_provider_is_held_back_then_probed_once_per_pause() {
        let health = ProviderHealth::default();
        let now = crate::clock::Clock::system().now();
        assert!(health.gate("p", now).is_ok(), "a provider nobody refused is called freely");
        assert!(health.refused("p", "invalid_client", now));
        assert!(!health.refused("p", "invalid_client", now), "already failing");
        assert_eq!(health.gate("p", now), Err(PROBE_FIRST));
        assert!(health.gate("other", now).is_ok());
        // After the pause one caller probes; the next waits twice as long.
        let later = now + delta(PROBE_FIRST);
        assert!(health.gate("p", later).is_ok());
        assert_eq!(health.gate("p", later), Err(PROBE_FIRST * 2));
        let third = later + delta(PROBE_FIRST * 2);
        assert!(health.gate("p", third).is_ok());
        assert_eq!(health.gate("p", third), Err(PROBE_FIRST * 4), "the pause keeps doubling");
        assert!(health.accepted("p"));
        assert!(!health.accepted("p"));
        assert!(health.gate("p", later).is_ok());
    }

    #[test]
    fn the_database_view_is_adopted() {
        let health = ProviderHealth::default();
        let since = crate::clock::Clock::system().now();
        health.sync(&[ProviderHealthRow { id: "p".into(), failing: Some((since, "unauthorized_client".into())) }]);
        assert_eq!(health.failing(), [("p".to_owned(), Failing { since, category: "unauthorized_client".into() })]);
        assert!(health.gate("p", since).is_err());
        health.sync(&[ProviderHealthRow { id: "p".into(), failing: None }]);
        assert!(health.failing().is_empty());
        assert!(health.gate("p", since).is_ok());
    }
}
