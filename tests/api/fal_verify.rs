//! Tests for the fal webhook verifier (`fluxgate::fal::verify`): independent PyNaCl vectors,
//! single-field tampering, the timestamp window, and the JWKS cache against a real local server.
mod jwks_cache;
mod jwks_fetch;
mod support;
mod tampering;
mod vectors;
