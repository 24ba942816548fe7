//! Completing a generation from fal's result: the one path for a verified webhook and for a
//! result the reconciler fetched because its webhook never came. Check the result against the
//! stored generation when something needs the row (images to copy, a URL from before callback
//! tokens), then either apply it (`callbacks`) or, when its images are to be copied into the
//! store, queue it for the copier stage (`copier.rs`), which applies it once they are: the
//! webhook never waits for a download. Count the outcome. Webhooks apply through the batching
//! `Ingest`; the reconciler, one at a time, directly.
use sqlx::PgPool;

use super::{
    callback_urls::Door,
    callbacks::{self, Applied, ApplyError, Incoming},
    ingest::Ingest,
    Pipeline,
};
use crate::{
    domain::ids::GenerationId,
    storage::{self, image_copies::CopyJob},
};

/// How a result reaches `callbacks::apply`.
pub enum Via<'a> {
    /// Gathered with concurrent callbacks into one transaction (group commit).
    Ingest(&'a Ingest),
    /// On its own connection.
    Direct,
}

#[derive(Debug, thiserror::Error)]
pub enum CompleteError {
    #[error("no generation {0}")]
    UnknownGeneration(GenerationId),
    #[error("the callback URL carries no token; fluxgate gives fal a token in every callback URL")]
    TokenMissing,
    #[error("this generation is bound to fal request {stored}, not {received}")]
    Contradiction { stored: String, received: String },
    #[error("callbacks are not being processed right now (shutting down)")]
    Unavailable,
    #[error(transparent)]
    Db(#[from] sqlx::Error),
}

impl Pipeline {
    /// Completes `incoming`'s generation, reading on the caller's pool (the API's for a webhook,
    /// the workers' for the reconciler); see the module's opening. The `fluxgate_callbacks`
    /// counter gets the outcome of every result that reached the apply step.
    pub async fn complete(
        &self,
        db: &PgPool,
        incoming: Incoming,
        door: Door,
        via: Via<'_>,
    ) -> Result<Applied, CompleteError> {
        let (source, id) = (incoming.source, incoming.generation_id);
        if let Next::Copy { max_images } = self.prepare(db, door, &incoming).await? {
            let job = CopyJob {
                generation_id: id,
                fal_request_id: incoming.result.request_id,
                source: source.to_owned(),
                body: incoming.raw,
                received_at: incoming.received_at,
                attempts: 0,
                max_images,
                give_up_at: incoming.received_at
                    + chrono::Duration::from_std(self.settings.storage.copy_deadline)
                        .unwrap_or(chrono::Duration::MAX),
            };
            storage::image_copies::enqueue(db, &job).await?;
            self.copy_wake.notify_one();
            let label = Applied::Copying.label();
            self.metrics
                .callbacks
                .with_label_values(&[source, label])
                .inc();
            return Ok(Applied::Copying);
        }
        let answer = match via {
            Via::Ingest(ingest) => ingest.apply(incoming).await,
            Via::Direct => callbacks::apply(db, incoming).await,
        };
        let label = match &answer {
            Ok(applied) => Some(applied.label()),
            Err(ApplyError::UnknownGeneration) => Some("unknown_generation"),
            Err(ApplyError::Contradiction { .. }) => Some("contradiction"),
            Err(_) => None,
        };
        if let Some(label) = label {
            self.metrics
                .callbacks
                .with_label_values(&[source, label])
                .inc();
        }
        answer.map_err(|e| match e {
            ApplyError::UnknownGeneration => CompleteError::UnknownGeneration(id),
            ApplyError::Contradiction { stored, received } => {
                CompleteError::Contradiction { stored, received }
            }
            ApplyError::Unavailable => CompleteError::Unavailable,
            ApplyError::Db(e) => CompleteError::Db(e),
        })
    }

    /// What needs the stored generation, and whether the result goes to the copier. Without a
    /// store and through a token, nothing needs the row: the apply step's own read settles
    /// everything (the webhook's hot path stays one statement).
    async fn prepare(
        &self,
        db: &PgPool,
        door: Door,
        incoming: &Incoming,
    ) -> Result<Next, CompleteError> {
        let copies = self.assets.is_some() && incoming.has_images();
        let legacy = matches!(door, Door::Legacy { .. });
        if !copies && !legacy {
            return Ok(Next::Apply);
        }
        let id = incoming.generation_id;
        let target = storage::generations::callback_target(db, id, &incoming.result.request_id)
            .await?
            .ok_or(CompleteError::UnknownGeneration(id))?;
        if let Door::Legacy { tokens_since } = door {
            if target.created_at >= tokens_since {
                return Err(CompleteError::TokenMissing);
            }
        }
        if let Some(stored) = target.fal_request_id.as_deref() {
            let open = !target.seen && !target.status.is_terminal();
            if stored != incoming.result.request_id && open {
                return Err(CompleteError::Contradiction {
                    stored: stored.to_owned(),
                    received: incoming.result.request_id.clone(),
                });
            }
        }
        // A duplicate changes nothing and a late result (a cancelled generation's included) is
        // recorded, never announced: neither is worth a download.
        let finishes = !target.seen && !target.status.is_terminal();
        Ok(if copies && finishes {
            Next::Copy {
                max_images: target.num_images.unwrap_or(1).clamp(1, 4),
            }
        } else {
            Next::Apply
        })
    }
}

/// Where a checked result goes next.
#[derive(Debug, PartialEq, Eq)]
enum Next {
    Apply,
    /// To the copier, which keeps at most `max_images` of it (the generation's `num_images`:
    /// fal never returns more, so any more are dropped unfetched).
    Copy {
        max_images: i32,
    },
}
