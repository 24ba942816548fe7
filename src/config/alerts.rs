//! When the operators' alerts fire: the window, the ratios, the volume below which a ratio
//! means nothing, and how often they are evaluated.
use std::time::Duration;

use super::{
    parse::{ratio, Parser},
    RawSettings,
};

#[derive(Debug, Clone)]
pub struct AlertSettings {
    pub window: Duration,
    pub fal_error_ratio: f64,
    pub delivery_failure_ratio: f64,
    pub min_volume: i64,
    pub interval: Duration,
}

impl AlertSettings {
    pub(super) fn read(raw: &RawSettings, p: &mut Parser) -> Self {
        AlertSettings {
            window: p.seconds(
                "FLUXGATE_ALERT_WINDOW_SECS",
                &raw.alert_window_secs,
                300,
                (1, 86_400),
            ),
            fal_error_ratio: p.value(
                "FLUXGATE_ALERT_FAL_ERROR_RATIO",
                &raw.alert_fal_error_ratio,
                0.2,
                ratio,
            ),
            delivery_failure_ratio: p.value(
                "FLUXGATE_ALERT_DELIVERY_FAILURE_RATIO",
                &raw.alert_delivery_failure_ratio,
                0.5,
                ratio,
            ),
            min_volume: p.number(
                "FLUXGATE_ALERT_MIN_VOLUME",
                &raw.alert_min_volume,
                20,
                (1, 1_000_000),
            ) as i64,
            interval: p.seconds(
                "FLUXGATE_ALERT_INTERVAL_SECS",
                &raw.alert_interval_secs,
                15,
                (1, 3600),
            ),
        }
    }
}
