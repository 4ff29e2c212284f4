//! How a mock provider behaves: the start-up [`MockConfig`] and the consent knobs.
//!
//! The defaults describe a Google-like provider (refresh tokens are issued once and never
//! rotated). Flip [`MockConfig::rotate_refresh_tokens`] for Microsoft-like behaviour and
//! [`MockConfig::issue_refresh_tokens`] off for Meta-like behaviour.

use std::time::Duration;

/// Start-up configuration. Everything except the client credentials can also be changed
/// while the server runs (see the `set_*` methods on [`crate::MockProvider`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MockConfig {
    /// The only client the provider knows.
    pub client_id: String,
    /// That client's secret; also the HS256 key of the id_tokens (OIDC allows this).
    pub client_secret: String,
    /// Lifetime of the access tokens issued by the code and refresh grants.
    pub access_token_ttl: Duration,
    /// `true`: every refresh answers with a new refresh token and the presented one dies
    /// (Microsoft). `false`: the refresh answer omits `refresh_token` (Google).
    pub rotate_refresh_tokens: bool,
    /// `false`: no refresh token is ever issued (Meta, or a Google grant without
    /// `access_type=offline`).
    pub issue_refresh_tokens: bool,
    /// Whether the authorization-code grant also returns an OIDC id_token.
    pub issue_id_token: bool,
    /// Who approves when the authorization request carries no `login_hint`.
    pub default_email: String,
    /// Whether `/authorize` decides by itself or asks a human.
    pub consent: ConsentMode,
    /// Lifetime of the long-lived tokens of the Meta-style `fb_exchange_token` grant.
    pub long_lived_ttl: Duration,
    /// Time the token endpoint takes on every request before answering, as a real
    /// provider's does (capacity benchmarks; tests of concurrency bounds).
    pub token_latency: Latency,
}

impl Default for MockConfig {
    fn default() -> Self {
        Self {
            client_id: "mock-client-id".to_owned(),
            client_secret: "mock-client-secret".to_owned(),
            access_token_ttl: Duration::from_secs(3600),
            rotate_refresh_tokens: false,
            issue_refresh_tokens: true,
            issue_id_token: true,
            default_email: "user@example.com".to_owned(),
            consent: ConsentMode::AutoApprove,
            long_lived_ttl: Duration::from_secs(60 * 24 * 3600),
            token_latency: Latency::None,
        }
    }
}

/// How long each token request takes before it is answered. Unlike [`crate::Fault::Slow`],
/// which delays the next few requests, this applies to every request, concurrently: ten
/// requests at 150 ms take 150 ms together, not 1.5 s.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Latency {
    /// Answer at once.
    #[default]
    None,
    /// Always this long.
    Fixed(Duration),
    /// Uniformly random between the two bounds (inclusive).
    Uniform {
        /// Shortest.
        min: Duration,
        /// Longest.
        max: Duration,
    },
}

impl Latency {
    /// One request's wait.
    pub fn sample(&self) -> Duration {
        match *self {
            Self::None => Duration::ZERO,
            Self::Fixed(d) => d,
            Self::Uniform { min, max } if max > min => {
                use rand::Rng;
                rand::thread_rng().gen_range(min..=max)
            }
            Self::Uniform { min, .. } => min,
        }
    }
}

impl std::str::FromStr for Latency {
    type Err = String;

    /// `150` (milliseconds, fixed), `100-200` (uniform), `0` (none).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let ms = |v: &str| {
            v.trim()
                .parse::<u64>()
                .map(Duration::from_millis)
                .map_err(|_| format!("{v:?} is not a number of milliseconds"))
        };
        match s.split_once('-') {
            Some((min, max)) => {
                let (min, max) = (ms(min)?, ms(max)?);
                if min > max {
                    return Err(format!("{s:?}: the minimum is above the maximum"));
                }
                Ok(Self::Uniform { min, max })
            }
            None => match ms(s)? {
                Duration::ZERO => Ok(Self::None),
                d => Ok(Self::Fixed(d)),
            },
        }
    }
}

/// Whether `/authorize` answers at once or shows a consent page.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ConsentMode {
    /// Decide immediately according to the current [`Consent`] (tests).
    #[default]
    AutoApprove,
    /// Render an HTML page with an email field and Approve/Deny buttons (local demo). The
    /// human's choice wins over the current [`Consent`].
    Interactive,
}

/// What the next automatic authorizations decide, until changed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum Consent {
    /// Approve as the request's `login_hint`, or as the default email when there is none.
    #[default]
    ApproveAsLoginHint,
    /// Approve as this user whatever the request says: how tests play "Bob opened Alice's
    /// link".
    ApproveAs(String),
    /// The user clicks "Deny": redirect back with `error=access_denied`.
    Deny,
}

/// How the provider says who signed in, in its id_tokens and at `/userinfo`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum IdentityClaims {
    /// OIDC's standard: `email` with `email_verified: true`.
    #[default]
    Verified,
    /// `email_verified: false`.
    Unverified,
    /// No `email_verified` at all, as many standards-compliant servers do.
    Omitted,
    /// `email_verified: "true"`, a string, as some providers send it.
    VerifiedAsString,
    /// Microsoft Entra: no `email_verified`, but the tenant id in `tid` (and in
    /// the issuer, `<base>/<tid>/v2.0`); Graph scopes granted under their
    /// short names (`Mail.Read` for `https://graph.microsoft.com/Mail.Read`).
    Microsoft {
        /// The signing-in user's tenant id.
        tenant: String,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn latency_parses_fixed_and_ranges() {
        assert_eq!("150".parse(), Ok(Latency::Fixed(Duration::from_millis(150))));
        assert_eq!("0".parse(), Ok(Latency::None));
        assert_eq!(
            "100-200".parse(),
            Ok(Latency::Uniform { min: Duration::from_millis(100), max: Duration::from_millis(200) })
        );
        assert!("200-100".parse::<Latency>().is_err());
        assert!("fast".parse::<Latency>().is_err());
    }

    #[test]
    fn random_latency_stays_within_its_bounds() {
        let latency = Latency::Uniform { min: Duration::from_millis(10), max: Duration::from_millis(20) };
        for _ in 0..100 {
            let d = latency.sample();
            assert!((Duration::from_millis(10)..=Duration::from_millis(20)).contains(&d), "{d:?}");
        }
        assert_eq!(Latency::Fixed(Duration::from_millis(7)).sample(), Duration::from_millis(7));
    }
}
