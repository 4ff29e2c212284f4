//! Encryption at rest: a Fernet keyring whose ciphertexts are bound to the row
//! and column they live in.
//!
//! * [`key`] turns configured key strings (Fernet keys or passphrases) into
//!   [`Key`]s with stable, non-secret ids.
//! * [`envelope`] is the small versioned header inside every Fernet plaintext
//!   that names the value's place, so a value copied into another row or column
//!   is refused.
//! * [`Keyring`] seals with the primary key and opens with any configured key
//!   (MultiFernet semantics), trying the key the row names first.

pub mod envelope;
pub mod key;

use std::time::Instant;

use secrecy::SecretString;
use zeroize::Zeroizing;

pub use envelope::Place;
pub use key::{Key, KeyError, KeyId};

/// A sealed value and the id of the key that sealed it: the two columns
/// (`x`, `x_key_id`) stored side by side.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Sealed {
    pub key_id: KeyId,
    /// A standard Fernet token: URL-safe base64, not secret.
    pub token: String,
}

/// A value opened by the keyring, with the id of the key that opened it.
#[derive(Debug)]
pub struct Opened {
    pub secret: SecretString,
    pub key_id: KeyId,
}

#[derive(Debug, thiserror::Error)]
pub enum CryptoError {
    #[error("no configured key can decrypt this value (stored under key id {stored_key_id})")]
    NoMatchingKey { stored_key_id: String },
    #[error("the decrypted value belongs to another row or column than {expected}")]
    WrongPlace { expected: String },
    #[error("the decrypted value is not a valid envelope: {0}")]
    Envelope(#[from] envelope::EnvelopeError),
    #[error("two configured keys are the same key (id {0})")]
    DuplicateKey(KeyId),
}

/// The primary key (seals) and the rotation keys (open only).
pub struct Keyring {
    keys: Vec<Key>,
}

impl std::fmt::Debug for Keyring {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Keyring")
            .field("primary", self.primary_id())
            .field("rotation", &self.keys[1..].iter().map(Key::id).collect::<Vec<_>>())
            .finish()
    }
}

impl Keyring {
    /// `primary` seals; `rotation` keys (old primaries) only open.
    pub fn new(primary: Key, rotation: Vec<Key>) -> Result<Self, CryptoError> {
        let mut keys = vec![primary];
        for key in rotation {
            if keys.iter().any(|k| k.id() == key.id()) {
                return Err(CryptoError::DuplicateKey(key.id().clone()));
            }
            keys.push(key);
        }
        Ok(Self { keys })
    }

    pub fn primary_id(&self) -> &KeyId {
        self.keys[0].id()
    }

    /// Every configured key id, primary first.
    pub fn key_ids(&self) -> impl Iterator<Item = &KeyId> {
        self.keys.iter().map(Key::id)
    }

    pub fn knows(&self, key_id: &str) -> bool {
        self.keys.iter().any(|k| k.id().as_str() == key_id)
    }

    /// Seals `secret` for `place` under the primary key.
    pub fn seal(&self, place: &Place, secret: &[u8]) -> Sealed {
        let started = Instant::now();
        let plaintext = Zeroizing::new(envelope::encode(place, secret));
        let primary = &self.keys[0];
        let token = primary.fernet().encrypt(&plaintext);
        metrics::histogram!(crate::telemetry::metrics::ENCRYPTION_DURATION).record(started.elapsed().as_secs_f64());
        Sealed { key_id: primary.id().clone(), token }
    }

    /// Opens a value stored at `place`. `stored_key_id` is the key id column
    /// beside it: that key is tried first, then every other configured key.
    pub fn open(&self, place: &Place, stored_key_id: &str, token: &str) -> Result<Opened, CryptoError> {
        let started = Instant::now();
        let result = self.open_inner(place, stored_key_id, token);
        metrics::histogram!(crate::telemetry::metrics::DECRYPTION_DURATION).record(started.elapsed().as_secs_f64());
        if result.is_err() {
            metrics::counter!(crate::telemetry::metrics::ENCRYPTION_ERRORS, "operation" => "decrypt").increment(1);
        }
        result
    }

    fn open_inner(&self, place: &Place, stored_key_id: &str, token: &str) -> Result<Opened, CryptoError> {
        let hinted = self.keys.iter().filter(|k| k.id().as_str() == stored_key_id);
        let others = self.keys.iter().filter(|k| k.id().as_str() != stored_key_id);
        for key in hinted.chain(others) {
            let Ok(plaintext) = key.fernet().decrypt(token) else {
                continue;
            };
            let plaintext = Zeroizing::new(plaintext);
            let secret = envelope::decode(place, &plaintext)?;
            return Ok(Opened { secret, key_id: key.id().clone() });
        }
        Err(CryptoError::NoMatchingKey { stored_key_id: stored_key_id.to_owned() })
    }

