//! Trusted identity providers for token exchange, configured by environment
//! variables.
//!
//! `AUTH_GATEWAY_TRUSTED_ISSUERS` lists ids (`okta,entra`); each then reads
//! `IDP_<ID>_ISSUER` (required: the exact `iss` of its tokens) and the
//! optional `IDP_<ID>_JWKS_URL` (default: the `jwks_uri` of the issuer's OIDC
//! discovery document), `IDP_<ID>_ALGORITHMS` (default `RS256,PS256,ES256,EdDSA`;
//! asymmetric only, `none` and `HS*` are refused), `IDP_<ID>_CLOCK_SKEW_SECONDS`
//! (60), `IDP_<ID>_MAX_TOKEN_AGE_SECONDS` (86400; `0` turns the `iat` check
//! off), `IDP_<ID>_EMAIL_CLAIM` (`email`), `IDP_<ID>_REQUIRE_VERIFIED_EMAIL`
//! (`true`) and `IDP_<ID>_JWKS_REFETCH_SECONDS` (30: how often an unknown `kid`
//! or a failed fetch may cause another JWKS request).

use std::time::Duration;

use jsonwebtoken::Algorithm;

use super::{ConfigErrors, Environment, Source};
use crate::exchange::issuers::{IssuerConfig, JwksSource};

pub const ISSUERS_VAR: &str = "AUTH_GATEWAY_TRUSTED_ISSUERS";

/// The algorithms accepted when `IDP_<ID>_ALGORITHMS` is not set.
pub const DEFAULT_ALGORITHMS: [Algorithm; 4] = [Algorithm::RS256, Algorithm::PS256, Algorithm::ES256, Algorithm::EdDSA];

fn prefix(id: &str) -> String {
    format!("IDP_{}", id.to_ascii_uppercase().replace('-', "_"))
}

pub fn parse(src: &Source, environment: Environment, errs: &mut ConfigErrors) -> Vec<IssuerConfig> {
    let mut out: Vec<IssuerConfig> = Vec::new();
    let listed = src.get(ISSUERS_VAR).unwrap_or_default();
    for id in listed.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        if !super::providers::valid_provider_id(id) {
            errs.push(
                ISSUERS_VAR,
                format!("lists {id:?}, which is not a valid id"),
                "use lower-case letters, digits, '-' and '_' (at most 50)",
            );
            continue;
        }
        if out.iter().any(|i| i.id == id) {
            errs.push(ISSUERS_VAR, format!("lists {id} twice"), "list each issuer once");
            continue;
        }
        if let Some(issuer) = parse_one(src, id, environment, errs) {
            if let Some(other) = out.iter().find(|i| i.issuer == issuer.issuer) {
                errs.push(
                    &format!("{}_ISSUER", prefix(id)),
                    format!("is also the issuer of {}", other.id),
                    "configure each issuer once",
                );
                continue;
            }
            out.push(issuer);
        }
    }
    out
}

fn parse_one(src: &Source, id: &str, environment: Environment, errs: &mut ConfigErrors) -> Option<IssuerConfig> {
    let p = prefix(id);
    let var = |name: &str| format!("{p}_{name}");
    let issuer = match src.get(&var("ISSUER")) {
        Some(raw) => {
            let raw = raw.trim().to_owned();
            match url::Url::parse(&raw) {
                Ok(url)
                    if url.scheme() == "https"
                        || (url.scheme() == "http" && environment != Environment::Production) =>
                {
                    Some(raw)
                }
                Ok(url) if url.scheme() == "http" => {
                    errs.push(
                        &var("ISSUER"),
                        "is not https",
                        "identity providers must be reached over TLS in production",
                    );
                    None
                }
                _ => {
                    errs.push(&var("ISSUER"), "is not an http(s) URL", "use the exact iss of the provider's tokens");
                    None
                }
            }
        }
        None => {
            errs.push(
                &var("ISSUER"),
                format!("is not set, but {ISSUERS_VAR} lists {id}"),
                format!("set {} to the exact iss of its tokens, or remove {id} from the list", var("ISSUER")),
            );
            None
        }
    };
    let jwks = match super::providers::url_var(src, &var("JWKS_URL"), None, environment, errs) {
        Some(url) => JwksSource::Url(url),
        None => JwksSource::Discovery,
    };
    let algorithms = match src.get(&var("ALGORITHMS")) {
        None => DEFAULT_ALGORITHMS.to_vec(),
        Some(raw) => {
            let mut algs = Vec::new();
            for name in raw.split(',').map(str::trim).filter(|s| !s.is_empty()) {
                match asymmetric(name) {
                    Some(alg) => algs.push(alg),
                    None => errs.push(
                        &var("ALGORITHMS"),
                        format!("lists {name:?}, which is not an asymmetric JWS algorithm"),
                        "use RS256, RS384, RS512, PS256, PS384, PS512, ES256, ES384 or EdDSA (none and HS* are refused)",
                    ),
                }
            }
            if algs.is_empty() && !errs.names(&var("ALGORITHMS")) {
                errs.push(&var("ALGORITHMS"), "lists no algorithm", "list at least one, e.g. RS256");
            }
            algs
        }
    };
    let skew = src.number(&var("CLOCK_SKEW_SECONDS"), 60, 0..=600, "seconds", errs);
    let max_age = src.number(&var("MAX_TOKEN_AGE_SECONDS"), 86_400, 0..=31_536_000, "seconds", errs);
    let refetch = src.number(&var("JWKS_REFETCH_SECONDS"), 30, 0..=3600, "seconds", errs);
    let email_claim = src.get_or(&var("EMAIL_CLAIM"), "email").trim().to_owned();
    let require_verified_email = src.flag(&var("REQUIRE_VERIFIED_EMAIL"), true, errs);
    Some(IssuerConfig {
        id: id.to_owned(),
        issuer: issuer?,
        jwks,
        algorithms,
        clock_skew: Duration::from_secs(skew?),
        max_token_age: max_age.filter(|s| *s > 0).map(Duration::from_secs),
        email_claim,
        require_verified_email,
        jwks_refetch_interval: Duration::from_secs(refetch?),
    })
}

