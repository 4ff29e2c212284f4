//! One run of webhook delivery: fan new events out to the subscriptions that
//! want them, then attempt every due delivery once — signed, bounded by the
//! timeout, with exponential backoff and jitter between attempts, and a dead
//! letter after the last. Each delivery is claimed under a lease, so two
//! replicas never attempt the same one at once; a replica that dies mid-way
//! leaves a lease that expires, and the delivery is attempted again (at least
//! once, never lost).

use std::collections::HashMap;
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use futures::StreamExt;
use secrecy::ExposeSecret;
use uuid::Uuid;

use super::events::EventType;
use super::signing::Secret;
use crate::config::webhooks::WebhookSettings;
use crate::services::Deps;
use crate::store::StoreError;
use crate::store::outbox::{AttemptResult, ClaimedDelivery};
use crate::telemetry::metrics as m;

/// Deliveries attempted at once by one replica.
const CONCURRENCY: usize = 8;
/// Deliveries claimed per run.
const BATCH: u64 = 64;

/// How long a run holds its claims: longer than the whole run can take
/// against receivers that all hang (BATCH / CONCURRENCY rounds of one
/// timeout each), with a minute to spare — so no other replica claims a
/// delivery this one is still attempting.
fn lease(settings: &WebhookSettings) -> TimeDelta {
    let rounds = u32::try_from(BATCH.div_ceil(CONCURRENCY as u64)).unwrap_or(u32::MAX);
    TimeDelta::from_std(settings.timeout * rounds).unwrap_or(TimeDelta::hours(1)) + TimeDelta::seconds(60)
}

/// What one run did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DeliveryReport {
    pub fanned_out: u64,
    pub delivered: u64,
    pub retried: u64,
    pub dead: u64,
}

/// The HTTP client deliveries use: bounded, no redirects (a receiver that
/// redirects could send the signed body elsewhere).
pub fn http_client(settings: &WebhookSettings) -> Result<reqwest::Client, reqwest::Error> {
    reqwest::Client::builder()
        .timeout(settings.timeout)
        .connect_timeout(settings.timeout.min(Duration::from_secs(5)))
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("mcp-auth-gateway-webhooks/", env!("CARGO_PKG_VERSION")))
        .build()
}

pub(crate) async fn run_once(
    deps: &Deps,
    http: &reqwest::Client,
    settings: &WebhookSettings,
    now: DateTime<Utc>,
) -> Result<DeliveryReport, StoreError> {
    let mut report = DeliveryReport::default();
    let subscriptions = deps.store.list_webhooks().await?;
    for event in deps.store.unfanned_events(1000).await? {
        let targets: Vec<Uuid> = if event.event_type == EventType::WebhookTest.as_str() {
            // A test ping goes to the one subscription named in its data.
            test_target(deps, event.id).await?.into_iter().collect()
        } else {
            subscriptions.iter().filter(|s| s.enabled && s.events.contains(&event.event_type)).map(|s| s.id).collect()
        };
        deps.store.fan_out(&event, &targets, now).await?;
        report.fanned_out += targets.len() as u64;
    }
    let owner = deps.instance_id.to_string();
    let claimed = deps.store.claim_deliveries(&owner, now, now + lease(settings), BATCH).await?;
    let urls: HashMap<Uuid, String> = subscriptions.iter().map(|s| (s.id, s.url.clone())).collect();
    let results: Vec<(ClaimedDelivery, AttemptResult)> = futures::stream::iter(claimed)
        .map(|delivery| {
            let url = urls.get(&delivery.webhook_id).cloned();
            async move {
                let result = attempt(deps, http, settings, &delivery, url.as_deref(), now).await;
                (delivery, result)
            }
        })
        .buffer_unordered(CONCURRENCY)
        .collect()
        .await;
    for (delivery, result) in results {
        let outcome = match &result {
            AttemptResult::Delivered => {
                report.delivered += 1;
                "delivered"
            }
            AttemptResult::Retry { .. } => {
                report.retried += 1;
                "failed"
            }
            AttemptResult::Dead { .. } => {
                report.dead += 1;
                "dead"
            }
        };
        metrics::counter!(m::WEBHOOK_DELIVERIES, "event" => delivery.event_type.clone(), "outcome" => outcome)
            .increment(1);
        deps.store.record_attempt(delivery.id, &owner, &result, now).await?;
    }
    Ok(report)
}

