//! The one integration-test binary: each feature has its own module.
mod devdb;
mod fal_verify;
mod simulator;
