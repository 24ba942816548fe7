//! Prometheus metrics, registered once per process and exposed at `/metrics`. Label sets are
//! bounded: route patterns, not paths; status codes; closed enums of outcomes.
use std::{
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    time::Duration,
};

use prometheus::{
    core::{Collector, Desc},
    proto::MetricFamily,
    Counter, Encoder, GaugeVec, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec,
    IntGaugeVec, Opts, Registry, TextEncoder,
};

#[derive(Clone)]
pub struct Metrics {
    registry: Registry,
    http_duration: HistogramVec,
    pub fal_verifications: IntCounterVec,
    pub fal_requests: IntCounterVec,
    pub fal_duration: HistogramVec,
    pub callbacks: IntCounterVec,
    pub deliveries: IntCounterVec,
    pub delivery_latency: Histogram,
    /// Pending work by queue (`submissions`, `deliveries`) and lane (`first`, `retry`); read
    /// from Postgres by `ops::queue_metrics`, so every instance reports the same cluster value.
    pub queue_depth: IntGaugeVec,
    pub queue_oldest_age: GaugeVec,
    /// Cost of completed generations, read from Postgres (cluster-wide, not per instance).
    pub spend: DbCounter,
    /// Incremented by the seed cache: `metrics.cache_hits.inc()`.
    pub cache_hits: IntCounter,
    /// 1 while an alert (`fal_error_rate`, `delivery_failure_rate`) is firing.
    pub alert_firing: IntGaugeVec,
    /// Handlers that panicked (answered 500; each is a bug).
    pub http_panics: IntCounter,
}

impl Metrics {
    pub fn new() -> Metrics {
        let registry = Registry::new();
        let http_duration = HistogramVec::new(
            HistogramOpts::new(
                "fluxgate_http_request_duration_seconds",
                "HTTP request latency by route and status",
            )
            .buckets(vec![
                0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
            ]),
            &["method", "route", "status"],
        )
        .expect("valid metric");
        let fal_verifications = IntCounterVec::new(
            Opts::new(
                "fluxgate_fal_callback_verifications_total",
                "fal callback signature checks by outcome",
            ),
            &["outcome"],
        )
        .expect("valid metric");
        let fal_requests = IntCounterVec::new(
            Opts::new(
                "fluxgate_fal_requests_total",
                "HTTP calls to fal by operation and outcome class",
            ),
            &["operation", "outcome"],
        )
        .expect("valid metric");
        let fal_duration = HistogramVec::new(
            HistogramOpts::new(
                "fluxgate_fal_request_duration_seconds",
                "Latency of HTTP calls to fal",
            )
            .buckets(vec![
                0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
            ]),
            &["operation"],
        )
        .expect("valid metric");
        let callbacks = IntCounterVec::new(
            Opts::new(
                "fluxgate_fal_callbacks_total",
                "fal results processed, by source and outcome",
            ),
            &["source", "outcome"],
        )
        .expect("valid metric");
        let deliveries = IntCounterVec::new(
            Opts::new(
                "fluxgate_deliveries_total",
                "Webhook delivery attempts by outcome and error class",
            ),
            &["outcome", "error_class"],
        )
        .expect("valid metric");
        let delivery_latency = Histogram::with_opts(
            HistogramOpts::new(
                "fluxgate_delivery_latency_seconds",
                "From the event's commit to the subscriber's 2xx answer",
            )
            .buckets(vec![
                0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0, 30.0,
                300.0,
            ]),
        )
        .expect("valid metric");
        registry
            .register(Box::new(delivery_latency.clone()))
            .expect("unique metric");
        for m in [&http_duration, &fal_duration] {
            registry
                .register(Box::new(m.clone()))
                .expect("unique metric");
        }
        for m in [&fal_verifications, &fal_requests, &callbacks, &deliveries] {
            registry
                .register(Box::new(m.clone()))
                .expect("unique metric");
        }
        let queue_depth = IntGaugeVec::new(
            Opts::new(
                "fluxgate_queue_depth",
                "Pending submissions (generations accepted) and deliveries, by lane",
            ),
            &["queue", "lane"],
        )
        .expect("valid metric");
        let queue_oldest_age = GaugeVec::new(
            Opts::new(
                "fluxgate_queue_oldest_age_seconds",
                "Age of the oldest pending item, by queue and lane (0 when empty)",
            ),
            &["queue", "lane"],
        )
        .expect("valid metric");
        let spend = DbCounter::new(
            "fluxgate_spend_usd_total",
            "Cost of completed generations in USD, across all instances",
        );
        let cache_hits = IntCounter::new(
            "fluxgate_cache_hits_total",
            "Generations answered from the seed cache",
        )
        .expect("valid metric");
        let alert_firing = IntGaugeVec::new(
            Opts::new("fluxgate_alert_firing", "1 while the alert is firing"),
            &["alert"],
        )
        .expect("valid metric");
        let http_panics = IntCounter::new(
            "fluxgate_http_panics_total",
            "Requests whose handler panicked (answered 500)",
        )
        .expect("valid metric");
        let ops: [Box<dyn Collector>; 6] = [
            Box::new(http_panics.clone()),
            Box::new(queue_depth.clone()),
            Box::new(queue_oldest_age.clone()),
            Box::new(spend.clone()),
            Box::new(cache_hits.clone()),
            Box::new(alert_firing.clone()),
        ];
        for m in ops {
            registry.register(m).expect("unique metric");
        }
        Metrics {
            registry,
            http_duration,
            fal_verifications,
            fal_requests,
            fal_duration,
            callbacks,
            deliveries,
            delivery_latency,
            queue_depth,
            queue_oldest_age,
            spend,
            cache_hits,
            alert_firing,
            http_panics,
        }
    }

    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    pub fn observe_http(&self, method: &str, route: &str, status: u16, elapsed: Duration) {
        self.http_duration
            .with_label_values(&[method_label(method), route, status_label(status)])
            .observe(elapsed.as_secs_f64());
    }

