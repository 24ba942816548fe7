//! What fluxgate keeps, and where: the database, image copies and the hosts they may be
//! fetched from, the seed cache's lifetime, and the key that seals stored secrets.
use std::{sync::Arc, time::Duration};

use secrecy::SecretString;
use url::Url;

use super::{
    hosts::{HostList, DEFAULT_IMAGE_HOSTS},
    parse::{bounded, Parser},
    Mode, RawSettings,
};
use crate::secrets::Keyring;

#[derive(Debug, Clone)]
pub struct StorageSettings {
    /// Required in serve; `dev` starts its own Postgres without it.
    pub database_url: Option<SecretString>,
    pub db_pool_size: u32,
    /// Where image copies go (`FLUXGATE_STORAGE`): a directory, or `off`; `None`: not set.
    pub images: Option<String>,
    pub image_hosts: HostList,
    pub image_download_concurrency: usize,
    pub cache_ttl: Duration,
    /// Seals stored signing secrets; empty (plaintext) without `FLUXGATE_ENCRYPTION_KEY`.
    pub keyring: Arc<Keyring>,
    /// How long a result's images may keep failing to copy before the result is announced with
    /// fal's URLs and a `copy_error` (`FLUXGATE_COPY_DEADLINE_SECS`).
    pub copy_deadline: Duration,
    /// Where copies are linked: a public bucket or CDN (`FLUXGATE_ASSET_BASE_URL`); `None`:
    /// fluxgate's own `/assets` route.
    pub asset_base_url: Option<Url>,
    /// `/assets` URLs are signed and expire after this long (`FLUXGATE_ASSET_URL_TTL_SECS`).
    pub asset_url_ttl: Option<Duration>,
    /// Events, deliveries, attempts and fal's callback bodies older than this are pruned
    /// (`FLUXGATE_EVENT_RETENTION`, default 30 days; `None`: kept forever).
    pub event_retention: Option<Duration>,
    /// Image copies older than this are deleted (`FLUXGATE_IMAGE_RETENTION`; default: kept).
    pub image_retention: Option<Duration>,
    /// The object store's own settings, from its ecosystem's environment variables (`AWS_…`,
    /// `GOOGLE_…`, `AZURE_…`), lowercased as `object_store` reads them.
    pub store_options: Vec<(String, SecretString)>,
}

