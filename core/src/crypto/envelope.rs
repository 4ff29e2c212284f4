//! The envelope inside every Fernet plaintext, binding a value to its place.
//!
//! ```text
//! byte 0        version, 0x01
//! bytes 1..3    length L of the place, u16 big-endian
//! bytes 3..3+L  the place, UTF-8: "<table>.<column>/<row key>"
//! the rest      the secret itself (UTF-8 for every value we store)
//! ```
//!
//! The row key is the row's natural identity: `<provider>/<email>` for a
//! credential, the provider id for a client secret, the session id for a PKCE
//! verifier, the metadata key for the canary. Opening checks the place, so a
//! token copied from Alice's row into Bob's, or from `refresh_token` into
//! `access_token`, is refused even though the key is right. With Python:
//! `Fernet(key).decrypt(token)` gives these bytes; the secret starts at `3 + L`.

use secrecy::SecretString;

const VERSION: u8 = 1;
const HEADER: usize = 3;

/// Where a sealed value lives: table, column and row key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Place(String);

impl Place {
    pub fn new(table: &str, column: &str, row: &str) -> Self {
        Self(format!("{table}.{column}/{row}"))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum EnvelopeError {
    #[error("too short")]
    Truncated,
    #[error("unknown envelope version {0}")]
    UnknownVersion(u8),
    #[error("the secret is not UTF-8")]
    NotUtf8,
}

pub(super) fn encode(place: &Place, secret: &[u8]) -> Vec<u8> {
    let place = place.as_str().as_bytes();
    // Places are short ("table.column/provider/email", at most ~330 bytes).
    let len = u16::try_from(place.len()).unwrap_or(u16::MAX);
    let place = &place[..usize::from(len)];
    let mut out = Vec::with_capacity(HEADER + place.len() + secret.len());
    out.push(VERSION);
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(place);
    out.extend_from_slice(secret);
    out
}

pub(super) fn decode(expected: &Place, plaintext: &[u8]) -> Result<SecretString, super::CryptoError> {
    let (place, secret) = split(plaintext)?;
    if place != expected.as_str().as_bytes() {
        return Err(super::CryptoError::WrongPlace { expected: expected.as_str().to_owned() });
    }
    let secret = std::str::from_utf8(secret).map_err(|_| EnvelopeError::NotUtf8)?;
    Ok(SecretString::from(secret.to_owned()))
}

/// Splits an envelope into (place, secret) without judging the place.
pub fn split(plaintext: &[u8]) -> Result<(&[u8], &[u8]), EnvelopeError> {
    let (&version, rest) = plaintext.split_first().ok_or(EnvelopeError::Truncated)?;
    if version != VERSION {
        return Err(EnvelopeError::UnknownVersion(version));
    }
    let (len, rest) = rest.split_at_checked(2).ok_or(EnvelopeError::Truncated)?;
    let len = usize::from(u16::from_be_bytes([len[0], len[1]]));
    rest.split_at_checked(len).ok_or(EnvelopeError::Truncated)
}

#[cfg(test)]
mod tests {
    use secrecy::ExposeSecret;

    use super::*;
    use crate::crypto::{Key, Keyring};

    #[test]
    fn round_trip() {
        let place = Place::new("oauth_sessions", "pkce_verifier", "0b7c");
        let bytes = encode(&place, b"verifier");
        assert_eq!(bytes[0], 1);
        assert_eq!(decode(&place, &bytes).unwrap().expose_secret(), "verifier");
    }

    #[test]
    fn malformed_envelopes_are_errors_not_panics() {
        for bad in [&b""[..], &[1], &[1, 0], &[1, 0, 9, b'a'], &[2, 0, 0]] {
            assert!(split(bad).is_err(), "{bad:?}");
        }
        assert_eq!(split(&[1, 0, 0]).unwrap(), (&b""[..], &b""[..]));
    }

    /// Made with Python's `cryptography`:
    /// `Fernet(urlsafe_b64encode(bytes([5]*32))).encrypt(b"\x01" + len.to_bytes(2,"big")
    ///   + b"oauth_credentials.access_token/google/alice@company.com" + b"ya29.python")`
    const PYTHON_TOKEN: &str = "gAAAAABrCZN-6b_AXG-KX0_1I9846oW5BjDVu8TtSRvlFkC9RatpLD5RoO8BFBPQNrUHJLbSNtyPM3leEM5ZeyQKahkSrmBP_ju5QUckZo9Q1VN9k1yMgbL1bGNDsH1H0HqpF4sqUD4Ou5DyuXws_S6_hZgvZVdmvE24KrL0Md_1LP7i6qWR240=";

    proptest::proptest! {
        /// The decoder's fuzz target: any bytes are split or refused, never a panic.
        #[test]
        fn any_bytes_are_decoded_or_refused(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..600)) {
            let place = Place::new("t", "c", "r");
            let _ = split(&bytes);
            let _ = decode(&place, &bytes);
        }

        /// Whatever is sealed for a place opens there, and nowhere else.
        #[test]
        fn envelopes_round_trip_and_stay_in_their_place(
            table in "[a-z_]{1,20}", row in "[ -~]{0,300}", secret in proptest::collection::vec(proptest::num::u8::ANY, 0..400)
        ) {
            let place = Place::new(&table, "col", &row);
            let bytes = encode(&place, &secret);
            let (found, rest) = split(&bytes).unwrap();
            proptest::prop_assert_eq!(found, place.as_str().as_bytes());
            proptest::prop_assert_eq!(rest, &secret[..]);
            let elsewhere = Place::new(&table, "other", &row);
            proptest::prop_assert!(decode(&elsewhere, &bytes).is_err());
        }
    }

    #[test]
    fn tokens_written_by_python_fernet_open_here() {
        let ring = Keyring::new(Key::from_bytes([5; 32]).unwrap(), vec![]).unwrap();
        let place = Place::new("oauth_credentials", "access_token", "google/alice@company.com");
        let opened = ring.open(&place, ring.primary_id().as_str(), PYTHON_TOKEN).unwrap();
        assert_eq!(opened.secret.expose_secret(), "ya29.python");
    }
}
