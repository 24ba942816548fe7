//! The hub: one per process. The LISTEN loop pokes it on each committed event; its reader
//! (`reader.rs`) loads new events in `seq` order, one query per burst whatever the number of
//! streams, and `publish` frames each once and hands the shared frame to the bounded buffer of
//! every stream that wants it. Every event with `seq <= horizon` has been published (or its
//! `seq` was never committed); streams read those from the database or the recent ring.
use crate::domain::ids::{CredentialId, GenerationId, TenantId};
use std::{
    collections::{HashMap, VecDeque},
    sync::{Arc, Mutex, MutexGuard},
    time::Duration,
};

use bytes::Bytes;
use prometheus::{IntCounter, IntGauge};
use sqlx::PgPool;
use tokio::sync::{mpsc, watch, Notify};
use uuid::Uuid;

mod publish;

use super::{
    filter::TypeFilter,
    gate::{Admission, Gate, Refusal},
    sse,
};
use crate::storage::events::StreamEvent;

/// How long `subscribe` waits for a starting hub.
const READY_WAIT: Duration = Duration::from_secs(10);
/// The recent events kept in memory (at most this many, and this many bytes of frames), so a
/// stream that fell behind — or a client reconnecting after a blip — catches up without a query.
const RECENT_EVENTS: usize = 4096;
const RECENT_BYTES: usize = 16 << 20;

/// A committed event, framed once for every stream.
#[derive(Debug)]
pub struct LiveEvent {
    pub seq: i64,
    pub tenant_id: TenantId,
    pub generation_id: Option<GenerationId>,
    pub kind: String,
    pub frame: Bytes,
    /// The end user of the event's generation, read from its body the first time a browser
    /// token's stream asks (no other stream does, so no other pays for the parse).
    end_user: std::sync::OnceLock<Option<Box<str>>>,
}

impl LiveEvent {
    pub fn from_row(row: &StreamEvent) -> LiveEvent {
        LiveEvent {
            seq: row.seq,
            tenant_id: row.tenant_id,
            generation_id: row.generation_id,
            kind: row.kind.clone(),
            frame: sse::frame(Some(&row.id.to_string()), &row.kind, &row.payload),
            end_user: std::sync::OnceLock::new(),
        }
    }

    /// `data.end_user` of the event's body, if it has one.
    pub fn end_user(&self) -> Option<&str> {
        self.end_user
            .get_or_init(|| sse::end_user_of(&self.frame))
            .as_deref()
    }
}

/// What a stream listens to.
#[derive(Debug, Clone)]
pub enum Scope {
    Tenant {
        tenant_id: TenantId,
        types: TypeFilter,
        /// A browser token's stream: only the events of this end user's generations.
        end_user: Option<String>,
    },
    Generation {
        tenant_id: TenantId,
        generation_id: GenerationId,
    },
}

