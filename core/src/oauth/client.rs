//! Requests to providers, and the one place their failures are classified.
//!
//! The `oauth2` crate builds authorization URLs (state, PKCE S256) and runs
//! the code and refresh grants. It sends them through `OAuthClient::send`,
//! our reqwest-backed transport, which turns 429 and 5xx answers into
//! transport errors *before* `oauth2` parses them, so the status and
//! `Retry-After` survive. Revocation (RFC 7009; `oauth2` insists on https even
//! towards a local test provider), userinfo and Meta's `fb_exchange_token`
//! are plain reqwest calls.
//!
//! No error built here carries a response body: providers echo tokens in
//! them, and `oauth2`'s parse errors hold the whole body.
//!
//! What a provider sends is bounded before it is believed: bodies stop at
//! [`MAX_RESPONSE_BODY`], and a token's lifetime is clamped to
//! [`MAX_TOKEN_LIFETIME`].

use std::time::Duration;

use oauth2::basic::{
    BasicErrorResponse, BasicRevocationErrorResponse, BasicTokenIntrospectionResponse, BasicTokenType,
};
use oauth2::{
    AuthType, AuthUrl, AuthorizationCode, ClientId, ClientSecret, CsrfToken, EndpointNotSet, EndpointSet,
    ExtraTokenFields, PkceCodeChallenge, PkceCodeVerifier, RedirectUrl, RefreshToken, RequestTokenError, Scope,
    StandardRevocableToken, StandardTokenResponse, TokenResponse, TokenUrl,
};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use url::Url;

use super::provider::{ClientAuth, ProviderConfig};
use crate::email::Email;

/// The most of a provider's answer we read. A token response is a few KiB
/// (Entra access tokens with 200 group ids, an id_token and a refresh token
/// stay under 32 KiB; Google's under 4 KiB), userinfo less: 64 KiB is twice
/// the largest honest answer, and 256 refreshes in flight hold at most 16 MiB.
pub const MAX_RESPONSE_BODY: usize = 64 * 1024;

/// The longest lifetime we believe a provider gives a token. The longest
/// real ones are Meta's and LinkedIn's 60 days; a token claiming centuries is
/// treated as expiring after 90 days (refreshed or re-checked then), and
/// never overflows a date.
pub const MAX_TOKEN_LIFETIME: Duration = Duration::from_secs(90 * 86_400);

/// What a provider gave us: tokens and what it said about them.
pub struct TokenSet {
    pub access_token: SecretString,
    pub refresh_token: Option<SecretString>,
    /// `expires_in`, clamped to [`MAX_TOKEN_LIFETIME`].
    pub expires_in: Option<Duration>,
    /// The granted scopes, when the provider said (RFC 6749 §5.1).
    pub scopes: Option<Vec<String>>,
    pub id_token: Option<SecretString>,
}

impl TokenSet {
    /// When the access token expires, if the provider said.
    pub fn expires_at(&self, now: chrono::DateTime<chrono::Utc>) -> Option<chrono::DateTime<chrono::Utc>> {
        let lifetime = chrono::TimeDelta::from_std(self.expires_in?.min(MAX_TOKEN_LIFETIME)).ok()?;
        Some(crate::clock::truncate(now + lifetime))
    }
}

/// A provider's `expires_in`, bounded.
fn lifetime(seconds: Duration) -> Duration {
    seconds.min(MAX_TOKEN_LIFETIME)
}

impl std::fmt::Debug for TokenSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenSet")
            .field("refresh_token", &self.refresh_token.is_some())
            .field("expires_in", &self.expires_in)
            .field("scopes", &self.scopes)
            .finish_non_exhaustive()
    }
}

