//! What the gateway knows about one OAuth provider: endpoints, client
//! credentials, and the behaviours that differ between providers.

use std::fmt;

use secrecy::SecretString;
use url::Url;

/// Built-in providers behave in their own ways; everything else is generic
/// OAuth 2.0.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProviderKind {
    /// `access_type=offline`, `prompt=consent`; refresh responses omit the
    /// refresh token (keep the stored one); a first grant must carry one.
    Google,
    /// Tenant in the URLs, `offline_access`; refresh tokens rotate on every refresh.
    Microsoft,
    /// No refresh tokens: a long-lived token is renewed by `fb_exchange_token`.
    Meta,
    Generic,
}

impl ProviderKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Google => "google",
            Self::Microsoft => "microsoft",
            Self::Meta => "meta",
            Self::Generic => "generic",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "google" => Self::Google,
            "microsoft" => Self::Microsoft,
            "meta" => Self::Meta,
            "generic" => Self::Generic,
            _ => return None,
        })
    }
}

/// How the client authenticates at the token endpoint (RFC 6749 §2.3.1).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClientAuth {
    /// HTTP Basic with the form-urlencoded id and secret.
    Basic,
    /// `client_id` and `client_secret` in the request body.
    Post,
}

impl ClientAuth {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Basic => "client_secret_basic",
            Self::Post => "client_secret_post",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "client_secret_basic" | "basic" => Some(Self::Basic),
            "client_secret_post" | "post" => Some(Self::Post),
            _ => None,
        }
    }
}

/// Whether the account that consented must be the session's user.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IdentityCheck {
    /// The provider must say who consented, and it must be the session's user.
    Required,
    /// Checked when the provider says who consented; accepted otherwise.
    Optional,
    Off,
}

impl IdentityCheck {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Required => "required",
            Self::Optional => "optional",
            Self::Off => "off",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "required" => Some(Self::Required),
            "optional" => Some(Self::Optional),
            "off" => Some(Self::Off),
            _ => None,
        }
    }
}

/// Where a provider's configuration came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProviderSource {
    /// Environment variables (the design document's `GOOGLE_CLIENT_ID`, ...).
    Env,
    /// The `oauth_providers` table, managed by `gateway providers add|remove`.
    Database,
}

/// One provider, ready to use. The client secret is only exposed when a
/// request to the provider is built.
#[derive(Clone)]
pub struct ProviderConfig {
    pub id: String,
    pub kind: ProviderKind,
    pub client_id: String,
    pub client_secret: SecretString,
    pub auth_url: Url,
    pub token_url: Url,
    pub revocation_url: Option<Url>,
    pub userinfo_url: Option<Url>,
    /// Scopes asked for when the caller names none.
    pub default_scopes: Vec<String>,
    /// Extra authorization parameters (`access_type=offline`, ...).
    pub auth_params: Vec<(String, String)>,
    pub pkce: bool,
    pub client_auth: ClientAuth,
    pub identity_check: IdentityCheck,
    /// Whether to send `login_hint=<user_email>`.
    pub login_hint: bool,
    /// The callback URL registered at the provider; defaults to
    /// `<PUBLIC_BASE_URL>/auth/callback/<id>`.
    pub redirect_uri: Option<Url>,
    pub source: ProviderSource,
    /// The `iss` values an id_token may carry (empty: not checked). A
    /// `{tenantid}` in one is replaced by the token's `tid` (Microsoft).
    pub issuers: Vec<String>,
    /// The operator vouches that this provider verifies every address it
    /// reports, so a missing `email_verified` counts as verified (an explicit
    /// opt-in: `<ID>_TRUST_UNVERIFIED_EMAIL`, `--trust-unverified-email`).
    pub trust_unverified_email: bool,
    /// Microsoft: which tenants vouch for their users' addresses.
    pub tenant_rule: Option<TenantRule>,
}

/// Which Entra tenants vouch for a Microsoft account's email address: the
/// id_token's `tid` must be one of them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TenantRule {
    /// `MICROSOFT_TENANT` is a tenant id (or `consumers`).
    One(String),
    /// `MICROSOFT_TENANT` is `common` or `organizations`: `MICROSOFT_ALLOWED_TENANTS`.
    AnyOf(Vec<String>),
}