impl Scope {
    pub fn wants(&self, event: &LiveEvent) -> bool {
        match self {
            Scope::Tenant {
                tenant_id,
                types,
                end_user,
            } => {
                event.tenant_id == *tenant_id
                    && types.matches(&event.kind)
                    && end_user_matches(end_user.as_deref(), event)
            }
            Scope::Generation {
                tenant_id,
                generation_id,
            } => event.tenant_id == *tenant_id && event.generation_id == Some(*generation_id),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Starting,
    Ready,
    Closed,
}

/// The hub is not serving (still starting after `READY_WAIT`, or shut down).
#[derive(Debug, thiserror::Error)]
#[error("live streams are not available on this instance right now")]
pub struct Unavailable;

#[derive(Clone)]
pub struct Hub {
    shared: Arc<Shared>,
}

struct Shared {
    pool: PgPool,
    gate: Arc<Gate>,
    buffer: usize,
    registry: Mutex<Registry>,
    wake: Notify,
    state: watch::Sender<State>,
    streams: IntGauge,
    published: IntCounter,
    lagged: IntCounter,
}

#[derive(Default)]
struct Registry {
    horizon: i64,
    /// Published events after `recent_floor`, in `seq` order: all of them.
    recent: VecDeque<Arc<LiveEvent>>,
    recent_bytes: usize,
    recent_floor: i64,
    next_id: u64,
    tenants: HashMap<Uuid, HashMap<u64, Sub>>,
    generations: HashMap<Uuid, HashMap<u64, Sub>>,
}

struct Sub {
    tenant_id: TenantId,
    types: TypeFilter,
    end_user: Option<String>,
    tx: mpsc::Sender<Arc<LiveEvent>>,
}

impl Sub {
    fn wants(&self, event: &LiveEvent) -> bool {
        self.tenant_id == event.tenant_id
            && self.types.matches(&event.kind)
            && end_user_matches(self.end_user.as_deref(), event)
    }
}

/// Whether a stream limited to `wanted` (a browser token's end user) may see `event`.
fn end_user_matches(wanted: Option<&str>, event: &LiveEvent) -> bool {
    wanted.is_none_or(|user| event.end_user() == Some(user))
}

#[derive(Clone, Copy)]
enum Key {
    Tenant(TenantId),
    Generation(GenerationId),
}

/// A stream's place in the hub: its bounded buffer of events after `horizon`. Dropping it
/// leaves the hub. When the buffer overflows the hub lets go of it: `recv` then drains what is
/// buffered and answers `None`, and the stream catches up from the ring or the database.
pub struct Subscription {
    hub: Hub,
    key: Key,
    id: u64,
    rx: mpsc::Receiver<Arc<LiveEvent>>,
    /// Every event with `seq <= horizon` was published before this subscription existed (read
    /// those from the database); every later one comes through `recv`.
    pub horizon: i64,
}

impl Subscription {
    pub async fn recv(&mut self) -> Option<Arc<LiveEvent>> {
        self.rx.recv().await
    }

    pub fn poll_recv(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Arc<LiveEvent>>> {
        self.rx.poll_recv(cx)
    }

    pub fn try_recv(&mut self) -> Option<Arc<LiveEvent>> {
        self.rx.try_recv().ok()
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        self.hub.unregister(self.key, self.id);
    }
}

impl Hub {
    /// `buffer`: events a stream may fall behind before it is cut off to catch up from the
    /// ring of recent events or the database. Metrics go to `registry` (`fluxgate_sse_*`).
    /// `stream_cap`: streams a tenant may hold open here (`gate.rs`).
    pub fn new(
        pool: PgPool,
        buffer: usize,
        stream_cap: usize,
        registry: &prometheus::Registry,
    ) -> Hub {
        let streams =
            IntGauge::new("fluxgate_sse_streams", "Open live event streams").expect("valid metric");
        let published = IntCounter::new(
            "fluxgate_sse_events_total",
            "Events published to live streams",
        )
        .expect("valid metric");
        let lagged = IntCounter::new(
            "fluxgate_sse_lagged_total",
            "Streams whose buffer overflowed, sent to catch up from memory or the database",
        )
        .expect("valid metric");
        for m in [
            Box::new(streams.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(published.clone()),
            Box::new(lagged.clone()),
        ] {
            if let Err(e) = registry.register(m) {
                tracing::warn!(error = %e, "live stream metrics not registered");
            }
        }
        Hub {
            shared: Arc::new(Shared {
                pool,
                gate: Arc::new(Gate::new(stream_cap)),
                buffer: buffer.max(1),
                registry: Mutex::new(Registry::default()),
                wake: Notify::new(),
                state: watch::Sender::new(State::Starting),
                streams,
                published,
                lagged,
            }),
        }
    }

    /// An event was committed (the LISTEN loop calls this with the NOTIFY payload). The hub
    /// reads from its horizon, so the value only wakes it; a burst costs one query.
    pub fn committed(&self, _seq: &str) {
        self.shared.wake.notify_one();
    }

    /// The listener reconnected and NOTIFYs may have been lost: read again from the horizon.
    pub fn resync(&self) {
        self.shared.wake.notify_one();
    }

    /// Ends every stream and refuses new ones (shutdown: clients reconnect elsewhere and resume).
    pub fn close(&self) {
        self.shared.state.send_replace(State::Closed);
        let mut reg = self.registry();
        let dropped = reg.tenants.values().map(HashMap::len).sum::<usize>()
            + reg.generations.values().map(HashMap::len).sum::<usize>();
        reg.tenants.clear();
        reg.generations.clear();
        self.shared.streams.sub(dropped as i64);
    }

    /// Joins the hub. Subscribe *before* reading the past from the database: the returned
    /// horizon splits what to read (`<= horizon`) from what will arrive (`> horizon`).
    pub async fn subscribe(&self, scope: Scope) -> Result<Subscription, Unavailable> {
        let mut state = self.shared.state.subscribe();
        let ready = tokio::time::timeout(READY_WAIT, state.wait_for(|s| *s != State::Starting))
            .await
            .ok()
            .and_then(|r| r.ok().map(|s| *s));
        if ready != Some(State::Ready) {
            return Err(Unavailable);
        }
        let (tx, rx) = mpsc::channel(self.shared.buffer);
        let (key, sub) = match scope {
            Scope::Tenant {
                tenant_id,
                types,
                end_user,
            } => (
                Key::Tenant(tenant_id),
                Sub {
                    tenant_id,
                    types,
                    end_user,
                    tx,
                },
            ),
            Scope::Generation {
                tenant_id,
                generation_id,
            } => (
                Key::Generation(generation_id),
                Sub {
                    tenant_id,
                    types: TypeFilter::default(),
                    end_user: None,
                    tx,
                },
            ),
        };
        let mut reg = self.registry();
        if *self.shared.state.borrow() != State::Ready {
            return Err(Unavailable);
        }
        let id = reg.next_id;
        reg.next_id += 1;
        reg.map(key).entry(key.uuid()).or_default().insert(id, sub);
        self.shared.streams.inc();
        let horizon = reg.horizon;
        drop(reg);
        Ok(Subscription {
            hub: self.clone(),
            key,
            id,
            rx,
            horizon,
        })
    }

    /// The events `scope` wants with `after < seq <= upto` (at most `limit`), from memory; `None`
    /// when some of them are no longer held, or not published yet (read the database instead).
    pub fn recent(
        &self,
        scope: &Scope,
        after: i64,
        upto: i64,
        limit: usize,
    ) -> Option<Vec<Arc<LiveEvent>>> {
        let reg = self.registry();
        if after < reg.recent_floor || upto > reg.horizon {
            return None;
        }
        let start = reg.recent.partition_point(|e| e.seq <= after);
        Some(
            reg.recent
                .range(start..)
                .take_while(|e| e.seq <= upto)
                .filter(|e| scope.wants(e))
                .take(limit)
                .cloned()
                .collect(),
        )
    }

    /// A place for a new stream of `tenant_id`, opened with `credential` (see `gate.rs`).
    pub fn admit(
        &self,
        tenant_id: TenantId,
        credential: CredentialId,
    ) -> Result<Admission, Refusal> {
        self.shared.gate.admit(tenant_id, credential)
    }

    pub(super) fn gate(&self) -> &Gate {
        &self.shared.gate
    }

    /// Streams currently subscribed.
    pub fn streams(&self) -> i64 {
        self.shared.streams.get()
    }

    fn registry(&self) -> MutexGuard<'_, Registry> {
        // A panic while holding the lock leaves plain maps behind, still consistent.
        self.shared
            .registry
            .lock()
            .unwrap_or_else(|e| e.into_inner())
    }

    fn unregister(&self, key: Key, id: u64) {
        let mut reg = self.registry();
        let map = reg.map(key);
        if let Some(subs) = map.get_mut(&key.uuid()) {
            if subs.remove(&id).is_some() {
                self.shared.streams.dec();
            }
            if subs.is_empty() {
                map.remove(&key.uuid());
            }
        }
    }

    /// Opens the hub for subscriptions, everything up to `horizon` being in the past.
    pub(super) fn start(&self, horizon: i64) {
        {
            let mut reg = self.registry();
            reg.horizon = horizon;
            reg.recent_floor = horizon;
        }
        self.shared.state.send_replace(State::Ready);
    }

    pub(super) fn horizon(&self) -> i64 {
        self.registry().horizon
    }

    pub(super) fn pool(&self) -> &PgPool {
        &self.shared.pool
    }

    /// Resolves on the next `committed`/`resync` (or at once if one came since the last call).
    pub(super) async fn woken(&self) {
        self.shared.wake.notified().await
    }
}
