//! Standard Webhooks signatures: `webhook-signature: v1,<base64 HMAC-SHA256
//! of "<webhook-id>.<webhook-timestamp>.<body>">`, keyed by the bytes of a
//! `whsec_<base64>` secret, so receivers verify with the existing libraries.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, Mac};
use secrecy::{ExposeSecret, SecretBox, SecretString};
use sha2::Sha256;

/// The prefix of a secret's text form.
pub const PREFIX: &str = "whsec_";
/// Receivers refuse timestamps further than this from their clock.
pub const TOLERANCE_SECONDS: i64 = 300;

/// A signing secret (the key bytes).
pub struct Secret(SecretBox<Vec<u8>>);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(..)")
    }
}

/// Why a secret's text cannot be used.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum SecretError {
    #[error("a webhook secret is whsec_ followed by base64 of 24 to 64 bytes")]
    Malformed,
}

impl Secret {
    /// A new random secret of 32 bytes.
    pub fn generate() -> Self {
        let bytes: [u8; 32] = rand::random();
        Self(SecretBox::new(Box::new(bytes.to_vec())))
    }

    /// Parses `whsec_<base64>`.
    pub fn parse(text: &str) -> Result<Self, SecretError> {
        let encoded = text.trim().strip_prefix(PREFIX).ok_or(SecretError::Malformed)?;
        let bytes = STANDARD.decode(encoded).map_err(|_| SecretError::Malformed)?;
        if !(24..=64).contains(&bytes.len()) {
            return Err(SecretError::Malformed);
        }
        Ok(Self(SecretBox::new(Box::new(bytes))))
    }

    /// The `whsec_` text (shown once, when generated; stored sealed).
    pub fn to_text(&self) -> SecretString {
        SecretString::from(format!("{PREFIX}{}", STANDARD.encode(self.0.expose_secret())))
    }

    /// `v1,<signature>` of one delivery.
    pub fn sign(&self, id: &str, timestamp: i64, body: &str) -> String {
        let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(self.0.expose_secret()) else {
            // HMAC takes keys of any length.
            return String::new();
        };
        mac.update(format!("{id}.{timestamp}.").as_bytes());
        mac.update(body.as_bytes());
        format!("v1,{}", STANDARD.encode(mac.finalize().into_bytes()))
    }

    /// Checks a `webhook-signature` header (space-separated `v1,<sig>` list)
    /// the way receivers do, within [`TOLERANCE_SECONDS`] of `now`.
    pub fn verify(&self, id: &str, timestamp: i64, body: &str, header: &str, now: i64) -> bool {
        if (now - timestamp).abs() > TOLERANCE_SECONDS {
            return false;
        }
        let expected = self.sign(id, timestamp, body);
        header.split(' ').any(|candidate| {
            use subtle::ConstantTimeEq;
            candidate.len() == expected.len() && bool::from(candidate.as_bytes().ct_eq(expected.as_bytes()))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_match_the_standard_webhooks_reference_vector() {
        // The specification's example: secret, id, timestamp and body, and the signature it gives.
        let secret = Secret::parse("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
        let body = r#"{"test": 2432232314}"#;
        let sig = secret.sign("msg_p5jXN8AQM9LWM0D4loKWxJek", 1_614_265_330, body);
        assert_eq!(sig, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
        assert!(secret.verify(
            "msg_p5jXN8AQM9LWM0D4loKWxJek",
            1_614_265_330,
            body,
            &format!("v1,x {sig}"),
            1_614_265_331
        ));
        assert!(!secret.verify("msg_p5jXN8AQM9LWM0D4loKWxJek", 1_614_265_330, "{}", &sig, 1_614_265_331));
        assert!(!secret.verify("msg_p5jXN8AQM9LWM0D4loKWxJek", 1_614_265_330, body, &sig, 1_614_265_330 + 301));
    }

    #[test]
    fn secrets_round_trip_and_malformed_ones_are_refused() {
        let s = Secret::generate();
        let text = s.to_text();
        assert!(text.expose_secret().starts_with(PREFIX));
        let again = Secret::parse(text.expose_secret()).unwrap();
        assert_eq!(again.sign("a", 1, "b"), s.sign("a", 1, "b"));
        for bad in ["", "whsec_", "whsec_!!!", "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "whsec_c2hvcnQ="] {
            assert_eq!(Secret::parse(bad).unwrap_err(), SecretError::Malformed, "{bad}");
        }
        assert_eq!(format!("{s:?}"), "Secret(..)");
    }
}
