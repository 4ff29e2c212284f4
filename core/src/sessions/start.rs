//! Starting a flow: `POST /auth/init` makes a pending session and its
//! one-time connect link, or hands back the identical one still waiting.

use chrono::TimeDelta;
use secrecy::SecretString;
use sha2::{Digest, Sha256};
use url::Url;
use uuid::Uuid;

use crate::email::Email;
use crate::oauth::provider::requested_scopes;
use crate::services::Deps;
use crate::store::sessions::NewSession;
use crate::store::sessions::SessionRecord;
use crate::telemetry::metrics as m;

use super::{FlowError, random_token};

/// `POST /auth/init`, parsed.
#[derive(Debug)]
pub struct StartRequest {
    pub provider: String,
    pub email: Email,
    pub scopes: Option<Vec<String>>,
    pub redirect_after: Option<String>,
    /// The API client starting the flow (only it may read the session).
    pub client: String,
}

#[derive(Debug)]
pub struct Started {
    pub session: SessionRecord,
    pub auth_url: Url,
    /// An earlier identical request's session was returned.
    pub reused: bool,
}

/// Order-independent fingerprint of a scope set.
fn scopes_hash(scopes: &[String]) -> String {
    let mut sorted: Vec<&str> = scopes.iter().map(String::as_str).collect();
    sorted.sort_unstable();
    sorted.dedup();
    let digest = Sha256::digest(sorted.join(" ").as_bytes());
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

fn connect_url(deps: &Deps, connect_id: &str) -> Result<Url, FlowError> {
    deps.settings.public_url.join(&format!("connect/{connect_id}")).map_err(FlowError::ConnectUrl)
}

/// Checks `redirect_after` against the allow-list: http(s), a listed host.
pub fn check_redirect(target: &str, allowed_hosts: &[String]) -> Result<String, FlowError> {
    let url =
        Url::parse(target).map_err(|_| FlowError::InvalidRequest("redirect_after is not an absolute URL.".into()))?;
    if !matches!(url.scheme(), "https" | "http") {
        return Err(FlowError::InvalidRequest("redirect_after must be an http(s) URL.".into()));
    }
    let host = url.host_str().unwrap_or_default().to_ascii_lowercase();
    if !allowed_hosts.contains(&host) {
        return Err(FlowError::InvalidRequest(format!(
            "redirect_after's host {host:?} is not allowed; the operator lists allowed hosts in AUTH_GATEWAY_REDIRECT_HOSTS."
        )));
    }
    Ok(url.to_string())
}

/// Starts a flow, or hands back the identical one still waiting for its user.
#[tracing::instrument(name = "start_flow", skip_all, fields(provider = %req.provider))]
pub(crate) async fn start(deps: &Deps, req: StartRequest) -> Result<Started, FlowError> {
    let provider =
        deps.providers.get(&req.provider).await.ok_or_else(|| FlowError::UnknownProvider(req.provider.clone()))?;
    let redirect_after =
        req.redirect_after.as_deref().map(|r| check_redirect(r, &deps.settings.redirect_hosts)).transpose()?;
    let scopes = requested_scopes(&provider, req.scopes.as_deref());
    let now = deps.clock.now();
    let expiry = TimeDelta::from_std(deps.settings.session_expiry).unwrap_or(TimeDelta::minutes(15));
    let new = NewSession {
        id: Uuid::new_v4(),
        email: req.email.to_string(),
        provider: provider.id.clone(),
        state: random_token(),
        connect_id: random_token(),
        pkce_verifier: provider.pkce.then(|| SecretString::from(random_token())),
        scopes_hash: scopes_hash(&scopes),
        scopes,
        redirect_after,
        expires_at: now + expiry,
        client: req.client.clone(),
    };
    let (session, reused) = deps.store.create_or_reuse_session(new, &deps.keyring, now).await?;
    if !reused {
        metrics::counter!(m::SESSIONS_CREATED, "provider" => provider.id.clone()).increment(1);
    }
    let connect_id = session.connect_id.clone().ok_or(FlowError::NoConnectId)?;
    Ok(Started { auth_url: connect_url(deps, &connect_id)?, session, reused })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scope_hashes_ignore_order_and_duplicates() {
        let a = scopes_hash(&["b".into(), "a".into()]);
        assert_eq!(a, scopes_hash(&["a".into(), "b".into(), "a".into()]));
        assert_ne!(a, scopes_hash(&["a".into()]));
    }

    #[test]
    fn redirects_only_to_allowed_hosts() {
        let allowed = vec!["app.example.com".to_owned()];
        assert!(check_redirect("https://app.example.com/done?x=1", &allowed).is_ok());
        for bad in ["https://evil.example.com/", "javascript:alert(1)", "//app.example.com", "ftp://app.example.com/"] {
            assert!(check_redirect(bad, &allowed).is_err(), "{bad}");
        }
        assert!(check_redirect("https://app.example.com/", &[]).is_err());
    }
}
