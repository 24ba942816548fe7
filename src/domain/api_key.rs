//! API keys: `fg_<lookup>_<secret>`. The lookup part finds the row; only the SHA-256 of the
//! whole key is stored, and it is compared in constant time. A key is shown once, at creation.
use rand::{distributions::Alphanumeric, Rng};
use secrecy::{ExposeSecret, SecretString};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

const LOOKUP_LEN: usize = 12;
const SECRET_LEN: usize = 40;

/// A freshly minted key: the secret text exists only until it is printed.
pub struct NewApiKey {
    pub lookup: String,
    pub secret: SecretString,
    pub hash: [u8; 32],
}

impl std::fmt::Debug for NewApiKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NewApiKey")
            .field("lookup", &self.lookup)
            .finish_non_exhaustive()
    }
}

impl NewApiKey {
    pub fn generate() -> NewApiKey {
        let mut rng = rand::thread_rng();
        let lookup: String = (&mut rng)
            .sample_iter(Alphanumeric)
            .take(LOOKUP_LEN)
            .map(|c| (c as char).to_ascii_lowercase())
            .collect();
        let secret: String = (&mut rng)
            .sample_iter(Alphanumeric)
            .take(SECRET_LEN)
            .map(char::from)
            .collect();
        let full = format!("fg_{lookup}_{secret}");
        let hash = hash_key(&full);
        NewApiKey {
            lookup,
            secret: SecretString::from(full),
            hash,
        }
    }
}

/// A presented key, split into its lookup part; the whole text stays secret.
pub struct PresentedKey {
    pub lookup: String,
    full: SecretString,
}

impl PresentedKey {
    /// Parses the shape only; `None` for anything that cannot be one of our keys.
    pub fn parse(s: &str) -> Option<PresentedKey> {
        let rest = s.strip_prefix("fg_")?;
        let (lookup, secret) = rest.split_once('_')?;
        let ok = lookup.len() == LOOKUP_LEN
            && secret.len() == SECRET_LEN
            && lookup
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
            && secret.bytes().all(|b| b.is_ascii_alphanumeric());
        ok.then(|| PresentedKey {
            lookup: lookup.to_owned(),
            full: SecretString::from(s.to_owned()),
        })
    }

    /// Constant-time comparison of this key's hash with a stored one.
    pub fn matches(&self, stored_hash: &[u8]) -> bool {
        let hash = hash_key(self.full.expose_secret());
        stored_hash.len() == hash.len() && bool::from(hash.ct_eq(stored_hash))
    }
}

impl std::fmt::Debug for PresentedKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PresentedKey")
            .field("lookup", &self.lookup)
            .finish_non_exhaustive()
    }
}

fn hash_key(full: &str) -> [u8; 32] {
    Sha256::digest(full.as_bytes()).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_generated_key_parses_and_matches_only_its_own_hash() {
        let key = NewApiKey::generate();
        let text = key.secret.expose_secret().to_owned();
        let presented = PresentedKey::parse(&text).expect("shape");
        assert_eq!(presented.lookup, key.lookup);
        assert!(presented.matches(&key.hash));
        let other = NewApiKey::generate();
        assert!(!presented.matches(&other.hash));
        assert!(!presented.matches(&key.hash[..31]));
        assert!(!format!("{key:?}{presented:?}").contains(&text[16..]));
    }

    #[test]
    fn malformed_keys_are_refused_by_shape() {
        for bad in [
            "",
            "fg_",
            "fg_short_x",
            "sk_live_abc",
            "fg_ABCDEFGHIJKL_0123456789012345678901234567890123456789",
        ] {
            assert!(PresentedKey::parse(bad).is_none(), "{bad}");
        }
    }
}
