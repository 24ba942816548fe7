//! Group commit for fal callbacks. Handlers hand their verified callback to `Ingest` and wait;
//! `WRITERS` tasks each take whatever has queued up (at most `MAX_BATCH`) and apply it in one
//! transaction (`callbacks::apply_many`). Nothing waits to fill a batch: a lone callback is
//! written at once, and under load the callbacks that arrive while one batch commits form the
//! next — so the round trips and the commit's fsync are shared, and the answer still goes out
//! only after the callback is durable.
use crate::domain::ids::GenerationId;
use std::sync::Arc;

use tokio::sync::{mpsc, oneshot, Mutex};
use tokio_util::sync::CancellationToken;

use super::{
    callbacks::{self, Applied, ApplyError, Incoming},
    submitted::Submitted,
};
use crate::{
    delivery::handoff::Handoff,
    storage::{
        self,
        generations::Generation,
        held::{self, Held},
    },
};

/// Concurrent batches: one is being built and sent while another waits for its commit.
const WRITERS: usize = 2;
const MAX_BATCH: usize = 128;
/// Callbacks waiting for a writer before handlers wait to enqueue (backpressure).
const QUEUE: usize = 4096;

type Reply = oneshot::Sender<Result<Applied, ApplyError>>;

/// A verified callback waiting for a writer.
struct Job {
    incoming: Incoming,
    /// Its generation as this instance remembers submitting it, taken when it was queued.
    remembered: Option<Generation>,
    reply: Reply,
}

/// The handlers' side: cheap to clone.
#[derive(Clone)]
pub struct Ingest {
    queue: mpsc::Sender<Job>,
    submitted: Submitted,
}

/// The writers' side, started by `Application::run_until_stopped`.
pub struct Writers {
    queue: mpsc::Receiver<Job>,
    pool: sqlx::PgPool,
    /// Where deliveries created leased to this instance go.
    handoff: Handoff,
    /// The generations this instance submitted, as it last wrote them.
    submitted: Submitted,
}

impl Ingest {
    pub fn new(pool: sqlx::PgPool, handoff: Handoff, submitted: Submitted) -> (Ingest, Writers) {
        let (tx, rx) = mpsc::channel(QUEUE);
        (
            Ingest {
                queue: tx,
                submitted: submitted.clone(),
            },
            Writers {
                queue: rx,
                pool,
                handoff,
                submitted,
            },
        )
    }

    /// Applies one callback with whatever else is queued; answers once it is committed.
    ///
    /// Its generation's remembered row is taken as soon as the callback has a place in the
    /// queue: from then on, fal's answer to the submit, should it still be on its way, waits
    /// for this callback instead of writing first and making the callback wait behind it
    /// (`Submitted::remember`'s `Callback`). Nothing can cancel this between the place and the
    /// take.
    pub async fn apply(&self, incoming: Incoming) -> Result<Applied, ApplyError> {
        let (reply, answer) = oneshot::channel();
        let place = self
            .queue
            .reserve()
            .await
            .map_err(|_| ApplyError::Unavailable)?;
        let remembered = self.submitted.take(incoming.generation_id);
        place.send(Job {
            incoming,
            remembered,
            reply,
        });
        answer.await.unwrap_or(Err(ApplyError::Unavailable))
    }
}

impl Writers {
    /// Runs until `stop`, then applies what is already queued and refuses the rest.
    pub async fn run(self, stop: CancellationToken) {
        let Writers {
            queue,
            pool,
            handoff,
            submitted,
        } = self;
        let queue = Arc::new(Mutex::new(queue));
        let out = Arc::new(Out {
            pool,
            handoff,
            submitted,
        });
        let mut writers = Vec::with_capacity(WRITERS);
        for _ in 0..WRITERS {
            let (queue, out, stop) = (queue.clone(), out.clone(), stop.clone());
            writers.push(tokio::spawn(async move {
                let mut jobs = Vec::with_capacity(MAX_BATCH);
                let mut held = Held::new(out.pool.clone());
                loop {
                    {
                        // The other writer waits for callbacks with the queue locked: one that
                        // waits here as long is idle too, and gives its connection back.
                        let mut q = match tokio::time::timeout(held::IDLE, queue.lock()).await {
                            Ok(q) => q,
                            Err(_) => {
                                held.release();
                                queue.lock().await
                            }
                        };
                        // Once closed, `recv_many` drains the queue, then returns 0: the end.
                        let got = tokio::select! {
                            n = next(&mut q, &mut jobs, &mut held) => n,
                            _ = stop.cancelled() => {
                                q.close();
                                q.recv_many(&mut jobs, MAX_BATCH).await
                            }
                        };
                        if got == 0 {
                            return;
                        }
                    }
                    out.write(&mut held, std::mem::take(&mut jobs)).await;
                }
            }));
        }
        for w in writers {
            let _ = w.await;
        }
    }
}

