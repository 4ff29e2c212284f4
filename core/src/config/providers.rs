//! Providers configured by environment variables.
//!
//! Built-in providers use the design document's names (`GOOGLE_CLIENT_ID`,
//! `GOOGLE_CLIENT_SECRET`, `GOOGLE_REDIRECT_URI`, and the same for
//! `MICROSOFT_` and `META_`). Each may override its endpoints and behaviour
//! with `<P>_AUTH_URL`, `<P>_TOKEN_URL`, `<P>_REVOCATION_URL`,
//! `<P>_USERINFO_URL`, `<P>_SCOPES`, `<P>_IDENTITY_CHECK`.
//!
//! Generic OAuth 2.0 providers are listed in `AUTH_GATEWAY_PROVIDERS`
//! (`github,slack`); each then reads `<ID>_CLIENT_ID`, `<ID>_CLIENT_SECRET`,
//! `<ID>_AUTH_URL`, `<ID>_TOKEN_URL` (required) and the optional
//! `<ID>_REVOCATION_URL`, `<ID>_USERINFO_URL`, `<ID>_SCOPES`,
//! `<ID>_AUTH_PARAMS` (`a=1&b=2`), `<ID>_PKCE` (`true`/`false`),
//! `<ID>_CLIENT_AUTH` (`client_secret_basic`/`client_secret_post`),
//! `<ID>_IDENTITY_CHECK` (`required`/`optional`/`off`), `<ID>_LOGIN_HINT`,
//! `<ID>_REDIRECT_URI`, `<ID>_ISSUER` (the id_token `iss`, comma-separated
//! alternatives) and `<ID>_TRUST_UNVERIFIED_EMAIL`, where `<ID>` is the id
//! upper-cased with `-` as `_`.
//!
//! Microsoft also reads `MICROSOFT_TENANT` (a tenant id, `consumers`, or
//! `common`/`organizations`) and `MICROSOFT_ALLOWED_TENANTS` (tenant ids): a
//! multi-tenant app with a `required` identity check needs the latter.

use url::Url;

use super::{ConfigErrors, Environment, Source};
use crate::oauth::provider::{
    ClientAuth, IdentityCheck, ProviderConfig, ProviderKind, ProviderSource, TenantRule, endpoints,
};

pub const PROVIDERS_VAR: &str = "AUTH_GATEWAY_PROVIDERS";
const BUILT_IN: [(&str, ProviderKind); 3] =
    [("google", ProviderKind::Google), ("microsoft", ProviderKind::Microsoft), ("meta", ProviderKind::Meta)];
/// The built-in providers' variable prefixes.
pub const BUILT_IN_PREFIXES: [&str; 3] = ["GOOGLE_", "MICROSOFT_", "META_"];

/// Provider ids: lower-case letters, digits, `-` and `_`, 1 to 50 characters
/// (the `oauth_providers.id` column).
pub fn valid_provider_id(id: &str) -> bool {
    (1..=50).contains(&id.len())
        && id.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
}

pub fn parse(src: &Source, environment: Environment, errs: &mut ConfigErrors) -> Vec<ProviderConfig> {
    let mut out = Vec::new();
    for (id, kind) in BUILT_IN {
        if let Some(p) = parse_one(src, id, kind, environment, errs) {
            out.push(p);
        }
    }
    let listed = src.get(PROVIDERS_VAR).unwrap_or_default();
    for id in listed.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        if !valid_provider_id(id) {
            errs.push(
                PROVIDERS_VAR,
                format!("lists {id:?}, which is not a valid provider id"),
                "use lower-case letters, digits, '-' and '_' (at most 50)",
            );
            continue;
        }
        if BUILT_IN.iter().any(|(b, _)| *b == id) {
            errs.push(
                PROVIDERS_VAR,
                format!("lists the built-in provider {id}"),
                format!("configure {id} with its {}_* variables instead", prefix(id)),
            );
            continue;
        }
        if out.iter().any(|p: &ProviderConfig| p.id == id) {
            errs.push(PROVIDERS_VAR, format!("lists {id} twice"), "list each provider once");
            continue;
        }
        match parse_one(src, id, ProviderKind::Generic, environment, errs) {
            Some(p) => out.push(p),
            None if !errs.names(&format!("{}_CLIENT_ID", prefix(id))) => errs.push(
                &format!("{}_CLIENT_ID", prefix(id)),
                format!("is not set, but {PROVIDERS_VAR} lists {id}"),
                format!("set {0}_CLIENT_ID and {0}_CLIENT_SECRET, or remove {id} from the list", prefix(id)),
            ),
            None => {}
        }
    }
    out
}

