//! One SSE stream: replay after a cursor (from the hub's recent ring, else the database), then
//! live events from the hub, with heartbeats. No task of its own: the HTTP response polls it
//! (`body.rs`), and a stream whose client stops reading is simply not polled (its hub buffer
//! fills and the hub lets go of it).
mod body;

use crate::domain::event_type::EventType;
use std::{sync::Arc, time::Duration};

use bytes::BytesMut;
use sqlx::PgPool;
use tokio::time::{Interval, MissedTickBehavior};

use super::{
    gate::Admission,
    hub::{Hub, LiveEvent, Scope, Subscription},
    sse,
};
use crate::storage::events;

/// Rows read per catch-up query.
const PAGE: i64 = 200;
/// Live events coalesced into one write when they arrive together.
const COALESCE: usize = 64;

pub struct Feed {
    hub: Hub,
    pool: PgPool,
    scope: Scope,
    /// `seq` of the last event written (or the resume point): nothing at or below it is sent.
    cursor: i64,
    phase: Phase,
    out: BytesMut,
    heartbeat: Interval,
    finished: bool,
    /// The stream's place at the gate: closes it when its key is revoked.
    admission: Admission,
}

enum Phase {
    /// Reading the past (ring or database) up to the subscription's horizon.
    CatchUp(Subscription),
    Live(Subscription),
    /// The hub let go of us (we fell behind) or is closing.
    Resubscribe,
}

impl Feed {
    /// `sub` must have been taken before anything was read for this stream: its horizon is
    /// where the database ends and the hub begins.
    pub fn new(
        hub: Hub,
        pool: PgPool,
        scope: Scope,
        cursor: i64,
        sub: Subscription,
        heartbeat: Duration,
        admission: Admission,
    ) -> Feed {
        let start = tokio::time::Instant::now() + heartbeat;
        let mut heartbeat = tokio::time::interval_at(start, heartbeat);
        heartbeat.set_missed_tick_behavior(MissedTickBehavior::Delay);
        Feed {
            hub,
            pool,
            scope,
            cursor,
            phase: Phase::CatchUp(sub),
            out: BytesMut::new(),
            heartbeat,
            finished: false,
            admission,
        }
    }

    /// Queues bytes to send before anything else (the retry hint, a state frame).
    pub fn push(&mut self, bytes: &[u8]) {
        self.out.extend_from_slice(bytes);
    }

    /// Ends the stream once the output queued so far is sent.
    pub fn finish(&mut self) {
        self.finished = true;
    }

    /// Reads the next page of past events into the output; returns how many were read.
    pub async fn replay_page(&mut self) -> Result<usize, sqlx::Error> {
        let Phase::CatchUp(sub) = &self.phase else {
            return Ok(0);
        };
        let upto = match self.scope {
            Scope::Tenant { .. } => sub.horizon,
            // One generation's events are appended after an UPDATE of its row, so they commit
            // in `seq` order: everything stored now may be read, whatever the hub has published.
            Scope::Generation { .. } => i64::MAX,
        };
        if self.cursor >= upto || self.finished {
            return Ok(0);
        }
        if let Some(recent) = self
            .hub
            .recent(&self.scope, self.cursor, upto, PAGE as usize)
        {
            for event in &recent {
                self.write_event(event);
            }
            return Ok(recent.len());
        }
        let rows = match &self.scope {
            Scope::Tenant {
                tenant_id,
                types,
                end_user,
            } => {
                events::tenant_page(
                    &self.pool,
                    *tenant_id,
                    types.as_sql(),
                    end_user.as_deref(),
                    self.cursor,
                    upto,
                    PAGE,
                )
                .await?
            }
            Scope::Generation {
                tenant_id,
                generation_id,
            } => {
                events::generation_page(
                    &self.pool,
                    *tenant_id,
                    *generation_id,
                    self.cursor,
                    upto,
                    PAGE,
                )
                .await?
            }
        };
        for row in &rows {
            if self.finished {
                break;
            }
            let id = row.id.to_string();
            sse::put_frame(&mut self.out, Some(&id), &row.kind, &row.payload);
            self.advance(row.seq, &row.kind);
        }
        Ok(rows.len())
    }

    /// Anything at or below the cursor was already sent by the replay; nothing follows the end.
    fn wants(&self, event: &LiveEvent) -> bool {
        event.seq > self.cursor && !self.finished
    }

    fn write_event(&mut self, event: &Arc<LiveEvent>) {
        if self.wants(event) {
            self.out.extend_from_slice(&event.frame);
            self.advance(event.seq, &event.kind);
        }
    }

    fn advance(&mut self, seq: i64, kind: &str) {
        self.cursor = seq;
        if matches!(self.scope, Scope::Generation { .. })
            && EventType::parse(kind).is_some_and(EventType::ends_a_generation)
        {
            self.finished = true;
        }
    }
}
