//! Access settings: rate limits, trusted proxies, CORS, audit retention.

use std::time::Duration;

use super::{ConfigErrors, Source};
use crate::access::limits::LimitSettings;

#[derive(Clone, Debug)]
pub struct AccessSettings {
    pub limits: LimitSettings,
    /// `AUTH_GATEWAY_TRUSTED_PROXIES`: CIDRs whose `X-Forwarded-For` is believed.
    pub trusted_proxies: Vec<ipnet::IpNet>,
    /// `CORS_ALLOWED_ORIGINS`: none by default (a server-to-server API).
    pub cors_origins: Vec<String>,
    /// `AUDIT_RETENTION_DAYS`: audit records older than this are pruned.
    pub audit_retention: Duration,
    /// `AUDIT_TOKEN_READS`: `summary` (default) or `each`.
    pub token_reads: crate::access::audit::TokenReads,
}

pub fn parse(src: &Source, errs: &mut ConfigErrors) -> AccessSettings {
    let defaults = LimitSettings::default();
    let rate = |name: &str, default: u32, errs: &mut ConfigErrors| {
        src.number(name, u64::from(default), 0..=1_000_000, "requests per second (0: no limit)", errs)
            .and_then(|n| u32::try_from(n).ok())
            .unwrap_or(default)
    };
    let limits = LimitSettings {
        init_per_second: rate("RATE_LIMIT_INIT_PER_SECOND", defaults.init_per_second, errs),
        token_per_second: rate("RATE_LIMIT_TOKEN_PER_SECOND", defaults.token_per_second, errs),
        browser_per_second: rate("RATE_LIMIT_BROWSER_PER_SECOND", defaults.browser_per_second, errs),
    };
    let mut trusted_proxies = Vec::new();
    for cidr in list(src, "AUTH_GATEWAY_TRUSTED_PROXIES") {
        match cidr.parse::<ipnet::IpNet>().or_else(|_| cidr.parse::<std::net::IpAddr>().map(ipnet::IpNet::from)) {
            Ok(net) => trusted_proxies.push(net),
            Err(_) => errs.push(
                "AUTH_GATEWAY_TRUSTED_PROXIES",
                format!("has {cidr:?}, which is not an address or CIDR block"),
                "use e.g. 10.0.0.0/8,127.0.0.1",
            ),
        }
    }
    let mut cors_origins = Vec::new();
    for origin in list(src, "CORS_ALLOWED_ORIGINS") {
        match url::Url::parse(&origin) {
            Ok(url) if matches!(url.scheme(), "http" | "https") && url.path() == "/" && url.query().is_none() => {
                cors_origins.push(origin.trim_end_matches('/').to_owned());
            }
            _ => errs.push(
                "CORS_ALLOWED_ORIGINS",
                format!("has {origin:?}, which is not an origin"),
                "use scheme://host[:port], e.g. https://app.example.com",
            ),
        }
    }
    let days = src.number("AUDIT_RETENTION_DAYS", 365, 1..=36_500, "days", errs).unwrap_or(365);
    let token_reads = match src.get("AUDIT_TOKEN_READS").as_deref() {
        None | Some("summary") => crate::access::audit::TokenReads::Summary,
        Some("each") => crate::access::audit::TokenReads::Each,
        Some(_) => {
            errs.push(
                "AUDIT_TOKEN_READS",
                "is neither summary nor each",
                "use summary (one record per client, user, provider and outcome per minute) or each",
            );
            crate::access::audit::TokenReads::Summary
        }
    };
    AccessSettings {
        limits,
        trusted_proxies,
        cors_origins,
        audit_retention: Duration::from_secs(days * 86_400),
        token_reads,
    }
}

fn list(src: &Source, name: &str) -> Vec<String> {
    src.get(name)
        .map(|v| v.split(',').map(|s| s.trim().to_owned()).filter(|s| !s.is_empty()).collect())
        .unwrap_or_default()
}
