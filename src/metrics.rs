//! Prometheus metrics, registered once per process and exposed at `/metrics`. Label sets are
//! bounded: route patterns, not paths; status codes; closed enums of outcomes.
use std::time::Duration;

use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounterVec, Opts, Registry, TextEncoder,
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
        Metrics {
            registry,
            http_duration,
            fal_verifications,
            fal_requests,
            fal_duration,
            callbacks,
            deliveries,
            delivery_latency,
        }
    }

    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    pub fn observe_http(&self, method: &str, route: &str, status: u16, elapsed: Duration) {
        self.http_duration
            .with_label_values(&[method, route, status_label(status)])
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

/// Status codes as static strings, so labels never allocate and stay bounded.
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
