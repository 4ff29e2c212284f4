//! Configuration: environment variables (and an optional `.env` file) parsed
//! into typed [`Settings`] in one validation step.
//!
//! [`Settings::from_source`] reads every variable, collects *every* problem and
//! returns them together, each naming the variable and the fix, never the
//! value of a secret. Secrets may come from `<NAME>_FILE` instead of `<NAME>`.
//! Nothing here touches the disk beyond reading `*_FILE` secrets, so
//! `gateway config check` and tests can run it freely; generating development
//! keys is start-up's job (the `gateway` crate's `startup`).

pub mod access;
mod errors;
pub mod issuers;
pub mod providers;
mod reference;
mod source;
pub mod webhooks;
pub mod workers;

use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use url::Url;

pub use errors::{ConfigError, ConfigErrors};
pub use reference::reference;
pub use source::{Source, VarKind, VarSpec};

use crate::crypto::Key;

/// Names of the variables, as the design document spells them.
pub mod vars {
    pub const DATABASE_URL: &str = "DATABASE_URL";
    pub const ENCRYPTION_KEY: &str = "AUTH_GATEWAY_ENCRYPTION_KEY";
    pub const ENCRYPTION_KEY_SALT: &str = "AUTH_GATEWAY_ENCRYPTION_KEY_SALT";
    pub const ROTATION_KEYS: &str = "AUTH_GATEWAY_ROTATION_KEYS";
    pub const API_KEY: &str = "AUTH_GATEWAY_API_KEY";
    pub const HOST: &str = "HOST";
    pub const PORT: &str = "PORT";
    pub const PUBLIC_BASE_URL: &str = "PUBLIC_BASE_URL";
    pub const ENVIRONMENT: &str = "ENVIRONMENT";
    pub const SESSION_EXPIRY_MINUTES: &str = "SESSION_EXPIRY_MINUTES";
    pub const TOKEN_REFRESH_BUFFER_SECONDS: &str = "TOKEN_REFRESH_BUFFER_SECONDS";
    pub const LOG_LEVEL: &str = "LOG_LEVEL";
    pub const LOG_FORMAT: &str = "LOG_FORMAT";
    pub const DATA_DIR: &str = "DATA_DIR";
    pub const REDIRECT_HOSTS: &str = "AUTH_GATEWAY_REDIRECT_HOSTS";
    pub const PROVIDER_TIMEOUT_SECONDS: &str = "PROVIDER_TIMEOUT_SECONDS";
    pub const TOKEN_ACTOR_IDLE_MINUTES: &str = "TOKEN_ACTOR_IDLE_MINUTES";
    pub const ACTOR_THREADS: &str = "ACTOR_THREADS";
    pub const METRICS_ADDR: &str = "METRICS_ADDR";
    pub const METRICS_BEARER_TOKEN: &str = "METRICS_BEARER_TOKEN";
    pub const HTTP_HEADER_READ_TIMEOUT_SECONDS: &str = "HTTP_HEADER_READ_TIMEOUT_SECONDS";
    pub const HTTP_MAX_CONNECTIONS: &str = "HTTP_MAX_CONNECTIONS";
    pub const STORAGE_RETRY_SECONDS: &str = "STORAGE_RETRY_SECONDS";
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Environment {
    Development,
    Staging,
    Production,
}

impl Environment {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Development => "development",
            Self::Staging => "staging",
            Self::Production => "production",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogFormat {
    Json,
    Text,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    Postgres,
    Sqlite,
}

/// Where the database lives. The URL may carry a password, so it is secret.
#[derive(Clone, Debug)]
pub struct DatabaseSettings {
    pub url: SecretString,
    pub backend: Backend,
    /// True when no `DATABASE_URL` was given and the embedded default is used.
    pub embedded_default: bool,
}

/// Encryption key inputs, checked for form but not yet derived (PBKDF2 is
/// deliberately slow; start-up derives once).
#[derive(Clone, Debug)]
pub struct KeySettings {
    /// `None` only in development, where start-up generates a key file.
    pub primary: Option<SecretString>,
    pub rotation: Vec<SecretString>,
    pub salt: Option<SecretString>,
}

/// The bounds on every connection.
#[derive(Clone, Copy, Debug)]
pub struct ServerLimits {
    /// `HTTP_HEADER_READ_TIMEOUT_SECONDS`.
    pub header_read_timeout: Duration,
    /// `HTTP_MAX_CONNECTIONS`.
    pub max_connections: usize,
}

#[derive(Clone, Debug)]
pub struct HttpSettings {
    pub host: IpAddr,
    pub port: u16,
    /// The gateway's public base URL as configured: links handed to users and
    /// OAuth redirect URIs are built on it. See [`HttpSettings::public_url`].
    pub public_base_url: Option<Url>,
    /// Bounds on every connection (header-read timeout, open connections).
    pub limits: ServerLimits,
}

impl HttpSettings {
    /// The configured public URL, or in development `http://<host>:<port>`
    /// of the address actually bound (which matters when `PORT=0`).
    pub fn public_url(&self, bound: std::net::SocketAddr) -> Result<Url, url::ParseError> {
        if let Some(url) = &self.public_base_url {
            return Ok(url.clone());
        }
        let host = match bound.ip() {
            IpAddr::V4(v4) if v4.is_unspecified() => "localhost".to_owned(),
            IpAddr::V6(v6) if v6.is_unspecified() => "localhost".to_owned(),
            IpAddr::V6(v6) => format!("[{v6}]"),
            ip => ip.to_string(),
        };
        Url::parse(&format!("http://{host}:{}/", bound.port()))
    }
}

#[derive(Clone, Debug)]
pub struct LogSettings {
    /// A `tracing` filter directive, e.g. `info` or `info,gateway=debug`.
    pub filter: String,
    pub format: LogFormat,
}

#[derive(Clone, Debug)]
pub struct Settings {
    pub environment: Environment,
    pub database: DatabaseSettings,
    pub keys: KeySettings,
    /// `None` only in development, where start-up generates one.
    pub api_key: Option<SecretString>,
    pub http: HttpSettings,
    pub session_expiry: Duration,
    pub token_refresh_buffer: Duration,
    pub log: LogSettings,
    pub data_dir: PathBuf,
    /// OAuth providers configured by environment variables.
    pub providers: Vec<crate::oauth::ProviderConfig>,
    /// Identity providers whose tokens `/oauth/token` accepts (token exchange).
    pub issuers: Vec<crate::exchange::IssuerConfig>,
    /// Hosts that `redirect_after` may point at (empty: none).
    pub redirect_hosts: Vec<String>,
    /// Timeout of one call to a provider.
    pub provider_timeout: Duration,
    /// How long the callback keeps retrying to store tokens the provider has
    /// issued while the database is unavailable (`STORAGE_RETRY_SECONDS`).
    pub storage_retry: Duration,
    /// A warm credential is forgotten after this long without use.
    pub token_actor_idle: Duration,
    /// Threads (actix arbiters) that run the token actors.
    pub actor_threads: usize,
    pub metrics: MetricsSettings,
    pub jobs: workers::JobSettings,
    pub access: access::AccessSettings,
    pub webhooks: webhooks::WebhookSettings,
}

/// Where `/metrics` is served and who may read it.
#[derive(Clone, Debug, Default)]
pub struct MetricsSettings {
    /// A separate listener for `/metrics`; `None` serves it on the API port.
    pub addr: Option<std::net::SocketAddr>,
    /// When set, `/metrics` requires `Authorization: Bearer <token>`.
    pub bearer_token: Option<SecretString>,
}

const MIN_PRODUCTION_API_KEY_LEN: usize = 32;

impl Settings {
    /// Settings that are allowed but weaken a guarantee: `config check`
    /// prints them and start-up logs them as warnings, every time.
    pub fn warnings(&self) -> Vec<String> {
        let mut out = Vec::new();
        for p in &self.providers {
            let prefix = p.id.to_ascii_uppercase().replace('-', "_");
            if p.trust_unverified_email && p.kind != crate::oauth::ProviderKind::Microsoft {
                out.push(format!(
                    "{prefix}_TRUST_UNVERIFIED_EMAIL=true: an email {} reports without email_verified counts as \
                     verified. Only safe if {} verifies every address; otherwise whoever registers an unverified \
                     address there can obtain that address's tokens.",
                    p.id, p.id
                ));
            }
            if p.kind == crate::oauth::ProviderKind::Meta
                && p.identity_check == crate::oauth::IdentityCheck::Required
                && !p.trust_unverified_email
            {
                out.push(format!(
                    "{prefix}: Meta sends no email_verified, so every consent fails the required identity check; \
                     Meta reports only confirmed addresses: set {prefix}_TRUST_UNVERIFIED_EMAIL=true to accept them"
                ));
            }
        }
        for i in &self.issuers {
            if !i.require_verified_email {
                out.push(format!(
                    "IDP_{}_REQUIRE_VERIFIED_EMAIL=false: the {} claim of {}'s tokens counts as the user's address \
                     without email_verified. Only safe if that identity provider controls every address it issues \
                     (a workforce directory such as Entra ID's upn).",
                    i.id.to_ascii_uppercase().replace('-', "_"),
                    i.email_claim,
                    i.issuer
                ));
            }
        }
        if self.environment == Environment::Production && self.access.trusted_proxies.is_empty() {
            out.push(
                "ENVIRONMENT=production and AUTH_GATEWAY_TRUSTED_PROXIES is not set: behind a reverse proxy every \
                 request seems to come from the proxy, so per-address rate limits become one global limit and \
                 per-client network rules cannot work. Set it to the proxy's address or network."
                    .to_owned(),
            );
        }
        out
    }

