//! The one integration-test binary: each feature has its own module.
mod cli;
mod devdb;
mod fal_hook;
mod fal_verify;
mod foundation;
mod generations;
mod helpers;
mod simulator;
mod streams;
