//! A feed as the HTTP response body: the live hot path polled in place, the rest as a future.
use std::{
    convert::Infallible,
    pin::Pin,
    task::{ready, Context, Poll},
};

use bytes::Bytes;
use futures_util::{future::BoxFuture, Future, Stream};
use tokio_util::sync::WaitForCancellationFutureOwned;

use super::{sse, Feed, Phase, COALESCE, PAGE};

impl Feed {
    /// The response body.
    pub fn into_body(self) -> Body {
        Body {
            revoked: Box::pin(self.admission.closed()),
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
}

/// A feed as a response body. Live, it is polled in place (one poll of the hub buffer per
/// wakeup, nothing allocated per event); the rarer steps that read the database or resubscribe
/// run as a boxed future that hands the feed back when done.
pub struct Body {
    feed: Option<Feed>,
    slow: Option<BoxFuture<'static, (Feed, Option<Bytes>)>>,
    /// Fires when the key that opened the stream is revoked: the stream ends then.
    revoked: Pin<Box<WaitForCancellationFutureOwned>>,
}

impl Stream for Body {
    type Item = Result<Bytes, Infallible>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if self.revoked.as_mut().poll(cx).is_ready() {
            return Poll::Ready(None);
        }
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
