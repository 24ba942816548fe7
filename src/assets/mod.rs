//! Durable copies of output images. fal's CDN URLs are not forever, and `sync_mode` results
//! carry each image inline as a data URI. With a store configured (`FLUXGATE_STORAGE`), every
//! image of a successful result is copied by the copier stage (`pipeline::copier`) before
//! `generation.completed` is announced: the result then carries fluxgate's `url` and fal's
//! `source_url` (null for an inline image), and no event carries image bytes. A copy that fails
//! for a reason that may pass (a network error, a 5xx, a store refusing writes) is tried again
//! later; one that can never succeed (a 404 from fal's CDN, a malformed data URI, a host that is
//! not allowed) leaves that image as fal sent it, with `copy_error` saying why, rather than
//! holding the result back for good. Downloads go through the SSRF guard (`fetch.rs`).
//!
//! The store is a directory or an object store (`store.rs`); every instance serves it at
//! `GET /assets/{generation}/{n}-{hash}.{ext}`, streaming from the store, so with an object
//! store any instance serves every copy. Links (`links.rs`) point there or at a public bucket,
//! and may be signed to expire. The name carries a hash of the bytes, so a second fal run's
//! result (recorded, never announced) cannot overwrite the images of the first.
use crate::domain::ids::GenerationId;
mod fetch;
pub mod links;
pub mod store;

use std::time::Duration;

pub use self::{fetch::Fetcher, links::Links, store::Store};
use serde_json::Value;
use sha2::Digest;

/// How long one try at copying a result may take.
pub const COPY_TIMEOUT: Duration = Duration::from_secs(10);

/// Where image copies go, and the URL they are served under.
pub struct Assets {
    store: Store,
    links: Links,
    fetcher: Fetcher,
}

/// Why a result's images could not be copied now; trying again later may succeed. The message
/// names the image and what failed, never a URL: it is answered to whoever sent the callback.
#[derive(Debug, thiserror::Error)]
pub enum CopyError {
    #[error("image {index}: {reason}")]
    Image { index: usize, reason: String },
    #[error("copying took longer than {}s", COPY_TIMEOUT.as_secs())]
    Timeout,
}

/// What became of one image.
enum Copied {
    /// Copied to this URL, from this source.
    To(String, String),
    /// Cannot ever be copied, for this reason.
    Never(String),
}

