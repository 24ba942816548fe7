//! Browser tokens: `fgt_<56 bytes, base64url>`, the token id (16 bytes), its expiry (8 bytes,
//! Unix seconds, big-endian) and an HMAC-SHA256 of both under a key every instance derives from
//! the shared server secret. A presented token is checked here, with no database read: its
//! shape, then its MAC (in constant time), then its expiry. Only a token that passes all three
//! is looked up (`storage::browser_tokens`) for what it may do and whether it was revoked.
//!
//! Instances' clocks differ by a little: a token is still taken `CLOCK_SKEW` after its expiry,
//! so one minted by an instance whose clock runs ahead is not refused early by another.
use base64::{engine::general_purpose::URL_SAFE_NO_PAD, Engine};
use hmac::{Hmac, Mac};
use secrecy::{ExposeSecret, SecretSlice, SecretString};
use sha2::Sha256;

use crate::domain::ids::BrowserTokenId;

pub const PREFIX: &str = "fgt_";
/// How long after its expiry a token is still taken, for clocks that disagree.
pub const CLOCK_SKEW_SECS: i64 = 30;
/// Lifetimes a caller may ask for: a token lives in a page, so from a minute to a day.
pub const MIN_TTL_SECS: i64 = 60;
pub const MAX_TTL_SECS: i64 = 86_400;
/// When `ttl_secs` is not given: a quarter of an hour.
pub const DEFAULT_TTL_SECS: i64 = 900;

const BODY_BYTES: usize = 16 + 8;
const MAC_BYTES: usize = 32;
const ENCODED_LEN: usize = (BODY_BYTES + MAC_BYTES) * 4 / 3 + 1;

/// Mints and checks tokens with one key.
pub struct TokenSigner {
    key: SecretSlice<u8>,
}

/// Why a presented token was refused before any lookup.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TokenRefused {
    #[error("the browser token is malformed: fluxgate tokens look like fgt_<75 characters>")]
    Malformed,
    #[error("the browser token's signature is not valid")]
    Forged,
    #[error("the browser token has expired: ask your backend for a new one")]
    Expired,
}

impl TokenSigner {
    pub fn new(key: SecretSlice<u8>) -> TokenSigner {
        TokenSigner { key }
    }

    /// The token text for `id`, valid until `expires_unix`.
    pub fn mint(&self, id: BrowserTokenId, expires_unix: i64) -> SecretString {
        let body = body(id, expires_unix);
        let mut raw = body.to_vec();
        raw.extend_from_slice(&self.mac(&body).finalize().into_bytes());
        SecretString::from(format!("{PREFIX}{}", URL_SAFE_NO_PAD.encode(raw)))
    }

    /// The token's id and expiry if it is one of ours and not expired at `now_unix`.
    pub fn check(
        &self,
        presented: &str,
        now_unix: i64,
    ) -> Result<(BrowserTokenId, i64), TokenRefused> {
        let encoded = presented
            .strip_prefix(PREFIX)
            .filter(|e| e.len() == ENCODED_LEN)
            .ok_or(TokenRefused::Malformed)?;
        let raw = URL_SAFE_NO_PAD
            .decode(encoded)
            .map_err(|_| TokenRefused::Malformed)?;
        let (body, tag) = raw.split_at(BODY_BYTES);
        self.mac(body)
            .verify_slice(tag)
            .map_err(|_| TokenRefused::Forged)?;
        let id = uuid::Uuid::from_slice(&body[..16]).map_err(|_| TokenRefused::Malformed)?;
        let expires = i64::from_be_bytes(body[16..].try_into().expect("8 bytes"));
        if now_unix > expires.saturating_add(CLOCK_SKEW_SECS) {
            return Err(TokenRefused::Expired);
        }
        Ok((BrowserTokenId::from_uuid(id), expires))
    }

    fn mac(&self, body: &[u8]) -> Hmac<Sha256> {
        let mut mac = Hmac::<Sha256>::new_from_slice(self.key.expose_secret())
            .expect("HMAC takes any key length");
        mac.update(b"fluxgate browser token v1\0");
        mac.update(body);
        mac
    }
}

fn body(id: BrowserTokenId, expires_unix: i64) -> [u8; BODY_BYTES] {
    let mut body = [0u8; BODY_BYTES];
    body[..16].copy_from_slice(id.uuid().as_bytes());
    body[16..].copy_from_slice(&expires_unix.to_be_bytes());
    body
}

#[cfg(test)]
mod tests {
    use super::*;

    fn signer(key: &[u8]) -> TokenSigner {
        TokenSigner::new(SecretSlice::from(key.to_vec()))
    }

    #[test]
    fn a_minted_token_is_taken_until_its_expiry_and_the_skew_after_it() {
        let s = signer(b"k1");
        let id = BrowserTokenId::new();
        let token = s.mint(id, 1_000);
        let text = token.expose_secret();
        assert!(text.starts_with("fgt_") && text.len() == PREFIX.len() + ENCODED_LEN);
        assert_eq!(s.check(text, 1_000), Ok((id, 1_000)));
        assert_eq!(s.check(text, 1_000 + CLOCK_SKEW_SECS), Ok((id, 1_000)));
        assert_eq!(
            s.check(text, 1_001 + CLOCK_SKEW_SECS),
            Err(TokenRefused::Expired)
        );
    }

    #[test]
    fn a_token_of_another_key_or_with_a_changed_expiry_is_forged() {
        let id = BrowserTokenId::new();
        let token = signer(b"k1").mint(id, 1_000);
        let text = token.expose_secret();
        assert_eq!(signer(b"k2").check(text, 0), Err(TokenRefused::Forged));
        let mut raw = URL_SAFE_NO_PAD.decode(&text[PREFIX.len()..]).unwrap();
        raw[23] ^= 1; // the expiry's last byte
        let altered = format!("{PREFIX}{}", URL_SAFE_NO_PAD.encode(raw));
        assert_eq!(signer(b"k1").check(&altered, 0), Err(TokenRefused::Forged));
    }

    #[test]
    fn anything_not_shaped_like_a_token_is_malformed() {
        let s = signer(b"k1");
        let good = s.mint(BrowserTokenId::new(), 1).expose_secret().to_owned();
        for bad in [
            "",
            "fgt_",
            "fg_abc",
            &good[..good.len() - 1],
            &format!("{good}A"),
            &good.replace(&good[4..6], "!!"),
        ] {
            assert_eq!(s.check(bad, 0), Err(TokenRefused::Malformed), "{bad}");
        }
    }
}
