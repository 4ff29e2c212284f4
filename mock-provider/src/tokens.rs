//! The values the provider mints and checks: random tokens, PKCE challenges and the stable
//! subject identifier derived from an email.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rand::RngCore;
use sha2::{Digest, Sha256};

/// Prefix of authorization codes.
pub const CODE_PREFIX: &str = "mock_code_";
/// Prefix of access tokens.
pub const ACCESS_TOKEN_PREFIX: &str = "mock_at_";
/// Prefix of refresh tokens.
pub const REFRESH_TOKEN_PREFIX: &str = "mock_rt_";

/// `prefix` followed by 32 random bytes in URL-safe base64 (43 characters), so tokens are
/// unguessable, safe in URLs and forms, and their kind is visible in logs.
pub(crate) fn random_token(prefix: &str) -> String {
    let mut bytes = [0u8; 32];
    rand::thread_rng().fill_bytes(&mut bytes);
    format!("{prefix}{}", URL_SAFE_NO_PAD.encode(bytes))
}

/// RFC 7636 §4.2 S256: `BASE64URL-NOPAD(SHA256(ASCII(code_verifier)))`.
pub fn s256_challenge(verifier: &str) -> String {
    URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()))
}

/// RFC 7636 §4.1: verifiers (and S256 challenges) are 43 to 128 unreserved characters.
pub(crate) fn is_pkce_value(value: &str) -> bool {
    (43..=128).contains(&value.len())
        && value.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~'))
}

/// The OIDC `sub` of a user: stable across runs and servers, so tests can predict it, and
/// opaque like a real provider's (Google's are long decimal strings).
pub fn subject_for(email: &str) -> String {
    let digest = Sha256::digest(email.trim().to_ascii_lowercase().as_bytes());
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    format!("{:020}", u64::from_be_bytes(first))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_prefixed_long_and_url_safe() {
        let token = random_token(ACCESS_TOKEN_PREFIX);
        assert!(token.starts_with("mock_at_"));
        assert_eq!(token.len(), "mock_at_".len() + 43);
        assert!(token.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'));
        assert_ne!(token, random_token(ACCESS_TOKEN_PREFIX));
    }

    #[test]
    fn s256_matches_rfc7636_appendix_b() {
        assert_eq!(
            s256_challenge("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"),
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
        );
    }

    #[test]
    fn pkce_values_are_checked_for_length_and_alphabet() {
        assert!(is_pkce_value(&"a".repeat(43)));
        assert!(is_pkce_value(&"a~._-".repeat(20)));
        assert!(!is_pkce_value(&"a".repeat(42)));
        assert!(!is_pkce_value(&"a".repeat(129)));
        assert!(!is_pkce_value(&format!("{}+", "a".repeat(43))));
    }

    #[test]
    fn subject_is_stable_and_case_insensitive() {
        assert_eq!(subject_for("Alice@Example.com"), subject_for("alice@example.com"));
        assert_ne!(subject_for("alice@example.com"), subject_for("bob@example.com"));
        assert_eq!(subject_for("alice@example.com").len(), 20);
    }
}
