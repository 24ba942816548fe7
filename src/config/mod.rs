//! Settings from environment variables and their matching flags. Everything is read as text
//! first (`raw`) and parsed here, so a bad start names *every* missing or malformed setting at
//! once, by its environment variable, instead of stopping at the first.
//!
//! `Settings` is made of sections, one per concern: `server`, `fal`, `delivery`, `storage` and
//! `alerts`. Each section reads its own variables, checks the rules between them, and is built
//! whole: a malformed value leaves its default in place and a recorded problem, and
//! `from_raw` answers every problem or a complete `Settings`, never a half-built one.
mod alerts;
mod delivery;
mod fal;
mod hosts;
mod parse;
mod raw;
mod server;
mod storage;

pub use self::{
    alerts::AlertSettings,
    delivery::DeliverySettings,
    fal::{FalSettings, DEFAULT_FAL_JWKS_URL, DEFAULT_FAL_QUEUE_URL},
    hosts::{HostList, DEFAULT_IMAGE_HOSTS},
    raw::RawSettings,
    server::{LogFormat, ServerSettings},
    storage::{image_store_directory, StorageSettings},
};
pub use crate::domain::cidr::Cidr;

/// Which command is being configured: defaults and requirements differ.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Serve,
    Dev,
}

/// Validated settings. Secrets are `SecretString`s: their `Debug` prints `[REDACTED]`.
#[derive(Debug, Clone)]
pub struct Settings {
    pub server: ServerSettings,
    pub fal: FalSettings,
    pub delivery: DeliverySettings,
    pub storage: StorageSettings,
    pub alerts: AlertSettings,
}

/// Every problem found, one line each, naming the variable.
#[derive(Debug, thiserror::Error)]
#[error("invalid configuration:\n{}", .0.iter().map(|p| format!("  - {p}")).collect::<Vec<_>>().join("\n"))]
pub struct ConfigError(pub Vec<String>);

impl Settings {
    pub fn from_raw(raw: &RawSettings, mode: Mode) -> Result<Settings, ConfigError> {
        let mut p = parse::Parser::default();
        let settings = Settings {
            storage: StorageSettings::read(raw, mode, &mut p),
            fal: FalSettings::read(raw, mode, &mut p),
            server: ServerSettings::read(raw, mode, &mut p),
            delivery: DeliverySettings::read(raw, mode, &mut p),
            alerts: AlertSettings::read(raw, &mut p),
        };
        if p.problems.is_empty() {
            Ok(settings)
        } else {
            Err(ConfigError(p.problems))
        }
    }

    /// `dev`'s defaults: what tests start from.
    pub fn for_dev() -> Settings {
        Settings::from_raw(&RawSettings::default(), Mode::Dev).expect("defaults are valid")
    }

    /// The SSRF guard's policy these settings ask for.
    pub fn target_policy(&self) -> crate::delivery::ssrf::TargetPolicy {
        crate::delivery::ssrf::TargetPolicy {
            allow_http: self.delivery.allow_http_targets,
            allowed: self.delivery.allowed_target_cidrs.clone(),
        }
    }