    /// Reads the process environment (after loading `.env` if present).
    pub fn from_env() -> Result<Self, ConfigErrors> {
        // A missing .env is normal; a malformed one is reported by the parse below
        // only through the variables it failed to set, so say it here.
        if let Err(err) = dotenvy::dotenv()
            && !err.not_found()
        {
            return Err(ConfigErrors::single(ConfigError::new(
                ".env",
                format!("could not be read: {err}"),
                "fix the line it names, or remove the file",
            )));
        }
        Self::from_source(&Source::process())
    }

    /// Parses and validates every variable, reporting every problem at once.
    pub fn from_source(src: &Source) -> Result<Self, ConfigErrors> {
        let mut errs = ConfigErrors::default();

        let environment = match src.get(vars::ENVIRONMENT).as_deref().map(str::to_ascii_lowercase) {
            None => Environment::Development,
            Some(v) => match v.as_str() {
                "development" | "dev" => Environment::Development,
                "staging" => Environment::Staging,
                "production" | "prod" => Environment::Production,
                _ => {
                    errs.push(
                        vars::ENVIRONMENT,
                        "is not a known environment",
                        "use development, staging or production",
                    );
                    Environment::Development
                }
            },
        };
        let strict = environment != Environment::Development;

        let data_dir = PathBuf::from(src.get_or(vars::DATA_DIR, "./data"));

        let database = parse_database(src, &data_dir, environment, &mut errs);
        let keys = parse_keys(src, environment, &mut errs);

        let api_key = src.secret(vars::API_KEY, &mut errs);
        match &api_key {
            None if strict => errs.push(
                vars::API_KEY,
                format!("is required when ENVIRONMENT={}", environment.as_str()),
                "set it (or AUTH_GATEWAY_API_KEY_FILE) to a key from `gateway keys generate --api-key`",
            ),
            Some(key) if key.expose_secret().trim().is_empty() => {
                errs.push(vars::API_KEY, "is empty", "set it to a key from `gateway keys generate --api-key`");
            }
            Some(key) if strict && key.expose_secret().len() < MIN_PRODUCTION_API_KEY_LEN => errs.push(
                vars::API_KEY,
                format!("is shorter than {MIN_PRODUCTION_API_KEY_LEN} characters"),
                "use a key from `gateway keys generate --api-key` (64 characters)",
            ),
            _ => {}
        }

        let host =
            src.parse_or(vars::HOST, "127.0.0.1".parse().ok(), "an IP address such as 0.0.0.0 or 127.0.0.1", &mut errs);
        let port = src.parse_or(vars::PORT, Some(8000u16), "a port number from 0 to 65535", &mut errs);
        let public_base_url = parse_public_url(src, environment, &mut errs);
        let header_read_timeout = src.number(vars::HTTP_HEADER_READ_TIMEOUT_SECONDS, 10, 1..=300, "seconds", &mut errs);
        let max_connections = src.number(vars::HTTP_MAX_CONNECTIONS, 4096, 1..=1_000_000, "connections", &mut errs);
        let storage_retry = src.number(vars::STORAGE_RETRY_SECONDS, 30, 0..=300, "seconds", &mut errs);

        let session_minutes = src.number(vars::SESSION_EXPIRY_MINUTES, 15, 1..=1440, "minutes", &mut errs);
        let buffer_seconds = src.number(vars::TOKEN_REFRESH_BUFFER_SECONDS, 300, 0..=86_400, "seconds", &mut errs);

        let log = parse_log(src, environment, &mut errs);
        let providers = providers::parse(src, environment, &mut errs);
        let issuers = issuers::parse(src, environment, &mut errs);
        let redirect_hosts = src
            .get(vars::REDIRECT_HOSTS)
            .map(|v| v.split(',').map(|h| h.trim().to_ascii_lowercase()).filter(|h| !h.is_empty()).collect())
            .unwrap_or_default();
        let provider_timeout = src.number(vars::PROVIDER_TIMEOUT_SECONDS, 10, 1..=60, "seconds", &mut errs);
        let actor_idle = src.number(vars::TOKEN_ACTOR_IDLE_MINUTES, 30, 1..=1440, "minutes", &mut errs);
        let default_threads = std::thread::available_parallelism().map_or(2, |n| n.get().clamp(2, 8)) as u64;
        let actor_threads = src.number(vars::ACTOR_THREADS, default_threads, 1..=64, "threads", &mut errs);
        let metrics = MetricsSettings {
            addr: src.parse_or(vars::METRICS_ADDR, None, "a socket address such as 0.0.0.0:9100", &mut errs),
            bearer_token: src.secret(vars::METRICS_BEARER_TOKEN, &mut errs),
        };
        let jobs = workers::parse(src, buffer_seconds.map(Duration::from_secs), &mut errs);
        let access = access::parse(src, &mut errs);
        let webhooks = webhooks::parse(src, &mut errs);

        if !errs.is_empty() {
            return Err(errs);
        }
        // Every `None` below was reported above, so this is never taken.
        let (
            Some(host),
            Some(port),
            Some(session_minutes),
            Some(buffer_seconds),
            Some(database),
            Some(log),
            Some(provider_timeout),
            Some(actor_idle),
            Some(actor_threads),
            Some(header_read_timeout),
            Some(max_connections),
            Some(storage_retry),
        ) = (
            host,
            port,
            session_minutes,
            buffer_seconds,
            database,
            log,
            provider_timeout,
            actor_idle,
            actor_threads,
            header_read_timeout,
            max_connections,
            storage_retry,
        )
        else {
            return Err(errs);
        };
        Ok(Self {
            environment,
            database,
            keys,
            api_key,
            http: HttpSettings {
                host,
                port,
                public_base_url,
                limits: ServerLimits {
                    header_read_timeout: Duration::from_secs(header_read_timeout),
                    max_connections: usize::try_from(max_connections).unwrap_or(usize::MAX),
                },
            },
            storage_retry: Duration::from_secs(storage_retry),
            session_expiry: Duration::from_secs(session_minutes * 60),
            token_refresh_buffer: Duration::from_secs(buffer_seconds),
            log,
            data_dir,
            providers,
            issuers,
            redirect_hosts,
            provider_timeout: Duration::from_secs(provider_timeout),
            token_actor_idle: Duration::from_secs(actor_idle * 60),
            actor_threads: usize::try_from(actor_threads).unwrap_or(2),
            metrics,
            jobs,
            access,
            webhooks,
        })
    }
}

fn parse_database(
    src: &Source,
    data_dir: &std::path::Path,
    environment: Environment,
    errs: &mut ConfigErrors,
) -> Option<DatabaseSettings> {
    let given = src.secret(vars::DATABASE_URL, errs);
    let embedded_default = given.is_none();
    let url =
        given.unwrap_or_else(|| SecretString::from(format!("sqlite://{}/gateway.db?mode=rwc", data_dir.display())));
    let text = url.expose_secret();
    let backend = if text.starts_with("postgres://") || text.starts_with("postgresql://") {
        Backend::Postgres
    } else if text.starts_with("sqlite:") {
        Backend::Sqlite
    } else {
        errs.push(
            vars::DATABASE_URL,
            "is neither a PostgreSQL nor a SQLite URL",
            "use postgresql://user:password@host:5432/db or sqlite://path/to/file.db?mode=rwc",
        );
        return None;
    };
    if backend == Backend::Sqlite && environment == Environment::Production {
        errs.push(
            vars::DATABASE_URL,
            if embedded_default { "is not set, so the embedded SQLite file would be used" } else { "points at SQLite" },
            "production needs PostgreSQL: set DATABASE_URL=postgresql://user:password@host:5432/auth_gateway",
        );
    }
    Some(DatabaseSettings { url, backend, embedded_default })
}

fn parse_keys(src: &Source, environment: Environment, errs: &mut ConfigErrors) -> KeySettings {
    let salt = src.secret(vars::ENCRYPTION_KEY_SALT, errs);
    let primary = src.secret(vars::ENCRYPTION_KEY, errs);
    let rotation: Vec<SecretString> = src
        .secret(vars::ROTATION_KEYS, errs)
        .map(|list| {
            list.expose_secret()
                .split(',')
                .map(str::trim)
                .filter(|k| !k.is_empty())
                .map(|k| SecretString::from(k.to_owned()))
                .collect()
        })
        .unwrap_or_default();

    match &primary {
        None if environment != Environment::Development => errs.push(
            vars::ENCRYPTION_KEY,
            format!("is required when ENVIRONMENT={}", environment.as_str()),
            "set it (or AUTH_GATEWAY_ENCRYPTION_KEY_FILE) to a key from `gateway keys generate`",
        ),
        None => {}
        Some(key) => check_key_form(vars::ENCRYPTION_KEY, key, salt.as_ref(), errs),
    }
    for (i, key) in rotation.iter().enumerate() {
        let name = format!("{} (entry {})", vars::ROTATION_KEYS, i + 1);
        check_key_form(&name, key, salt.as_ref(), errs);
    }
    if let Some(salt) = &salt
        && salt.expose_secret().is_empty()
    {
        errs.push(vars::ENCRYPTION_KEY_SALT, "is empty", "set a random salt of 16 or more characters, or unset it");
    }
    KeySettings { primary, rotation, salt }
}

fn check_key_form(name: &str, key: &SecretString, salt: Option<&SecretString>, errs: &mut ConfigErrors) {
    let text = key.expose_secret().trim();
    if text.is_empty() {
        errs.push(name, "is empty", "set it to a key from `gateway keys generate`");
    } else if !Key::is_fernet_key(text) && salt.is_none() {
        errs.push(
            name,
            "is not a Fernet key (URL-safe base64 of 32 bytes), so it is a passphrase, which needs AUTH_GATEWAY_ENCRYPTION_KEY_SALT",
            "set AUTH_GATEWAY_ENCRYPTION_KEY_SALT, or use a Fernet key from `gateway keys generate`",
        );
    }
}

/// The explicit `PUBLIC_BASE_URL`, if any (development derives one from the
/// bound address instead).
fn parse_public_url(src: &Source, environment: Environment, errs: &mut ConfigErrors) -> Option<Url> {
    let raw = match src.get(vars::PUBLIC_BASE_URL) {
        Some(raw) => raw,
        None if environment == Environment::Production => {
            errs.push(
                vars::PUBLIC_BASE_URL,
                "is required when ENVIRONMENT=production",
                "set it to the https URL users reach the gateway at, e.g. https://auth.example.com",
            );
            return None;
        }
        None => return None,
    };
    let mut url = match Url::parse(raw.trim()) {
        Ok(url) if matches!(url.scheme(), "http" | "https") && url.host().is_some() => url,
        _ => {
            errs.push(vars::PUBLIC_BASE_URL, "is not an http(s) URL", "use e.g. https://auth.example.com");
            return None;
        }
    };
    if environment == Environment::Production && url.scheme() != "https" {
        errs.push(
            vars::PUBLIC_BASE_URL,
            "is not https; OAuth codes and connect links would travel in clear text",
            "put the gateway behind TLS and use its https URL",
        );
    }
    if url.query().is_some() || url.fragment().is_some() {
        errs.push(
            vars::PUBLIC_BASE_URL,
            "has a query or fragment",
            "use a plain base URL such as https://auth.example.com/gateway",
        );
    }
    // A trailing slash makes relative joins ("auth/callback/google") keep the path.
    if !url.path().ends_with('/') {
        let path = format!("{}/", url.path());
        url.set_path(&path);
    }
    Some(url)
}

fn parse_log(src: &Source, environment: Environment, errs: &mut ConfigErrors) -> Option<LogSettings> {
    let filter = match src.get(vars::LOG_LEVEL).map(|l| l.trim().to_ascii_lowercase()) {
        None => Some("info".to_owned()),
        Some(level) => match level.as_str() {
            "trace" | "debug" | "info" | "error" => Some(level),
            "warn" | "warning" => Some("warn".to_owned()),
            // Full filter directives (e.g. `info,gateway=debug`) pass through.
            other if other.contains('=') || other.contains(',') => Some(other.to_owned()),
            _ => {
                errs.push(vars::LOG_LEVEL, "is not a log level", "use DEBUG, INFO, WARNING or ERROR");
                None
            }
        },
    };
    let format = match src.get(vars::LOG_FORMAT).map(|f| f.trim().to_ascii_lowercase()) {
        None if environment == Environment::Development => Some(LogFormat::Text),
        None => Some(LogFormat::Json),
        Some(f) if f == "json" => Some(LogFormat::Json),
        Some(f) if f == "text" => Some(LogFormat::Text),
        Some(_) => {
            errs.push(vars::LOG_FORMAT, "is not a log format", "use json or text");
            None
        }
    };
    Some(LogSettings { filter: filter?, format: format? })
}

#[cfg(test)]
mod tests;