impl Assets {
    /// Copies go to `store`; they are linked by `links`.
    pub fn new(store: Store, links: Links, fetcher: Fetcher) -> Assets {
        Assets {
            store,
            links,
            fetcher,
        }
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    pub fn links(&self) -> &Links {
        &self.links
    }

    /// The result could not be copied before its deadline: it is announced with what fal sent
    /// (at most `max_images`), each image not copied saying why in `copy_error`. An inline
    /// image loses its `url` (null) rather than carry its bytes to every subscriber; fal's
    /// callback, kept verbatim, still holds it.
    pub fn give_up(payload: &mut Value, max_images: usize, reason: &str) {
        let Some(images) = payload.get_mut("images").and_then(Value::as_array_mut) else {
            return;
        };
        images.truncate(max_images);
        for image in images.iter_mut().filter_map(Value::as_object_mut) {
            if image.contains_key("copy_error") {
                continue;
            }
            let inline = image
                .get("url")
                .and_then(Value::as_str)
                .is_some_and(|u| u.starts_with("data:"));
            if inline {
                image.insert("url".into(), Value::Null);
            }
            let why = format!("not copied before the deadline: {reason}");
            image.insert("copy_error".into(), Value::String(why));
        }
    }

    /// Copies every image of a successful result's `payload` into the store and rewrites it in
    /// place: `url` becomes the copy's link, `source_url` keeps fal's (null for a data URI); an
    /// image that can never be copied keeps fal's `url` and gets a `copy_error`. Idempotent: a
    /// try again writes the same objects with the same bytes. At most `max_images` are kept
    /// (the generation's `num_images`: fal never returns more, so any more are dropped
    /// unfetched). Returns how many images were copied.
    pub async fn copy(
        &self,
        generation_id: GenerationId,
        payload: &mut Value,
        max_images: usize,
    ) -> Result<usize, CopyError> {
        let Some(images) = payload.get_mut("images").and_then(Value::as_array_mut) else {
            return Ok(0);
        };
        if images.len() > max_images {
            tracing::warn!(%generation_id, images = images.len(), max_images, "a result with more images than asked for; the rest are dropped");
            images.truncate(max_images);
        }
        let folder = generation_id.to_string();
        let now = chrono::Utc::now().timestamp();
        let copies = images.iter().enumerate().map(|(index, image)| {
            let source = image["url"].as_str().unwrap_or_default().to_owned();
            let declared = image["content_type"].as_str().map(str::to_owned);
            let folder = folder.clone();
            async move {
                let (bytes, content_type) = match self.fetcher.fetch(&source, declared).await {
                    Ok(fetched) => fetched,
                    Err(f) if f.permanent => return Ok(Copied::Never(f.reason)),
                    Err(f) => {
                        return Err(CopyError::Image {
                            index,
                            reason: f.reason,
                        })
                    }
                };
                let hash = hex::encode(&sha2::Sha256::digest(&bytes)[..8]);
                let name = format!("{index}-{hash}.{}", extension(&content_type));
                let key = format!("{folder}/{name}");
                self.store
                    .put(&key, bytes, content_type_of(&name))
                    .await
                    .map_err(|e| CopyError::Image {
                        index,
                        reason: {
                            tracing::error!(%generation_id, error = %e, "cannot write an image copy");
                            "the copy could not be written".to_owned()
                        },
                    })?;
                Ok(Copied::To(self.links.url(&key, now), source))
            }
        });
        let copied = tokio::time::timeout(COPY_TIMEOUT, futures_util::future::try_join_all(copies))
            .await
            .map_err(|_| CopyError::Timeout)??;
        let mut n = 0;
        for (image, copied) in images.iter_mut().zip(copied) {
            // An entry that is not an object has no `url` either: it was left alone.
            let Some(image) = image.as_object_mut() else {
                continue;
            };
            match copied {
                Copied::To(url, source) => {
                    let source = (!source.starts_with("data:")).then_some(source);
                    image.insert("url".into(), Value::String(url));
                    let source = source.map_or(Value::Null, Value::String);
                    image.insert("source_url".into(), source);
                    n += 1;
                }
                Copied::Never(reason) => {
                    tracing::warn!(%generation_id, reason, "an image cannot be copied; it keeps fal's URL");
                    image.insert("copy_error".into(), Value::String(reason));
                }
            }
        }
        Ok(n)
    }

    /// The key a `GET /assets/{generation}/{file}` names, and its content type, if the names
    /// are ones this store writes (nothing else in the store is reachable).
    pub fn key(&self, generation: &str, file: &str) -> Option<(String, &'static str)> {
        generation.parse::<GenerationId>().ok()?;
        let (stem, ext) = file.split_once('.')?;
        let (index, hash) = stem.split_once('-')?;
        let index_ok = !index.is_empty() && index.bytes().all(|b| b.is_ascii_digit());
        let hash_ok =
            hash.len() == 16 && hash.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
        if !index_ok || !hash_ok {
            return None;
        }
        let content_type = CONTENT_TYPES.iter().find(|(e, _)| *e == ext)?.1;
        Some((format!("{generation}/{file}"), content_type))
    }
}

/// File extensions of copies, and what they are served as.
const CONTENT_TYPES: &[(&str, &str)] = &[
    ("png", "image/png"),
    ("jpg", "image/jpeg"),
    ("webp", "image/webp"),
    ("bin", "application/octet-stream"),
];

/// What a copy named `name` is served as.
fn content_type_of(name: &str) -> &'static str {
    let ext = name.rsplit('.').next().unwrap_or_default();
    CONTENT_TYPES
        .iter()
        .find(|(e, _)| *e == ext)
        .map_or("application/octet-stream", |(_, t)| t)
}

