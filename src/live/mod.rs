//! Live Server-Sent-Event streams, fed by the process's one LISTEN connection through a hub.
//!
//! - `hub`: reads committed events once, in `seq` order, and fans the shared frames out to the
//!   bounded buffers of the streams that want them.
//! - `feed`: one stream — replay from the database after a cursor, then live, with heartbeats;
//!   a stream that falls behind its buffer catches up from the database instead.
//! - `filter`: the `types=` list; `sse`: the wire format.
//!
//! Event ids on the wire are the stored `evt_…` ids (the same as in webhooks and `/v1/events`).
//! A resuming client's `Last-Event-ID` is looked up to its `seq`, and because every stream sends
//! events in `seq` order, "everything after that `seq`" is exactly what it has not seen.
pub mod feed;
pub mod filter;
pub mod hub;
pub mod sse;

pub use feed::Feed;
pub use filter::TypeFilter;
pub use hub::{Hub, Scope, Subscription, Unavailable};

/// Events a stream may be behind before the hub lets go of it (it then catches up from the
/// database). The buffer holds pointers to shared frames, so this bounds memory per stream at
/// a few kilobytes however large the events are or however slow the client.
pub const STREAM_BUFFER: usize = 256;
