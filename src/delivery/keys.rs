//! fluxgate's own Ed25519 keys for the optional `v1a` signatures: loaded from
//! `FLUXGATE_WEBHOOK_ED25519_KEYS`, the first signs, all are published (as `whpk_` and as a JWKS
//! at `/.well-known/jwks.json`) so receivers keep verifying through a key rotation.
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use ed25519_dalek::{SigningKey, VerifyingKey};
use rand::{CryptoRng, RngCore};
use secrecy::{ExposeSecret, SecretSlice};
use serde_json::json;
use sha2::{Digest, Sha256};

/// Comma-separated standard-base64 32-byte seeds: the current key first, then retired keys
/// still published for verification.
pub const ENV_VAR: &str = "FLUXGATE_WEBHOOK_ED25519_KEYS";

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeysError {
    #[error("{ENV_VAR} is set but holds no key")]
    Empty,
    #[error("{ENV_VAR}: entry {0} is empty (stray comma?)")]
    EmptyEntry(usize),
    #[error("{ENV_VAR}: entry {0} is not standard base64")]
    NotBase64(usize),
    #[error("{ENV_VAR}: entry {index} decodes to {len} bytes; an Ed25519 seed is 32")]
    Length { index: usize, len: usize },
    #[error("{ENV_VAR}: entry {0} repeats an earlier key")]
    Duplicate(usize),
}

/// The signing key and the keys published alongside it. Never empty.
#[derive(Clone)]
pub struct OutboundKeys {
    keys: Vec<SigningKey>,
}

impl OutboundKeys {
    /// [`ENV_VAR`]'s value as read (by clap's `env`); unset or blank means fluxgate sends no
    /// `v1a` token.
    pub fn from_env_value(value: Option<&str>) -> Result<Option<Self>, KeysError> {
        match value {
            Some(value) if !value.trim().is_empty() => Self::parse(value).map(Some),
            _ => Ok(None),
        }
    }

    /// Parses the comma-separated seeds. Errors name the variable and the 1-based entry, and
    /// never echo key material.
    pub fn parse(value: &str) -> Result<Self, KeysError> {
        if value.trim().is_empty() {
            return Err(KeysError::Empty);
        }
        let mut keys: Vec<SigningKey> = Vec::new();
        for (i, entry) in value.split(',').enumerate() {
            let index = i + 1;
            let entry = entry.trim();
            if entry.is_empty() {
                return Err(KeysError::EmptyEntry(index));
            }
            // Held as a secret so the decoded seed is zeroed when dropped.
            let seed = SecretSlice::from(
                STANDARD
                    .decode(entry)
                    .map_err(|_| KeysError::NotBase64(index))?,
            );
            let seed: &[u8; 32] =
                seed.expose_secret()
                    .try_into()
                    .map_err(|_| KeysError::Length {
                        index,
                        len: seed.expose_secret().len(),
                    })?;
            let key = SigningKey::from_bytes(seed);
            if keys
                .iter()
                .any(|k| k.verifying_key() == key.verifying_key())
            {
                return Err(KeysError::Duplicate(index));
            }
            keys.push(key);
        }
        Ok(Self { keys })
    }

    /// A fresh single key, for `dev` and tests.
    pub fn generate(rng: &mut (impl RngCore + CryptoRng)) -> Self {
        Self {
            keys: vec![SigningKey::generate(rng)],
        }
    }

    /// The key that signs `v1a` tokens now.
    pub fn signing_key(&self) -> &SigningKey {
        &self.keys[0]
    }

    /// Every published public key, the current one first.
    pub fn public_keys(&self) -> impl Iterator<Item = VerifyingKey> + '_ {
        self.keys.iter().map(SigningKey::verifying_key)
    }

    /// The current public key as `whpk_<base64>`, the spec's display form for receivers.
    pub fn public_key_whpk(&self) -> String {
        super::signing::format_public_key(&self.signing_key().verifying_key())
    }

    /// All published keys in the JWKS shape fal uses for its own webhooks, so receivers can
    /// reuse one JWKS-reading routine for both.
    pub fn jwks(&self) -> serde_json::Value {
        let keys: Vec<_> = self
            .public_keys()
            .map(|key| {
                json!({
                    "kty": "OKP",
                    "crv": "Ed25519",
                    "x": URL_SAFE_NO_PAD.encode(key.as_bytes()),
                    "kid": kid(&key),
                    "use": "sig",
                    "alg": "EdDSA",
                })
            })
            .collect();
        json!({ "keys": keys })
    }
}

/// A stable key id derived from the key itself (first 16 hex digits of SHA-256 of the public
/// key), so it needs no configuration and cannot drift from the key it names.
pub fn kid(key: &VerifyingKey) -> String {
    hex::encode(&Sha256::digest(key.as_bytes())[..8])
}

