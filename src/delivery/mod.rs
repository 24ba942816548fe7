//! Outbound webhook delivery.
pub mod keys;
pub mod retry;
pub mod signing;
