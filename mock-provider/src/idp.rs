//! A small identity provider of our own, standing in for Okta, Entra ID, Google
//! Workspace or Keycloak in the token-exchange tests: it publishes signing keys as a
//! JWKS (at `/idp/jwks`, discoverable from `/idp/.well-known/openid-configuration`),
//! rotates them on request, and mints access tokens for MCP servers.
//!
//! It signs with ES256 and EdDSA through `ring` (never through the gateway's verifier
//! library, so the two sides cannot share a bug), and it forges tokens on request:
//! `alg: none`, HS256 keyed with the public key (algorithm confusion), and tokens signed
//! by a key it never published. [`SigningKey`] is public so a test can also play an MCP
//! server's headless worker, which signs assertions with a key registered at the gateway.

use std::sync::{Mutex, PoisonError};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use ring::rand::SystemRandom;
use ring::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, Ed25519KeyPair, KeyPair};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

/// The signature algorithms this IdP signs with.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Alg {
    /// ECDSA on P-256 with SHA-256.
    #[serde(rename = "ES256")]
    Es256,
    /// Ed25519.
    #[serde(rename = "EdDSA")]
    EdDsa,
}

impl Alg {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Es256 => "ES256",
            Self::EdDsa => "EdDSA",
        }
    }
}

/// A forged token, for the refusal tests.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Forgery {
    /// `{"alg":"none"}` and an empty signature.
    AlgNone,
    /// `{"alg":"HS256"}`, keyed with the current public key's JWK (algorithm confusion).
    Hs256WithPublicKey,
    /// Properly signed, by a key whose `kid` was never published.
    UnpublishedKey,
}

enum Pair {
    Ec(EcdsaKeyPair),
    Ed(Ed25519KeyPair),
}

/// One signing key and its `kid`.
pub struct SigningKey {
    kid: String,
    alg: Alg,
    pair: Pair,
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigningKey").field("kid", &self.kid).field("alg", &self.alg).finish_non_exhaustive()
    }
}

fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

fn random_kid() -> String {
    let bytes: [u8; 9] = rand::random();
    b64(&bytes)
}

impl SigningKey {
    /// A fresh key pair with a random `kid`.
    ///
    /// # Panics
    /// Never in practice: ring fails only when the OS has no randomness.
    #[allow(clippy::expect_used)]
    pub fn generate(alg: Alg) -> Self {
        let rng = SystemRandom::new();
        let pair = match alg {
            Alg::Es256 => {
                let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng)
                    .expect("the OS provides randomness");
                Pair::Ec(
                    EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref(), &rng)
                        .expect("ring accepts the key it generated"),
                )
            }
            Alg::EdDsa => {
                let pkcs8 = Ed25519KeyPair::generate_pkcs8(&rng).expect("the OS provides randomness");
                Pair::Ed(Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).expect("ring accepts the key it generated"))
            }
        };
        Self { kid: random_kid(), alg, pair }
    }

    pub fn kid(&self) -> &str {
        &self.kid
    }

    pub fn alg(&self) -> Alg {
        self.alg
    }

    /// The public half as a JWK (RFC 7517, with `kid`, `alg` and `use`).
    pub fn public_jwk(&self) -> Value {
        match &self.pair {
            Pair::Ec(pair) => {
                // SEC1 uncompressed point: 0x04 || x (32 bytes) || y (32 bytes).
                let (x, y) = pair.public_key().as_ref()[1..].split_at(32);
                json!({"kty": "EC", "crv": "P-256", "x": b64(x), "y": b64(y),
                       "kid": self.kid, "alg": "ES256", "use": "sig"})
            }
            Pair::Ed(pair) => json!({"kty": "OKP", "crv": "Ed25519", "x": b64(pair.public_key().as_ref()),
                                     "kid": self.kid, "alg": "EdDSA", "use": "sig"}),
        }
    }

    /// A compact JWS of `claims` with the header `{"alg", "typ": "JWT", "kid"}`.
    pub fn sign(&self, claims: &Value) -> String {
        let header = json!({"alg": self.alg.as_str(), "typ": "JWT", "kid": self.kid});
        self.sign_with_header(&header, claims)
    }

    /// A compact JWS of `claims` under any header (a test may lie in it).
    #[allow(clippy::expect_used)]
    pub fn sign_with_header(&self, header: &Value, claims: &Value) -> String {
        let input = format!("{}.{}", b64(header.to_string().as_bytes()), b64(claims.to_string().as_bytes()));
        let signature = match &self.pair {
            Pair::Ec(pair) => {
                pair.sign(&SystemRandom::new(), input.as_bytes()).expect("the OS provides randomness").as_ref().to_vec()
            }
            Pair::Ed(pair) => pair.sign(input.as_bytes()).as_ref().to_vec(),
        };
        format!("{input}.{}", b64(&signature))
    }
}

/// The IdP's keys: those published in the JWKS (the last one signs), and one it
/// never published.
#[derive(Debug)]
pub(crate) struct Idp {
    keys: Mutex<Keys>,
}

#[derive(Debug)]
struct Keys {
    published: Vec<SigningKey>,
    unpublished: SigningKey,
    alg: Alg,
}

impl Idp {
    pub(crate) fn new() -> Self {
        Self {
            keys: Mutex::new(Keys {
                published: vec![SigningKey::generate(Alg::Es256)],
                unpublished: SigningKey::generate(Alg::Es256),
                alg: Alg::Es256,
            }),
        }
    }

