//! Operations: the alert monitor (fal error ratio, delivery failure ratio → `alert.*` events,
//! once per transition across every instance) and the `/metrics` gauges read from Postgres
//! (queue depths and ages, spend, alert state), and retention (`retention.rs`). All run under
//! `Workers::monitor`.
pub mod alerts;
pub mod queue_metrics;
pub mod retention;
