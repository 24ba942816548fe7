//! Everything that speaks fal's language: the signature scheme of its webhooks, the verifier,
//! the model catalogue and input schemas, the queue client and its error taxonomy.
pub mod client;
pub mod errors;
pub mod models;
pub mod signature;
pub mod verify;