fn extension(content_type: &str) -> &'static str {
    match content_type {
        "image/png" => "png",
        "image/jpeg" | "image/jpg" => "jpg",
        "image/webp" => "webp",
        _ => "bin",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::delivery::{
        client::{SafeClient, Timeouts},
        ssrf::TargetPolicy,
    };
    use base64::Engine;

    fn fetcher(hosts: crate::config::HostList) -> Fetcher {
        let client = SafeClient::new(TargetPolicy::default(), Timeouts::default()).unwrap();
        Fetcher::new(client, hosts, 2)
    }

    #[test]
    fn the_store_is_a_directory_or_an_object_store_and_other_schemes_are_refused_by_name() {
        use crate::config::image_store_directory as directory;
        use std::path::PathBuf;
        let dir = |spec| directory(spec).unwrap().unwrap();
        assert_eq!(dir("/srv/images"), PathBuf::from("/srv/images"));
        assert_eq!(dir("file:///srv/images"), PathBuf::from("/srv/images"));
        assert_eq!(dir(".fluxgate/assets"), PathBuf::from(".fluxgate/assets"));
        for store in ["s3://bucket/prefix", "gs://bucket", "az://container/x"] {
            assert_eq!(directory(store).unwrap(), None, "{store}");
        }
        let e = directory("ftp://host/x").unwrap_err();
        assert!(e.contains("ftp:// is not a store"), "{e}");
        assert!(directory("s3://").unwrap_err().contains("names no bucket"));
        assert!(directory("file://relative").is_err());
    }

    fn local(dir: &tempfile::TempDir, base: &str, hosts: crate::config::HostList) -> Assets {
        let store =
            Store::open(dir.path().to_str().unwrap(), Vec::<(String, String)>::new()).unwrap();
        Assets::new(
            store,
            Links::new(&format!("{base}/assets"), None),
            fetcher(hosts),
        )
    }

    #[tokio::test]
    async fn only_names_the_store_writes_are_served() {
        let dir = tempfile::tempdir().unwrap();
        let assets = local(&dir, "http://x", crate::config::HostList::Any);
        let gen = GenerationId::new().to_string();
        let name = "0-0123456789abcdef.png";
        let (key, ct) = assets.key(&gen, name).unwrap();
        assert_eq!(key, format!("{gen}/{name}"));
        assert_eq!(ct, "image/png");
        for bad in [
            "../0-0123456789abcdef.png",
            "0-0123456789abcdef.exe",
            ".0-0123456789abcdef.png",
            "a-0123456789abcdef.png",
            "0-0123456789ABCDEF.png",
            "0-0123.png",
            "0.png",
            "0",
            "",
        ] {
            assert!(assets.key(&gen, bad).is_none(), "{bad}");
        }
        assert!(assets.key("..", name).is_none());
        assert!(assets.key("sub_x", name).is_none());
    }

    #[tokio::test]
    async fn inline_images_are_written_and_replaced_by_urls() {
        let dir = tempfile::tempdir().unwrap();
        let assets = local(&dir, "http://gw.example", crate::config::HostList::Any);
        let png = b"\x89PNG\r\n\x1a\nfake".to_vec();
        let data = format!(
            "data:image/png;base64,{}",
            base64::engine::general_purpose::STANDARD.encode(&png)
        );
        let id = GenerationId::new();
        let mut payload =
            serde_json::json!({"images": [{"url": data, "content_type": "image/png"}], "seed": 7});
        assert_eq!(assets.copy(id, &mut payload, 4).await.unwrap(), 1);
        let gen = id.to_string();
        let name = format!("0-{}.png", hex::encode(&sha2::Sha256::digest(&png)[..8]));
        let url = format!("http://gw.example/assets/{gen}/{name}");
        assert_eq!(payload["images"][0]["url"], url);
        assert!(payload["images"][0]["source_url"].is_null());
        assert_eq!(payload["seed"], 7);
        assert_eq!(
            std::fs::read(dir.path().join(&gen).join(name)).unwrap(),
            png
        );

        // Entries that are not images are left alone.
        let mut odd = serde_json::json!({"images": ["not an image", 3]});
        assert_eq!(assets.copy(id, &mut odd, 4).await.unwrap(), 0);
        assert_eq!(odd, serde_json::json!({"images": ["not an image", 3]}));

        // A data URI that can never decode is left as it came, with the reason.
        let bad = "data:image/png;base64,@@@";
        let mut broken = serde_json::json!({"images": [{"url": bad}]});
        assert_eq!(assets.copy(id, &mut broken, 4).await.unwrap(), 0);
        assert_eq!(broken["images"][0]["url"], bad);
        let why = broken["images"][0]["copy_error"].as_str().unwrap();
        assert!(why.contains("does not decode"), "{why}");
    }

    #[tokio::test]
    async fn images_beyond_num_images_and_hosts_not_allowed_are_never_fetched() {
        let dir = tempfile::tempdir().unwrap();
        let hosts = crate::config::HostList::parse("fal.media").unwrap();
        let assets = local(&dir, "http://gw", hosts);
        // Literal internal addresses, named on purpose: neither may be fetched, nor named back.
        let mut payload = serde_json::json!({"images": [
            {"url": "http://169.254.169.254/latest/meta-data/"},
            {"url": "https://10.0.0.7:8443/x.png"},
        ]});
        assert_eq!(
            assets
                .copy(GenerationId::new(), &mut payload, 1)
                .await
                .unwrap(),
            0
        );
        let images = payload["images"].as_array().unwrap();
        assert_eq!(images.len(), 1, "{payload}");
        let why = images[0]["copy_error"].as_str().unwrap();
        assert!(
            why.contains("FLUXGATE_IMAGE_HOSTS") && !why.contains("169.254"),
            "{why}"
        );
    }
}
