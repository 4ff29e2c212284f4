//! Encryption keys: parsing, derivation and non-secret ids.
//!
//! A configured key string is either
//! * a **Fernet key**: URL-safe base64 of exactly 32 bytes (what
//!   `gateway keys generate` and Python's `Fernet.generate_key()` print), used
//!   as-is; or
//! * a **passphrase**: any other string. It needs `AUTH_GATEWAY_ENCRYPTION_KEY_SALT`
//!   and is stretched with PBKDF2-HMAC-SHA256, [`PBKDF2_ITERATIONS`] iterations,
//!   32 bytes out, then URL-safe base64 encoded — byte for byte what Python's
//!   `cryptography` gives with
//!   `urlsafe_b64encode(PBKDF2HMAC(SHA256(), 32, salt, 600_000).derive(passphrase))`.
//!
//! A key's id is the first 8 bytes of HMAC-SHA256(key, "mcp-auth-gateway/key-id/v1"),
//! in hex. HMAC is a PRF, so the id reveals nothing about the key, and it is
//! the same wherever the same key is configured.

use std::fmt;

use base64::Engine;
use base64::engine::general_purpose::{URL_SAFE, URL_SAFE_NO_PAD};
use fernet::Fernet;
use hmac::{Hmac, Mac};
use rand::RngCore;
use secrecy::{ExposeSecret, SecretString};
use sha2::Sha256;
use zeroize::Zeroizing;

/// PBKDF2 iteration count for passphrase keys. Fixed: changing it changes
/// every derived key. OWASP's 2023 figure for PBKDF2-HMAC-SHA256.
pub const PBKDF2_ITERATIONS: u32 = 600_000;

const KEY_ID_LABEL: &[u8] = b"mcp-auth-gateway/key-id/v1";

/// A key's public fingerprint, stored beside every value it seals.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[serde(transparent)]
pub struct KeyId(String);

impl KeyId {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    #[error("the key is empty")]
    Empty,
    #[error(
        "the key is not a Fernet key (URL-safe base64 of 32 bytes), so it is read as a passphrase, \
         and a passphrase needs AUTH_GATEWAY_ENCRYPTION_KEY_SALT"
    )]
    PassphraseWithoutSalt,
    #[error("the salt is empty")]
    EmptySalt,
    #[error("the Fernet implementation rejected the key")]
    Rejected,
}

/// One Fernet key and its id. The key bytes are zeroed on drop (by `fernet`)
/// and never printed.
#[derive(Clone)]
pub struct Key {
    id: KeyId,
    fernet: Fernet,
}

impl fmt::Debug for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Key").field("id", &self.id).finish_non_exhaustive()
    }
}

impl Key {
    /// Parses a configured key string (see the module docs for the two forms).
    pub fn parse(input: &SecretString, salt: Option<&SecretString>) -> Result<Self, KeyError> {
        let text = input.expose_secret().trim();
        if text.is_empty() {
            return Err(KeyError::Empty);
        }
        if let Some(bytes) = decode_fernet_key(text) {
            return Self::from_bytes(*bytes);
        }
        let salt = salt.ok_or(KeyError::PassphraseWithoutSalt)?;
        if salt.expose_secret().is_empty() {
            return Err(KeyError::EmptySalt);
        }
        Self::from_bytes(*derive(text.as_bytes(), salt.expose_secret().as_bytes()))
    }

    /// Whether `input` is a Fernet key (rather than a passphrase).
    pub fn is_fernet_key(input: &str) -> bool {
        decode_fernet_key(input.trim()).is_some()
    }

    pub fn from_bytes(bytes: [u8; 32]) -> Result<Self, KeyError> {
        let bytes = Zeroizing::new(bytes);
        let id = key_id(&bytes);
        let encoded = Zeroizing::new(URL_SAFE.encode(*bytes));
        // `Fernet::new` only fails on input that is not 32 bytes of base64.
        let fernet = Fernet::new(&encoded).ok_or(KeyError::Rejected)?;
        Ok(Self { id, fernet })
    }

    pub fn id(&self) -> &KeyId {
        &self.id
    }

    pub(crate) fn fernet(&self) -> &Fernet {
        &self.fernet
    }
}

/// A new random Fernet key, as the string to configure.
pub fn generate_fernet_key() -> SecretString {
    let mut bytes = Zeroizing::new([0u8; 32]);
    rand::rngs::OsRng.fill_bytes(bytes.as_mut());
    SecretString::from(URL_SAFE.encode(*bytes))
}

