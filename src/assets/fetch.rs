//! Getting an image's bytes: decoded from a `data:` URI, or downloaded through the SSRF guard.
//! A result's image URLs come from fal's callback, which is only as trustworthy as the door it
//! came through, so a download may reach only an allowed host (`FLUXGATE_IMAGE_HOSTS`, fal's
//! CDN by default), by https unless plain http is allowed, on a globally routable address that
//! the guard vetted and pinned, with no redirect and no proxy; at most
//! `FLUXGATE_IMAGE_DOWNLOAD_CONCURRENCY` at once per instance. Reasons name what went wrong,
//! never the URL or the address, because they reach callers and subscribers.
use base64::Engine;
use tokio::sync::Semaphore;
use url::Url;

use crate::{
    config::HostList,
    delivery::client::{ErrorClass, SafeClient},
};

/// The largest image copied; fal's largest output (2048², PNG) is far below it.
pub const MAX_IMAGE_BYTES: usize = 64 * 1024 * 1024;

/// Why one image was not fetched: `permanent` when trying again cannot help.
#[derive(Debug)]
pub struct Failure {
    pub permanent: bool,
    pub reason: String,
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

/// Downloads under the guard, a bounded number at a time.
pub struct Fetcher {
    client: SafeClient,
    hosts: HostList,
    slots: Semaphore,
}

impl Fetcher {
    pub fn new(client: SafeClient, hosts: HostList, concurrency: usize) -> Fetcher {
        Fetcher {
            client,
            hosts,
            slots: Semaphore::new(concurrency.max(1)),
        }
    }

    /// An image's bytes and content type (`declared` by fal, else as served).
    pub async fn fetch(
        &self,
        source: &str,
        declared: Option<String>,
    ) -> Result<(Vec<u8>, String), Failure> {
        if let Some(data) = source.strip_prefix("data:") {
            return decode_data_uri(data, declared);
        }
        let url = Url::parse(source).map_err(|_| permanent("the image URL is not a URL"))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(permanent("the image URL is neither http(s) nor a data URI"));
        }
        if !url.host_str().is_some_and(|h| self.hosts.admits(h)) {
            return Err(permanent(
                "the image host is not one fluxgate copies from (FLUXGATE_IMAGE_HOSTS)",
            ));
        }
        let _slot = self
            .slots
            .acquire()
            .await
            .map_err(|_| transient("shutting down"))?;
        let mut res = self.client.get(&url).await.map_err(|e| {
            tracing::warn!(url = %source, error = %e, "image download failed");
            match e.class {
                ErrorClass::SsrfBlocked => {
                    permanent("the image URL points at an address fluxgate may not reach")
                }
                ErrorClass::InvalidTarget => {
                    permanent("the image URL is not one fluxgate may fetch (https only)")
                }
                class => transient(format!("the download failed ({class})")),
            }
        })?;
        let status = res.status();
        if !status.is_success() {
            // A redirect is never followed, and a 4xx other than a timeout or a throttle will
            // not change on a retry.
            let lasting = status.is_redirection()
                || (status.is_client_error() && !matches!(status.as_u16(), 408 | 429));
            return Err(Failure {
                permanent: lasting,
                reason: format!("the image host answered HTTP {}", status.as_u16()),
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
            .map_err(|_| transient("the download broke off"))?
        {
            if bytes.len() + chunk.len() > MAX_IMAGE_BYTES {
                return Err(permanent(format!(
                    "the image is larger than {MAX_IMAGE_BYTES} bytes"
                )));
            }
            bytes.extend_from_slice(&chunk);
        }
        Ok((bytes, declared.or(served).unwrap_or_default()))
    }
}

fn decode_data_uri(data: &str, declared: Option<String>) -> Result<(Vec<u8>, String), Failure> {
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
    Ok((bytes, mime))
}