    fn keys(&self) -> std::sync::MutexGuard<'_, Keys> {
        self.keys.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The published keys, as served at `/idp/jwks`.
    pub(crate) fn jwks(&self) -> Value {
        json!({"keys": self.keys().published.iter().map(SigningKey::public_jwk).collect::<Vec<_>>()})
    }

    /// Publishes a new signing key (of `alg`, or the current algorithm) and signs with it
    /// from now on; `retire_previous` removes every older key from the JWKS. Returns the new `kid`.
    pub(crate) fn rotate(&self, alg: Option<Alg>, retire_previous: bool) -> String {
        let mut keys = self.keys();
        let alg = alg.unwrap_or(keys.alg);
        keys.alg = alg;
        if retire_previous {
            keys.published.clear();
        }
        let key = SigningKey::generate(alg);
        let kid = key.kid.clone();
        keys.published.push(key);
        kid
    }

    /// A token carrying `claims`, signed by the current key, or forged as asked.
    pub(crate) fn mint(&self, claims: &Value, forgery: Option<Forgery>) -> String {
        let keys = self.keys();
        let Some(current) = keys.published.last() else {
            return keys.unpublished.sign(claims);
        };
        match forgery {
            None => current.sign(claims),
            Some(Forgery::UnpublishedKey) => keys.unpublished.sign(claims),
            Some(Forgery::AlgNone) => {
                let header = json!({"alg": "none", "typ": "JWT", "kid": current.kid});
                format!("{}.{}.", b64(header.to_string().as_bytes()), b64(claims.to_string().as_bytes()))
            }
            Some(Forgery::Hs256WithPublicKey) => {
                let header = json!({"alg": "HS256", "typ": "JWT", "kid": current.kid});
                let input = format!("{}.{}", b64(header.to_string().as_bytes()), b64(claims.to_string().as_bytes()));
                let secret = current.public_jwk().to_string();
                let signature = match Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()) {
                    Ok(mut mac) => {
                        mac.update(input.as_bytes());
                        mac.finalize().into_bytes().to_vec()
                    }
                    Err(_) => Vec::new(),
                };
                format!("{input}.{}", b64(&signature))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts(token: &str) -> Vec<Value> {
        token.split('.').take(2).map(|p| serde_json::from_slice(&URL_SAFE_NO_PAD.decode(p).unwrap()).unwrap()).collect()
    }

    #[test]
    fn signatures_verify_with_the_published_key() {
        for alg in [Alg::Es256, Alg::EdDsa] {
            let key = SigningKey::generate(alg);
            let token = key.sign(&json!({"sub": "alice"}));
            let (input, sig) = token.rsplit_once('.').unwrap();
            let sig = URL_SAFE_NO_PAD.decode(sig).unwrap();
            let jwk = key.public_jwk();
            let public = match alg {
                Alg::Es256 => {
                    let mut point = vec![4u8];
                    point.extend(URL_SAFE_NO_PAD.decode(jwk["x"].as_str().unwrap()).unwrap());
                    point.extend(URL_SAFE_NO_PAD.decode(jwk["y"].as_str().unwrap()).unwrap());
                    ring::signature::UnparsedPublicKey::new(&ring::signature::ECDSA_P256_SHA256_FIXED, point)
                        .verify(input.as_bytes(), &sig)
                }
                Alg::EdDsa => ring::signature::UnparsedPublicKey::new(
                    &ring::signature::ED25519,
                    URL_SAFE_NO_PAD.decode(jwk["x"].as_str().unwrap()).unwrap(),
                )
                .verify(input.as_bytes(), &sig),
            };
            assert!(public.is_ok(), "{alg:?} signature must verify");
            assert_eq!(parts(&token)[0]["kid"], key.kid());
        }
    }

    #[test]
    fn rotation_publishes_a_new_key_and_can_retire_the_old() {
        let idp = Idp::new();
        let first = idp.jwks()["keys"][0]["kid"].as_str().unwrap().to_owned();
        let second = idp.rotate(Some(Alg::EdDsa), false);
        assert_eq!(idp.jwks()["keys"].as_array().unwrap().len(), 2);
        assert_eq!(parts(&idp.mint(&json!({}), None))[0]["kid"], second.as_str());
        idp.rotate(None, true);
        let kids: Vec<_> = idp.jwks()["keys"].as_array().unwrap().iter().map(|k| k["kid"].clone()).collect();
        assert_eq!(kids.len(), 1);
        assert!(!kids.contains(&json!(first)));
        assert_eq!(idp.jwks()["keys"][0]["alg"], "EdDSA");
    }

    #[test]
    fn forgeries_look_like_what_they_claim() {
        let idp = Idp::new();
        let none = idp.mint(&json!({}), Some(Forgery::AlgNone));
        assert!(none.ends_with('.'));
        assert_eq!(parts(&none)[0]["alg"], "none");
        assert_eq!(parts(&idp.mint(&json!({}), Some(Forgery::Hs256WithPublicKey)))[0]["alg"], "HS256");
        let hidden = parts(&idp.mint(&json!({}), Some(Forgery::UnpublishedKey)))[0]["kid"].clone();
        assert!(!idp.jwks().to_string().contains(hidden.as_str().unwrap()));
    }
}
