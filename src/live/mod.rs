//! Live Server-Sent-Event streams, fed by the process's one LISTEN connection through a hub.
//!
//! - `hub`: fans each committed event's shared frame out to the bounded buffers of the streams
//!   that want it; `reader` loads committed events once, in `seq` order, for it.
//! - `feed`: one stream — replay from the database after a cursor, then live, with heartbeats;
//!   a stream that falls behind its buffer catches up from the hub's ring of recent events, or
//!   from the database, instead (no disconnect, nothing lost).
//! - `gate`: who may hold a stream open: a cap per tenant, and only while its key stands.
//! - `filter`: the `types=` list; `sse`: the wire format.
//!
//! Event ids on the wire are the stored `evt_…` ids (the same as in webhooks and `/v1/events`).
//! A resuming client's `Last-Event-ID` is looked up to its `seq`, and because every stream sends
//! events in `seq` order, "everything after that `seq`" is exactly what it has not seen.
pub mod feed;
pub mod filter;
pub mod gate;
pub mod hub;
mod reader;
pub mod sse;

pub use feed::Feed;
pub use filter::TypeFilter;
pub use hub::{Hub, Scope, Subscription, Unavailable};

/// Events a stream may be behind before the hub lets go of it (it then catches up from memory
/// or the database). The buffer holds pointers to frames shared by every stream, so a stalled
/// client costs at most this many pointers (2 KiB) plus keeping those frames alive, however
/// large the events; once let go it holds nothing in the hub.
pub const STREAM_BUFFER: usize = 256;
