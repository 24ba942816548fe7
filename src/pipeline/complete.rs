//! Completing a generation from fal's result: the one path for a verified webhook and for a
//! result the reconciler fetched because its webhook never came. Check the result against the
//! stored generation when something needs the row (images to copy, a URL from before callback
//! tokens), copy its images into the store, apply it (`callbacks`), and count the outcome.
//! Webhooks apply through the batching `Ingest`; the reconciler, one at a time, directly.
use sqlx::PgPool;

use super::{
    callback_urls::Door,
    callbacks::{self, Applied, ApplyError, Incoming},
    ingest::Ingest,
    Pipeline,
};
use crate::{assets::CopyError, domain::ids::GenerationId, storage};

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
    #[error("could not copy the result's images ({0})")]
    Copy(#[source] CopyError),
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
        mut incoming: Incoming,
        door: Door,
        via: Via<'_>,
    ) -> Result<Applied, CompleteError> {
        self.prepare(db, door, &mut incoming).await?;
        let (source, id) = (incoming.source, incoming.generation_id);
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

    /// What needs the stored generation. Without a store and through a token, nothing does:
    /// the apply step's own read settles everything (the webhook's hot path stays one
    /// statement).
    async fn prepare(
        &self,
        db: &PgPool,
        door: Door,
        incoming: &mut Incoming,
    ) -> Result<(), CompleteError> {
        let assets = self.assets.as_deref();
        let copies = assets.is_some() && incoming.has_images();
        let legacy = matches!(door, Door::Legacy { .. });
        if !copies && !legacy {
            return Ok(());
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
        if let (Some(assets), true) = (assets, copies && finishes) {
            let max = target.num_images.unwrap_or(1).clamp(1, 4) as usize;
            incoming
                .keep_images(assets, max)
                .await
                .map_err(CompleteError::Copy)?;
        }
        Ok(())
    }
}
