//! fluxgate: a gateway between applications and fal.ai's FLUX.2 models. Requests go to fal's
//! queue with a webhook; fal's signed callbacks are verified and persisted in Postgres; results
//! fan out to subscribers. See README.md for the tour and ARCHITECTURE.md for the map.
pub(crate) mod api;
pub(crate) mod assets;
pub mod cli;
pub mod config;
pub mod delivery;
pub mod domain;
pub(crate) mod error;
pub mod fal;
pub mod governance;
pub(crate) mod live;
pub mod metrics;
pub mod ops;
pub mod pipeline;
pub mod secrets;
pub mod startup;
pub mod storage;
pub mod subscriptions;
pub(crate) mod telemetry;
pub mod tools;
pub mod wire;
