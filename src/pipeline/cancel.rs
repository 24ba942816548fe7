//! Cancelling a generation for its caller: at fal when it was submitted (fal's cancel URL),
//! locally when it was not. The answer says which happened. No transaction is held across the
//! call to fal: the row is finished afterwards, only if it is still unfinished.
use crate::wire::GenerationObject;
use sqlx::PgPool;

use super::Pipeline;
use crate::{
    domain::{event_type::EventType, ids::GenerationId, ids::TenantId, states::GenerationStatus},
    fal::client::CancelOutcome,
    storage::{
        self,
        generations::{Finish, Generation},
    },
};

/// How a cancel went, as the answer's `cancellation` says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cancellation {
    /// fal took the cancel. fal may already have been running the request, which can still
    /// complete and be billed, so its budget reservation is held until fal's final word.
    AtFal,
    /// fal no longer knew the request.
    NotFoundAtFal,
    /// It had not been submitted: nothing was sent.
    Locally,
}

impl Cancellation {
    pub fn as_str(self) -> &'static str {
        match self {
            Cancellation::AtFal => "cancelled_at_fal",
            Cancellation::NotFoundAtFal => "not_found_at_fal",
            Cancellation::Locally => "cancelled_locally",
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum CancelError {
    #[error("no generation {0}")]
    NotFound(GenerationId),
    /// Already finished: the row as it is.
    #[error("generation {} is already {}", .0.public_id(), .0.status)]
    Finished(Box<Generation>),
    /// It finished while fal was being asked: the row as it now is.
    #[error("generation {} is already {}", .0.public_id(), .0.status)]
    FinishedMeanwhile(Box<Generation>),
    /// fal had finished it; its result is on its way.
    #[error(
        "fal had already finished this request, so it was not cancelled; its result is on its way"
    )]
    CompletedAtFal(Box<Generation>),
    #[error("could not reach fal to cancel: {0}")]
    FalUnreachable(String),
    #[error(transparent)]
    Storage(#[from] sqlx::Error),
}

impl Pipeline {
    /// Cancels `tenant`'s generation `id` on the caller's pool; returns the cancelled row and
    /// how.
    pub async fn cancel(
        &self,
        db: &PgPool,
        tenant: TenantId,
        id: GenerationId,
    ) -> Result<(Generation, Cancellation), CancelError> {
        let g = storage::generations::get(db, tenant, id)
            .await?
            .ok_or(CancelError::NotFound(id))?;
        if g.is_terminal() {
            return Err(CancelError::Finished(Box::new(g)));
        }
        storage::generations::mark_cancel_requested(db, g.id).await?;
        let how = match (g.status, g.cancel_url.as_deref()) {
            (GenerationStatus::Queued, Some(url)) => match self.fal.cancel(url).await {
                Ok(CancelOutcome::Requested) => Cancellation::AtFal,
                Ok(CancelOutcome::NotFound) => Cancellation::NotFoundAtFal,
                Ok(CancelOutcome::AlreadyCompleted) => {
                    return Err(CancelError::CompletedAtFal(Box::new(g)))
                }
                Err(e) => return Err(CancelError::FalUnreachable(e.to_string())),
            },
            _ => Cancellation::Locally,
        };
        let held = how == Cancellation::AtFal;
        let error = serde_json::json!({
            "code": "cancelled", "message": "cancelled by the caller", "cancellation": how.as_str(),
            "charge": if held { "pending until fal reports whether the request ran" } else { "none" },
        });
        let finish = if held {
            Finish {
                error: Some(&error),
                hold_reservation: true,
                ..Finish::to(GenerationStatus::Cancelled)
            }
        } else {
            Finish::unsuccessful(GenerationStatus::Cancelled, &error)
        };
        let mut tx = db.begin().await?;
        let Some(row) = storage::generations::finish(&mut tx, g.id, finish).await? else {
            // It finished while we were asking fal: report the state it reached.
            let now = storage::generations::get(&mut *tx, tenant, g.id)
                .await?
                .ok_or(CancelError::NotFound(id))?;
            return Err(CancelError::FinishedMeanwhile(Box::new(now)));
        };
        storage::events::append(
            &mut tx,
            row.tenant_id,
            EventType::GenerationCancelled,
            Some(row.id),
            GenerationObject::of(&row).value(),
        )
        .await?;
        tx.commit().await?;
        Ok((row, how))
    }
}