impl StorageSettings {
    pub(super) fn read(raw: &RawSettings, mode: Mode, p: &mut Parser) -> Self {
        let database_url = p.secret(
            "DATABASE_URL",
            &raw.database_url,
            mode == Mode::Serve,
            |v| {
                if v.starts_with("postgres://") || v.starts_with("postgresql://") {
                    Ok(())
                } else {
                    Err("must be a postgres:// or postgresql:// URL".into())
                }
            },
        );
        let keyring = match raw.encryption_key.as_deref().map(str::trim) {
            None | Some("") => Keyring::default(),
            Some(v) => Keyring::parse(v).unwrap_or_else(|why| {
                p.problems
                    .push(format!("FLUXGATE_ENCRYPTION_KEY {why} (value not shown)"));
                Keyring::default()
            }),
        };
        let settings = StorageSettings {
            database_url,
            db_pool_size: p.value("FLUXGATE_DB_POOL_SIZE", &raw.db_pool_size, 20, |v| {
                bounded(v, 2, 1000)
            }) as u32,
            images: p.optional("FLUXGATE_STORAGE", &raw.storage, false, |v| match v {
                "off" => Ok(v.to_owned()),
                _ => image_store_directory(v).map(|_| v.to_owned()),
            }),
            image_hosts: p.value(
                "FLUXGATE_IMAGE_HOSTS",
                &raw.image_hosts,
                HostList::parse(DEFAULT_IMAGE_HOSTS).expect("a valid default"),
                HostList::parse,
            ),
            image_download_concurrency: p.number(
                "FLUXGATE_IMAGE_DOWNLOAD_CONCURRENCY",
                &raw.image_download_concurrency,
                16,
                (1, 1024),
            ) as usize,
            cache_ttl: p.seconds(
                "FLUXGATE_CACHE_TTL_SECS",
                &raw.cache_ttl_secs,
                86_400,
                (0, 30 * 86_400),
            ),
            copy_deadline: p.seconds(
                "FLUXGATE_COPY_DEADLINE_SECS",
                &raw.copy_deadline_secs,
                900,
                (1, 7 * 86_400),
            ),
            asset_base_url: p.optional(
                "FLUXGATE_ASSET_BASE_URL",
                &raw.asset_base_url,
                false,
                |v| match Url::parse(v) {
                    Ok(u) if matches!(u.scheme(), "http" | "https") && u.query().is_none() => Ok(u),
                    _ => Err("must be an http(s) URL without a query".into()),
                },
            ),
            asset_url_ttl: p.optional(
                "FLUXGATE_ASSET_URL_TTL_SECS",
                &raw.asset_url_ttl_secs,
                false,
                |v| match v.parse::<u64>() {
                    Ok(n) if (1..=365 * 86_400).contains(&n) => Ok(Duration::from_secs(n)),
                    _ => Err("must be a whole number of seconds from 1 to 31536000".into()),
                },
            ),
            event_retention: p.value(
                "FLUXGATE_EVENT_RETENTION",
                &raw.event_retention,
                Some(Duration::from_secs(30 * 86_400)),
                retention,
            ),
            image_retention: p.value(
                "FLUXGATE_IMAGE_RETENTION",
                &raw.image_retention,
                None,
                retention,
            ),
            keyring: Arc::new(keyring),
            store_options: std::env::vars()
                .filter(|(k, _)| {
                    ["AWS_", "GOOGLE_", "AZURE_"]
                        .iter()
                        .any(|p| k.starts_with(p))
                })
                .map(|(k, v)| (k.to_ascii_lowercase(), SecretString::from(v)))
                .collect(),
        };
        if settings.asset_base_url.is_some() && settings.asset_url_ttl.is_some() {
            p.problems.push(
                "FLUXGATE_ASSET_URL_TTL_SECS signs fluxgate's own /assets URLs; links to a public \
                 FLUXGATE_ASSET_BASE_URL cannot expire: set one of the two"
                    .into(),
            );
        }
        settings
    }
}

/// A retention: `off` (kept forever) or a duration in the retry schedule's syntax (`30d`), at
/// least an hour: pruning is for what nobody will ask for again, not a cache.
fn retention(v: &str) -> Result<Option<Duration>, String> {
    if v == "off" {
        return Ok(None);
    }
    match crate::delivery::retry::parse_step(v) {
        Ok(d) if d >= Duration::from_secs(3600) => Ok(Some(d)),
        Ok(_) => Err("must be at least 1h (or off)".into()),
        Err(_) => Err("must be off or a duration such as 12h, 30d".into()),
    }
}

/// Schemes `FLUXGATE_STORAGE` may name, besides a plain path.
pub const STORE_SCHEMES: &[&str] = &["file", "s3", "s3a", "gs", "az", "abfs", "abfss"];

/// The directory `spec` names (`file:///path` or a plain path), or `None` for an object store
/// URL; an unknown scheme is refused by name.
pub fn image_store_directory(spec: &str) -> Result<Option<std::path::PathBuf>, String> {
    match spec.split_once("://") {
        None => Ok(Some(std::path::PathBuf::from(spec))),
        Some(("file", _)) => Url::parse(spec)
            .ok()
            .and_then(|u| u.to_file_path().ok())
            .map(Some)
            .ok_or_else(|| format!("{spec:?} is not a file:///absolute/path URL")),
        Some((scheme, rest)) if STORE_SCHEMES.contains(&scheme) => {
            if rest.split('/').next().is_none_or(str::is_empty) {
                Err(format!("{spec:?} names no bucket or container"))
            } else {
                Ok(None)
            }
        }
        Some((scheme, _)) => Err(format!(
            "{scheme}:// is not a store fluxgate knows; use s3://, gs://, az://, file:// or a directory"
        )),
    }
}
