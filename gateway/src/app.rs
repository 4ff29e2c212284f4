//! The application state shared by every handler: services and actor
//! addresses, all cheap to clone.

use std::sync::Arc;

use crate::clock::Clock;
use crate::crypto::Keyring;
use crate::health;
use crate::store::Store;

#[derive(Clone, Debug)]
pub struct AppState {
    pub store: Store,
    pub keyring: Arc<Keyring>,
    pub clock: Clock,
    /// SHA-256 of the API key; the key itself is not kept.
    pub api_key_digest: [u8; 32],
    /// Where users reach this gateway; connect links and redirect URIs start here.
    pub public_url: url::Url,
}

impl AppState {
    pub async fn health(&self) -> health::Report {
        health::probe(&self.store, &self.keyring, self.clock.now()).await
    }
}
