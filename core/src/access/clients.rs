//! API clients and their rights.
//!
//! Each client's key is stored as its SHA-256 digest, never the key. A
//! request's `X-API-Key` is hashed once and looked up by digest (a lookup by
//! a digest of a high-entropy key reveals nothing about any key); the
//! bootstrap key is compared in constant time. After `gateway clients rotate`,
//! the old digest stays valid until its grace period ends.
//!
//! The in-memory table is reloaded from the database every few seconds and
//! on a miss (at most every second), and at once on PostgreSQL when another
//! process changes a client (LISTEN/NOTIFY), so `gateway clients disable`
//! takes effect everywhere within seconds.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use ipnet::IpNet;
use serde::{Deserialize, Serialize};
use subtle::ConstantTimeEq;

use crate::email::Email;
use crate::store::Store;
use crate::store::clients::ClientRecord;

/// Reload the table at least this often.
pub const RELOAD_EVERY: Duration = Duration::from_secs(5);
const RELOAD_ON_MISS_AT_MOST_EVERY: Duration = Duration::from_secs(1);

/// What a client may do (one per group of routes).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// `POST /auth/init`
    Init,
    /// `GET /auth/status`, `GET /auth/providers`
    Status,
    /// `POST /auth/token`
    Token,
    /// `DELETE /auth/revoke`
    Revoke,
    /// `/admin/*`
    Admin,
}

impl Action {
    pub const ALL: [Action; 5] = [Action::Init, Action::Status, Action::Token, Action::Revoke, Action::Admin];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Init => "init",
            Self::Status => "status",
            Self::Token => "token",
            Self::Revoke => "revoke",
            Self::Admin => "admin",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|a| a.as_str() == s)
    }
}

/// Why a request is outside the caller's rights (the `forbidden` message).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Denied(pub String);

/// A caller and its rights. `None` in a list means "any".
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Client {
    /// `bootstrap`, or the client's UUID.
    pub id: String,
    pub name: String,
    pub actions: Vec<Action>,
    pub providers: Option<Vec<String>>,
    pub domains: Option<Vec<String>>,
    pub networks: Option<Vec<IpNet>>,
    pub enabled: bool,
    /// The `aud` values of its MCP server's subject tokens (token exchange).
    pub audiences: Vec<String>,
    /// Token exchange only: `/auth/token` with a named user is refused.
    pub require_exchange: bool,
    /// The public JWK its headless workers sign assertions with.
    pub assertion_key: Option<String>,
}

pub const BOOTSTRAP: &str = "bootstrap";

impl Client {
    /// `AUTH_GATEWAY_API_KEY`: every right, from anywhere.
    pub fn bootstrap() -> Self {
        Self {
            id: BOOTSTRAP.into(),
            name: BOOTSTRAP.into(),
            actions: Action::ALL.to_vec(),
            providers: None,
            domains: None,
            networks: None,
            enabled: true,
            audiences: Vec::new(),
            require_exchange: false,
            assertion_key: None,
        }
    }

    pub fn from_record(record: &ClientRecord) -> Self {
        Self {
            id: record.id.to_string(),
            name: record.name.clone(),
            actions: record.actions.clone(),
            providers: record.providers.clone(),
            domains: record.domains.clone(),
            networks: record.networks.as_ref().map(|n| n.iter().filter_map(|c| c.parse().ok()).collect()),
            enabled: record.enabled,
            audiences: record.exchange.audiences.clone(),
            require_exchange: record.exchange.require_exchange,
            assertion_key: record.exchange.assertion_key.clone(),
        }
    }

    /// `/auth/token`, `/auth/init` and `/auth/providers/{email}` name their
    /// user; a client bound to token exchange may not.
    pub fn check_may_name_users(&self) -> Result<(), Denied> {
        if self.require_exchange {
            Err(Denied(format!(
                "The API client {} must prove its user: exchange the user's access token at POST /oauth/token.",
                self.name
            )))
        } else {
            Ok(())
        }
    }

    pub fn check_enabled(&self) -> Result<(), Denied> {
        if self.enabled { Ok(()) } else { Err(Denied(format!("The API client {} is disabled.", self.name))) }
    }

    pub fn check_source(&self, ip: IpAddr) -> Result<(), Denied> {
        match &self.networks {
            Some(networks) if !networks.iter().any(|n| n.contains(&ip)) => {
                Err(Denied(format!("The API client {} may not call from {ip}.", self.name)))
            }
            _ => Ok(()),
        }
    }

    pub fn check_action(&self, action: Action) -> Result<(), Denied> {
        if self.actions.contains(&action) {
            Ok(())
        } else {
            Err(Denied(format!("The API client {} may not use {}.", self.name, action.as_str())))
        }
    }

    pub fn check_provider(&self, provider: &str) -> Result<(), Denied> {
        match &self.providers {
            Some(providers) if !providers.iter().any(|p| p == provider) => {
                Err(Denied(format!("The API client {} may not use the provider {provider}.", self.name)))
            }
            _ => Ok(()),
        }
    }

    pub fn may_use_provider(&self, provider: &str) -> bool {
        self.check_provider(provider).is_ok()
    }

    pub fn check_email(&self, email: &Email) -> Result<(), Denied> {
        match &self.domains {
            Some(domains) if !domains.iter().any(|d| d.eq_ignore_ascii_case(email.domain())) => {
                Err(Denied(format!("The API client {} may not act for users of {}.", self.name, email.domain())))
            }
            _ => Ok(()),
        }
    }

    /// Every check an API request makes, in one call.
    pub fn allow(&self, action: Action, provider: Option<&str>, email: Option<&Email>) -> Result<(), Denied> {
        self.check_action(action)?;
        if let Some(provider) = provider {
            self.check_provider(provider)?;
        }
        if let Some(email) = email {
            self.check_email(email)?;
        }
        Ok(())
    }
}

