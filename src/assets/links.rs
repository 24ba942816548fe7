//! The URLs image copies are linked by. Public by default: `{public URL}/assets/{key}`, or the
//! key under `FLUXGATE_ASSET_BASE_URL` (a public bucket or a CDN in front of the store). With
//! `FLUXGATE_ASSET_URL_TTL_SECS`, `/assets` links are private: each carries `expires` (Unix
//! seconds) and `signature`, an HMAC of the key and the expiry under a key every instance
//! derives from the shared server secret, so any instance checks a link another made. Events
//! carry links valid that long from their announcement; `GET /v1/generations/{id}` mints fresh
//! ones (`refresh`).
use base64::{engine::general_purpose::URL_SAFE_NO_PAD, Engine};
use hmac::{Hmac, Mac};
use secrecy::{ExposeSecret, SecretSlice};
use sha2::Sha256;
use std::time::Duration;

/// Bytes of MAC in a signature: 128 bits, 22 characters.
const SIGNATURE_BYTES: usize = 16;

pub struct Links {
    /// What a key is appended to, ending in `/`.
    base: String,
    /// The signing key and how long a link lasts, in private mode.
    private: Option<(SecretSlice<u8>, Duration)>,
}

/// Why `/assets` refused a link.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum LinkRefused {
    #[error(
        "this image link carries no signature; ask GET /v1/generations/{{id}} for a fresh one"
    )]
    Unsigned,
    #[error("this image link has expired; ask GET /v1/generations/{{id}} for a fresh one")]
    Expired,
    #[error("this image link's signature is not valid")]
    Forged,
}

impl Links {
    /// Links under `base` (`{public URL}/assets` or the public bucket's URL); signed with `key`
    /// and lasting `ttl` when both are given.
    pub fn new(base: &str, private: Option<(SecretSlice<u8>, Duration)>) -> Links {
        Links {
            base: format!("{}/", base.trim_end_matches('/')),
            private,
        }
    }

    pub fn is_private(&self) -> bool {
        self.private.is_some()
    }

    /// The link to `key` (`{generation}/{file}`), valid from `now_unix` for the TTL if private.
    pub fn url(&self, key: &str, now_unix: i64) -> String {
        match &self.private {
            None => format!("{}{key}", self.base),
            Some((secret, ttl)) => {
                let expires = now_unix.saturating_add(ttl.as_secs() as i64);
                let signature =
                    URL_SAFE_NO_PAD.encode(&sign(secret, key, expires)[..SIGNATURE_BYTES]);
                format!("{}{key}?expires={expires}&signature={signature}", self.base)
            }
        }
    }

    /// `url` again, newly valid from `now_unix`, if it is one of these links (a URL of fal's,
    /// or any other, comes back as it is).
    pub fn refresh(&self, url: &str, now_unix: i64) -> Option<String> {
        self.private.as_ref()?;
        let rest = url.strip_prefix(&self.base)?;
        let key = rest.split('?').next().unwrap_or(rest);
        Some(self.url(key, now_unix))
    }

    /// Whether a request for `key` with these query parameters may be served at `now_unix`.
    pub fn check(
        &self,
        key: &str,
        expires: Option<&str>,
        signature: Option<&str>,
        now_unix: i64,
    ) -> Result<(), LinkRefused> {
        let Some((secret, _)) = &self.private else {
            return Ok(());
        };
        let (Some(expires), Some(signature)) = (expires, signature) else {
            return Err(LinkRefused::Unsigned);
        };
        let expires: i64 = expires.parse().map_err(|_| LinkRefused::Forged)?;
        let presented = URL_SAFE_NO_PAD
            .decode(signature.as_bytes())
            .map_err(|_| LinkRefused::Forged)?;
        // `verify_truncated_left` compares in constant time.
        mac(secret, key, expires)
            .verify_truncated_left(&presented)
            .ok()
            .filter(|_| presented.len() == SIGNATURE_BYTES)
            .ok_or(LinkRefused::Forged)?;
        // Checked after the signature, so an expiry is only reported for a link we made.
        if expires < now_unix {
            return Err(LinkRefused::Expired);
        }
        Ok(())
    }
}

fn mac(secret: &SecretSlice<u8>, key: &str, expires: i64) -> Hmac<Sha256> {
    let mut mac =
        Hmac::<Sha256>::new_from_slice(secret.expose_secret()).expect("HMAC takes any key length");
    mac.update(b"fluxgate asset link v1\0");
    mac.update(key.as_bytes());
    mac.update(b"\0");
    mac.update(expires.to_string().as_bytes());
    mac
}

fn sign(secret: &SecretSlice<u8>, key: &str, expires: i64) -> Vec<u8> {
    mac(secret, key, expires).finalize().into_bytes().to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn private(ttl: u64) -> Links {
        let key = SecretSlice::from(vec![7u8; 32]);
        Links::new(
            "https://gw.example/assets/",
            Some((key, Duration::from_secs(ttl))),
        )
    }

    fn query<'a>(url: &'a str, name: &str) -> Option<&'a str> {
        url.split_once('?')?
            .1
            .split('&')
            .find_map(|kv| kv.strip_prefix(name)?.strip_prefix('='))
    }

    #[test]
    fn public_links_are_the_key_under_the_base() {
        let links = Links::new("https://cdn.example/images", None);
        assert_eq!(
            links.url("gen_a/0-ab.png", 0),
            "https://cdn.example/images/gen_a/0-ab.png"
        );
        assert_eq!(
            links.refresh("https://cdn.example/images/gen_a/0-ab.png", 5),
            None
        );
        assert_eq!(links.check("gen_a/0-ab.png", None, None, 0), Ok(()));
    }

    #[test]
    fn a_private_link_serves_until_it_expires_and_only_for_its_key() {
        let links = private(60);
        let url = links.url("gen_a/0-ab.png", 1_000);
        assert!(
            url.starts_with("https://gw.example/assets/gen_a/0-ab.png?expires=1060&signature="),
            "{url}"
        );
        let (e, s) = (query(&url, "expires"), query(&url, "signature"));
        assert_eq!(links.check("gen_a/0-ab.png", e, s, 1_060), Ok(()));
        assert_eq!(
            links.check("gen_a/0-ab.png", e, s, 1_061),
            Err(LinkRefused::Expired)
        );
        assert_eq!(
            links.check("gen_b/0-ab.png", e, s, 1_000),
            Err(LinkRefused::Forged)
        );
        assert_eq!(
            links.check("gen_a/0-ab.png", Some("9999999"), s, 1_000),
            Err(LinkRefused::Forged)
        );
        assert_eq!(
            links.check("gen_a/0-ab.png", None, s, 1_000),
            Err(LinkRefused::Unsigned)
        );
        let other = private(60);
        let forged = Links::new(
            "https://gw.example/assets",
            Some((SecretSlice::from(vec![8u8; 32]), Duration::from_secs(60))),
        )
        .url("gen_a/0-ab.png", 1_000);
        let (e, s) = (query(&forged, "expires"), query(&forged, "signature"));
        assert_eq!(
            other.check("gen_a/0-ab.png", e, s, 1_000),
            Err(LinkRefused::Forged)
        );
    }

    #[test]
    fn refreshing_re_signs_our_links_and_leaves_others_alone() {
        let links = private(60);
        let old = links.url("gen_a/0-ab.png", 1_000);
        let fresh = links.refresh(&old, 5_000).unwrap();
        assert_eq!(query(&fresh, "expires"), Some("5060"));
        assert_eq!(links.refresh("https://fal.media/files/x.png", 5_000), None);
    }
}