fn prefix(id: &str) -> String {
    id.to_ascii_uppercase().replace('-', "_")
}

fn parse_one(
    src: &Source,
    id: &str,
    kind: ProviderKind,
    environment: Environment,
    errs: &mut ConfigErrors,
) -> Option<ProviderConfig> {
    let p = prefix(id);
    let var = |name: &str| format!("{p}_{name}");
    let client_id = src.get(&var("CLIENT_ID"));
    let client_secret = src.secret(&var("CLIENT_SECRET"), errs);
    let (client_id, client_secret) = match (client_id, client_secret) {
        (None, None) => return None,
        (Some(id), Some(secret)) => (id, secret),
        (Some(_), None) => {
            errs.push(
                &var("CLIENT_SECRET"),
                format!("is not set, but {} is", var("CLIENT_ID")),
                "set both, or neither",
            );
            return None;
        }
        (None, Some(_)) => {
            errs.push(
                &var("CLIENT_ID"),
                format!("is not set, but {} is", var("CLIENT_SECRET")),
                "set both, or neither",
            );
            return None;
        }
    };

    let tenant = src.get_or("MICROSOFT_TENANT", "common");
    let (auth, token, revoke, userinfo): (Option<String>, Option<String>, Option<&str>, Option<&str>) = match kind {
        ProviderKind::Google => (
            Some(endpoints::GOOGLE_AUTH.to_owned()),
            Some(endpoints::GOOGLE_TOKEN.to_owned()),
            Some(endpoints::GOOGLE_REVOKE),
            Some(endpoints::GOOGLE_USERINFO),
        ),
        ProviderKind::Microsoft => (
            Some(format!("{}/{tenant}/oauth2/v2.0/authorize", endpoints::MICROSOFT_BASE)),
            Some(format!("{}/{tenant}/oauth2/v2.0/token", endpoints::MICROSOFT_BASE)),
            None,
            Some(endpoints::MICROSOFT_USERINFO),
        ),
        ProviderKind::Meta => (
            Some(endpoints::META_AUTH.to_owned()),
            Some(endpoints::META_TOKEN.to_owned()),
            None,
            Some(endpoints::META_USERINFO),
        ),
        ProviderKind::Generic => (None, None, None, None),
    };
    let auth_url = url_var(src, &var("AUTH_URL"), auth.as_deref(), environment, errs);
    let token_url = url_var(src, &var("TOKEN_URL"), token.as_deref(), environment, errs);
    let revocation_url = url_var(src, &var("REVOCATION_URL"), revoke, environment, errs);
    let userinfo_url = url_var(src, &var("USERINFO_URL"), userinfo, environment, errs);
    let redirect_uri = url_var(src, &var("REDIRECT_URI"), None, environment, errs);
    if kind == ProviderKind::Generic {
        for (name, value) in [("AUTH_URL", &auth_url), ("TOKEN_URL", &token_url)] {
            if value.is_none() && !errs.names(&var(name)) {
                errs.push(
                    &var(name),
                    format!("is required for the provider {id}"),
                    "set it to the provider's endpoint URL",
                );
            }
        }
    }

    let default_scopes = src.get(&var("SCOPES")).map(|s| split_scopes(&s)).unwrap_or_default();
    let auth_params = match src.get(&var("AUTH_PARAMS")) {
        Some(raw) => {
            url::form_urlencoded::parse(raw.as_bytes()).map(|(k, v)| (k.into_owned(), v.into_owned())).collect()
        }
        None if kind == ProviderKind::Google => vec![
            ("access_type".to_owned(), "offline".to_owned()),
            ("prompt".to_owned(), "consent".to_owned()),
            ("include_granted_scopes".to_owned(), "true".to_owned()),
        ],
        None => Vec::new(),
    };
    let pkce = flag(src, &var("PKCE"), true, errs);
    let login_hint = flag(src, &var("LOGIN_HINT"), true, errs);
    let default_auth = if kind == ProviderKind::Generic { ClientAuth::Basic } else { ClientAuth::Post };
    let client_auth = match src.get(&var("CLIENT_AUTH")) {
        None => default_auth,
        Some(v) => ClientAuth::parse(&v).unwrap_or_else(|| {
            errs.push(
                &var("CLIENT_AUTH"),
                "is not a client authentication method",
                "use client_secret_basic or client_secret_post",
            );
            default_auth
        }),
    };
    // The provider can tell who consented when it has a userinfo endpoint or issues id_tokens.
    let can_tell =
        userinfo_url.is_some() || default_scopes.iter().any(|s| s == "openid") || kind != ProviderKind::Generic;
    let default_check = if can_tell { IdentityCheck::Required } else { IdentityCheck::Off };
    let identity_check = match src.get(&var("IDENTITY_CHECK")) {
        None => default_check,
        Some(v) => IdentityCheck::parse(&v).unwrap_or_else(|| {
            errs.push(&var("IDENTITY_CHECK"), "is not an identity check mode", "use required, optional or off");
            default_check
        }),
    };

    let issuers = match src.get(&var("ISSUER")) {
        Some(raw) => raw.split(',').map(str::trim).filter(|s| !s.is_empty()).map(str::to_owned).collect(),
        None => match kind {
            ProviderKind::Google => endpoints::GOOGLE_ISSUERS.iter().map(|s| (*s).to_owned()).collect(),
            ProviderKind::Microsoft => vec![endpoints::MICROSOFT_ISSUER.to_owned()],
            _ => Vec::new(),
        },
    };
    let trust_unverified_email = flag(src, &var("TRUST_UNVERIFIED_EMAIL"), false, errs);
    let tenant_rule = (kind == ProviderKind::Microsoft).then(|| tenant_rule(src, &tenant, identity_check, errs));

    Some(ProviderConfig {
        id: id.to_owned(),
        kind,
        client_id,
        client_secret,
        auth_url: auth_url?,
        token_url: token_url?,
        revocation_url,
        userinfo_url,
        default_scopes,
        auth_params,
        pkce,
        client_auth,
        identity_check,
        login_hint,
        redirect_uri,
        source: ProviderSource::Env,
        issuers,
        trust_unverified_email,
        tenant_rule: tenant_rule.flatten(),
    })
}