/// The tenant id of personal Microsoft accounts (`consumers`).
pub const CONSUMERS_TENANT_ID: &str = "9188040d-6c67-4c5b-b112-36a304b66dad";

/// The Graph resource prefix Microsoft leaves out of the scopes it grants.
const GRAPH: &str = "https://graph.microsoft.com/";

/// Whether the granted scope `granted` is the required `required`. Exact,
/// except for Microsoft Graph, which grants `Mail.Read` for the
/// `https://graph.microsoft.com/Mail.Read` that was asked (and compares
/// case-insensitively).
pub fn scope_satisfies(granted: &str, required: &str) -> bool {
    if granted == required {
        return true;
    }
    let strip = |s: &str| {
        s.get(..GRAPH.len()).filter(|prefix| prefix.eq_ignore_ascii_case(GRAPH)).map(|_| s[GRAPH.len()..].to_owned())
    };
    match (strip(granted), strip(required)) {
        (None, None) => false,
        (g, r) => g.as_deref().unwrap_or(granted).eq_ignore_ascii_case(r.as_deref().unwrap_or(required)),
    }
}

impl fmt::Debug for ProviderConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ProviderConfig")
            .field("id", &self.id)
            .field("kind", &self.kind)
            .field("client_id", &self.client_id)
            .field("auth_url", &self.auth_url.as_str())
            .field("token_url", &self.token_url.as_str())
            .field("source", &self.source)
            .field("issuers", &self.issuers)
            .field("trust_unverified_email", &self.trust_unverified_email)
            .field("tenant_rule", &self.tenant_rule)
            .finish_non_exhaustive()
    }
}

impl ProviderConfig {
    /// Scopes that let the provider tell who consented, added to every
    /// authorization request unless the identity check is off.
    pub fn identity_scopes(&self) -> &'static [&'static str] {
        if self.identity_check == IdentityCheck::Off {
            return &[];
        }
        match self.kind {
            ProviderKind::Google | ProviderKind::Microsoft => &["openid", "email"],
            ProviderKind::Meta => &["email"],
            ProviderKind::Generic => &[],
        }
    }

    /// Which of its endpoints are plain http (by name), for the production rule.
    pub fn plain_http_endpoints(&self) -> Vec<&'static str> {
        [
            ("auth_url", Some(&self.auth_url)),
            ("token_url", Some(&self.token_url)),
            ("revocation_url", self.revocation_url.as_ref()),
            ("userinfo_url", self.userinfo_url.as_ref()),
            ("redirect_uri", self.redirect_uri.as_ref()),
        ]
        .into_iter()
        .filter(|(_, url)| url.is_some_and(|u| u.scheme() != "https"))
        .map(|(name, _)| name)
        .collect()
    }

    /// The provider's name as users know it.
    pub fn display_name(&self) -> String {
        match self.kind {
            ProviderKind::Google => "Google".to_owned(),
            ProviderKind::Microsoft => "Microsoft".to_owned(),
            ProviderKind::Meta => "Meta".to_owned(),
            ProviderKind::Generic => self.id.clone(),
        }
    }

    /// Scopes needed for a refresh path on this provider.
    pub fn offline_scopes(&self) -> &'static [&'static str] {
        match self.kind {
            ProviderKind::Microsoft => &["offline_access"],
            _ => &[],
        }
    }

    /// The redirect URI for this provider under `public_url`.
    pub fn redirect_uri(&self, public_url: &Url) -> Result<Url, url::ParseError> {
        match &self.redirect_uri {
            Some(uri) => Ok(uri.clone()),
            None => public_url.join(&format!("auth/callback/{}", self.id)),
        }
    }

    /// Whether this provider renews tokens by exchanging the current one
    /// (Meta) rather than with a refresh token.
    pub fn renews_by_exchange(&self) -> bool {
        self.kind == ProviderKind::Meta
    }
}

