//! Who consented, as the provider *proves* it: the email an OIDC `id_token`
//! or the userinfo endpoint reports, and whether the provider vouches for it.
//!
//! The `id_token` arrives straight from the token endpoint over the TLS
//! connection the gateway opened, so per OpenID Connect Core §3.1.3.7 (6)
//! TLS server validation stands in for checking its signature. What is
//! checked here instead:
//!
//! - `aud` must be present and name our client (§3.1.3.7 (3)); an id_token
//!   issued to another client is not evidence about our user;
//! - `iss` must be the provider's issuer when one is configured (§3.1.3.7 (2));
//! - the email counts as proven only when the provider says it is verified:
//!   `email_verified` is `true` (or the string `"true"`, which some providers
//!   send). Missing or anything else is not proof — unless the operator opted
//!   in for a provider known to verify every address (`trust_unverified_email`);
//! - **Microsoft** sends no `email_verified`, and in a multi-tenant app any
//!   tenant's admin can set a user's `email` to anyone's address (the "nOAuth"
//!   attack). What vouches for the address there is the tenant: the token's
//!   `tid` must be the configured tenant or one of the allowed tenants.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use secrecy::{ExposeSecret, SecretString};
use serde_json::Value;

use super::provider::{ProviderConfig, ProviderKind, TenantRule};

/// The email a provider reports for the account that consented.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Consented {
    pub email: String,
    /// The provider vouches for the address (see the module docs).
    pub verified: bool,
}

/// Why an id_token is not evidence about our user.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum IdTokenRefused {
    #[error("the id_token is not a readable JWT")]
    Unreadable,
    #[error("the id_token was not issued to this client (aud)")]
    Audience,
    #[error("the id_token was issued by someone other than the provider (iss)")]
    Issuer,
}

/// What `id_token` says about who consented, after checking it was issued
/// by `provider` to us. `Ok(None)` when it names no email.
pub fn from_id_token(id_token: &SecretString, provider: &ProviderConfig) -> Result<Option<Consented>, IdTokenRefused> {
    let claims = claims_of(id_token.expose_secret()).ok_or(IdTokenRefused::Unreadable)?;
    let audience_ok = match claims.get("aud") {
        Some(Value::String(aud)) => *aud == provider.client_id,
        Some(Value::Array(auds)) => auds.iter().any(|a| a.as_str() == Some(provider.client_id.as_str())),
        _ => false,
    };
    if !audience_ok {
        return Err(IdTokenRefused::Audience);
    }
    let tenant = claims.get("tid").and_then(Value::as_str);
    if !provider.issuers.is_empty() {
        let iss = claims.get("iss").and_then(Value::as_str).ok_or(IdTokenRefused::Issuer)?;
        // Microsoft's issuer names the tenant: `.../{tenantid}/v2.0`.
        let matches = provider.issuers.iter().any(|template| match template.contains("{tenantid}") {
            true => tenant.is_some_and(|tid| template.replace("{tenantid}", tid) == iss),
            false => template == iss,
        });
        if !matches {
            return Err(IdTokenRefused::Issuer);
        }
    }
    Ok(consented(&claims, provider))
}

/// What a userinfo answer says about who consented. Microsoft's userinfo
/// carries no tenant, so it never proves a Microsoft address.
pub fn from_userinfo(body: &Value, provider: &ProviderConfig) -> Option<Consented> {
    consented(body, provider)
}

fn consented(claims: &Value, provider: &ProviderConfig) -> Option<Consented> {
    let email = claims.get("email")?.as_str()?.trim();
    if email.is_empty() {
        return None;
    }
    let verified = match provider.kind {
        ProviderKind::Microsoft => {
            let tenant = claims.get("tid").and_then(Value::as_str);
            tenant.is_some_and(|tid| provider.tenant_rule.as_ref().is_some_and(|rule| rule.admits(tid)))
        }
        _ => provider.trust_unverified_email || asserts_verified(claims.get("email_verified")),
    };
    Some(Consented { email: email.to_owned(), verified })
}

/// `email_verified` is `true`, or the string `"true"`; nothing else proves.
pub(crate) fn asserts_verified(claim: Option<&Value>) -> bool {
    match claim {
        Some(Value::Bool(b)) => *b,
        Some(Value::String(s)) => s.trim().eq_ignore_ascii_case("true"),
        _ => false,
    }
}

fn claims_of(jwt: &str) -> Option<Value> {
    let payload = jwt.split('.').nth(1)?;
    let bytes = URL_SAFE_NO_PAD.decode(payload.trim_end_matches('=')).ok()?;
    let claims: Value = serde_json::from_slice(&bytes).ok()?;
    claims.is_object().then_some(claims)
}

impl TenantRule {
    /// Whether tenant `tid` vouches for its users' addresses here.
    pub fn admits(&self, tid: &str) -> bool {
        match self {
            Self::One(id) => id.eq_ignore_ascii_case(tid),
            Self::AnyOf(ids) => ids.iter().any(|id| id.eq_ignore_ascii_case(tid)),
        }
    }
}