/// Which tenants vouch for Microsoft addresses. With `common` or
/// `organizations` any Entra tenant can sign in, and its admin can give a user
/// anyone's `email` ("nOAuth"): a `required` identity check then needs the
/// tenants to trust listed in `MICROSOFT_ALLOWED_TENANTS`.
fn tenant_rule(src: &Source, tenant: &str, check: IdentityCheck, errs: &mut ConfigErrors) -> Option<TenantRule> {
    const ALLOWED: &str = "MICROSOFT_ALLOWED_TENANTS";
    let allowed: Vec<String> = src
        .get(ALLOWED)
        .map(|v| v.split(',').map(|t| t.trim().to_ascii_lowercase()).filter(|t| !t.is_empty()).collect())
        .unwrap_or_default();
    for bad in allowed.iter().filter(|t| !is_tenant_id(t)) {
        errs.push(
            ALLOWED,
            format!("lists {bad:?}, which is not a tenant id"),
            "list tenant ids (GUIDs), comma-separated",
        );
    }
    let tenant = tenant.trim().to_ascii_lowercase();
    if is_tenant_id(&tenant) {
        return Some(TenantRule::One(tenant));
    }
    if tenant == "consumers" {
        return Some(TenantRule::One(crate::oauth::provider::CONSUMERS_TENANT_ID.to_owned()));
    }
    if allowed.is_empty() && check == IdentityCheck::Required {
        errs.push(
            "MICROSOFT_TENANT",
            format!(
                "is {tenant:?} with a required identity check, so any Entra tenant's admin could sign in as any \
                 email address"
            ),
            format!("set MICROSOFT_TENANT to your tenant id (a GUID), or list the tenant ids to trust in {ALLOWED}"),
        );
        return None;
    }
    Some(TenantRule::AnyOf(allowed))
}