impl std::fmt::Debug for OutboundKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kids: Vec<String> = self.public_keys().map(|k| kid(&k)).collect();
        f.debug_struct("OutboundKeys")
            .field("kids", &kids)
            .field("seeds", &"<redacted>")
            .finish()
    }
}

impl std::str::FromStr for OutboundKeys {
    type Err = KeysError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::delivery::signing::{self, parse_public_key};
    use rand::rngs::StdRng;
    use rand::SeedableRng;

    fn seed(byte: u8) -> String {
        STANDARD.encode([byte; 32])
    }

    #[test]
    fn the_first_seed_signs_and_every_seed_is_published_in_order() {
        let keys = OutboundKeys::parse(&format!("{}, {}\n", seed(1), seed(2))).unwrap();
        assert_eq!(keys.signing_key().to_bytes(), [1u8; 32]);
        let published: Vec<_> = keys.public_keys().collect();
        assert_eq!(published.len(), 2);
        assert_eq!(
            published[1],
            SigningKey::from_bytes(&[2u8; 32]).verifying_key()
        );
    }

    #[test]
    fn an_unset_or_blank_variable_means_no_v1a_signatures() {
        assert!(OutboundKeys::from_env_value(None).unwrap().is_none());
        assert!(OutboundKeys::from_env_value(Some("  ")).unwrap().is_none());
        assert!(OutboundKeys::from_env_value(Some(&seed(3)))
            .unwrap()
            .is_some());
    }

    #[test]
    fn parse_errors_name_the_variable_and_the_entry_but_not_the_key() {
        let cases = [
            (format!("{},", seed(1)), KeysError::EmptyEntry(2)),
            ("%%%".to_owned(), KeysError::NotBase64(1)),
            (
                format!("{},{}", seed(1), STANDARD.encode([9u8; 31])),
                KeysError::Length { index: 2, len: 31 },
            ),
            (format!("{},{}", seed(1), seed(1)), KeysError::Duplicate(2)),
            ("".to_owned(), KeysError::Empty),
        ];
        for (value, expected) in cases {
            let err = OutboundKeys::parse(&value).unwrap_err();
            assert_eq!(err, expected, "{value}");
            let message = err.to_string();
            assert!(message.contains(ENV_VAR), "{message}");
            assert!(!message.contains(&seed(1)), "{message}");
        }
    }

    #[test]
    fn the_whpk_form_is_the_current_public_key() {
        let keys = OutboundKeys::parse(&format!("{},{}", seed(4), seed(5))).unwrap();
        let whpk = keys.public_key_whpk();
        assert!(whpk.starts_with("whpk_"));
        assert_eq!(
            parse_public_key(&whpk).unwrap(),
            keys.signing_key().verifying_key()
        );
    }

    #[test]
    fn the_jwks_lists_every_key_in_fal_s_shape_with_a_kid_derived_from_the_key() {
        let keys = OutboundKeys::parse(&format!("{},{}", seed(6), seed(7))).unwrap();
        let jwks = keys.jwks();
        let listed = jwks["keys"].as_array().unwrap();
        assert_eq!(listed.len(), 2);
        for (jwk, key) in listed.iter().zip(keys.public_keys()) {
            let x = URL_SAFE_NO_PAD.decode(jwk["x"].as_str().unwrap()).unwrap();
            assert_eq!(x, key.as_bytes());
            let kid = jwk["kid"].as_str().unwrap();
            assert_eq!(kid.len(), 16);
            assert_eq!(kid, &hex::encode(Sha256::digest(key.as_bytes()))[..16]);
            assert_eq!(
                (jwk["kty"].as_str(), jwk["crv"].as_str()),
                (Some("OKP"), Some("Ed25519"))
            );
            assert_eq!(
                (jwk["use"].as_str(), jwk["alg"].as_str()),
                (Some("sig"), Some("EdDSA"))
            );
        }
        assert_ne!(listed[0]["kid"], listed[1]["kid"]);
    }

    #[test]
    fn signatures_made_before_a_key_rotation_still_verify_with_a_published_key() {
        let old = OutboundKeys::generate(&mut StdRng::seed_from_u64(8));
        let header = signing::sign("evt_1", 50, b"x", &[], Some(old.signing_key()));
        let old_seed = STANDARD.encode(old.signing_key().to_bytes());
        let rotated = OutboundKeys::parse(&format!("{},{old_seed}", seed(9))).unwrap();
        let verified = rotated
            .public_keys()
            .any(|key| signing::verify_ed25519("evt_1", "50", &header, b"x", &key, 50).is_ok());
        assert!(verified);
    }

    #[test]
    fn debug_output_shows_key_ids_but_never_seeds() {
        let keys = OutboundKeys::parse(&seed(10)).unwrap();
        let debug = format!("{keys:?}");
        assert!(!debug.contains(&seed(10)[..10]), "{debug}");
        assert!(
            debug.contains(&kid(&keys.signing_key().verifying_key())),
            "{debug}"
        );
    }
}
