//! Where image copies live: a directory or an object store (S3 and the S3-compatible R2,
//! MinIO and Tigris; GCS; Azure), all through `object_store`. A store is named by one URL
//! (`FLUXGATE_STORAGE`); its credentials come from each ecosystem's own environment variables
//! (`AWS_…`, `GOOGLE_…`, `AZURE_…`), never from settings of ours.
use std::sync::Arc;

use bytes::Bytes;
use futures_util::stream::BoxStream;
use object_store::{
    local::LocalFileSystem, path::Path, Attribute, Attributes, GetOptions, GetRange, ObjectStore,
    PutOptions, PutPayload,
};
use url::Url;

/// One store, and the prefix every key is written under.
pub struct Store {
    inner: Arc<dyn ObjectStore>,
    prefix: Path,
    /// Object stores keep a content type and `Cache-Control` with each object (so a bucket
    /// served by a CDN answers with them); a directory cannot.
    attributes: bool,
    /// The URL as given, for messages (credentials never appear in it).
    name: String,
}

/// An object being read back, whole or a byte range of it.
pub struct Object {
    pub size: u64,
    /// The range served, when one was asked for.
    pub range: Option<std::ops::Range<u64>>,
    pub e_tag: Option<String>,
    pub body: BoxStream<'static, object_store::Result<Bytes>>,
}

impl Store {
    /// Opens the store `spec` names (a directory is created if need be). `options` are the
    /// store's own settings, e.g. `aws_endpoint_url` (the environment's, lowercased).
    pub fn open<I, K, V>(spec: &str, options: I) -> Result<Store, String>
    where
        I: IntoIterator<Item = (K, V)>,
        K: AsRef<str>,
        V: Into<String>,
    {
        let name = spec.to_owned();
        if let Some(dir) = crate::config::image_store_directory(spec)? {
            std::fs::create_dir_all(&dir)
                .map_err(|e| format!("cannot create the image store {}: {e}", dir.display()))?;
            let local = LocalFileSystem::new_with_prefix(&dir)
                .map_err(|e| format!("cannot open the image store {}: {e}", dir.display()))?;
            return Ok(Store {
                inner: Arc::new(local),
                prefix: Path::default(),
                attributes: false,
                name,
            });
        }
        let url = Url::parse(spec).map_err(|e| format!("{spec:?} is not a store URL ({e})"))?;
        let (store, prefix) = object_store::parse_url_opts(&url, options)
            .map_err(|e| format!("cannot open the image store {spec}: {e}"))?;
        Ok(Store {
            inner: Arc::from(store),
            prefix,
            attributes: true,
            name,
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    fn path(&self, key: &str) -> Path {
        self.prefix.parts().chain(Path::from(key).parts()).collect()
    }

    /// Writes `bytes` under `key`, whole or not at all.
    pub async fn put(
        &self,
        key: &str,
        bytes: Vec<u8>,
        content_type: &str,
    ) -> object_store::Result<()> {
        let mut attributes = Attributes::new();
        if self.attributes {
            attributes.insert(Attribute::ContentType, content_type.to_owned().into());
            attributes.insert(Attribute::CacheControl, CACHE_CONTROL.into());
        }
        let options = PutOptions {
            attributes,
            ..Default::default()
        };
        self.inner
            .put_opts(&self.path(key), PutPayload::from(bytes), options)
            .await
            .map(|_| ())
    }

    /// Reads `key` (or `range` of it) as a stream; `None` when there is no such object.
    pub async fn get(
        &self,
        key: &str,
        range: Option<GetRange>,
    ) -> object_store::Result<Option<Object>> {
        let options = GetOptions {
            range,
            ..Default::default()
        };
        match self.inner.get_opts(&self.path(key), options).await {
            Ok(got) => {
                let range = (got.range.end - got.range.start != got.meta.size
                    || got.range.start != 0)
                    .then(|| got.range.clone());
                Ok(Some(Object {
                    size: got.meta.size,
                    range,
                    e_tag: got.meta.e_tag.clone(),
                    body: got.into_stream(),
                }))
            }
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    pub async fn delete(&self, key: &str) -> object_store::Result<()> {
        self.inner.delete(&self.path(key)).await
    }

    /// Deletes every object under `folder` (a generation's copies); returns how many went.
    pub async fn delete_folder(&self, folder: &str) -> object_store::Result<usize> {
        use futures_util::TryStreamExt;
        let objects: Vec<_> = self
            .inner
            .list(Some(&self.path(folder)))
            .try_collect()
            .await?;
        for object in &objects {
            match self.inner.delete(&object.location).await {
                Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(objects.len())
    }

    /// Proves the store usable before any result depends on it: a small object written, read
    /// back and deleted. The message names the store and what failed.
    pub async fn check(&self) -> Result<(), String> {
        let key = format!(".fluxgate-check-{}", uuid::Uuid::new_v4().simple());
        let fail = |step: &str, e: &dyn std::fmt::Display| {
            format!(
                "the image store {} is not usable: {step} failed: {e}",
                self.name
            )
        };
        self.put(&key, b"fluxgate".to_vec(), "text/plain")
            .await
            .map_err(|e| fail("writing a test object", &e))?;
        let read = async {
            let got = self.inner.get(&self.path(&key)).await?;
            got.bytes().await
        };
        let read = read.await.map_err(|e| fail("reading it back", &e))?;
        if read.as_ref() != b"fluxgate" {
            return Err(fail("reading it back", &"it came back different"));
        }
        self.delete(&key).await.map_err(|e| fail("deleting it", &e))
    }
}

/// Copies never change once written: their names carry a hash of their bytes.
pub const CACHE_CONTROL: &str = "public, max-age=31536000, immutable";
