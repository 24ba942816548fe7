//! Publishing: the reader's side of the hub. Each committed event advances the horizon and is
//! offered to every stream that wants it — or, while no stream is open, passed by unframed.
use std::{collections::HashMap, sync::Arc};

use tokio::sync::mpsc;
use uuid::Uuid;

use super::{Hub, Key, LiveEvent, Registry, Sub, RECENT_BYTES, RECENT_EVENTS};

impl Hub {
    /// Whether no stream is open: the reader may then pass events by without their bodies.
    pub(in crate::live) fn unwatched(&self) -> bool {
        self.registry().unwatched()
    }

    /// Advances the horizon past an event while no stream is open, without framing it. Checked
    /// under the lock `subscribe` takes, so a stream that opens later starts after it and reads
    /// it from the database. The ring is emptied, since it must hold every event after its
    /// floor. `false` if a stream is open now: the event must be read whole and published.
    pub(in crate::live) fn pass(&self, seq: i64) -> bool {
        let mut reg = self.registry();
        if !reg.unwatched() {
            return false;
        }
        reg.horizon = seq;
        reg.recent.clear();
        reg.recent_bytes = 0;
        reg.recent_floor = seq;
        true
    }

    /// Advances the horizon to the event and offers it to every stream that wants it. A full
    /// buffer costs the stream its place (it catches up from the database), never a wait.
    pub(in crate::live) fn publish(&self, event: LiveEvent) {
        let event = Arc::new(event);
        let mut reg = self.registry();
        reg.horizon = event.seq;
        reg.remember(event.clone());
        let mut removed = 0;
        let mut lagged = 0;
        let mut offer = |subs: &mut HashMap<u64, Sub>| {
            subs.retain(|_, sub| {
                if !sub.wants(&event) {
                    return true;
                }
                match sub.tx.try_send(event.clone()) {
                    Ok(()) => true,
                    Err(mpsc::error::TrySendError::Full(_)) => {
                        lagged += 1;
                        removed += 1;
                        false
                    }
                    Err(mpsc::error::TrySendError::Closed(_)) => {
                        removed += 1;
                        false
                    }
                }
            });
            subs.is_empty()
        };
        if let Some(subs) = reg.tenants.get_mut(&event.tenant_id.uuid()) {
            if offer(subs) {
                reg.tenants.remove(&event.tenant_id.uuid());
            }
        }
        if let Some(g) = event.generation_id {
            if let Some(subs) = reg.generations.get_mut(&g.uuid()) {
                if offer(subs) {
                    reg.generations.remove(&g.uuid());
                }
            }
        }
        drop(reg);
        self.shared.published.inc();
        self.shared.streams.sub(removed);
        self.shared.lagged.inc_by(lagged);
    }
}

impl Registry {
    pub(super) fn unwatched(&self) -> bool {
        self.tenants.is_empty() && self.generations.is_empty()
    }

    fn remember(&mut self, event: Arc<LiveEvent>) {
        self.recent_bytes += event.frame.len();
        self.recent.push_back(event);
        while self.recent.len() > RECENT_EVENTS || self.recent_bytes > RECENT_BYTES {
            let Some(old) = self.recent.pop_front() else {
                break;
            };
            self.recent_bytes -= old.frame.len();
            self.recent_floor = old.seq;
        }
    }

    pub(super) fn map(&mut self, key: Key) -> &mut HashMap<Uuid, HashMap<u64, Sub>> {
        match key {
            Key::Tenant(_) => &mut self.tenants,
            Key::Generation(_) => &mut self.generations,
        }
    }
}

impl Key {
    pub(super) fn uuid(self) -> Uuid {
        match self {
            Key::Tenant(id) => id.uuid(),
            Key::Generation(id) => id.uuid(),
        }
    }
}