/// Emails compare case-insensitively (and ignoring surrounding space).
pub fn same_account(a: &str, b: &str) -> bool {
    a.trim().eq_ignore_ascii_case(b.trim())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::oauth::provider::test_provider;

    fn token(claims: Value) -> SecretString {
        let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"HS256"}"#);
        let body = URL_SAFE_NO_PAD.encode(claims.to_string());
        SecretString::from(format!("{header}.{body}.sig"))
    }

    fn google() -> ProviderConfig {
        let mut p = test_provider(ProviderKind::Google);
        p.issuers = vec!["https://accounts.google.com".into(), "accounts.google.com".into()];
        p
    }

    fn microsoft(rule: TenantRule) -> ProviderConfig {
        let mut p = test_provider(ProviderKind::Microsoft);
        p.issuers = vec!["https://login.microsoftonline.com/{tenantid}/v2.0".into()];
        p.tenant_rule = Some(rule);
        p
    }

    const TENANT: &str = "72f988bf-86f1-41af-91ab-2d7cd011db47";

    fn consented(email: &str, verified: bool) -> Option<Consented> {
        Some(Consented { email: email.into(), verified })
    }

    #[test]
    fn an_email_counts_only_when_the_provider_says_it_is_verified() {
        let p = google();
        let base =
            serde_json::json!({"aud": "cid", "iss": "https://accounts.google.com", "email": "Alice@Company.com"});
        let with = |verified: Value| {
            let mut claims = base.clone();
            claims["email_verified"] = verified;
            from_id_token(&token(claims), &p).unwrap()
        };
        assert_eq!(with(Value::Bool(true)), consented("Alice@Company.com", true));
        assert_eq!(with(Value::String("true".into())), consented("Alice@Company.com", true));
        for not_proof in [
            Value::Bool(false),
            Value::String("false".into()),
            Value::String("yes".into()),
            Value::from(1),
            Value::Null,
        ] {
            assert_eq!(with(not_proof.clone()), consented("Alice@Company.com", false), "{not_proof}");
        }
        assert_eq!(from_id_token(&token(base.clone()), &p).unwrap(), consented("Alice@Company.com", false), "missing");
    }

    #[test]
    fn the_operator_may_trust_a_provider_that_verifies_every_address() {
        let mut p = google();
        p.trust_unverified_email = true;
        let claims = serde_json::json!({"aud": "cid", "iss": "accounts.google.com", "email": "a@b.co"});
        assert_eq!(from_id_token(&token(claims), &p).unwrap(), consented("a@b.co", true));
        assert_eq!(from_userinfo(&serde_json::json!({"email": "a@b.co"}), &p), consented("a@b.co", true));
    }

    #[test]
    fn the_audience_must_name_us_and_the_issuer_must_be_the_providers() {
        let p = google();
        let claims = |aud: Option<Value>, iss: &str| {
            let mut c = serde_json::json!({"iss": iss, "email": "a@b.co", "email_verified": true});
            if let Some(aud) = aud {
                c["aud"] = aud;
            }
            token(c)
        };
        let ok = "https://accounts.google.com";
        assert!(from_id_token(&claims(Some("cid".into()), ok), &p).is_ok());
        assert!(from_id_token(&claims(Some(serde_json::json!(["x", "cid"])), ok), &p).is_ok());
        assert_eq!(from_id_token(&claims(None, ok), &p), Err(IdTokenRefused::Audience));
        assert_eq!(from_id_token(&claims(Some("other".into()), ok), &p), Err(IdTokenRefused::Audience));
        assert_eq!(from_id_token(&claims(Some(serde_json::json!(["other"])), ok), &p), Err(IdTokenRefused::Audience));
        assert_eq!(from_id_token(&claims(Some("cid".into()), "https://evil.example"), &p), Err(IdTokenRefused::Issuer));
        assert_eq!(from_id_token(&SecretString::from("garbage".to_owned()), &p), Err(IdTokenRefused::Unreadable));
        // A provider with no configured issuer accepts any.
        let mut generic = test_provider(ProviderKind::Generic);
        generic.issuers.clear();
        assert!(from_id_token(&claims(Some("cid".into()), "https://anything"), &generic).is_ok());
    }

    #[test]
    fn a_microsoft_address_is_vouched_for_by_its_tenant_only() {
        let claims = |tid: Option<&str>| {
            let mut c = serde_json::json!({"aud": "cid", "email": "ceo@company.com"});
            if let Some(tid) = tid {
                c["tid"] = tid.into();
                c["iss"] = format!("https://login.microsoftonline.com/{tid}/v2.0").into();
            }
            token(c)
        };
        let one = microsoft(TenantRule::One(TENANT.into()));
        assert_eq!(from_id_token(&claims(Some(TENANT)), &one).unwrap(), consented("ceo@company.com", true));
        // Another tenant's admin set the address: not proof.
        let other = "11111111-2222-3333-4444-555555555555";
        assert_eq!(from_id_token(&claims(Some(other)), &one).unwrap(), consented("ceo@company.com", false));
        let any = microsoft(TenantRule::AnyOf(vec![other.into()]));
        assert_eq!(from_id_token(&claims(Some(other)), &any).unwrap(), consented("ceo@company.com", true));
        // No tid: the issuer template cannot be filled, and nothing vouches.
        assert_eq!(from_id_token(&claims(None), &one), Err(IdTokenRefused::Issuer));
        // email_verified means nothing at Microsoft; trusting unverified emails does not apply either.
        let mut trusting = microsoft(TenantRule::One(TENANT.into()));
        trusting.trust_unverified_email = true;
        let c = serde_json::json!({"aud": "cid", "email": "x@y.co", "email_verified": true, "tid": other,
            "iss": format!("https://login.microsoftonline.com/{other}/v2.0")});
        assert_eq!(from_id_token(&token(c), &trusting).unwrap(), consented("x@y.co", false));
        // Userinfo carries no tenant: it never proves a Microsoft address.
        let userinfo = serde_json::json!({"email": "ceo@company.com", "email_verified": true});
        assert_eq!(from_userinfo(&userinfo, &one), consented("ceo@company.com", false));
    }

    #[test]
    fn accounts_compare_case_insensitively() {
        assert!(same_account("Alice@Company.com", "alice@company.com"));
        assert!(!same_account("bob@company.com", "alice@company.com"));
    }
}
