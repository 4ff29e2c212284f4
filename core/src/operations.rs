//! What operators ask of the core beyond one user's request: offboarding a
//! user (or a whole domain), webhook subscriptions and their deliveries,
//! revocations to retry, and probes that prove idle grants still work.
//! Another face of [`Services`], kept apart from the request path.

use chrono::{DateTime, TimeDelta, Utc};
use secrecy::SecretString;
use uuid::Uuid;

use crate::credentials::listing::ConnectionFilter;
use crate::credentials::revocations::RevocationReport;
use crate::credentials::{CredentialKey, TokenError};
use crate::email::Email;
use crate::services::Services;
use crate::store::StoreError;
use crate::store::outbox::DeliveryRow;
use crate::store::webhooks::WebhookRow;
use crate::webhooks::delivery::DeliveryReport;
use crate::webhooks::{Event, EventType};

/// What an offboarding did (or, dry, would do) to one grant.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Offboarded {
    pub user_email: String,
    pub provider: String,
    /// `revoked`, `already_invalid`, `failed` (retried by a job; the grant is
    /// deleted here anyway), `not_supported`, or `would_revoke` (dry run).
    pub outcome: &'static str,
}

/// One offboarding.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct OffboardReport {
    pub credentials: Vec<Offboarded>,
    /// Pending sign-ins of the users, cancelled.
    pub sessions_cancelled: u64,
    /// More credentials remain (a domain larger than one call): call again.
    pub more: bool,
}

/// Credentials one domain offboarding handles at most.
pub const DOMAIN_BATCH: u64 = 500;

/// What a probe run did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ProbeReport {
    /// The provider accepted the token: `last_verified_at` moved.
    pub verified: u64,
    /// The provider refused it: a refresh was asked to settle the grant's state.
    pub refused: u64,
    /// No cheap endpoint, or the provider could not be asked.
    pub skipped: u64,
}

impl Services {
    // ---- offboarding ---------------------------------------------------------

    /// Revokes every grant of `email` at its provider, deletes the credentials
    /// and the user's pending sessions, and drops every replica's cached
    /// tokens. Idempotent; a provider that is down does not stop the deletion.
    /// `providers` limits it to those (a caller limited to providers).
    pub async fn offboard(
        &self,
        email: &Email,
        dry_run: bool,
        providers: Option<&[String]>,
    ) -> Result<OffboardReport, OffboardError> {
        let mut report = OffboardReport::default();
        let credentials = self.list_credentials(email).await?;
        let allowed = |p: &str| providers.is_none_or(|list| list.iter().any(|a| a == p));
        for credential in credentials.into_iter().filter(|c| allowed(&c.provider)) {
            let key = CredentialKey { email: email.clone(), provider: credential.provider.clone() };
            report.credentials.push(self.offboard_one(&key, dry_run).await?);
        }
        if !dry_run {
            report.sessions_cancelled = self.deps().store.cancel_pending_sessions(email.as_str(), self.now()).await?;
        }
        Ok(report)
    }

    /// [`Services::offboard`] for every user of `domain`, at most
    /// [`DOMAIN_BATCH`] credentials per call (`more` says to call again).
    pub async fn offboard_domain(
        &self,
        domain: &str,
        dry_run: bool,
        providers: Option<&[String]>,
    ) -> Result<OffboardReport, OffboardError> {
        let filter = ConnectionFilter {
            domain: Some(domain.to_owned()),
            allowed_providers: providers.map(<[String]>::to_vec),
            ..ConnectionFilter::default()
        };
        let page = self.deps().store.list_connections(&filter, None, DOMAIN_BATCH + 1).await?;
        let mut report = OffboardReport { more: page.len() as u64 > DOMAIN_BATCH, ..OffboardReport::default() };
        let mut users = std::collections::BTreeSet::new();
        for connection in page.into_iter().take(usize::try_from(DOMAIN_BATCH).unwrap_or(usize::MAX)) {
            let Ok(email) = Email::parse(&connection.user_email) else { continue };
            let key = CredentialKey { email: email.clone(), provider: connection.provider };
            report.credentials.push(self.offboard_one(&key, dry_run).await?);
            users.insert(email);
        }
        if !dry_run {
            for email in users {
                report.sessions_cancelled +=
                    self.deps().store.cancel_pending_sessions(email.as_str(), self.now()).await?;
            }
        }
        Ok(report)
    }

    async fn offboard_one(&self, key: &CredentialKey, dry_run: bool) -> Result<Offboarded, OffboardError> {
        let outcome = if dry_run {
            "would_revoke"
        } else {
            match self.revoke(key).await {
                Ok(outcome) => outcome.as_str(),
                // Gone meanwhile (another replica, a concurrent offboarding): nothing left to do.
                Err(TokenError::NotAuthenticated) => "already_deleted",
                Err(source) => return Err(OffboardError::Revoke { provider: key.provider.clone(), source }),
            }
        };
        Ok(Offboarded { user_email: key.email.to_string(), provider: key.provider.clone(), outcome })
    }

