//! Secrets at rest: the keyring that seals the signing secrets fluxgate keeps in Postgres
//! (subscriptions' current and previous secrets, tenants' webhook secrets, the server's own
//! callback-token key), so that a database dump is not every receiver's key.
//!
//! With `FLUXGATE_ENCRYPTION_KEY` set (one or more base64 32-byte keys, comma-separated), values
//! are written as `enc:v1:<key id>:<base64 nonce‖ciphertext>`, AES-256-GCM with a random 96-bit
//! nonce per value and the row it belongs to as associated data, so a ciphertext copied onto
//! another row does not open. The first key seals; every key opens, which is how a key is
//! rotated: put the new key first, run `fluxgate secrets reencrypt`, then drop the old one.
//! A key's id is the first 8 hex digits of its SHA-256, so the id says which key sealed a value
//! without saying anything about the key.
//!
//! Without a key, values are stored as they are (`whsec_…`), and values stored either way are
//! read either way: turning encryption on needs no migration, and `reencrypt` seals old rows.
use crate::domain::ids::{SubscriptionId, TenantId};
pub mod reencrypt;

use std::fmt;

use aes_gcm::{
    aead::{Aead, KeyInit, Payload},
    Aes256Gcm, Nonce,
};
use base64::{engine::general_purpose::STANDARD, Engine};
use rand::RngCore;
use secrecy::{ExposeSecret, SecretString};
use sha2::{Digest, Sha256};

const PREFIX: &str = "enc:v1:";
const NONCE_BYTES: usize = 12;

/// The keys that seal and open stored secrets; empty when encryption is off.
#[derive(Clone, Default)]
pub struct Keyring {
    keys: Vec<Key>,
}

#[derive(Clone)]
struct Key {
    id: String,
    cipher: Aes256Gcm,
}

/// Only the key ids: they say which key sealed a value, never anything of the key.
impl fmt::Debug for Keyring {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Keyring")
            .field(
                "key_ids",
                &self.keys.iter().map(|k| &k.id).collect::<Vec<_>>(),
            )
            .finish()
    }
}

/// Why a stored value could not be opened.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OpenError {
    #[error("the value is encrypted but FLUXGATE_ENCRYPTION_KEY is not set")]
    NoKeys,
    #[error("the value was encrypted with key {0}, which FLUXGATE_ENCRYPTION_KEY does not hold")]
    UnknownKey(String),
    #[error("the value is not a well-formed encrypted secret")]
    Malformed,
    #[error("the value does not decrypt: the key is wrong or the value was moved or altered")]
    Tampered,
}

/// Which row a value belongs to: the associated data of its encryption.
#[derive(Debug, Clone, Copy)]
pub enum Owner {
    Subscription(SubscriptionId),
    Tenant(TenantId),
    Server(&'static str),
}

impl Owner {
    fn associated_data(self) -> Vec<u8> {
        match self {
            Owner::Subscription(id) => format!("subscription:{id}"),
            Owner::Tenant(id) => format!("tenant:{id}"),
            Owner::Server(name) => format!("server:{name}"),
        }
        .into_bytes()
    }
}

impl Keyring {
    /// Parses `FLUXGATE_ENCRYPTION_KEY`: comma-separated standard-base64 keys of 32 bytes each.
    /// Errors never contain a key.
    pub fn parse(value: &str) -> Result<Keyring, String> {
        let mut keys = Vec::new();
        for (n, part) in value.split(',').map(str::trim).enumerate() {
            if part.is_empty() {
                continue;
            }
            let bytes = STANDARD
                .decode(part)
                .map_err(|_| format!("key {} is not standard base64", n + 1))?;
            if bytes.len() != 32 {
                return Err(format!(
                    "key {} decodes to {} bytes; AES-256 needs exactly 32 (make one with `openssl rand -base64 32`)",
                    n + 1,
                    bytes.len()
                ));
            }
            keys.push(Key::new(&bytes));
        }
        if keys.is_empty() {
            return Err("holds no key".into());
        }
        Ok(Keyring { keys })
    }

    /// A fresh random key, as `FLUXGATE_ENCRYPTION_KEY` spells it (for `dev`).
    pub fn generate_key() -> SecretString {
        let mut bytes = [0u8; 32];
        rand::rngs::OsRng.fill_bytes(&mut bytes);
        SecretString::from(STANDARD.encode(bytes))
    }

    pub fn is_enabled(&self) -> bool {
        !self.keys.is_empty()
    }

    /// The id of the key that seals, if any.
    pub fn primary_id(&self) -> Option<&str> {
        self.keys.first().map(|k| k.id.as_str())
    }

    /// The value to store for `plaintext`, owned by `owner`: sealed with the first key, or the
    /// plaintext itself when encryption is off.
    pub fn seal(&self, plaintext: &str, owner: Owner) -> String {
        let Some(key) = self.keys.first() else {
            return plaintext.to_owned();
        };
        let mut nonce = [0u8; NONCE_BYTES];
        rand::rngs::OsRng.fill_bytes(&mut nonce);
        let aad = owner.associated_data();
        let sealed = key
            .cipher
            .encrypt(
                Nonce::from_slice(&nonce),
                Payload {
                    msg: plaintext.as_bytes(),
                    aad: &aad,
                },
            )
            .expect("AES-GCM encryption of a short secret cannot fail");
        let mut out = Vec::with_capacity(NONCE_BYTES + sealed.len());
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&sealed);
        format!("{PREFIX}{}:{}", key.id, STANDARD.encode(out))
    }

