//! Durable copies of output images (SPEC §7). fal's CDN URLs are not forever, and `sync_mode`
//! results carry each image inline as a data URI. With a store configured (`FLUXGATE_STORAGE`),
//! every image of a successful result is copied before the result is recorded, so before
//! `generation.completed` is announced: the result then carries fluxgate's `url` and fal's
//! `source_url` (null for an inline image), and no event carries image bytes. A copy that fails
//! for a reason that may pass (a network error, a 5xx, a full disk) fails the callback with a
//! 503, so fal redelivers it later: nothing is announced half-copied. One that can never succeed
//! (a 404 from fal's CDN, a malformed data URI) leaves that image as fal sent it, with
//! `copy_error` saying why, rather than holding the result back for good.
//!
//! The store is a directory (`file:///path`, or a plain path); fluxgate serves it at
//! `GET /assets/{generation}/{n}-{hash}.{ext}` under its public URL. The name carries a hash of
//! the bytes, so a second fal run's result (recorded, never announced) cannot overwrite the
//! images of the first. Object stores are not built yet.
use std::{path::PathBuf, time::Duration};

use base64::Engine;
use serde_json::Value;
use sha2::Digest;
use uuid::Uuid;

use crate::domain::ids::{self, Kind};

/// The largest image copied; fal's largest output (2048², PNG) is far below it.
pub const MAX_IMAGE_BYTES: usize = 64 * 1024 * 1024;
/// How long copying one result may take, well inside fal's 15 s webhook timeout.
pub const COPY_TIMEOUT: Duration = Duration::from_secs(10);

/// Where image copies go, and the URL they are served under.
pub struct Assets {
    root: PathBuf,
    /// `{public URL}/assets`.
    base: String,
    http: reqwest::Client,
}

/// Why a result's images could not be copied now; trying again later may succeed.
#[derive(Debug, thiserror::Error)]
pub enum CopyError {
    #[error("image {index}: {reason}")]
    Image { index: usize, reason: String },
    #[error("copying took longer than {}s", COPY_TIMEOUT.as_secs())]
    Timeout,
}

/// Why one image was not copied: `permanent` when trying again cannot help.
struct Failure {
    permanent: bool,
    reason: String,
}

fn permanent(reason: impl Into<String>) -> Failure {
    Failure {
        permanent: true,
        reason: reason.into(),
    }
}

fn transient(reason: impl Into<String>) -> Failure {
    Failure {
        permanent: false,
        reason: reason.into(),
    }
}

/// What became of one image.
enum Copied {
    /// Copied to this URL, from this source.
    To(String, String),
    /// Cannot ever be copied, for this reason.
    Never(String),
}

/// The directory a `FLUXGATE_STORAGE` value names: `file:///path` or a plain path.
pub fn directory(spec: &str) -> Result<PathBuf, String> {
    match spec.split_once("://") {
        None => Ok(PathBuf::from(spec)),
        Some(("file", _)) => url::Url::parse(spec)
            .ok()
            .and_then(|u| u.to_file_path().ok())
            .ok_or_else(|| format!("{spec:?} is not a file:///absolute/path URL")),
        Some((scheme, _)) => Err(format!(
            "{scheme}:// stores are not supported yet; use a directory (file:///path)"
        )),
    }
}

impl Assets {
    /// Opens (creating it if need be) the store `spec` names; copies are served under
    /// `public_base`.
    pub fn open(spec: &str, public_base: &str, http: reqwest::Client) -> Result<Assets, String> {
        let root = directory(spec)?;
        std::fs::create_dir_all(&root)
            .map_err(|e| format!("cannot create the image store {}: {e}", root.display()))?;
        Ok(Assets {
            root,
            base: format!("{}/assets", public_base.trim_end_matches('/')),
            http,
        })
    }