/// A failed call to a provider, classified once.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum UpstreamError {
    /// The provider answered with an RFC 6749 error code.
    #[error("the provider refused the request ({code})")]
    OAuth { code: &'static str },
    /// 5xx or 429.
    #[error("the provider answered HTTP {status}")]
    Http { status: u16, retry_after: Option<u64> },
    #[error("the provider did not answer in time")]
    Timeout,
    #[error("the provider could not be reached")]
    Network,
    /// Not an OAuth answer (HTML, unparseable JSON, an unexpected 4xx).
    #[error("the provider's answer was not a valid OAuth response")]
    InvalidResponse,
}

/// RFC 6749 §5.2 and §4.1.2.1 codes we recognise; anything else is `oauth_error`.
const OAUTH_CODES: [&str; 9] = [
    "invalid_request",
    "invalid_client",
    "invalid_grant",
    "unauthorized_client",
    "unsupported_grant_type",
    "invalid_scope",
    "access_denied",
    "server_error",
    "temporarily_unavailable",
];

fn oauth_code(raw: &str) -> &'static str {
    OAUTH_CODES.iter().find(|c| **c == raw).copied().unwrap_or("oauth_error")
}

impl UpstreamError {
    /// Permanent failures mean the grant itself is unusable: the user must
    /// authorize again. Everything else may succeed if retried — including a
    /// [client error](Self::is_client_error), which no user can fix.
    pub fn is_permanent(&self) -> bool {
        matches!(self, Self::OAuth { code } if !matches!(*code, "server_error" | "temporarily_unavailable"))
            && !self.is_client_error()
    }

    /// The provider refuses our *client* (RFC 6749 §5.2 `invalid_client`,
    /// `unauthorized_client`): a wrong or rotated client secret, a disabled
    /// app. The operator must fix the configuration; every user's grant is
    /// as good as it was.
    pub fn is_client_error(&self) -> bool {
        matches!(self, Self::OAuth { code: "invalid_client" | "unauthorized_client" })
    }

    /// A bounded label for metrics and the `last_error_category` column.
    pub fn category(&self) -> &'static str {
        match self {
            Self::OAuth { code } => code,
            Self::Http { status: 429, .. } => "http_429",
            Self::Http { .. } => "http_5xx",
            Self::Timeout => "timeout",
            Self::Network => "network",
            Self::InvalidResponse => "invalid_response",
        }
    }

    /// The metric `kind` label.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::OAuth { .. } => "oauth_error",
            other => other.category(),
        }
    }

    pub fn retry_after(&self) -> Option<u64> {
        match self {
            Self::Http { retry_after, .. } => *retry_after,
            _ => None,
        }
    }
}

/// What RFC 7009 revocation achieved.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RevocationOutcome {
    Revoked,
    /// The provider says the token was already invalid.
    AlreadyInvalid,
    /// The provider could not be asked, or failed; the credential is deleted anyway.
    Failed,
    /// The provider has no revocation endpoint.
    NotSupported,
}

impl RevocationOutcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Revoked => "revoked",
            Self::AlreadyInvalid => "already_invalid",
            Self::Failed => "failed",
            Self::NotSupported => "not_supported",
        }
    }
}

/// The token response with the OIDC `id_token` beside the standard fields.
#[derive(Clone, Debug, Deserialize, Serialize)]
struct IdTokenFields {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    id_token: Option<String>,
}
impl ExtraTokenFields for IdTokenFields {}

type ProviderTokenResponse = StandardTokenResponse<IdTokenFields, BasicTokenType>;
type Oauth2Client = oauth2::Client<
    BasicErrorResponse,
    ProviderTokenResponse,
    BasicTokenIntrospectionResponse,
    StandardRevocableToken,
    BasicRevocationErrorResponse,
    EndpointSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointSet,
>;

/// Transport failures, raised inside `oauth2`'s request and mapped back out.
#[derive(Debug, thiserror::Error)]
enum Transport {
    #[error("HTTP {status}")]
    Status { status: u16, retry_after: Option<u64> },
    #[error("timeout")]
    Timeout,
    #[error("network")]
    Network,
    #[error("body over the size limit")]
    TooLarge,
}

