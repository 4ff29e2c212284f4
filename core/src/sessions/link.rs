//! The connect link: showing what it is for (a GET: scanners fetch links
//! first, so nothing is used) and using it once ("Continue").

use chrono::TimeDelta;
use url::Url;

use crate::email::Email;
use crate::services::Deps;
use crate::store::StoreError;

use super::LINK_GRACE;

/// Why a connect link cannot be followed.
#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    #[error("this link was already used, has expired, or does not exist")]
    Unusable,
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("the session actor is unavailable")]
    Actor(#[source] actix::MailboxError),
    #[error("the link's task failed")]
    Task(#[source] tokio::task::JoinError),
    #[error("the provider's redirect URI cannot be built")]
    RedirectUri(#[source] url::ParseError),
    #[error("the session's stored email is not valid")]
    StoredEmail(#[source] crate::email::EmailError),
    #[error("the provider's authorization URL cannot be built")]
    AuthorizeUrl(#[source] crate::oauth::UpstreamError),
}

/// What the connect page shows about a link that can still be followed.
#[derive(Clone, Debug)]
pub struct LinkInfo {
    /// The provider's name as users know it (`Google`, or the id of a generic one).
    pub provider_name: String,
    /// The origin of the provider's authorization endpoint: the page's form
    /// may lead there (after our own redirect).
    pub provider_origin: String,
    /// The account the link is for.
    pub email: String,
}

fn plausible_connect_id(connect_id: &str) -> bool {
    (1..=64).contains(&connect_id.len())
        && connect_id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// What a connect link is for, without using it (a GET of the link: mail and
/// chat scanners fetch links before the user does).
pub(crate) async fn show_link(deps: &Deps, connect_id: &str) -> Result<LinkInfo, LinkError> {
    if !plausible_connect_id(connect_id) {
        return Err(LinkError::Unusable);
    }
    let session = deps.store.peek_link(connect_id, deps.clock.now()).await?.ok_or(LinkError::Unusable)?;
    let provider = deps.providers.get(&session.provider).await.ok_or(LinkError::Unusable)?;
    Ok(LinkInfo {
        provider_name: provider.display_name(),
        provider_origin: provider.auth_url.origin().ascii_serialization(),
        email: session.email,
    })
}

/// Opens a connect link (once: the user pressed "Continue") and returns the
/// provider URL to send the browser to.
pub(crate) async fn open_link(deps: &Deps, connect_id: &str) -> Result<Url, LinkError> {
    if !plausible_connect_id(connect_id) {
        return Err(LinkError::Unusable);
    }
    let now = deps.clock.now();
    let until = now + TimeDelta::from_std(LINK_GRACE).unwrap_or(TimeDelta::MAX);
    let opened = deps.store.open_link(connect_id, &deps.keyring, now, until).await?.ok_or(LinkError::Unusable)?;
    let session = &opened.session;
    let provider = deps.providers.get(&session.provider).await.ok_or(LinkError::Unusable)?;
    let redirect_uri = provider.redirect_uri(&deps.settings.public_url).map_err(LinkError::RedirectUri)?;
    let email = Email::parse(&session.email).map_err(LinkError::StoredEmail)?;
    deps.oauth
        .authorize_url(
            &provider,
            &redirect_uri,
            &session.state,
            opened.pkce_verifier.as_ref(),
            &session.scopes,
            Some(&email),
        )
        .map_err(LinkError::AuthorizeUrl)
}
