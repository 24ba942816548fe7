//! Outbound webhook delivery: the SSRF guard and safe client, Standard Webhooks signing, our
//! own Ed25519 keys, the retry schedule, and the worker that ties them together.
pub mod client;
pub mod keys;
pub mod retry;
pub mod signing;
pub mod ssrf;
pub mod worker;
