//! The callback URLs fluxgate hands fal, and the check that a callback came to one of them.
//!
//! fal signs a webhook's request id, user id, timestamp and body, but not the URL it is sent
//! to: a webhook fal signed for anybody's request verifies wherever it is posted. So each
//! generation's `fal_webhook` URL carries a token only fluxgate can make, an HMAC of the
//! generation id under a key all instances share (`server_secrets`, made by the first instance
//! that starts), and a callback without the right token is refused before its body is read.
//! The token also covers whether the generation's images come back inline (`sync_mode`, or
//! `data:` inputs an error may echo): only then is a large body accepted.
//!
//! URLs handed out before tokens existed have none. Their callbacks are still taken for
//! `FLUXGATE_LEGACY_CALLBACK_GRACE_SECS` after the upgrade, and only for generations created
//! before it: nothing made since can be completed without a token. An instance that starts
//! with no such generation unfinished (a fresh install, or once they are all done) takes no
//! token-less callback at all.
use crate::domain::ids::GenerationId;
use base64::{engine::general_purpose::URL_SAFE_NO_PAD, Engine};
use chrono::{DateTime, Utc};
use hmac::{Hmac, Mac};
use rand::RngCore;
use secrecy::{ExposeSecret, SecretSlice};
use sha2::Sha256;

use crate::{
    secrets::{Keyring, Owner},
    storage,
};

/// The `server_secrets` row of the token key.
pub use crate::storage::server_secrets::CALLBACK_TOKEN_KEY as KEY_NAME;
/// Bytes of MAC kept in a token: 128 bits, unguessable, 22 characters in the URL.
const TOKEN_BYTES: usize = 16;

pub struct CallbackUrls {
    /// `{public URL}/hooks/fal/`.
    base: String,
    key: SecretSlice<u8>,
    /// When the key was made: URLs handed out before carry no token.
    tokens_since: DateTime<Utc>,
    /// Until when token-less callbacks (for generations older than the key) are taken.
    legacy_until: DateTime<Utc>,
}

/// How a callback came in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Door {
    /// With this generation's token; `inline`: its images may come back in the body.
    Token { inline: bool },
    /// Without a token, within the grace period: taken only for a generation created before
    /// `tokens_since` (the caller checks that against the stored row).
    Legacy { tokens_since: DateTime<Utc> },
}