    /// What the delivery worker is told of these settings.
    pub fn delivery_options(&self) -> crate::delivery::worker::DeliveryOptions {
        crate::delivery::worker::DeliveryOptions {
            schedule: self.delivery.retry_schedule.clone(),
            keys: self.delivery.keys.clone(),
            keyring: self.storage.keyring.clone(),
            concurrency: self.delivery.concurrency,
            disable_after: self.delivery.disable_after_failing,
            drain: self.server.shutdown_drain,
            lease: self.delivery.lease,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::{net::IpAddr, time::Duration};

    fn raw(pairs: &[(&str, &str)]) -> RawSettings {
        let mut r = RawSettings::default();
        for (k, v) in pairs {
            let v = Some(v.to_string());
            match *k {
                "DATABASE_URL" => r.database_url = v,
                "FAL_KEY" => r.fal_key = v,
                "PORT" => r.port = v,
                "FLUXGATE_PUBLIC_URL" => r.public_url = v,
                "FLUXGATE_LOG_FORMAT" => r.log_format = v,
                "FLUXGATE_ALLOWED_TARGET_CIDRS" => r.allowed_target_cidrs = v,
                "FLUXGATE_ALERT_FAL_ERROR_RATIO" => r.alert_fal_error_ratio = v,
                "FLUXGATE_ALERT_MIN_VOLUME" => r.alert_min_volume = v,
                "FLUXGATE_STORAGE" => r.storage = v,
                "FLUXGATE_ASSET_BASE_URL" => r.asset_base_url = v,
                "FLUXGATE_ASSET_URL_TTL_SECS" => r.asset_url_ttl_secs = v,
                "FLUXGATE_EVENT_RETENTION" => r.event_retention = v,
                "FLUXGATE_IMAGE_RETENTION" => r.image_retention = v,
                _ => panic!("unknown {k}"),
            }
        }
        r
    }

    #[test]
    fn serve_without_required_settings_names_each_one() {
        let err = Settings::from_raw(&RawSettings::default(), Mode::Serve)
            .unwrap_err()
            .to_string();
        for name in ["DATABASE_URL", "FAL_KEY", "FLUXGATE_PUBLIC_URL"] {
            assert!(err.contains(name), "{err}");
        }
    }

    #[test]
    fn malformed_values_are_all_reported_and_secrets_are_not_echoed() {
        let err = Settings::from_raw(
            &raw(&[
                ("DATABASE_URL", "mysql://u:hunter2@x/db"),
                ("FAL_KEY", "nocolon-sekrit"),
                ("PORT", "http"),
                ("FLUXGATE_PUBLIC_URL", "ftp://x"),
                ("FLUXGATE_LOG_FORMAT", "xml"),
            ]),
            Mode::Serve,
        )
        .unwrap_err();
        assert_eq!(err.0.len(), 5, "{err}");
        let text = err.to_string();
        assert!(
            !text.contains("hunter2") && !text.contains("sekrit"),
            "{text}"
        );
        assert!(text.contains("PORT: \"http\""), "{text}");
    }

    #[test]
    fn secrets_do_not_appear_in_debug_output() {
        let s = Settings::from_raw(
            &raw(&[
                ("DATABASE_URL", "postgres://u:hunter2@localhost/db"),
                ("FAL_KEY", "id:sekrit"),
                ("FLUXGATE_PUBLIC_URL", "https://gw.example.com"),
            ]),
            Mode::Serve,
        )
        .unwrap();
        let debug = format!("{s:?}");
        assert!(
            !debug.contains("hunter2") && !debug.contains("sekrit"),
            "{debug}"
        );
        assert_eq!(s.server.port, 8080);
        assert!(!s.delivery.allow_http_targets);
        assert_eq!(s.server.log_format, LogFormat::Json);
    }

    #[test]
    fn alert_ratios_must_be_shares_and_volumes_whole_numbers() {
        let err = Settings::from_raw(
            &raw(&[
                ("FLUXGATE_ALERT_FAL_ERROR_RATIO", "20%"),
                ("FLUXGATE_ALERT_MIN_VOLUME", "0"),
            ]),
            Mode::Dev,
        )
        .unwrap_err();
        assert_eq!(err.0.len(), 2, "{err}");
        let s = Settings::from_raw(
            &raw(&[("FLUXGATE_ALERT_FAL_ERROR_RATIO", "0.35")]),
            Mode::Dev,
        )
        .unwrap();
        assert_eq!(
            (s.alerts.fal_error_ratio, s.alerts.delivery_failure_ratio),
            (0.35, 0.5)
        );
        assert_eq!(s.alerts.min_volume, 20);
    }

    #[test]
    fn the_image_store_is_a_directory_an_object_store_or_off() {
        let err = Settings::from_raw(
            &raw(&[("FLUXGATE_STORAGE", "ftp://host/images")]),
            Mode::Serve,
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("FLUXGATE_STORAGE") && err.contains("ftp:// is not a store"),
            "{err}"
        );
        for ok in [
            "file:///srv/images",
            "/srv/images",
            "off",
            "s3://bucket/images",
            "gs://bucket",
            "az://container/images",
        ] {
            let s = Settings::from_raw(&raw(&[("FLUXGATE_STORAGE", ok)]), Mode::Dev).unwrap();
            assert_eq!(s.storage.images.as_deref(), Some(ok));
        }
    }

    #[test]
    fn retention_reads_the_schedules_durations_and_links_cannot_be_public_and_expiring() {
        let s = Settings::for_dev();
        assert_eq!(
            s.storage.event_retention,
            Some(Duration::from_secs(30 * 86_400))
        );
        assert_eq!(s.storage.image_retention, None);
        let s = Settings::from_raw(
            &raw(&[
                ("FLUXGATE_EVENT_RETENTION", "off"),
                ("FLUXGATE_IMAGE_RETENTION", "90d"),
            ]),
            Mode::Dev,
        )
        .unwrap();
        assert_eq!(s.storage.event_retention, None);
        assert_eq!(
            s.storage.image_retention,
            Some(Duration::from_secs(90 * 86_400))
        );
        let err = Settings::from_raw(
            &raw(&[
                ("FLUXGATE_EVENT_RETENTION", "5m"),
                ("FLUXGATE_IMAGE_RETENTION", "forever"),
                ("FLUXGATE_ASSET_BASE_URL", "https://cdn.example/images"),
                ("FLUXGATE_ASSET_URL_TTL_SECS", "3600"),
            ]),
            Mode::Dev,
        )
        .unwrap_err()
        .to_string();
        for named in [
            "FLUXGATE_EVENT_RETENTION: \"5m\" must be at least 1h",
            "FLUXGATE_IMAGE_RETENTION: \"forever\" must be off or a duration",
            "cannot expire: set one of the two",
        ] {
            assert!(err.contains(named), "{named} in {err}");
        }
    }

    #[test]
    fn dev_listens_on_loopback_and_serve_on_every_interface_unless_told() {
        let dev = Settings::from_raw(&RawSettings::default(), Mode::Dev).unwrap();
        assert_eq!(dev.server.bind, IpAddr::from([127, 0, 0, 1]));
        let mut raw = raw(&[
            ("DATABASE_URL", "postgres://u@localhost/db"),
            ("FAL_KEY", "id:secret"),
            ("FLUXGATE_PUBLIC_URL", "https://gw.example.com"),
        ]);
        assert_eq!(
            Settings::from_raw(&raw, Mode::Serve).unwrap().server.bind,
            IpAddr::from([0, 0, 0, 0])
        );
        raw.bind = Some("0.0.0.0".into());
        assert_eq!(
            Settings::from_raw(&raw, Mode::Dev).unwrap().server.bind,
            IpAddr::from([0, 0, 0, 0])
        );
    }

    #[test]
    fn image_hosts_admit_themselves_and_their_subdomains_only() {
        let hosts = HostList::parse(DEFAULT_IMAGE_HOSTS).unwrap();
        for ok in [
            "fal.media",
            "v3.fal.media",
            "V3B.Fal.Media.",
            "storage.fal.run",
        ] {
            assert!(hosts.admits(ok), "{ok}");
        }
        for no in [
            "evilfal.media",
            "fal.media.evil.com",
            "127.0.0.1",
            "metadata.google.internal",
        ] {
            assert!(!hosts.admits(no), "{no}");
        }
        assert!(HostList::parse("*").unwrap().admits("anything.example"));
        assert!(HostList::parse(" , ").is_err() && HostList::parse("a/b").is_err());
    }

    #[test]
    fn a_deployment_that_raised_the_callback_limit_keeps_it_for_inline_results() {
        let r = RawSettings {
            max_callback_bytes: Some((128u64 << 20).to_string()),
            ..Default::default()
        };
        let s = Settings::from_raw(&r, Mode::Dev).unwrap();
        assert_eq!(s.fal.max_inline_callback_bytes, 128 << 20);
        let d = Settings::for_dev();
        assert_eq!(
            (d.fal.max_callback_bytes, d.fal.max_inline_callback_bytes),
            (256 << 10, 64 << 20)
        );
    }

    #[test]
    fn cidrs_parse_and_match() {
        let s = Settings::from_raw(
            &raw(&[("FLUXGATE_ALLOWED_TARGET_CIDRS", "127.0.0.0/8, ::1")]),
            Mode::Dev,
        )
        .unwrap();
        assert!(s.delivery.allowed_target_cidrs[0].contains("127.1.2.3".parse().unwrap()));
        assert!(!s.delivery.allowed_target_cidrs[0].contains("10.0.0.1".parse().unwrap()));
        assert!(s.delivery.allowed_target_cidrs[1].contains("::1".parse().unwrap()));
        assert!(Cidr::parse("10.0.0.0/33").is_err());
        assert!(Cidr::parse("0.0.0.0/0")
            .unwrap()
            .contains("8.8.8.8".parse().unwrap()));
    }
}