impl From<Transport> for UpstreamError {
    fn from(t: Transport) -> Self {
        match t {
            Transport::Status { status, retry_after } => Self::Http { status, retry_after },
            Transport::Timeout => Self::Timeout,
            Transport::Network => Self::Network,
            Transport::TooLarge => Self::InvalidResponse,
        }
    }
}

fn classify_reqwest(err: &reqwest::Error) -> Transport {
    if err.is_timeout() { Transport::Timeout } else { Transport::Network }
}

fn retry_after(headers: &reqwest::header::HeaderMap) -> Option<u64> {
    headers.get(reqwest::header::RETRY_AFTER)?.to_str().ok()?.trim().parse().ok()
}

/// Sends a provider request; a 429 or 5xx answer is an error carrying its
/// `Retry-After`, so no caller parses an overloaded provider's body.
async fn send(request: reqwest::RequestBuilder) -> Result<reqwest::Response, Transport> {
    let response = request.send().await.map_err(|e| classify_reqwest(&e))?;
    let status = response.status();
    if status.as_u16() == 429 || status.is_server_error() {
        return Err(Transport::Status { status: status.as_u16(), retry_after: retry_after(response.headers()) });
    }
    Ok(response)
}

/// Reads a provider's body, refusing one longer than [`MAX_RESPONSE_BODY`]
/// (announced or actual) without reading the rest.
async fn read_capped(mut response: reqwest::Response) -> Result<Vec<u8>, Transport> {
    if response.content_length().is_some_and(|n| n > MAX_RESPONSE_BODY as u64) {
        return Err(Transport::TooLarge);
    }
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(|e| classify_reqwest(&e))? {
        if body.len() + chunk.len() > MAX_RESPONSE_BODY {
            return Err(Transport::TooLarge);
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// A provider's JSON body, capped.
async fn json_capped(response: reqwest::Response) -> Result<serde_json::Value, UpstreamError> {
    let body = read_capped(response).await?;
    serde_json::from_slice(&body).map_err(|_| UpstreamError::InvalidResponse)
}

/// Provider requests, with one shared connection pool.
#[derive(Clone, Debug)]
pub struct OAuthClient {
    http: reqwest::Client,
    transport: HttpTransport,
}

/// The transport `oauth2` sends token requests through: reqwest, with 429
/// and 5xx answers turned into errors before `oauth2` parses the body.
#[derive(Clone, Debug)]
struct HttpTransport {
    http: reqwest::Client,
}

impl<'c> oauth2::AsyncHttpClient<'c> for HttpTransport {
    type Error = Transport;
    type Future =
        std::pin::Pin<Box<dyn std::future::Future<Output = Result<oauth2::HttpResponse, Transport>> + Send + 'c>>;

    fn call(&'c self, request: oauth2::HttpRequest) -> Self::Future {
        Box::pin(async move {
            let request = reqwest::Request::try_from(request).map_err(|_| Transport::Network)?;
            let response = send(reqwest::RequestBuilder::from_parts(self.http.clone(), request)).await?;
            let status = response.status();
            let mut builder = oauth2::http::Response::builder().status(status);
            for (name, value) in response.headers() {
                builder = builder.header(name, value);
            }
            let body = read_capped(response).await?;
            builder.body(body).map_err(|_| Transport::Network)
        })
    }
}

impl OAuthClient {
    /// `timeout` bounds each request (connect, send, read).
    pub fn new(timeout: Duration) -> Result<Self, reqwest::Error> {
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout.min(Duration::from_secs(5)))
            // Token endpoints never redirect; following one could leak the client secret.
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("mcp-auth-gateway/", env!("CARGO_PKG_VERSION")))
            .build()?;
        Ok(Self { transport: HttpTransport { http: http.clone() }, http })
    }

    fn oauth2(&self, provider: &ProviderConfig, redirect_uri: Option<&Url>) -> Result<Oauth2Client, UpstreamError> {
        let auth_url = AuthUrl::from_url(provider.auth_url.clone());
        let token_url = TokenUrl::from_url(provider.token_url.clone());
        let mut client = oauth2::Client::new(ClientId::new(provider.client_id.clone()))
            .set_client_secret(ClientSecret::new(provider.client_secret.expose_secret().to_owned()))
            .set_auth_uri(auth_url)
            .set_token_uri(token_url)
            .set_auth_type(match provider.client_auth {
                ClientAuth::Basic => AuthType::BasicAuth,
                ClientAuth::Post => AuthType::RequestBody,
            });
        if let Some(uri) = redirect_uri {
            client = client.set_redirect_uri(RedirectUrl::from_url(uri.clone()));
        }
        Ok(client)
    }

    /// The provider's authorization URL for one flow.
    pub fn authorize_url(
        &self,
        provider: &ProviderConfig,
        redirect_uri: &Url,
        state: &str,
        pkce_verifier: Option<&SecretString>,
        scopes: &[String],
        login_hint: Option<&Email>,
    ) -> Result<Url, UpstreamError> {
        let client = self.oauth2(provider, Some(redirect_uri))?;
        let state = state.to_owned();
        let mut request = client
            .authorize_url(move || CsrfToken::new(state))
            .add_scopes(scopes.iter().map(|s| Scope::new(s.clone())));
        if let Some(verifier) = pkce_verifier {
            let verifier = PkceCodeVerifier::new(verifier.expose_secret().to_owned());
            request = request.set_pkce_challenge(PkceCodeChallenge::from_code_verifier_sha256(&verifier));
        }
        if let Some(email) = login_hint.filter(|_| provider.login_hint) {
            request = request.add_extra_param("login_hint", email.as_str().to_owned());
        }
        for (name, value) in &provider.auth_params {
            request = request.add_extra_param(name.clone(), value.clone());
        }
        Ok(request.url().0)
    }

    /// The authorization-code grant (with the PKCE verifier when one was used).
    #[tracing::instrument(name = "provider_call", skip_all, fields(provider = %provider.id, operation = "code_exchange"))]
    pub async fn exchange_code(
        &self,
        provider: &ProviderConfig,
        redirect_uri: &Url,
        code: &SecretString,
        pkce_verifier: Option<&SecretString>,
    ) -> Result<TokenSet, UpstreamError> {
        let client = self.oauth2(provider, Some(redirect_uri))?;
        let mut request = client.exchange_code(AuthorizationCode::new(code.expose_secret().to_owned()));
        if let Some(verifier) = pkce_verifier {
            request = request.set_pkce_verifier(PkceCodeVerifier::new(verifier.expose_secret().to_owned()));
        }
        request.request_async(&self.transport).await.map(into_token_set).map_err(classify)
    }

    /// The refresh-token grant.
    #[tracing::instrument(name = "provider_call", skip_all, fields(provider = %provider.id, operation = "refresh"))]
    pub async fn refresh(
        &self,
        provider: &ProviderConfig,
        refresh_token: &SecretString,
    ) -> Result<TokenSet, UpstreamError> {
        let client = self.oauth2(provider, None)?;
        let token = RefreshToken::new(refresh_token.expose_secret().to_owned());
        client.exchange_refresh_token(&token).request_async(&self.transport).await.map(into_token_set).map_err(classify)
    }

    /// Meta's renewal of a long-lived token: `grant_type=fb_exchange_token`.
    #[tracing::instrument(name = "provider_call", skip_all, fields(provider = %provider.id, operation = "exchange"))]
    pub async fn exchange_long_lived(
        &self,
        provider: &ProviderConfig,
        access_token: &SecretString,
    ) -> Result<TokenSet, UpstreamError> {
        let form = [
            ("grant_type", "fb_exchange_token"),
            ("client_id", provider.client_id.as_str()),
            ("client_secret", provider.client_secret.expose_secret()),
            ("fb_exchange_token", access_token.expose_secret()),
        ];
        let response = send(self.http.post(provider.token_url.clone()).form(&form)).await?;
        let status = response.status();
        let body = json_capped(response).await?;
        if let Some(code) =
            body.get("error").and_then(|e| e.as_str().or_else(|| e.get("type").and_then(|t| t.as_str())))
        {
            // Meta's Graph errors are objects; an expired or revoked token is
            // OAuthException, which means the grant is gone.
            let code = if code == "OAuthException" { "invalid_grant" } else { oauth_code(code) };
            return Err(UpstreamError::OAuth { code });
        }
        if !status.is_success() {
            return Err(UpstreamError::InvalidResponse);
        }
        let access = body.get("access_token").and_then(|v| v.as_str()).ok_or(UpstreamError::InvalidResponse)?;
        Ok(TokenSet {
            access_token: SecretString::from(access.to_owned()),
            refresh_token: None,
            expires_in: body.get("expires_in").and_then(json_seconds).map(Duration::from_secs).map(lifetime),
            scopes: None,
            id_token: None,
        })
    }

    /// RFC 7009 revocation of `token` (a refresh token revokes the whole grant).
    #[tracing::instrument(name = "provider_call", skip_all, fields(provider = %provider.id, operation = "revoke"))]
    pub async fn revoke(&self, provider: &ProviderConfig, token: &SecretString, hint: &str) -> RevocationOutcome {
        let Some(url) = &provider.revocation_url else {
            return RevocationOutcome::NotSupported;
        };
        let mut form = vec![("token", token.expose_secret()), ("token_type_hint", hint)];
        let mut request = self.http.post(url.clone());
        match provider.client_auth {
            ClientAuth::Basic => {
                request = request.basic_auth(
                    form_encode(&provider.client_id),
                    Some(form_encode(provider.client_secret.expose_secret())),
                );
            }
            ClientAuth::Post => {
                form.push(("client_id", provider.client_id.as_str()));
                form.push(("client_secret", provider.client_secret.expose_secret()));
            }
        }
        let response = match request.form(&form).send().await {
            Ok(r) => r,
            Err(err) => {
                record_upstream_error(provider, "revoke", &UpstreamError::from(classify_reqwest(&err)));
                return RevocationOutcome::Failed;
            }
        };
        let status = response.status();
        if status.is_success() {
            return RevocationOutcome::Revoked;
        }
        // Google answers 400 invalid_token for a token that is already revoked.
        let body = json_capped(response).await.unwrap_or_default();
        match body.get("error").and_then(|e| e.as_str()) {
            Some("invalid_token" | "invalid_grant" | "unsupported_token_type") => RevocationOutcome::AlreadyInvalid,
            _ => {
                let err = if status.as_u16() == 429 || status.is_server_error() {
                    UpstreamError::Http { status: status.as_u16(), retry_after: None }
                } else {
                    UpstreamError::InvalidResponse
                };
                record_upstream_error(provider, "revoke", &err);
                RevocationOutcome::Failed
            }
        }
    }

    /// What the provider's userinfo endpoint says about the owner of
    /// `access_token` (its JSON object). `Ok(None)` when it has no such endpoint.
    #[tracing::instrument(name = "provider_call", skip_all, fields(provider = %provider.id, operation = "userinfo"))]
    pub async fn userinfo(
        &self,
        provider: &ProviderConfig,
        access_token: &SecretString,
    ) -> Result<Option<serde_json::Value>, UpstreamError> {
        let Some(url) = &provider.userinfo_url else {
            return Ok(None);
        };
        let request = self.http.get(url.clone()).bearer_auth(access_token.expose_secret());
        json_object(request).await.map(Some)
    }

    /// A JSON object served at `url` (an identity provider's discovery
    /// document or JWKS), with the same timeouts and size cap as provider answers.
    pub async fn get_json(&self, url: &Url) -> Result<serde_json::Value, UpstreamError> {
        json_object(self.http.get(url.clone())).await
    }
}

/// The JSON object a GET answers with (size-capped); anything else, or a
/// non-2xx status, is an invalid response.
async fn json_object(request: reqwest::RequestBuilder) -> Result<serde_json::Value, UpstreamError> {
    let response = send(request.header(reqwest::header::ACCEPT, "application/json")).await?;
    if !response.status().is_success() {
        return Err(UpstreamError::InvalidResponse);
    }
    let body = json_capped(response).await?;
    if !body.is_object() {
        return Err(UpstreamError::InvalidResponse);
    }
    Ok(body)
}

/// RFC 6749 §2.3.1: client credentials are form-encoded before Basic auth.
fn form_encode(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

fn json_seconds(v: &serde_json::Value) -> Option<u64> {
    v.as_u64().or_else(|| v.as_str()?.parse().ok())
}

fn into_token_set(response: ProviderTokenResponse) -> TokenSet {
    TokenSet {
        access_token: SecretString::from(response.access_token().secret().clone()),
        refresh_token: response.refresh_token().map(|t| SecretString::from(t.secret().clone())),
        expires_in: response.expires_in().map(lifetime),
        scopes: response.scopes().map(|s| s.iter().map(|s| s.to_string()).collect()),
        id_token: response.extra_fields().id_token.clone().map(SecretString::from),
    }
}

/// Maps `oauth2`'s error, dropping any response body it holds.
fn classify(err: RequestTokenError<Transport, BasicErrorResponse>) -> UpstreamError {
    match err {
        RequestTokenError::ServerResponse(e) => UpstreamError::OAuth { code: oauth_code(e.error().as_ref()) },
        RequestTokenError::Request(transport) => transport.into(),
        RequestTokenError::Parse(..) | RequestTokenError::Other(_) => UpstreamError::InvalidResponse,
    }
}

/// Counts a failed provider call.
pub fn record_upstream_error(provider: &ProviderConfig, operation: &'static str, err: &UpstreamError) {
    metrics::counter!(
        crate::telemetry::metrics::UPSTREAM_ERRORS,
        "provider" => provider.id.clone(),
        "operation" => operation,
        "kind" => err.kind()
    )
    .increment(1);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_grant_killing_oauth_codes_are_permanent() {
        for code in ["invalid_grant", "invalid_scope", "oauth_error"] {
            assert!(UpstreamError::OAuth { code }.is_permanent(), "{code}");
            assert!(!UpstreamError::OAuth { code }.is_client_error(), "{code}");
        }
        // The client's configuration is broken, not the user's grant.
        for code in ["invalid_client", "unauthorized_client"] {
            assert!(!UpstreamError::OAuth { code }.is_permanent(), "{code}");
            assert!(UpstreamError::OAuth { code }.is_client_error(), "{code}");
        }
        for transient in [
            UpstreamError::OAuth { code: "temporarily_unavailable" },
            UpstreamError::OAuth { code: "server_error" },
            UpstreamError::Http { status: 503, retry_after: None },
            UpstreamError::Http { status: 429, retry_after: Some(3) },
            UpstreamError::Timeout,
            UpstreamError::Network,
            UpstreamError::InvalidResponse,
        ] {
            assert!(!transient.is_permanent(), "{transient:?}");
        }
    }

    #[test]
    fn categories_are_bounded_labels() {
        assert_eq!(UpstreamError::OAuth { code: oauth_code("made_up_code") }.category(), "oauth_error");
        assert_eq!(UpstreamError::Http { status: 429, retry_after: None }.category(), "http_429");
        assert_eq!(UpstreamError::Http { status: 502, retry_after: None }.category(), "http_5xx");
        assert_eq!(UpstreamError::OAuth { code: "invalid_grant" }.kind(), "oauth_error");
    }

    #[test]
    fn client_credentials_are_form_encoded_for_basic_auth() {
        assert_eq!(form_encode("a b:c/d"), "a+b%3Ac%2Fd");
    }
}
