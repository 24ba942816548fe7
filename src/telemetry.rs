//! Logging: JSON lines for `serve`, readable lines for `dev`, filtered by `RUST_LOG`; and the
//! request-id + access-log middleware that gives every request an id, a span and one log line.
use std::time::Instant;

use actix_web::{
    body::MessageBody,
    dev::{ServiceRequest, ServiceResponse},
    http::header::{HeaderName, HeaderValue},
    middleware::Next,
};
use tracing::Instrument;
use tracing_subscriber::{fmt, EnvFilter};

use crate::{config::LogFormat, metrics::Metrics};

pub const REQUEST_ID_HEADER: &str = "x-request-id";

/// Installs the global subscriber once; later calls (tests) are ignored.
pub fn init(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| {
        EnvFilter::new("info,sqlx=warn,actix_server=warn,reqwest=warn,hyper=warn")
    });
    let builder = fmt().with_env_filter(filter).with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .try_init(),
        LogFormat::Pretty => builder.compact().with_target(false).try_init(),
    };
    // A panic is logged once, as an error event inside the span it happened in (a handler's
    // carries its request id), instead of as bare text on stderr.
    std::panic::set_hook(Box::new(|info| {
        let at = info
            .location()
            .map(|l| format!("{}:{}", l.file(), l.line()))
            .unwrap_or_default();
        let message = info
            .payload()
            .downcast_ref::<&str>()
            .map(|s| (*s).to_owned())
            .or_else(|| info.payload().downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "a panic without a message".into());
        tracing::error!(panic = %message, at, "panicked");
    }));
}

/// Accept the caller's `X-Request-Id` if it is sane (≤ 128 visible ASCII chars), otherwise
/// mint one; return it on the response, run the handler inside a span that carries it, and
/// write one access-log line with the route pattern (never the raw path: ids would blow up
/// metric label cardinality), status and duration.
pub async fn request_context(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<impl MessageBody + 'static>, actix_web::Error> {
    let started = Instant::now();
    let id = req
        .headers()
        .get(REQUEST_ID_HEADER)
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty() && v.len() <= 128 && v.bytes().all(|b| b.is_ascii_graphic()))
        .map(str::to_owned)
        .unwrap_or_else(|| uuid::Uuid::new_v4().simple().to_string());
    let method = req.method().to_string();
    let metrics = req.app_data::<actix_web::web::Data<Metrics>>().cloned();
    let span = tracing::info_span!("request", request_id = %id, method = %method, route = tracing::field::Empty, tenant = tracing::field::Empty);
    let result = next.call(req).instrument(span.clone()).await;
    let elapsed = started.elapsed();
    let mut res = match result {
        Ok(res) => res,
        Err(e) => return Err(e),
    };
    let route = res
        .request()
        .match_pattern()
        .unwrap_or_else(|| "unmatched".to_owned());
    let status = res.status().as_u16();
    if let Ok(v) = HeaderValue::from_str(&id) {
        res.headers_mut()
            .insert(HeaderName::from_static(REQUEST_ID_HEADER), v);
    }
    if let Some(m) = metrics {
        m.observe_http(&method, &route, status, elapsed);
    }
    span.record("route", route.as_str());
    let _enter = span.enter();
    if route != "/metrics" && route != "/healthz" && route != "/readyz" {
        tracing::info!(
            status,
            duration_ms = elapsed.as_secs_f64() * 1000.0,
            "http request"
        );
    }
    Ok(res)
}
