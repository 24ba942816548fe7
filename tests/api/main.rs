//! The one integration-test binary: each feature has its own module.
mod alerts;
mod cli;
mod crash;
mod devdb;
mod fal_hook;
mod fal_verify;
mod fanout;
mod foundation;
mod generations;
mod governance;
mod helpers;
mod receiver;
mod scale;
mod simulator;
mod ssrf;
mod standard_webhooks;
mod streams;