/// A tenant id: a GUID such as `72f988bf-86f1-41af-91ab-2d7cd011db47`.
fn is_tenant_id(s: &str) -> bool {
    let groups: Vec<&str> = s.split('-').collect();
    groups.len() == 5
        && groups.iter().zip([8, 4, 4, 4, 12]).all(|(g, n)| g.len() == n && g.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// Scopes separated by spaces or commas.
pub fn split_scopes(raw: &str) -> Vec<String> {
    raw.split([' ', ',']).map(str::trim).filter(|s| !s.is_empty()).map(str::to_owned).collect()
}

fn flag(src: &Source, name: &str, default: bool, errs: &mut ConfigErrors) -> bool {
    src.flag(name, default, errs)
}

pub(super) fn url_var(
    src: &Source,
    name: &str,
    default: Option<&str>,
    environment: Environment,
    errs: &mut ConfigErrors,
) -> Option<Url> {
    let given = src.get(name);
    let raw = given.as_deref().or(default)?;
    match Url::parse(raw.trim()) {
        Ok(url) if url.scheme() == "https" => Some(url),
        Ok(url) if url.scheme() == "http" && environment != Environment::Production => Some(url),
        Ok(url) if url.scheme() == "http" => {
            errs.push(name, "is not https", "providers must be reached over TLS in production");
            None
        }
        _ => {
            errs.push(name, "is not an http(s) URL", "use the provider's full endpoint URL");
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_pairs(pairs: &[(&str, &str)]) -> (Vec<ProviderConfig>, ConfigErrors) {
        let mut errs = ConfigErrors::default();
        let providers = parse(&Source::from_pairs(pairs.iter().copied()), Environment::Development, &mut errs);
        (providers, errs)
    }

    #[test]
    fn no_variables_no_providers() {
        let (providers, errs) = parse_pairs(&[]);
        assert!(providers.is_empty() && errs.is_empty());
    }

    #[test]
    fn google_gets_its_offline_parameters_and_real_endpoints() {
        let (providers, errs) = parse_pairs(&[("GOOGLE_CLIENT_ID", "cid"), ("GOOGLE_CLIENT_SECRET", "s")]);
        assert!(errs.is_empty(), "{errs}");
        let google = &providers[0];
        assert_eq!(google.kind, ProviderKind::Google);
        assert_eq!(google.token_url.as_str(), endpoints::GOOGLE_TOKEN);
        assert!(google.auth_params.contains(&("access_type".into(), "offline".into())));
        assert!(google.auth_params.contains(&("prompt".into(), "consent".into())));
        assert_eq!(google.identity_check, IdentityCheck::Required);
    }

    const TENANT: &str = "72f988bf-86f1-41af-91ab-2d7cd011db47";

    #[test]
    fn microsoft_uses_the_configured_tenant() {
        let (providers, errs) = parse_pairs(&[
            ("MICROSOFT_CLIENT_ID", "c"),
            ("MICROSOFT_CLIENT_SECRET", "s"),
            ("MICROSOFT_TENANT", TENANT),
        ]);
        assert!(errs.is_empty(), "{errs}");
        assert!(providers[0].auth_url.as_str().contains(&format!("/{TENANT}/oauth2/v2.0/authorize")));
        assert_eq!(providers[0].offline_scopes(), ["offline_access"]);
        assert_eq!(providers[0].tenant_rule, Some(TenantRule::One(TENANT.into())));
        assert_eq!(providers[0].issuers, [endpoints::MICROSOFT_ISSUER]);
    }

    #[test]
    fn a_multi_tenant_microsoft_app_needs_the_tenants_it_trusts() {
        for tenant in [None, Some("common"), Some("organizations"), Some("contoso.onmicrosoft.com")] {
            let mut pairs = vec![("MICROSOFT_CLIENT_ID", "c"), ("MICROSOFT_CLIENT_SECRET", "s")];
            pairs.extend(tenant.map(|t| ("MICROSOFT_TENANT", t)));
            let (_, errs) = parse_pairs(&pairs);
            assert!(errs.names("MICROSOFT_TENANT"), "{tenant:?}: {errs}");
            assert!(errs.to_string().contains("MICROSOFT_ALLOWED_TENANTS"), "the fix is named: {errs}");
            pairs.push(("MICROSOFT_ALLOWED_TENANTS", TENANT));
            let (providers, errs) = parse_pairs(&pairs);
            assert!(errs.is_empty(), "{errs}");
            assert_eq!(providers[0].tenant_rule, Some(TenantRule::AnyOf(vec![TENANT.into()])));
        }
        // Without a required check there is nothing to vouch for.
        let (_, errs) = parse_pairs(&[
            ("MICROSOFT_CLIENT_ID", "c"),
            ("MICROSOFT_CLIENT_SECRET", "s"),
            ("MICROSOFT_IDENTITY_CHECK", "off"),
        ]);
        assert!(errs.is_empty(), "{errs}");
        let (providers, _) = parse_pairs(&[
            ("MICROSOFT_CLIENT_ID", "c"),
            ("MICROSOFT_CLIENT_SECRET", "s"),
            ("MICROSOFT_TENANT", "consumers"),
        ]);
        assert_eq!(providers[0].tenant_rule, Some(TenantRule::One(crate::oauth::provider::CONSUMERS_TENANT_ID.into())));
        let (_, errs) = parse_pairs(&[
            ("MICROSOFT_CLIENT_ID", "c"),
            ("MICROSOFT_CLIENT_SECRET", "s"),
            ("MICROSOFT_ALLOWED_TENANTS", "contoso"),
        ]);
        assert!(errs.names("MICROSOFT_ALLOWED_TENANTS"), "{errs}");
    }

    #[test]
    fn trusting_unverified_emails_and_issuers_are_per_provider_settings() {
        let (providers, errs) = parse_pairs(&[
            ("GOOGLE_CLIENT_ID", "c"),
            ("GOOGLE_CLIENT_SECRET", "s"),
            ("AUTH_GATEWAY_PROVIDERS", "acme"),
            ("ACME_CLIENT_ID", "c"),
            ("ACME_CLIENT_SECRET", "s"),
            ("ACME_AUTH_URL", "https://idp.acme.test/authorize"),
            ("ACME_TOKEN_URL", "https://idp.acme.test/token"),
            ("ACME_ISSUER", "https://idp.acme.test"),
            ("ACME_TRUST_UNVERIFIED_EMAIL", "true"),
        ]);
        assert!(errs.is_empty(), "{errs}");
        assert_eq!(providers[0].issuers, endpoints::GOOGLE_ISSUERS);
        assert!(!providers[0].trust_unverified_email, "never by default");
        assert_eq!(providers[1].issuers, ["https://idp.acme.test"]);
        assert!(providers[1].trust_unverified_email);
    }

    #[test]
    fn half_configured_providers_are_errors() {
        let (_, errs) = parse_pairs(&[("GOOGLE_CLIENT_ID", "cid"), ("META_CLIENT_SECRET", "secret-value")]);
        assert!(errs.names("GOOGLE_CLIENT_SECRET") && errs.names("META_CLIENT_ID"), "{errs}");
        assert!(!errs.to_string().contains("secret-value"));
    }

    #[test]
    fn generic_providers_need_their_endpoints() {
        let (providers, errs) = parse_pairs(&[
            ("AUTH_GATEWAY_PROVIDERS", "acme-sso, Bad!"),
            ("ACME_SSO_CLIENT_ID", "c"),
            ("ACME_SSO_CLIENT_SECRET", "s"),
        ]);
        assert!(providers.is_empty());
        assert!(
            errs.names("ACME_SSO_AUTH_URL") && errs.names("ACME_SSO_TOKEN_URL") && errs.names(PROVIDERS_VAR),
            "{errs}"
        );
    }

    #[test]
    fn a_generic_provider_with_everything() {
        let (providers, errs) = parse_pairs(&[
            ("AUTH_GATEWAY_PROVIDERS", "mock"),
            ("MOCK_CLIENT_ID", "c"),
            ("MOCK_CLIENT_SECRET", "s"),
            ("MOCK_AUTH_URL", "http://127.0.0.1:9/authorize"),
            ("MOCK_TOKEN_URL", "http://127.0.0.1:9/token"),
            ("MOCK_USERINFO_URL", "http://127.0.0.1:9/userinfo"),
            ("MOCK_SCOPES", "openid email,mail.read"),
            ("MOCK_AUTH_PARAMS", "audience=api&x=y%20z"),
            ("MOCK_PKCE", "false"),
            ("MOCK_CLIENT_AUTH", "client_secret_post"),
        ]);
        assert!(errs.is_empty(), "{errs}");
        let mock = &providers[0];
        assert_eq!(mock.default_scopes, ["openid", "email", "mail.read"]);
        assert_eq!(mock.auth_params, [("audience".to_owned(), "api".to_owned()), ("x".to_owned(), "y z".to_owned())]);
        assert!(!mock.pkce);
        assert_eq!(mock.client_auth, ClientAuth::Post);
        assert_eq!(mock.identity_check, IdentityCheck::Required);
    }

    #[test]
    fn production_refuses_plain_http_endpoints() {
        let mut errs = ConfigErrors::default();
        let src = Source::from_pairs([
            ("GOOGLE_CLIENT_ID", "c"),
            ("GOOGLE_CLIENT_SECRET", "s"),
            ("GOOGLE_TOKEN_URL", "http://proxy.internal/token"),
        ]);
        parse(&src, Environment::Production, &mut errs);
        assert!(errs.names("GOOGLE_TOKEN_URL"), "{errs}");
    }
}
