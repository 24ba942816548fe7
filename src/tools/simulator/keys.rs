//! The simulator's webhook-signing keys, and their rotation as fal rotates its own: from the
//! moment of a rotation every webhook is signed with the new key, and the JWKS publishes the new
//! key first and the keys it replaced after it (retries of webhooks signed before the rotation
//! still verify). A verifier that cached the JWKS before the rotation meets a key it does not
//! know, which is exactly what its re-fetch on a miss is for.
use std::sync::RwLock;

use base64::Engine as _;
use ed25519_dalek::SigningKey;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

/// How many replaced keys the JWKS keeps publishing.
const KEEP_REPLACED: usize = 2;

pub(crate) struct SigningKeys {
    /// The signing key first, then the keys it replaced, newest first.
    keys: RwLock<Vec<SigningKey>>,
}

impl SigningKeys {
    pub fn new(first: SigningKey) -> SigningKeys {
        SigningKeys {
            keys: RwLock::new(vec![first]),
        }
    }

    /// The key webhooks are signed with now.
    pub fn current(&self) -> SigningKey {
        self.keys.read().expect("signing keys lock")[0].clone()
    }

    /// Signs with a new random key from now on; returns its key id.
    pub fn rotate(&self) -> String {
        let fresh = SigningKey::generate(&mut rand::rngs::OsRng);
        let kid = kid(&fresh);
        let mut keys = self.keys.write().expect("signing keys lock");
        keys.insert(0, fresh);
        keys.truncate(1 + KEEP_REPLACED);
        kid
    }

    /// The JWKS document: the signing key, then the replaced ones.
    pub fn jwks(&self) -> Value {
        let keys = self.keys.read().expect("signing keys lock");
        let published: Vec<Value> = keys
            .iter()
            .map(|key| {
                let x = base64::engine::general_purpose::URL_SAFE_NO_PAD
                    .encode(key.verifying_key().as_bytes());
                json!({"kty": "OKP", "crv": "Ed25519", "x": x, "kid": kid(key), "use": "sig", "alg": "EdDSA"})
            })
            .collect();
        json!({ "keys": published })
    }
}

/// A key's id: the first 8 bytes of the SHA-256 of its public key, in hex.
pub(crate) fn kid(key: &SigningKey) -> String {
    hex::encode(&Sha256::digest(key.verifying_key().as_bytes())[..8])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_rotation_signs_with_a_new_key_published_first_and_keeps_publishing_the_old_ones() {
        let keys = SigningKeys::new(SigningKey::from_bytes(&[7; 32]));
        let first = keys.current();
        let new_kid = keys.rotate();
        assert_ne!(keys.current().to_bytes(), first.to_bytes());
        let published = keys.jwks();
        let kids: Vec<&str> = published["keys"]
            .as_array()
            .unwrap()
            .iter()
            .map(|k| k["kid"].as_str().unwrap())
            .collect();
        assert_eq!(kids, [new_kid.as_str(), kid(&first).as_str()]);
        keys.rotate();
        keys.rotate();
        assert_eq!(keys.jwks()["keys"].as_array().unwrap().len(), 3);
    }
}
