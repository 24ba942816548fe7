//! Durable copies of output images (SPEC §7). fal's CDN URLs are not forever, and `sync_mode`
//! results carry each image inline as a data URI. With a store configured (`FLUXGATE_STORAGE`),
//! every image of a successful result is copied before the result is recorded, so before
//! `generation.completed` is announced: the result then carries fluxgate's `url` and fal's
//! `source_url` (null for an inline image), and no event carries image bytes. A copy that fails
//! fails the callback with a 503, so fal redelivers it later: nothing is announced half-copied.
//!
//! The store is a directory (`file:///path`, or a plain path); fluxgate serves it at
//! `GET /assets/{generation}/{n}.{ext}` under its public URL. Object stores are not built yet.
use std::{
    path::{Path, PathBuf},
    time::Duration,
};

use base64::Engine;
use serde_json::Value;
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

impl std::fmt::Debug for Assets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Assets").field("root", &self.root).finish()
    }
}

/// Why a result's images could not be copied.
#[derive(Debug, thiserror::Error)]
pub enum CopyError {
    #[error("image {index}: {reason}")]
    Image { index: usize, reason: String },
    #[error("copying took longer than {}s", COPY_TIMEOUT.as_secs())]
    Timeout,
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
    /// place: `url` becomes the copy's, `source_url` keeps fal's (null for a data URI).
    /// Idempotent: a redelivered result overwrites the same files with the same bytes. Returns
    /// how many images were copied.
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
                let fail = |reason: String| CopyError::Image { index, reason };
                let (bytes, content_type) = self.fetch(&source, declared).await.map_err(fail)?;
                let name = format!("{index}.{}", extension(&content_type));
                self.write(&folder, &name, &bytes)
                    .await
                    .map_err(|e| fail(format!("cannot write the copy: {e}")))?;
                Ok::<_, CopyError>((format!("{}/{folder}/{name}", self.base), source))
            }
        });
        let copied = tokio::time::timeout(COPY_TIMEOUT, futures_util::future::try_join_all(copies))
            .await
            .map_err(|_| CopyError::Timeout)??;
        let n = copied.len();
        for (image, (url, source)) in images.iter_mut().zip(copied) {
            let source = (!source.starts_with("data:")).then_some(source);
            image["url"] = Value::String(url);
            image["source_url"] = source.map_or(Value::Null, Value::String);
        }
        Ok(n)
    }

    /// An image's bytes and content type: decoded from a data URI, or downloaded.
    async fn fetch(
        &self,
        source: &str,
        declared: Option<String>,
    ) -> Result<(Vec<u8>, String), String> {
        if let Some(data) = source.strip_prefix("data:") {
            let (meta, encoded) = data.split_once(',').ok_or("a data URI without a comma")?;
            let mime = meta
                .strip_suffix(";base64")
                .ok_or("a data URI that is not base64")?;
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(encoded)
                .map_err(|e| format!("a data URI that does not decode: {e}"))?;
            if bytes.len() > MAX_IMAGE_BYTES {
                return Err(format!("larger than {MAX_IMAGE_BYTES} bytes"));
            }
            let mime = if mime.is_empty() {
                declared.unwrap_or_default()
            } else {
                mime.to_owned()
            };
            return Ok((bytes, mime));
        }
        let url = url::Url::parse(source).map_err(|e| format!("{source:?} is not a URL: {e}"))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(format!("{source:?} is neither http(s) nor a data URI"));
        }
        let res = self
            .http
            .get(url)
            .send()
            .await
            .map_err(|e| format!("downloading {source}: {e}"))?;
        if !res.status().is_success() {
            return Err(format!("downloading {source}: HTTP {}", res.status()));
        }
        let served = res
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(|v| v.split(';').next().unwrap_or(v).trim().to_owned());
        let mut bytes = Vec::new();
        let mut res = res;
        while let Some(chunk) = res
            .chunk()
            .await
            .map_err(|e| format!("downloading {source}: {e}"))?
        {
            if bytes.len() + chunk.len() > MAX_IMAGE_BYTES {
                return Err(format!("{source} is larger than {MAX_IMAGE_BYTES} bytes"));
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
        let (index, ext) = file.split_once('.')?;
        if index.is_empty() || !index.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        let content_type = CONTENT_TYPES.iter().find(|(e, _)| *e == ext)?.1;
        Some((self.root.join(generation).join(file), content_type))
    }

    pub fn root(&self) -> &Path {
        &self.root
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
        let (path, ct) = assets.file(&gen, "0.png").unwrap();
        assert_eq!(path, dir.path().join(&gen).join("0.png"));
        assert_eq!(ct, "image/png");
        for bad in ["../0.png", "0.exe", ".0.png", "a.png", "0", "0.png/..", ""] {
            assert!(assets.file(&gen, bad).is_none(), "{bad}");
        }
        assert!(assets.file("..", "0.png").is_none());
        assert!(assets.file("sub_x", "0.png").is_none());
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
        assert_eq!(
            payload["images"][0]["url"],
            format!("http://gw.example/assets/{gen}/0.png")
        );
        assert!(payload["images"][0]["source_url"].is_null());
        assert_eq!(payload["seed"], 7);
        assert_eq!(
            std::fs::read(dir.path().join(&gen).join("0.png")).unwrap(),
            png
        );

        let mut broken = serde_json::json!({"images": [{"url": "data:image/png;base64,@@@"}]});
        let e = assets.copy(id, &mut broken).await.unwrap_err();
        assert!(e.to_string().starts_with("image 0:"), "{e}");
    }
}
