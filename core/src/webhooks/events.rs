//! What the gateway tells subscribers, and the shape it is told in (the
//! Standard Webhooks payload: `{"type", "timestamp", "data"}`). Payloads
//! carry ids, the user, the provider, times and categories — never a token.

use chrono::{DateTime, Utc};
use serde_json::{Value, json};

/// The event types, as subscribed to and delivered.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum EventType {
    /// A user completed a consent: a grant is stored.
    CredentialConnected,
    /// A grant's tokens were refreshed (noisy: subscribe explicitly).
    CredentialRefreshed,
    /// A grant can no longer be refreshed; the user must consent again.
    CredentialNeedsReauth,
    /// A grant was revoked and deleted (by an MCP server, an operator, an offboarding).
    CredentialRevoked,
    /// A consent flow failed (with the reason).
    SessionFailed,
    /// A provider refuses the gateway's own client (`invalid_client`, `unauthorized_client`).
    ProviderFailing,
    /// A provider accepts the gateway's client again.
    ProviderRecovered,
    /// A re-encryption walk finished: no value is left under old keys.
    KeysReencryptionFinished,
    /// `gateway webhooks test`: a signed ping.
    WebhookTest,
}

impl EventType {
    pub const ALL: [EventType; 9] = [
        Self::CredentialConnected,
        Self::CredentialRefreshed,
        Self::CredentialNeedsReauth,
        Self::CredentialRevoked,
        Self::SessionFailed,
        Self::ProviderFailing,
        Self::ProviderRecovered,
        Self::KeysReencryptionFinished,
        Self::WebhookTest,
    ];

    /// What a subscription gets when it names no events: everything but the
    /// noisy `credential.refreshed` (and test pings, which go to one subscription).
    pub fn default_set() -> Vec<EventType> {
        Self::ALL.into_iter().filter(|e| !matches!(e, Self::CredentialRefreshed | Self::WebhookTest)).collect()
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::CredentialConnected => "credential.connected",
            Self::CredentialRefreshed => "credential.refreshed",
            Self::CredentialNeedsReauth => "credential.needs_reauth",
            Self::CredentialRevoked => "credential.revoked",
            Self::SessionFailed => "session.failed",
            Self::ProviderFailing => "provider.failing",
            Self::ProviderRecovered => "provider.recovered",
            Self::KeysReencryptionFinished => "keys.reencryption_finished",
            Self::WebhookTest => "webhook.test",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|e| e.as_str() == s)
    }
}

/// One event to record in the outbox.
#[derive(Clone, Debug, PartialEq)]
pub struct Event {
    pub kind: EventType,
    pub data: Value,
}

impl Event {
    pub fn credential(kind: EventType, provider: &str, user_email: &str) -> Self {
        Self { kind, data: json!({"provider": provider, "user_email": user_email}) }
    }

    /// A re-encryption walk ended with nothing left under old keys.
    pub fn reencryption_finished(primary_key_id: &str, reencrypted: u64, undecryptable: usize) -> Self {
        Self {
            kind: EventType::KeysReencryptionFinished,
            data: json!({"primary_key_id": primary_key_id, "reencrypted": reencrypted, "undecryptable": undecryptable}),
        }
    }

    /// Adds `key: value` to the data.
    pub fn with(mut self, key: &str, value: impl Into<Value>) -> Self {
        if let Value::Object(map) = &mut self.data {
            map.insert(key.to_owned(), value.into());
        }
        self
    }

    /// The delivered body.
    pub fn payload(&self, at: DateTime<Utc>) -> String {
        json!({
            "type": self.kind.as_str(),
            "timestamp": at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            "data": self.data,
        })
        .to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_refreshed_is_opt_in() {
        for e in EventType::ALL {
            assert_eq!(EventType::parse(e.as_str()), Some(e));
        }
        assert!(!EventType::default_set().contains(&EventType::CredentialRefreshed));
        assert!(EventType::default_set().contains(&EventType::CredentialRevoked));
    }

    #[test]
    fn payloads_follow_the_standard_shape() {
        let at = DateTime::from_timestamp(1_764_547_200, 0).unwrap();
        let e =
            Event::credential(EventType::CredentialNeedsReauth, "google", "a@b.co").with("category", "invalid_grant");
        let body: Value = serde_json::from_str(&e.payload(at)).unwrap();
        assert_eq!(body["type"], "credential.needs_reauth");
        assert_eq!(body["timestamp"], "2025-12-01T00:00:00.000Z");
        assert_eq!(body["data"], json!({"provider": "google", "user_email": "a@b.co", "category": "invalid_grant"}));
    }
}
