//! One SSE stream: replay after a cursor (from the hub's recent ring, else the database), then
//! live events from the hub, with heartbeats. No task of its own: the HTTP response polls it, and a stream whose client stops
//! reading is simply not polled (its hub buffer fills and the hub lets go of it).
use std::{
    convert::Infallible,
    pin::Pin,
    sync::Arc,
    task::{ready, Context, Poll},
    time::Duration,
};

use bytes::{Bytes, BytesMut};
use futures_util::{future::BoxFuture, Stream};
use sqlx::PgPool;
use tokio::time::{Interval, MissedTickBehavior};

use super::{
    hub::{Hub, LiveEvent, Scope, Subscription},
    sse,
};
use crate::{domain::ids, storage::events};

/// Rows read per catch-up query.
const PAGE: i64 = 200;
/// Live events coalesced into one write when they arrive together.
const COALESCE: usize = 64;

/// Event types after which a generation's stream is over.
pub const TERMINAL: [&str; 3] = [
    "generation.completed",
    "generation.failed",
    "generation.cancelled",
];

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
        }
    }

    /// Queues bytes to send before anything else (the retry hint, a state frame).
    pub fn push(&mut self, bytes: &[u8]) {
        self.out.extend_from_slice(bytes);
    }

    pub fn is_finished(&self) -> bool {
        self.finished
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
            Scope::Tenant { tenant_id, types } => {
                events::tenant_page(
                    &self.pool,
                    *tenant_id,
                    types.as_sql(),
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
            let id = ids::encode(ids::Kind::Event, row.id);
            sse::put_frame(&mut self.out, Some(&id), &row.kind, &row.payload);
            self.advance(row.seq, &row.kind);
        }
        Ok(rows.len())
    }

    /// The response body.
    pub fn into_body(self) -> Body {
        Body {
            feed: Some(self),
            slow: None,
        }
    }

    /// The live hot path, polled in place: the next chunk, `Pending` until an event or a
    /// heartbeat is due, or `None` when the feed is not simply live and waiting (output queued,
    /// catching up, resubscribing, finished): `next_chunk` then takes over.
    fn poll_live(&mut self, cx: &mut Context<'_>) -> Option<Poll<Bytes>> {
        loop {
            if !self.out.is_empty() || self.finished {
                return None;
            }
            let Phase::Live(sub) = &mut self.phase else {
                return None;
            };
            let first = match sub.poll_recv(cx) {
                Poll::Ready(Some(event)) => event,
                Poll::Ready(None) => {
                    tracing::debug!(
                        cursor = self.cursor,
                        "event stream fell behind; catching up from the database"
                    );
                    self.phase = Phase::Resubscribe;
                    return None;
                }
                Poll::Pending => {
                    return Some(match self.heartbeat.poll_tick(cx) {
                        Poll::Ready(_) => Poll::Ready(Bytes::from_static(sse::PING)),
                        Poll::Pending => Poll::Pending,
                    });
                }
            };
            let second = sub.try_recv();
            if second.is_none() && self.wants(&first) {
                // The common case: send the hub's shared frame, no copy.
                self.advance(first.seq, &first.kind);
                return Some(Poll::Ready(first.frame.clone()));
            }
            // A burst: coalesce what is already buffered into one write.
            self.write_event(&first);
            if let Some(second) = second {
                self.write_event(&second);
                for _ in 2..COALESCE {
                    let Phase::Live(sub) = &mut self.phase else {
                        break;
                    };
                    match sub.try_recv() {
                        Some(event) => self.write_event(&event),
                        None => break,
                    }
                }
            }
            if !self.out.is_empty() {
                return Some(Poll::Ready(self.out.split().freeze()));
            }
            // Only events already replayed: wait for the next.
        }
    }

    /// Everything but waiting live: queued output, the catch-up, resubscribing. `None` ends
    /// the stream; an empty chunk means the feed is live and waiting (`poll_live`'s turn).
    async fn next_chunk(&mut self) -> Option<Bytes> {
        loop {
            if !self.out.is_empty() {
                return Some(self.out.split().freeze());
            }
            if self.finished {
                return None;
            }
            match std::mem::replace(&mut self.phase, Phase::Resubscribe) {
                Phase::CatchUp(sub) => {
                    self.phase = Phase::CatchUp(sub);
                    match self.replay_page().await {
                        Ok(n) if n as i64 == PAGE => {}
                        Ok(_) => {
                            if let Phase::CatchUp(sub) =
                                std::mem::replace(&mut self.phase, Phase::Resubscribe)
                            {
                                self.phase = Phase::Live(sub);
                            }
                        }
                        Err(e) => {
                            // Ending is safe: the client resumes after the last id it got.
                            tracing::warn!(error = %e, "event stream could not read the event log; closing it");
                            return None;
                        }
                    }
                }
                Phase::Live(sub) => {
                    self.phase = Phase::Live(sub);
                    return Some(Bytes::new());
                }
                Phase::Resubscribe => match self.hub.subscribe(self.scope.clone()).await {
                    Ok(sub) => self.phase = Phase::CatchUp(sub),
                    Err(_) => return None,
                },
            }
        }
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
        if matches!(self.scope, Scope::Generation { .. }) && TERMINAL.contains(&kind) {
            self.finished = true;
        }
    }
}

/// A feed as a response body. Live, it is polled in place (one poll of the hub buffer per
/// wakeup, nothing allocated per event); the rarer steps that read the database or resubscribe
/// run as a boxed future that hands the feed back when done.
pub struct Body {
    feed: Option<Feed>,
    slow: Option<BoxFuture<'static, (Feed, Option<Bytes>)>>,
}

impl Stream for Body {
    type Item = Result<Bytes, Infallible>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        loop {
            if let Some(slow) = self.slow.as_mut() {
                let (feed, chunk) = ready!(slow.as_mut().poll(cx));
                self.slow = None;
                match chunk {
                    Some(chunk) if chunk.is_empty() => self.feed = Some(feed),
                    Some(chunk) => {
                        self.feed = Some(feed);
                        return Poll::Ready(Some(Ok(chunk)));
                    }
                    None => return Poll::Ready(None),
                }
            }
            let Some(feed) = self.feed.as_mut() else {
                return Poll::Ready(None);
            };
            if let Some(live) = feed.poll_live(cx) {
                return live.map(|chunk| Some(Ok(chunk)));
            }
            let mut feed = self.feed.take().expect("checked above");
            self.slow = Some(Box::pin(async move {
                let chunk = feed.next_chunk().await;
                (feed, chunk)
            }));
        }
    }
}