/// The scopes a flow asks for: the caller's (or the provider's defaults),
/// plus the identity and offline scopes, without duplicates, in a stable order.
pub fn requested_scopes(provider: &ProviderConfig, caller: Option<&[String]>) -> Vec<String> {
    let mut scopes: Vec<String> = match caller {
        Some(s) if !s.is_empty() => s.to_vec(),
        _ => provider.default_scopes.clone(),
    };
    for extra in provider.identity_scopes().iter().chain(provider.offline_scopes()) {
        if !scopes.iter().any(|s| s == extra) {
            scopes.push((*extra).to_owned());
        }
    }
    scopes
}

/// A provider for unit tests: client id `cid`, endpoints on example.com.
#[cfg(test)]
pub fn test_provider(kind: ProviderKind) -> ProviderConfig {
    let url = |p: &str| Url::parse(&format!("https://idp.example.com/{p}")).unwrap_or_else(|_| unreachable!());
    ProviderConfig {
        id: kind.as_str().to_owned(),
        kind,
        client_id: "cid".to_owned(),
        client_secret: SecretString::from("secret".to_owned()),
        auth_url: url("authorize"),
        token_url: url("token"),
        revocation_url: None,
        userinfo_url: None,
        default_scopes: Vec::new(),
        auth_params: Vec::new(),
        pkce: true,
        client_auth: ClientAuth::Basic,
        identity_check: IdentityCheck::Required,
        login_hint: true,
        redirect_uri: None,
        source: ProviderSource::Env,
        issuers: Vec::new(),
        trust_unverified_email: false,
        tenant_rule: None,
    }
}

/// Well-known endpoints of the built-in providers.
pub mod endpoints {
    pub const GOOGLE_AUTH: &str = "https://accounts.google.com/o/oauth2/v2/auth";
    pub const GOOGLE_TOKEN: &str = "https://oauth2.googleapis.com/token";
    pub const GOOGLE_REVOKE: &str = "https://oauth2.googleapis.com/revoke";
    pub const GOOGLE_USERINFO: &str = "https://openidconnect.googleapis.com/v1/userinfo";
    pub const MICROSOFT_BASE: &str = "https://login.microsoftonline.com";
    pub const MICROSOFT_USERINFO: &str = "https://graph.microsoft.com/oidc/userinfo";
    pub const MICROSOFT_ISSUER: &str = "https://login.microsoftonline.com/{tenantid}/v2.0";
    pub const GOOGLE_ISSUERS: [&str; 2] = ["https://accounts.google.com", "accounts.google.com"];
    pub const META_AUTH: &str = "https://www.facebook.com/v19.0/dialog/oauth";
    pub const META_TOKEN: &str = "https://graph.facebook.com/v19.0/oauth/access_token";
    pub const META_USERINFO: &str = "https://graph.facebook.com/v19.0/me?fields=email";
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_http_endpoints_are_named() {
        let mut p = test_provider(ProviderKind::Generic);
        assert!(p.plain_http_endpoints().is_empty());
        p.token_url = Url::parse("http://idp.example.com/token").unwrap();
        p.userinfo_url = Some(Url::parse("http://idp.example.com/me").unwrap());
        assert_eq!(p.plain_http_endpoints(), ["token_url", "userinfo_url"]);
    }

    #[test]
    fn graph_scopes_match_their_short_names() {
        assert!(scope_satisfies("Mail.Read", "https://graph.microsoft.com/Mail.Read"));
        assert!(scope_satisfies("mail.read", "https://graph.microsoft.com/Mail.Read"));
        assert!(scope_satisfies("https://graph.microsoft.com/Mail.Read", "Mail.Read"));
        assert!(!scope_satisfies("Mail.Send", "https://graph.microsoft.com/Mail.Read"));
        // Everything else is exact (RFC 6749 §3.3: scopes are case-sensitive).
        assert!(scope_satisfies("mail.read", "mail.read"));
        assert!(!scope_satisfies("Mail.Read", "mail.read"));
        assert!(!scope_satisfies("https://www.googleapis.com/auth/gmail.readonly", "gmail.readonly"));
    }
}