/// The asymmetric JWS algorithm named `name` (RFC 7518 spelling).
pub fn asymmetric(name: &str) -> Option<Algorithm> {
    let alg: Algorithm = name.parse().ok()?;
    // The HMAC family is keyed by a shared secret; a JWKS key used as one is the
    // classic algorithm-confusion forgery.
    (!matches!(alg, Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512)).then_some(alg)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_all(pairs: &[(&str, &str)]) -> (Vec<IssuerConfig>, ConfigErrors) {
        let mut errs = ConfigErrors::default();
        let out = parse(&Source::from_pairs(pairs.iter().copied()), Environment::Production, &mut errs);
        (out, errs)
    }

    #[test]
    fn an_issuer_needs_its_iss_and_gets_safe_defaults() {
        let (out, errs) =
            parse_all(&[(ISSUERS_VAR, "okta"), ("IDP_OKTA_ISSUER", "https://acme.okta.com/oauth2/default")]);
        assert!(errs.is_empty(), "{errs}");
        let okta = &out[0];
        assert_eq!(okta.issuer, "https://acme.okta.com/oauth2/default");
        assert_eq!(okta.jwks, JwksSource::Discovery);
        assert_eq!(okta.algorithms, DEFAULT_ALGORITHMS.to_vec());
        assert_eq!(okta.clock_skew, Duration::from_secs(60));
        assert_eq!(okta.max_token_age, Some(Duration::from_secs(86_400)));
        assert_eq!(okta.email_claim, "email");
        assert!(okta.require_verified_email);

        let (_, errs) = parse_all(&[(ISSUERS_VAR, "okta")]);
        assert!(errs.names("IDP_OKTA_ISSUER"));
    }

    #[test]
    fn symmetric_algorithms_and_none_are_refused() {
        for bad in ["HS256", "none", "hs512", "RSA-OAEP"] {
            let (_, errs) = parse_all(&[
                (ISSUERS_VAR, "kc"),
                ("IDP_KC_ISSUER", "https://sso.example.com/realms/acme"),
                ("IDP_KC_ALGORITHMS", bad),
            ]);
            assert!(errs.names("IDP_KC_ALGORITHMS"), "{bad} must be refused");
        }
        let (out, errs) = parse_all(&[
            (ISSUERS_VAR, "kc"),
            ("IDP_KC_ISSUER", "https://sso.example.com/realms/acme"),
            ("IDP_KC_ALGORITHMS", "ES256, EdDSA"),
        ]);
        assert!(errs.is_empty(), "{errs}");
        assert_eq!(out[0].algorithms, vec![Algorithm::ES256, Algorithm::EdDSA]);
    }

    #[test]
    fn production_issuers_and_key_sets_use_tls() {
        let (_, errs) = parse_all(&[
            (ISSUERS_VAR, "a"),
            ("IDP_A_ISSUER", "http://idp.example.com"),
            ("IDP_A_JWKS_URL", "http://idp.example.com/keys"),
        ]);
        assert!(errs.names("IDP_A_ISSUER"));
        assert!(errs.names("IDP_A_JWKS_URL"));
    }

    #[test]
    fn one_issuer_is_configured_once() {
        let (_, errs) = parse_all(&[
            (ISSUERS_VAR, "a,b,a"),
            ("IDP_A_ISSUER", "https://idp.example.com"),
            ("IDP_B_ISSUER", "https://idp.example.com"),
        ]);
        assert!(errs.names(ISSUERS_VAR));
        assert!(errs.names("IDP_B_ISSUER"));
    }

    #[test]
    fn the_token_age_check_can_be_turned_off() {
        let (out, errs) = parse_all(&[
            (ISSUERS_VAR, "g"),
            ("IDP_G_ISSUER", "https://accounts.google.com"),
            ("IDP_G_MAX_TOKEN_AGE_SECONDS", "0"),
            ("IDP_G_REQUIRE_VERIFIED_EMAIL", "false"),
        ]);
        assert!(errs.is_empty(), "{errs}");
        assert_eq!(out[0].max_token_age, None);
        assert!(!out[0].require_verified_email);
    }
}