    /// The secret a stored value holds: decrypted with whichever key sealed it, or the value
    /// itself when it was stored in plaintext.
    pub fn open(&self, stored: &str, owner: Owner) -> Result<SecretString, OpenError> {
        let Some(rest) = stored.strip_prefix(PREFIX) else {
            return Ok(SecretString::from(stored.to_owned()));
        };
        if self.keys.is_empty() {
            return Err(OpenError::NoKeys);
        }
        let (id, encoded) = rest.split_once(':').ok_or(OpenError::Malformed)?;
        let key = self
            .keys
            .iter()
            .find(|k| k.id == id)
            .ok_or_else(|| OpenError::UnknownKey(id.to_owned()))?;
        let bytes = STANDARD.decode(encoded).map_err(|_| OpenError::Malformed)?;
        if bytes.len() < NONCE_BYTES + 16 {
            return Err(OpenError::Malformed);
        }
        let (nonce, sealed) = bytes.split_at(NONCE_BYTES);
        let aad = owner.associated_data();
        let plain = key
            .cipher
            .decrypt(
                Nonce::from_slice(nonce),
                Payload {
                    msg: sealed,
                    aad: &aad,
                },
            )
            .map_err(|_| OpenError::Tampered)?;
        String::from_utf8(plain)
            .map(SecretString::from)
            .map_err(|_| OpenError::Malformed)
    }

    /// Whether `stored` is already sealed with the first key (`reencrypt` leaves those alone).
    pub fn is_current(&self, stored: &str) -> bool {
        match (self.primary_id(), stored.strip_prefix(PREFIX)) {
            (Some(id), Some(rest)) => rest.split_once(':').is_some_and(|(k, _)| k == id),
            (None, None) => true,
            _ => false,
        }
    }

    /// `stored`, opened and sealed again with the first key; `None` when it already is.
    pub fn reseal(&self, stored: &str, owner: Owner) -> Result<Option<String>, OpenError> {
        if self.is_current(stored) {
            return Ok(None);
        }
        let plain = self.open(stored, owner)?;
        Ok(Some(self.seal(plain.expose_secret(), owner)))
    }
}

impl Key {
    fn new(bytes: &[u8]) -> Key {
        let digest = Sha256::digest(bytes);
        Key {
            id: hex::encode(&digest[..4]),
            cipher: Aes256Gcm::new_from_slice(bytes).expect("a 32-byte key"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(byte: u8) -> String {
        STANDARD.encode([byte; 32])
    }

    #[test]
    fn a_sealed_secret_opens_only_on_its_own_row_and_never_shows_the_plaintext() {
        let ring = Keyring::parse(&key(1)).unwrap();
        let owner = Owner::Subscription(SubscriptionId::from_uuid(uuid::Uuid::from_u128(1)));
        let sealed = ring.seal("whsec_abc", owner);
        assert!(sealed.starts_with("enc:v1:") && !sealed.contains("whsec_abc"));
        assert_eq!(
            ring.open(&sealed, owner).unwrap().expose_secret(),
            "whsec_abc"
        );
        // Each sealing draws a fresh nonce.
        assert_ne!(ring.seal("whsec_abc", owner), sealed);
        let other = Owner::Subscription(SubscriptionId::from_uuid(uuid::Uuid::from_u128(2)));
        assert_eq!(ring.open(&sealed, other).unwrap_err(), OpenError::Tampered);
        let mut flipped = sealed.clone().into_bytes();
        let last = flipped.len() - 3;
        flipped[last] = if flipped[last] == b'A' { b'B' } else { b'A' };
        let flipped = String::from_utf8(flipped).unwrap();
        assert!(ring.open(&flipped, owner).is_err());
        assert!(!format!("{ring:?}").contains(&key(1)));
    }

    #[test]
    fn the_first_key_seals_every_key_opens_and_plaintext_rows_still_read() {
        let old = Keyring::parse(&key(1)).unwrap();
        let owner = Owner::Tenant(TenantId::from_uuid(uuid::Uuid::from_u128(7)));
        let by_old = old.seal("whsec_old", owner);
        let rotated = Keyring::parse(&format!("{}, {}", key(2), key(1))).unwrap();
        assert_eq!(
            rotated.open(&by_old, owner).unwrap().expose_secret(),
            "whsec_old"
        );
        assert!(!rotated.is_current(&by_old));
        let resealed = rotated.reseal(&by_old, owner).unwrap().unwrap();
        assert!(rotated.is_current(&resealed));
        assert_eq!(rotated.reseal(&resealed, owner).unwrap(), None);
        // The new key alone opens the resealed value, and no longer the old one.
        let new_only = Keyring::parse(&key(2)).unwrap();
        assert_eq!(
            new_only.open(&resealed, owner).unwrap().expose_secret(),
            "whsec_old"
        );
        assert!(matches!(
            new_only.open(&by_old, owner),
            Err(OpenError::UnknownKey(_))
        ));
        // Plaintext rows read with or without keys; sealed rows need one.
        assert_eq!(
            rotated.open("whsec_plain", owner).unwrap().expose_secret(),
            "whsec_plain"
        );
        assert_eq!(
            Keyring::default().open(&by_old, owner).unwrap_err(),
            OpenError::NoKeys
        );
        assert_eq!(Keyring::default().seal("whsec_x", owner), "whsec_x");
    }

    #[test]
    fn malformed_keys_are_refused_without_echoing_them() {
        for bad in ["", " , ", "not-base64!", &STANDARD.encode([1u8; 16])] {
            let e = Keyring::parse(bad).unwrap_err();
            assert!(!e.contains("not-base64") && !e.contains("AQEB"), "{e}");
        }
    }
}
