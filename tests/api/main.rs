//! The one integration-test binary: each feature has its own module.
mod bench;
mod cli;
mod crash;
mod devdb;
mod fal_hook;
mod fal_verify;
mod fanout;
mod foundation;
mod generations;
mod helpers;
mod receiver;
mod simulator;
mod ssrf;
mod standard_webhooks;