    /// Copies every image of a successful result's `payload` into the store and rewrites it in
    /// place: `url` becomes the copy's, `source_url` keeps fal's (null for a data URI); an image
    /// that can never be copied keeps fal's `url` and gets a `copy_error`. Idempotent: a
    /// redelivered result writes the same files with the same bytes. Returns how many images
    /// were copied.
    pub async fn copy(&self, generation_id: Uuid, payload: &mut Value) -> Result<usize, CopyError> {
        let Some(images) = payload.get_mut("images").and_then(Value::as_array_mut) else {
            return Ok(0);
        };
        let folder = ids::encode(Kind::Generation, generation_id);
        let copies = images.iter().enumerate().map(|(index, image)| {
            let source = image["url"].as_str().unwrap_or_default().to_owned();
            let declared = image["content_type"].as_str().map(str::to_owned);
            let folder = folder.clone();
            async move {
                let (bytes, content_type) = match self.fetch(&source, declared).await {
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
                self.write(&folder, &name, &bytes)
                    .await
                    .map_err(|e| CopyError::Image {
                        index,
                        reason: format!("cannot write the copy: {e}"),
                    })?;
                Ok(Copied::To(format!("{}/{folder}/{name}", self.base), source))
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

    /// An image's bytes and content type: decoded from a data URI, or downloaded.
    async fn fetch(
        &self,
        source: &str,
        declared: Option<String>,
    ) -> Result<(Vec<u8>, String), Failure> {
        if let Some(data) = source.strip_prefix("data:") {
            let (meta, encoded) = data
                .split_once(',')
                .ok_or_else(|| permanent("a data URI without a comma"))?;
            let mime = meta
                .strip_suffix(";base64")
                .ok_or_else(|| permanent("a data URI that is not base64"))?;
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(encoded)
                .map_err(|e| permanent(format!("a data URI that does not decode: {e}")))?;
            if bytes.len() > MAX_IMAGE_BYTES {
                return Err(permanent(format!("larger than {MAX_IMAGE_BYTES} bytes")));
            }
            let mime = if mime.is_empty() {
                declared.unwrap_or_default()
            } else {
                mime.to_owned()
            };
            return Ok((bytes, mime));
        }
        let url = url::Url::parse(source)
            .map_err(|e| permanent(format!("{source:?} is not a URL: {e}")))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(permanent(format!(
                "{source:?} is neither http(s) nor a data URI"
            )));
        }
        let mut res = self
            .http
            .get(url)
            .send()
            .await
            .map_err(|e| transient(format!("downloading {source}: {e}")))?;
        let status = res.status();
        if !status.is_success() {
            // A 4xx other than a timeout or a throttle will not change on a retry.
            let lasting = status.is_client_error() && !matches!(status.as_u16(), 408 | 429);
            return Err(Failure {
                permanent: lasting,
                reason: format!("downloading {source}: HTTP {status}"),
            });
        }
        let served = res
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(|v| v.split(';').next().unwrap_or(v).trim().to_owned());
        let mut bytes = Vec::new();
        while let Some(chunk) = res
            .chunk()
            .await
            .map_err(|e| transient(format!("downloading {source}: {e}")))?
        {
            if bytes.len() + chunk.len() > MAX_IMAGE_BYTES {
                return Err(permanent(format!(
                    "{source} is larger than {MAX_IMAGE_BYTES} bytes"
                )));
            }
            bytes.extend_from_slice(&chunk);
        }
        Ok((bytes, declared.or(served).unwrap_or_default()))
    }

    /// Writes a copy whole or not at all: a temporary file renamed into place.
    async fn write(&self, folder: &str, name: &str, bytes: &[u8]) -> std::io::Result<()> {
        let dir = self.root.join(folder);
        tokio::fs::create_dir_all(&dir).await?;
        let tmp = dir.join(format!(".{name}.{}", Uuid::new_v4().simple()));
        tokio::fs::write(&tmp, bytes).await?;
        tokio::fs::rename(&tmp, dir.join(name)).await
    }

    /// The file a `GET /assets/{generation}/{file}` names, if the names are ones this store
    /// writes (nothing else under the directory is reachable).
    pub fn file(&self, generation: &str, file: &str) -> Option<(PathBuf, &'static str)> {
        ids::decode(Kind::Generation, generation)?;
        let (stem, ext) = file.split_once('.')?;
        let (index, hash) = stem.split_once('-')?;
        let index_ok = !index.is_empty() && index.bytes().all(|b| b.is_ascii_digit());
        let hash_ok =
            hash.len() == 16 && hash.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
        if !index_ok || !hash_ok {
            return None;
        }
        let content_type = CONTENT_TYPES.iter().find(|(e, _)| *e == ext)?.1;
        Some((self.root.join(generation).join(file), content_type))
    }
}

/// File extensions of copies, and what they are served as.
const CONTENT_TYPES: &[(&str, &str)] = &[
    ("png", "image/png"),
    ("jpg", "image/jpeg"),
    ("webp", "image/webp"),
    ("bin", "application/octet-stream"),
];

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

    #[test]
    fn the_store_is_a_directory_and_other_schemes_are_refused_by_name() {
        assert_eq!(
            directory("/srv/images").unwrap(),
            PathBuf::from("/srv/images")
        );
        assert_eq!(
            directory("file:///srv/images").unwrap(),
            PathBuf::from("/srv/images")
        );
        assert_eq!(
            directory(".fluxgate/assets").unwrap(),
            PathBuf::from(".fluxgate/assets")
        );
        let e = directory("s3://bucket/prefix").unwrap_err();
        assert!(e.contains("s3:// stores are not supported yet"), "{e}");
        assert!(directory("file://relative").is_err());
    }

    #[tokio::test]
    async fn only_names_the_store_writes_are_served() {
        let dir = tempfile::tempdir().unwrap();
        let assets = Assets::open(
            dir.path().to_str().unwrap(),
            "http://x",
            reqwest::Client::new(),
        )
        .unwrap();
        let gen = ids::encode(Kind::Generation, Uuid::now_v7());
        let name = "0-0123456789abcdef.png";
        let (path, ct) = assets.file(&gen, name).unwrap();
        assert_eq!(path, dir.path().join(&gen).join(name));
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
            assert!(assets.file(&gen, bad).is_none(), "{bad}");
        }
        assert!(assets.file("..", name).is_none());
        assert!(assets.file("sub_x", name).is_none());
    }

    #[tokio::test]
    async fn inline_images_are_written_and_replaced_by_urls() {
        let dir = tempfile::tempdir().unwrap();
        let assets = Assets::open(
            dir.path().to_str().unwrap(),
            "http://gw.example/",
            reqwest::Client::new(),
        )
        .unwrap();
        let png = b"\x89PNG\r\n\x1a\nfake".to_vec();
        let data = format!(
            "data:image/png;base64,{}",
            base64::engine::general_purpose::STANDARD.encode(&png)
        );
        let id = Uuid::now_v7();
        let mut payload =
            serde_json::json!({"images": [{"url": data, "content_type": "image/png"}], "seed": 7});
        assert_eq!(assets.copy(id, &mut payload).await.unwrap(), 1);
        let gen = ids::encode(Kind::Generation, id);
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
        assert_eq!(assets.copy(id, &mut odd).await.unwrap(), 0);
        assert_eq!(odd, serde_json::json!({"images": ["not an image", 3]}));

        // A data URI that can never decode is left as it came, with the reason.
        let bad = "data:image/png;base64,@@@";
        let mut broken = serde_json::json!({"images": [{"url": bad}]});
        assert_eq!(assets.copy(id, &mut broken).await.unwrap(), 0);
        assert_eq!(broken["images"][0]["url"], bad);
        let why = broken["images"][0]["copy_error"].as_str().unwrap();
        assert!(why.contains("does not decode"), "{why}");
    }
}
