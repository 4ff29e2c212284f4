//! What every handler holds: the core's services facade, the jobs (for the
//! admin endpoints), and the HTTP layer's own settings. axum clones the state
//! for every request, so it is one `Arc` (one atomic increment).

use std::sync::Arc;

use crate::core::Services;
use crate::core::access::limits::Limits;

#[derive(Clone, Debug)]
pub struct AppState(Arc<AppInner>);

#[derive(Debug)]
pub struct AppInner {
    pub services: Services,
    /// The scheduled jobs, callable directly (tests, admin), and re-encryption's actor.
    pub workers: Arc<workers::Workers>,
    /// Rate limits per client and per source address.
    pub limits: Arc<Limits>,
    /// Proxies whose `X-Forwarded-For` names the real source address.
    pub trusted_proxies: Vec<ipnet::IpNet>,
    /// Origins allowed by CORS (none by default).
    pub cors_origins: Vec<String>,
}

impl AppState {
    pub fn new(inner: AppInner) -> Self {
        Self(Arc::new(inner))
    }
}

impl std::ops::Deref for AppState {
    type Target = AppInner;

    fn deref(&self) -> &AppInner {
        &self.0
    }
}