impl Door {
    /// Whether the body may be as large as an inline result. Legacy URLs never said.
    pub fn inline(self) -> bool {
        match self {
            Door::Token { inline } => inline,
            Door::Legacy { .. } => true,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    #[error("the callback URL carries no token; fluxgate gives fal a token in every callback URL")]
    Missing,
    #[error("the callback URL's token is not this generation's")]
    Wrong,
}

impl CallbackUrls {
    /// Reads the shared key, making it if this is the first instance ever to start.
    pub async fn load(
        pool: &sqlx::PgPool,
        keyring: &Keyring,
        public_base: &str,
        grace: std::time::Duration,
    ) -> anyhow::Result<CallbackUrls> {
        let mut fresh = [0u8; 32];
        rand::rngs::OsRng.fill_bytes(&mut fresh);
        let owner = Owner::Server(KEY_NAME);
        let sealed = keyring.seal(&hex::encode(fresh), owner);
        let (stored, made) =
            storage::server_secrets::get_or_create(pool, KEY_NAME, &sealed).await?;
        let opened = keyring
            .open(&stored, owner)
            .map_err(|e| anyhow::anyhow!("cannot read the callback-token key: {e}"))?;
        let key = hex::decode(opened.expose_secret())
            .map_err(|_| anyhow::anyhow!("the stored callback-token key is not hex"))?;
        let waiting = storage::generations::unfinished_created_before(pool, made).await?;
        let grace = if waiting {
            grace
        } else {
            std::time::Duration::ZERO
        };
        Ok(CallbackUrls::new(public_base, key, made, grace))
    }

    pub fn new(
        public_base: &str,
        key: Vec<u8>,
        tokens_since: DateTime<Utc>,
        grace: std::time::Duration,
    ) -> CallbackUrls {
        let grace = chrono::Duration::from_std(grace).unwrap_or(chrono::Duration::zero());
        CallbackUrls {
            base: format!("{}/hooks/fal/", public_base.trim_end_matches('/')),
            key: SecretSlice::from(key),
            tokens_since,
            legacy_until: tokens_since + grace,
        }
    }

    /// The `fal_webhook` URL of a generation: `{public}/hooks/fal/gen_…?token=…`, with
    /// `inline=1` first when its images may come back in the body.
    pub fn url(&self, generation_id: GenerationId, inline: bool) -> String {
        let token = self.token(generation_id, inline);
        let id = generation_id.to_string();
        if inline {
            format!("{}{id}?inline=1&token={token}", self.base)
        } else {
            format!("{}{id}?token={token}", self.base)
        }
    }

    /// The path and query of that URL, as a request line carries it (tests, the bench).
    pub fn path(&self, generation_id: GenerationId, inline: bool) -> String {
        let url = self.url(generation_id, inline);
        match url.find("/hooks/fal/") {
            Some(at) => url[at..].to_owned(),
            None => url,
        }
    }

    /// Checks a callback's query string against its generation, with no I/O.
    pub fn admit(
        &self,
        generation_id: GenerationId,
        query: &str,
        now: DateTime<Utc>,
    ) -> Result<Door, Refused> {
        let (mut token, mut inline) = (None, false);
        for (k, v) in url::form_urlencoded::parse(query.as_bytes()) {
            match &*k {
                "token" if token.is_none() => token = Some(v.into_owned()),
                "inline" => inline = v == "1",
                _ => {}
            }
        }
        let Some(token) = token else {
            return if now < self.legacy_until {
                Ok(Door::Legacy {
                    tokens_since: self.tokens_since,
                })
            } else {
                Err(Refused::Missing)
            };
        };
        let presented = URL_SAFE_NO_PAD
            .decode(token.as_bytes())
            .map_err(|_| Refused::Wrong)?;
        // `verify_truncated_left` compares in constant time.
        self.mac(generation_id, inline)
            .verify_truncated_left(&presented)
            .ok()
            .filter(|_| presented.len() == TOKEN_BYTES)
            .map(|_| Door::Token { inline })
            .ok_or(Refused::Wrong)
    }

    /// A key for another purpose, named by `label`, derived from the shared one (an HMAC of the
    /// label): every instance derives the same, and neither key reveals the other.
    pub fn derive(&self, label: &str) -> SecretSlice<u8> {
        let mut mac = Hmac::<Sha256>::new_from_slice(self.key.expose_secret())
            .expect("HMAC takes any key length");
        mac.update(b"fluxgate derived key v1\0");
        mac.update(label.as_bytes());
        SecretSlice::from(mac.finalize().into_bytes().to_vec())
    }

    fn mac(&self, generation_id: GenerationId, inline: bool) -> Hmac<Sha256> {
        let mut mac = Hmac::<Sha256>::new_from_slice(self.key.expose_secret())
            .expect("HMAC takes any key length");
        mac.update(b"fluxgate fal callback v1\0");
        mac.update(generation_id.uuid().as_bytes());
        mac.update(&[u8::from(inline)]);
        mac
    }

    fn token(&self, generation_id: GenerationId, inline: bool) -> String {
        let tag = self.mac(generation_id, inline).finalize().into_bytes();
        URL_SAFE_NO_PAD.encode(&tag[..TOKEN_BYTES])
    }
}

/// Whether a generation's result may carry its images in the body: `sync_mode` asks for that,
/// and an edit's `data:` inputs may come back echoed in fal's error details.
pub fn expects_inline(input: &serde_json::Value) -> bool {
    input["sync_mode"].as_bool() == Some(true)
        || input["image_urls"].as_array().is_some_and(|urls| {
            urls.iter()
                .any(|u| u.as_str().is_some_and(|u| u.starts_with("data:")))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn urls(grace_secs: u64, since: DateTime<Utc>) -> CallbackUrls {
        CallbackUrls::new(
            "https://gw.example/",
            vec![3; 32],
            since,
            std::time::Duration::from_secs(grace_secs),
        )
    }

    fn query(url: &str) -> &str {
        url.split_once('?').map_or("", |(_, q)| q)
    }

    #[test]
    fn a_generations_url_admits_its_own_callbacks_and_no_other_generations() {
        let now = Utc::now();
        let u = urls(0, now - chrono::Duration::days(1));
        let (a, b) = (GenerationId::new(), GenerationId::new());
        let url = u.url(a, false);
        assert!(
            url.starts_with("https://gw.example/hooks/fal/gen_"),
            "{url}"
        );
        assert_eq!(
            u.admit(a, query(&url), now),
            Ok(Door::Token { inline: false })
        );
        assert_eq!(u.admit(b, query(&url), now), Err(Refused::Wrong));
        // The inline flag is covered by the token: adding it to a plain URL is refused.
        let flipped = format!("inline=1&{}", query(&url));
        assert_eq!(u.admit(a, &flipped, now), Err(Refused::Wrong));
        let inline = u.url(a, true);
        assert_eq!(
            u.admit(a, query(&inline), now),
            Ok(Door::Token { inline: true })
        );
        for bad in [
            "token=",
            "token=abc",
            "token=%FF%FE",
            "token=AAAAAAAAAAAAAAAAAAAAAA",
        ] {
            assert_eq!(u.admit(a, bad, now), Err(Refused::Wrong), "{bad}");
        }
        // Another server's key makes other tokens.
        let other = CallbackUrls::new("https://gw.example", vec![4; 32], now, Default::default());
        assert_eq!(other.admit(a, query(&url), now), Err(Refused::Wrong));
    }

    #[test]
    fn token_less_callbacks_are_taken_only_during_the_grace_period() {
        let since = Utc::now() - chrono::Duration::hours(2);
        let id = GenerationId::new();
        let within = urls(3 * 3600, since);
        assert_eq!(
            within.admit(id, "", Utc::now()),
            Ok(Door::Legacy {
                tokens_since: since
            })
        );
        let after = urls(3600, since);
        assert_eq!(after.admit(id, "", Utc::now()), Err(Refused::Missing));
    }

    #[test]
    fn sync_mode_and_data_inputs_expect_inline_results() {
        use serde_json::json;
        assert!(expects_inline(&json!({"sync_mode": true})));
        assert!(expects_inline(
            &json!({"image_urls": ["https://a", "data:image/png;base64,AA"]})
        ));
        assert!(!expects_inline(
            &json!({"sync_mode": false, "image_urls": ["https://a"]})
        ));
    }
}