    /// Retries the revocations providers could not take.
    pub async fn retry_revocations_once(&self, now: DateTime<Utc>) -> Result<RevocationReport, StoreError> {
        crate::credentials::revocations::retry_once(self.deps(), now).await
    }

    /// Revocations waiting for a retry.
    pub async fn pending_revocations(&self) -> Result<u64, StoreError> {
        self.deps().store.pending_revocation_count().await
    }

    // ---- webhooks ------------------------------------------------------------

    /// Adds a subscription; its events must be known names.
    pub async fn add_webhook(
        &self,
        url: &str,
        events: &[EventType],
        secret: &SecretString,
    ) -> Result<Uuid, StoreError> {
        let names: Vec<String> = events.iter().map(|e| e.as_str().to_owned()).collect();
        self.deps().store.add_webhook(url, &names, secret, &self.deps().keyring, self.now()).await
    }

    pub async fn list_webhooks(&self) -> Result<Vec<WebhookRow>, StoreError> {
        self.deps().store.list_webhooks().await
    }

    pub async fn remove_webhook(&self, id: Uuid) -> Result<bool, StoreError> {
        self.deps().store.remove_webhook(id).await
    }

    /// Records `event` in the outbox (for events that are not a row change of
    /// their own, such as the end of a re-encryption).
    pub async fn emit(&self, event: &Event) -> Result<(), StoreError> {
        crate::store::outbox::enqueue(self.deps().store.db(), event, self.now()).await
    }

    /// Queues a signed `webhook.test` ping for subscription `id`.
    pub async fn test_webhook(&self, id: Uuid) -> Result<(), StoreError> {
        let event = Event { kind: EventType::WebhookTest, data: serde_json::json!({"webhook_id": id.to_string()}) };
        self.emit(&event).await
    }

    /// One run of webhook delivery.
    pub async fn deliver_webhooks_once(&self, now: DateTime<Utc>) -> Result<DeliveryReport, StoreError> {
        let (http, settings) = self.webhook_http();
        crate::webhooks::delivery::run_once(self.deps(), http, settings, now).await
    }

    pub async fn list_deliveries(&self, status: Option<&str>, limit: u64) -> Result<Vec<DeliveryRow>, StoreError> {
        self.deps().store.list_deliveries(status, limit).await
    }

    /// (status, count) of deliveries.
    pub async fn delivery_counts(&self) -> Result<Vec<(String, u64)>, StoreError> {
        self.deps().store.delivery_counts().await
    }

    /// Forgets delivered webhooks older than a week.
    pub async fn prune_webhooks(&self, now: DateTime<Utc>) -> Result<u64, StoreError> {
        self.deps().store.prune_webhooks(now - crate::store::outbox::WEBHOOK_RETENTION).await
    }

    // ---- connection health ------------------------------------------------------

    /// Proves idle grants still work: for active credentials not verified
    /// since `stale_before`, asks the provider's userinfo endpoint with the
    /// current access token (a cheap call that changes nothing). Accepted →
    /// `last_verified_at` moves; refused → a refresh settles the grant's
    /// state (a revoked grant becomes `needs_reauth`, with its event).
    pub async fn probe_idle_once(&self, stale_before: DateTime<Utc>, limit: u64) -> Result<ProbeReport, StoreError> {
        let mut report = ProbeReport::default();
        let deps = self.deps();
        for key in deps.store.probe_candidates(stale_before, limit).await? {
            let Some(provider) = deps.providers.get(&key.provider).await else {
                report.skipped += 1;
                continue;
            };
            if provider.userinfo_url.is_none() {
                report.skipped += 1;
                continue;
            }
            // The warm path: a cached token, or one loaded (and refreshed if due).
            // Not a use: a probed grant must not look active.
            let Ok(grant) = self.peek_token(&key).await else {
                report.skipped += 1;
                continue;
            };
            match deps.oauth.userinfo(&provider, &grant.access_token).await {
                Ok(Some(_)) => {
                    deps.store.mark_verified(&key, self.now()).await?;
                    report.verified += 1;
                }
                Err(crate::oauth::client::UpstreamError::InvalidResponse) => {
                    report.refused += 1;
                    // Whatever the refresh finds is recorded by it (and evented); the probe only asks.
                    let force = crate::credentials::Need::ExpiresWithin(std::time::Duration::from_secs(366 * 86_400));
                    let _ = self.refresh(&key, crate::credentials::Trigger::Keepalive, force).await;
                }
                _ => report.skipped += 1,
            }
        }
        Ok(report)
    }
}

/// Why an offboarding stopped (what it did before stays done; calling again continues).
#[derive(Debug, thiserror::Error)]
pub enum OffboardError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("could not revoke the {provider} grant")]
    Revoke {
        provider: String,
        #[source]
        source: TokenError,
    },
}

/// How long a credential may go unproven before the probe looks at it.
pub const PROBE_AFTER: TimeDelta = TimeDelta::hours(24);
