//! Webhook delivery: `WEBHOOK_RETRY_SCHEDULE_SECONDS` (the waits between
//! attempts, comma-separated; default `5,300,1800,7200,18000,36000,36000`,
//! the Standard Webhooks schedule: 8 attempts over about 27 hours, then the
//! delivery is dead-lettered) and `WEBHOOK_TIMEOUT_SECONDS` (10: a receiver
//! that has not answered by then counts as failed).

use std::time::Duration;

use super::{ConfigErrors, Source};

pub const RETRY_SCHEDULE: &str = "WEBHOOK_RETRY_SCHEDULE_SECONDS";
pub const TIMEOUT: &str = "WEBHOOK_TIMEOUT_SECONDS";
const DEFAULT_SCHEDULE: [u64; 7] = [5, 300, 1800, 7200, 18_000, 36_000, 36_000];

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WebhookSettings {
    /// The wait after each failed attempt; its length + 1 is the number of attempts.
    pub retry_schedule: Vec<Duration>,
    pub timeout: Duration,
}

impl Default for WebhookSettings {
    fn default() -> Self {
        Self { retry_schedule: DEFAULT_SCHEDULE.map(Duration::from_secs).to_vec(), timeout: Duration::from_secs(10) }
    }
}

pub fn parse(src: &Source, errs: &mut ConfigErrors) -> WebhookSettings {
    let mut settings = WebhookSettings::default();
    if let Some(raw) = src.get(RETRY_SCHEDULE) {
        let parsed: Result<Vec<u64>, _> = raw.split(',').map(|s| s.trim().parse::<u64>()).collect();
        match parsed {
            Ok(list) if !list.is_empty() && list.len() <= 20 && list.iter().all(|s| *s <= 86_400) => {
                settings.retry_schedule = list.into_iter().map(Duration::from_secs).collect();
            }
            _ => errs.push(
                RETRY_SCHEDULE,
                "is not a list of 1 to 20 waits in seconds (each at most 86400)",
                "set it like 5,300,1800",
            ),
        }
    }
    if let Some(secs) = src.number(TIMEOUT, 10, 1..=60, "seconds", errs) {
        settings.timeout = Duration::from_secs(secs);
    }
    settings
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_schedule_defaults_to_the_standard_and_can_be_shortened() {
        let mut errs = ConfigErrors::default();
        assert_eq!(parse(&Source::default(), &mut errs), WebhookSettings::default());
        let s = parse(&Source::from_pairs([(RETRY_SCHEDULE, "0, 1")]), &mut errs);
        assert_eq!(s.retry_schedule, vec![Duration::ZERO, Duration::from_secs(1)]);
        assert!(errs.is_empty());
        parse(&Source::from_pairs([(RETRY_SCHEDULE, "soon")]), &mut errs);
        assert!(errs.names(RETRY_SCHEDULE));
    }
}
