//! The one place that reads the system time.
//!
//! Logic that depends on time takes `now` as a parameter; components that need
//! "the current time" hold a [`Clock`]. Tests shift a clock forward instead of
//! sleeping, which is how session expiry and token refresh are exercised.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use chrono::{DateTime, DurationRound, TimeDelta, Utc};

/// A wall clock with an adjustable offset (zero in production).
#[derive(Clone, Debug, Default)]
pub struct Clock {
    offset_micros: Arc<AtomicI64>,
}

impl Clock {
    pub fn system() -> Self {
        Self::default()
    }

    /// The current time, truncated to microseconds so that values round-trip
    /// unchanged through PostgreSQL (microsecond precision) and SQLite (text).
    #[allow(clippy::disallowed_methods)] // The one place that reads the system time.
    pub fn now(&self) -> DateTime<Utc> {
        let offset = TimeDelta::microseconds(self.offset_micros.load(Ordering::Relaxed));
        truncate(Utc::now() + offset)
    }

    /// Moves this clock (and every clone of it) forward. For tests and demos.
    pub fn advance(&self, by: std::time::Duration) {
        let micros = i64::try_from(by.as_micros()).unwrap_or(i64::MAX);
        self.offset_micros.fetch_add(micros, Ordering::Relaxed);
    }
}

/// Truncates to whole microseconds.
pub fn truncate(t: DateTime<Utc>) -> DateTime<Utc> {
    t.duration_trunc(TimeDelta::microseconds(1)).unwrap_or(t)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn advancing_a_clone_moves_the_original() {
        let clock = Clock::system();
        let before = clock.now();
        clock.clone().advance(std::time::Duration::from_secs(3600));
        assert!(clock.now() - before >= TimeDelta::seconds(3600));
    }

    #[test]
    fn now_has_microsecond_precision() {
        assert_eq!(Clock::system().now().timestamp_subsec_nanos() % 1000, 0);
    }
}