/// A new random API key: 64 characters of URL-safe base64 (384 bits).
pub fn generate_api_key() -> SecretString {
    let mut bytes = Zeroizing::new([0u8; 48]);
    rand::rngs::OsRng.fill_bytes(bytes.as_mut());
    SecretString::from(URL_SAFE_NO_PAD.encode(*bytes))
}

fn decode_fernet_key(text: &str) -> Option<Zeroizing<[u8; 32]>> {
    // Python writes keys padded (44 characters); accept them unpadded too.
    let unpadded = text.trim_end_matches('=');
    let decoded = Zeroizing::new(URL_SAFE_NO_PAD.decode(unpadded).ok()?);
    let mut out = Zeroizing::new([0u8; 32]);
    if decoded.len() != out.len() {
        return None;
    }
    out.copy_from_slice(&decoded);
    Some(out)
}

fn derive(passphrase: &[u8], salt: &[u8]) -> Zeroizing<[u8; 32]> {
    let mut out = Zeroizing::new([0u8; 32]);
    pbkdf2::pbkdf2_hmac::<Sha256>(passphrase, salt, PBKDF2_ITERATIONS, out.as_mut());
    out
}

fn key_id(bytes: &[u8; 32]) -> KeyId {
    let Ok(mut mac) = <Hmac<Sha256> as Mac>::new_from_slice(bytes) else {
        // HMAC accepts keys of any length.
        return KeyId(String::new());
    };
    mac.update(KEY_ID_LABEL);
    let digest = mac.finalize().into_bytes();
    KeyId(digest[..8].iter().map(|b| format!("{b:02x}")).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secret(s: &str) -> SecretString {
        SecretString::from(s.to_owned())
    }

    /// Computed with Python 3.11 and `cryptography`:
    /// `urlsafe_b64encode(PBKDF2HMAC(algorithm=SHA256(), length=32,
    ///   salt=b"random-32-character-salt-here", iterations=600000)
    ///   .derive(b"wZq3t6v9y$B&E)H@McQfTjWnZr4u7x!A"))`
    const PYTHON_DERIVED_KEY: &str = "lcjFkPi595NBMPh0JFyB_aSReQXNXON9Q3Zviy2FjC8=";

    #[test]
    fn passphrase_derivation_matches_python_cryptography() {
        let key =
            Key::parse(&secret("wZq3t6v9y$B&E)H@McQfTjWnZr4u7x!A"), Some(&secret("random-32-character-salt-here")))
                .unwrap();
        let python = Key::parse(&secret(PYTHON_DERIVED_KEY), None).unwrap();
        assert_eq!(key.id(), python.id());
    }

    #[test]
    fn a_passphrase_without_salt_is_refused() {
        let err = Key::parse(&secret("correct horse battery staple"), None).unwrap_err();
        assert_eq!(err, KeyError::PassphraseWithoutSalt);
        assert!(!err.to_string().contains("horse"));
    }

    #[test]
    fn fernet_keys_are_used_as_is_padded_or_not() {
        let generated = generate_fernet_key();
        assert_eq!(generated.expose_secret().len(), 44);
        assert!(Key::is_fernet_key(generated.expose_secret()));
        let padded = Key::parse(&generated, None).unwrap();
        let unpadded = secret(generated.expose_secret().trim_end_matches('='));
        assert_eq!(Key::parse(&unpadded, None).unwrap().id(), padded.id());
    }

    #[test]
    fn key_ids_are_stable_distinct_and_reveal_nothing() {
        let a = Key::from_bytes([7; 32]).unwrap();
        assert_eq!(a.id(), Key::from_bytes([7; 32]).unwrap().id());
        assert_ne!(a.id(), Key::from_bytes([8; 32]).unwrap().id());
        assert_eq!(a.id().as_str().len(), 16);
        // Pinned: ids are stored in every row, so the scheme must never drift.
        assert_eq!(a.id().as_str(), "4b86fa557298466b");
    }

    #[test]
    fn generated_api_keys_are_64_url_safe_characters() {
        let key = generate_api_key();
        assert_eq!(key.expose_secret().len(), 64);
        assert!(key.expose_secret().bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'));
        assert_ne!(key.expose_secret(), generate_api_key().expose_secret());
    }

    #[test]
    fn debug_never_shows_key_material() {
        let debug = format!("{:?}", Key::from_bytes([9; 32]).unwrap());
        assert!(debug.contains("id"));
        assert!(!debug.contains(&URL_SAFE.encode([9u8; 32])));
    }
}
