//! Outbound webhook delivery: the SSRF guard and safe client, Standard Webhooks signing, our
//! own Ed25519 keys, the retry schedule, and the worker that ties them together.
mod attempt;
pub mod client;
pub mod handoff;
pub mod keys;
pub mod retry;
mod settle;
pub mod signing;
pub mod ssrf;
mod target;
pub mod tenant_secret;
mod turns;
pub mod worker;
