//! Outbound delivery to user-supplied URLs.
pub mod client;
pub mod ssrf;