/// The subscription a `webhook.test` event is for.
async fn test_target(deps: &Deps, event: Uuid) -> Result<Option<Uuid>, StoreError> {
    let payload = deps.store.event_payload(event).await?;
    let target = serde_json::from_str::<serde_json::Value>(&payload)
        .ok()
        .and_then(|v| v["data"]["webhook_id"].as_str().and_then(|s| Uuid::parse_str(s).ok()));
    Ok(target)
}

/// One attempt, and what comes next.
async fn attempt(
    deps: &Deps,
    http: &reqwest::Client,
    settings: &WebhookSettings,
    delivery: &ClaimedDelivery,
    url: Option<&str>,
    now: DateTime<Utc>,
) -> AttemptResult {
    let (Some(url), Ok(Some(secret))) = (url, deps.store.webhook_secret(delivery.webhook_id, &deps.keyring).await)
    else {
        return AttemptResult::Dead { status: None, error: "the subscription was removed".into() };
    };
    let Ok(secret) = Secret::parse(secret.expose_secret()) else {
        return AttemptResult::Dead { status: None, error: "the subscription's secret is unusable".into() };
    };
    let id = delivery.event_id.to_string();
    // The time of this attempt (not of the run): receivers refuse stale timestamps.
    let timestamp = deps.clock.now().timestamp();
    let signature = secret.sign(&id, timestamp, &delivery.payload);
    let sent = http
        .post(url)
        .header("webhook-id", &id)
        .header("webhook-timestamp", timestamp.to_string())
        .header("webhook-signature", signature)
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .body(delivery.payload.clone())
        .send()
        .await;
    let (status, error) = match sent {
        Ok(response) if response.status().is_success() => return AttemptResult::Delivered,
        Ok(response) => (Some(response.status().as_u16()), format!("HTTP {}", response.status().as_u16())),
        Err(err) if err.is_timeout() => (None, "timeout".to_owned()),
        Err(_) => (None, "connection failed".to_owned()),
    };
    next_step(settings, delivery.attempts, status, error, now)
}

/// After failed attempt number `attempts + 1`: the next try (the schedule's
/// wait, ±10 % jitter so receivers coming back are not stampeded), or a dead letter.
pub(crate) fn next_step(
    settings: &WebhookSettings,
    attempts: i32,
    status: Option<u16>,
    error: String,
    now: DateTime<Utc>,
) -> AttemptResult {
    let index = usize::try_from(attempts).unwrap_or(usize::MAX);
    match settings.retry_schedule.get(index) {
        None => AttemptResult::Dead { status, error },
        Some(wait) => {
            let millis = i64::try_from(wait.as_millis()).unwrap_or(i64::MAX);
            let jitter = if millis >= 10 { rand::random::<i64>().rem_euclid(millis / 5 + 1) - millis / 10 } else { 0 };
            AttemptResult::Retry { at: now + TimeDelta::milliseconds(millis + jitter), status, error }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_run_holds_its_claims_longer_than_it_can_take() {
        let settings = WebhookSettings { retry_schedule: vec![], timeout: Duration::from_secs(10) };
        // 64 deliveries, 8 at a time, 10 s each at worst: 80 s.
        assert!(lease(&settings) >= TimeDelta::seconds(80 + 60));
    }

    #[test]
    fn attempts_follow_the_schedule_then_dead_letter() {
        let settings = WebhookSettings {
            retry_schedule: vec![Duration::from_secs(5), Duration::from_secs(300)],
            timeout: Duration::from_secs(1),
        };
        let now = DateTime::from_timestamp(1_000_000, 0).unwrap();
        let at = |attempts| match next_step(&settings, attempts, Some(500), "HTTP 500".into(), now) {
            AttemptResult::Retry { at, .. } => Some((at - now).num_milliseconds()),
            _ => None,
        };
        let first = at(0).unwrap();
        assert!((4500..=5500).contains(&first), "{first}");
        let second = at(1).unwrap();
        assert!((270_000..=330_000).contains(&second), "{second}");
        assert_eq!(at(2), None);
        assert!(matches!(
            next_step(&settings, 2, None, "timeout".into(), now),
            AttemptResult::Dead { status: None, .. }
        ));
    }
}