    /// The text exposition format.
    pub fn render(&self) -> String {
        let mut buf = Vec::new();
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut buf);
        String::from_utf8(buf).unwrap_or_default()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

/// A counter whose value is read from Postgres, shared by every instance, rather than counted
/// in process. It is exposed only once known, so a restart never shows a false reset to zero
/// (which `rate()` would read as the whole total spent again); it never goes down.
#[derive(Clone)]
pub struct DbCounter {
    inner: Counter,
    known: Arc<AtomicBool>,
}

impl DbCounter {
    fn new(name: &str, help: &str) -> DbCounter {
        DbCounter {
            inner: Counter::new(name, help).expect("valid metric"),
            known: Arc::default(),
        }
    }

    /// Raises the counter to `total` (a lower value, e.g. after rows were deleted, is ignored).
    pub fn set(&self, total: f64) {
        let current = self.inner.get();
        if total > current {
            self.inner.inc_by(total - current);
        }
        self.known.store(true, Ordering::Release);
    }
}

impl Collector for DbCounter {
    fn desc(&self) -> Vec<&Desc> {
        self.inner.desc()
    }

    fn collect(&self) -> Vec<MetricFamily> {
        if self.known.load(Ordering::Acquire) {
            self.inner.collect()
        } else {
            Vec::new()
        }
    }
}

/// Status codes as static strings, so labels never allocate and stay bounded.
/// Methods are a fixed set: any other (clients may send any token) is counted as `other`, so
/// made-up methods cannot grow `/metrics`.
fn method_label(method: &str) -> &'static str {
    match method {
        "GET" => "GET",
        "POST" => "POST",
        "PUT" => "PUT",
        "PATCH" => "PATCH",
        "DELETE" => "DELETE",
        "HEAD" => "HEAD",
        "OPTIONS" => "OPTIONS",
        _ => "other",
    }
}

fn status_label(status: u16) -> &'static str {
    match status {
        200 => "200",
        201 => "201",
        202 => "202",
        204 => "204",
        400 => "400",
        401 => "401",
        402 => "402",
        403 => "403",
        404 => "404",
        405 => "405",
        409 => "409",
        410 => "410",
        413 => "413",
        415 => "415",
        422 => "422",
        429 => "429",
        500 => "500",
        502 => "502",
        503 => "503",
        504 => "504",
        s if s < 300 => "2xx",
        s if s < 400 => "3xx",
        s if s < 500 => "4xx",
        _ => "5xx",
    }
}