    /// Seals and opens a throwaway value: the `/health` "encryption" probe.
    pub fn self_test(&self) -> bool {
        let place = Place::new("health", "probe", "self-test");
        let sealed = self.seal(&place, b"probe");
        self.open(&place, sealed.key_id.as_str(), &sealed.token)
            .is_ok_and(|o| secrecy::ExposeSecret::expose_secret(&o.secret) == "probe")
    }
}

#[cfg(test)]
mod tests {
    use secrecy::ExposeSecret;

    use super::*;

    fn key(n: u8) -> Key {
        Key::from_bytes([n; 32]).unwrap()
    }

    fn place() -> Place {
        Place::new("oauth_credentials", "access_token", "google/alice@company.com")
    }

    #[test]
    fn primary_seals_and_opens() {
        let ring = Keyring::new(key(1), vec![]).unwrap();
        let sealed = ring.seal(&place(), b"ya29.token");
        assert_eq!(&sealed.key_id, ring.primary_id());
        let opened = ring.open(&place(), sealed.key_id.as_str(), &sealed.token).unwrap();
        assert_eq!(opened.secret.expose_secret(), "ya29.token");
        assert_eq!(&opened.key_id, ring.primary_id());
    }

    #[test]
    fn rotation_keys_open_but_never_seal() {
        let old = Keyring::new(key(1), vec![]).unwrap();
        let sealed = old.seal(&place(), b"old-token");

        let rotated = Keyring::new(key(2), vec![key(1)]).unwrap();
        let opened = rotated.open(&place(), sealed.key_id.as_str(), &sealed.token).unwrap();
        assert_eq!(opened.secret.expose_secret(), "old-token");
        assert_eq!(&opened.key_id, old.primary_id());
        assert_eq!(rotated.seal(&place(), b"new").key_id, *rotated.primary_id());
    }

    #[test]
    fn a_wrong_key_id_hint_still_opens_with_the_right_key() {
        let ring = Keyring::new(key(2), vec![key(1)]).unwrap();
        let sealed = Keyring::new(key(1), vec![]).unwrap().seal(&place(), b"t");
        let opened = ring.open(&place(), "not-a-key-id", &sealed.token).unwrap();
        assert_eq!(opened.secret.expose_secret(), "t");
    }

    #[test]
    fn a_value_no_configured_key_opens_is_refused_clearly() {
        let sealed = Keyring::new(key(1), vec![]).unwrap().seal(&place(), b"secret-value");
        let other = Keyring::new(key(3), vec![]).unwrap();
        let err = other.open(&place(), sealed.key_id.as_str(), &sealed.token).unwrap_err();
        assert!(matches!(err, CryptoError::NoMatchingKey { .. }));
        let message = err.to_string();
        assert!(message.contains(sealed.key_id.as_str()), "{message}");
        assert!(!message.contains("secret-value"));
    }

    #[test]
    fn a_tampered_token_is_refused() {
        let ring = Keyring::new(key(1), vec![]).unwrap();
        let sealed = ring.seal(&place(), b"token");
        let mut bytes = sealed.token.into_bytes();
        let middle = bytes.len() / 2;
        bytes[middle] = if bytes[middle] == b'A' { b'B' } else { b'A' };
        let tampered = String::from_utf8(bytes).unwrap();
        assert!(matches!(
            ring.open(&place(), sealed.key_id.as_str(), &tampered),
            Err(CryptoError::NoMatchingKey { .. })
        ));
    }

    #[test]
    fn a_value_moved_to_another_row_or_column_is_refused() {
        let ring = Keyring::new(key(1), vec![]).unwrap();
        let sealed = ring.seal(&place(), b"alice-token");
        let bob = Place::new("oauth_credentials", "access_token", "google/bob@company.com");
        let refresh = Place::new("oauth_credentials", "refresh_token", "google/alice@company.com");
        for elsewhere in [bob, refresh] {
            let err = ring.open(&elsewhere, sealed.key_id.as_str(), &sealed.token).unwrap_err();
            assert!(matches!(err, CryptoError::WrongPlace { .. }), "{err}");
        }
    }

    #[test]
    fn the_same_key_twice_is_a_configuration_error() {
        assert!(matches!(Keyring::new(key(1), vec![key(1)]), Err(CryptoError::DuplicateKey(_))));
    }

    #[test]
    fn debug_shows_key_ids_only() {
        let ring = Keyring::new(key(1), vec![key(2)]).unwrap();
        let debug = format!("{ring:?}");
        assert!(debug.contains(ring.primary_id().as_str()));
        use base64::Engine;
        let encoded = base64::engine::general_purpose::URL_SAFE.encode([1u8; 32]);
        assert!(!debug.contains(&encoded));
    }

    #[test]
    fn self_test_passes() {
        assert!(Keyring::new(key(1), vec![]).unwrap().self_test());
    }
}