/// A digest's client, and until when the digest is valid (rotation grace).
#[derive(Clone, Debug)]
struct Entry {
    client: Arc<Client>,
    valid_until: Option<DateTime<Utc>>,
}

#[derive(Debug)]
pub struct Clients {
    bootstrap: Option<([u8; 32], Arc<Client>)>,
    by_digest: RwLock<HashMap<[u8; 32], Entry>>,
    last_reload: std::sync::Mutex<Instant>,
    store: Store,
}

/// Hex of a digest (the form stored in `api_clients.key_digest`).
pub fn hex(digest: &[u8; 32]) -> String {
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(text: &str) -> Option<[u8; 32]> {
    let mut out = [0u8; 32];
    if text.len() != 64 {
        return None;
    }
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(text.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

impl Clients {
    pub fn new(store: Store, bootstrap_digest: Option<[u8; 32]>) -> Self {
        Self {
            bootstrap: bootstrap_digest.map(|d| (d, Arc::new(Client::bootstrap()))),
            by_digest: RwLock::new(HashMap::new()),
            last_reload: std::sync::Mutex::new(Instant::now()),
            store,
        }
    }

    /// Re-reads every client from the database.
    pub async fn reload(&self) -> Result<(), crate::store::StoreError> {
        let records = self.store.list_clients().await?;
        let mut map = HashMap::new();
        for record in &records {
            let client = Arc::new(Client::from_record(record));
            if let Some(digest) = unhex(&record.key_digest) {
                map.insert(digest, Entry { client: client.clone(), valid_until: None });
            }
            if let (Some(previous), Some(until)) = (&record.previous_key_digest, record.previous_key_valid_until)
                && let Some(digest) = unhex(previous)
            {
                map.insert(digest, Entry { client, valid_until: Some(until) });
            }
        }
        if let Ok(mut table) = self.by_digest.write() {
            *table = map;
        }
        if let Ok(mut last) = self.last_reload.lock() {
            *last = Instant::now();
        }
        Ok(())
    }

    fn lookup(&self, digest: &[u8; 32], now: DateTime<Utc>) -> Option<Arc<Client>> {
        if let Some((bootstrap, client)) = &self.bootstrap
            && bool::from(bootstrap.ct_eq(digest))
        {
            return Some(client.clone());
        }
        let table = self.by_digest.read().ok()?;
        let entry = table.get(digest)?;
        entry.valid_until.is_none_or(|until| until > now).then(|| entry.client.clone())
    }

    /// The client whose key has `digest`, reloading once on a miss (a client
    /// added a moment ago by another process).
    pub async fn authenticate(&self, digest: &[u8; 32], now: DateTime<Utc>) -> Option<Arc<Client>> {
        if let Some(client) = self.lookup(digest, now) {
            return Some(client);
        }
        let due = self.last_reload.lock().ok().is_some_and(|t| t.elapsed() >= RELOAD_ON_MISS_AT_MOST_EVERY);
        if due && let Err(err) = self.reload().await {
            tracing::warn!(error = %err, "could not reload API clients");
        }
        self.lookup(digest, now)
    }

    /// Reloads every [`RELOAD_EVERY`] and whenever `events` says clients changed.
    pub fn spawn_reloader(
        self: &Arc<Self>,
        events: tokio::sync::broadcast::Receiver<crate::events::Event>,
        stop: crate::events::Stop,
    ) -> tokio::task::JoinHandle<()> {
        let wants = |e: &crate::events::Event| matches!(e, crate::events::Event::Clients);
        crate::events::spawn_reloader(self, events, RELOAD_EVERY, wants, "API clients", stop, |clients| async move {
            clients.reload().await
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn client() -> Client {
        Client {
            id: "c1".into(),
            name: "gmail-mcp".into(),
            actions: vec![Action::Token, Action::Init],
            providers: Some(vec!["google".into()]),
            domains: Some(vec!["company.com".into()]),
            networks: Some(vec!["10.0.0.0/8".parse().unwrap()]),
            enabled: true,
            audiences: vec![],
            require_exchange: false,
            assertion_key: None,
        }
    }

    #[test]
    fn rights_are_checked_one_by_one_with_a_reason() {
        let c = client();
        let alice = Email::parse("alice@company.com").unwrap();
        let eve = Email::parse("eve@other.org").unwrap();
        assert!(c.allow(Action::Token, Some("google"), Some(&alice)).is_ok());
        assert!(c.allow(Action::Revoke, Some("google"), Some(&alice)).unwrap_err().0.contains("revoke"));
        assert!(c.allow(Action::Token, Some("microsoft"), Some(&alice)).unwrap_err().0.contains("microsoft"));
        assert!(c.allow(Action::Token, Some("google"), Some(&eve)).unwrap_err().0.contains("other.org"));
        assert!(c.check_source("10.1.2.3".parse().unwrap()).is_ok());
        assert!(c.check_source("192.168.1.1".parse().unwrap()).is_err());
        assert!(Client { enabled: false, ..client() }.check_enabled().is_err());
    }

    #[test]
    fn the_bootstrap_client_may_do_everything() {
        let b = Client::bootstrap();
        for action in Action::ALL {
            assert!(b.allow(action, Some("any"), Some(&Email::parse("x@y.zz").unwrap())).is_ok());
        }
        assert!(b.check_source("203.0.113.9".parse().unwrap()).is_ok());
    }

    #[test]
    fn digests_round_trip_through_hex() {
        let d = crate::access::digest(b"key");
        assert_eq!(unhex(&hex(&d)), Some(d));
        assert_eq!(unhex("zz"), None);
    }
}