/// The next callbacks to write; a writer idle for `held::IDLE` gives its connection back.
async fn next(q: &mut mpsc::Receiver<Job>, jobs: &mut Vec<Job>, held: &mut Held) -> usize {
    if let Ok(n) = tokio::time::timeout(held::IDLE, q.recv_many(jobs, MAX_BATCH)).await {
        return n;
    }
    held.release();
    q.recv_many(jobs, MAX_BATCH).await
}

/// Where a written batch's consequences go.
struct Out {
    pool: sqlx::PgPool,
    handoff: Handoff,
    submitted: Submitted,
}

impl Out {
    /// Applies one batch and answers every handler. When the batch's statement fails, each
    /// callback is tried again on its own.
    async fn write(&self, held: &mut Held, jobs: Vec<Job>) {
        let (mut items, mut remembered, mut replies) = (
            Vec::with_capacity(jobs.len()),
            Vec::with_capacity(jobs.len()),
            Vec::with_capacity(jobs.len()),
        );
        for job in jobs {
            items.push(job.incoming);
            remembered.push(job.remembered);
            replies.push(job.reply);
        }
        let ids: Vec<GenerationId> = items.iter().map(|i| i.generation_id).collect();
        let lease = self.handoff.lease_for(items.len());
        let leasing = match lease {
            Some(_) => Some(self.handoff.lock().await),
            None => None,
        };
        let applied = match held.conn().await {
            Ok(conn) => callbacks::apply_many(conn, &items, lease, remembered).await,
            Err(e) => Err(e.into()),
        };
        held.done(applied.is_ok());
        drop(leasing);
        let answers = match applied {
            Ok((answers, written)) => {
                self.handoff
                    .dispatch(&self.pool, written.leased, written.unleased)
                    .await;
                answers
            }
            // One by one, each on a sound connection: one bad callback cannot fail the others,
            // and a connection that broke under the batch (a Postgres restart, a killed
            // backend) costs a retry, not an error answer. A write that did commit before its
            // connection broke is found recorded: the retry answers it as a duplicate.
            Err(e) if items.len() > 1 || matches!(e, callbacks::ApplyError::Db(_)) => {
                tracing::warn!(error = %e, count = items.len(), "a batch of callbacks failed; applying them one by one");
                if matches!(&e, callbacks::ApplyError::Db(db) if storage::is_connection_loss(db)) {
                    // Whatever broke this connection (a restart, killed backends) broke its
                    // idle siblings too: the LISTEN connection may not have noticed yet.
                    storage::connections_lost();
                }
                let mut answers = Vec::with_capacity(items.len());
                for item in items {
                    let answer = match held.conn().await {
                        Ok(conn) => callbacks::apply_on(conn, item).await,
                        Err(e) => Err(e.into()),
                    };
                    held.done(!matches!(answer, Err(callbacks::ApplyError::Db(_))));
                    answers.push(answer);
                }
                self.handoff.wake();
                answers
            }
            Err(e) => vec![Err(e)],
        };
        for ((reply, answer), id) in replies.into_iter().zip(answers).zip(ids) {
            let finished = matches!(answer, Ok(Applied::Finished(_) | Applied::RecordedOnly));
            self.submitted.settled(id, finished);
            let _ = reply.send(answer);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::{sync::Arc, time::Duration};

    use super::*;
    use crate::pipeline::callbacks::FalResult;

    /// The take happens when the callback is queued, not when a writer gets to it: fal's answer
    /// to the submit, arriving in between, learns that a callback holds the row.
    #[tokio::test]
    async fn a_queued_callback_holds_its_generation_before_any_writer_runs() {
        let pool = sqlx::postgres::PgPoolOptions::new()
            .connect_lazy("postgres://nobody@127.0.0.1:1/none")
            .unwrap();
        let (handoff, _inbox) = crate::delivery::handoff::channel(
            8,
            Duration::from_secs(30),
            Arc::new(tokio::sync::Notify::new()),
        );
        let submitted = Submitted::default();
        let id = GenerationId::new();
        let _ = submitted.remember(crate::pipeline::submitted::tests::row(id));
        // No writer is started: the callback stays queued.
        let (ingest, _writers) = Ingest::new(pool, handoff, submitted.clone());
        let incoming = Incoming {
            generation_id: id,
            result: FalResult {
                request_id: "req-1".into(),
                gateway_request_id: None,
                status: "OK".into(),
                error: None,
                payload: None,
                payload_error: None,
                endpoint_id: None,
            },
            raw: "{}".into(),
            source: "webhook",
            received_at: chrono::Utc::now(),
        };
        let waiting = tokio::spawn(async move { ingest.apply(incoming).await });
        tokio::time::timeout(Duration::from_secs(5), async {
            while !submitted.applying(id) {
                tokio::task::yield_now().await;
            }
        })
        .await
        .expect("the queued callback took the remembered row");
        assert!(!waiting.is_finished(), "nothing was written");
        waiting.abort();
    }
}
