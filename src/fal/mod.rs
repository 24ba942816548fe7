//! Everything that speaks fal's language: the signature scheme of its webhooks, the verifier,
//! the model catalogue and input schemas, and (later) the queue client.
pub mod models;
pub mod signature;
pub mod verify;
