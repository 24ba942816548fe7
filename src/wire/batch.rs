//! The batch object.
use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::Value;

use crate::{
    domain::{
        ids::{BatchId, GenerationId},
        money::usd,
        states::{BatchStatus, Priority},
    },
    storage::batches::{Batch, Tally},
};

/// A batch, as answers and its `batch.completed` event carry it.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[schema(as = Batch)]
pub struct BatchObject<'a> {
    pub cancel_requested_at: Option<DateTime<Utc>>,
    /// When its last member finished.
    pub completed_at: Option<DateTime<Utc>>,
    /// What fal charged for the members that have a final cost.
    pub cost_micros: i64,
    #[schema(value_type = f64)]
    pub cost_usd: Value,
    /// Members by state.
    pub counts: Counts,
    pub created_at: DateTime<Utc>,
    pub estimated_cost_micros: i64,
    #[schema(value_type = f64)]
    pub estimated_cost_usd: Value,
    /// Its members, in the order they were given.
    pub generation_ids: &'a [GenerationId],
    pub id: BatchId,
    pub links: Links,
    #[schema(value_type = Option<Object>)]
    pub metadata: Option<&'a Value>,
    /// Always `batch`.
    pub object: &'static str,
    pub priority: Priority,
    pub size: i32,
    /// `running` until every member is terminal, then `completed`.
    pub status: BatchStatus,
    pub webhook_url: Option<&'a str>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
#[schema(as = BatchCounts)]
pub struct Counts {
    pub accepted: i64,
    pub cancelled: i64,
    pub completed: i64,
    pub failed: i64,
    pub queued: i64,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
#[schema(as = BatchLinks)]
pub struct Links {
    pub cancel: String,
    #[serde(rename = "self")]
    pub itself: String,
}

impl<'a> BatchObject<'a> {
    pub fn of(b: &'a Batch, t: &'a Tally) -> Self {
        let id = b.id;
        BatchObject {
            cancel_requested_at: b.cancel_requested_at,
            completed_at: b.completed_at,
            cost_micros: t.cost_micros,
            cost_usd: usd(t.cost_micros),
            counts: Counts {
                accepted: t.accepted,
                cancelled: t.cancelled,
                completed: t.completed,
                failed: t.failed,
                queued: t.queued,
            },
            created_at: b.created_at,
            estimated_cost_micros: b.estimated_cost_micros,
            estimated_cost_usd: usd(b.estimated_cost_micros),
            generation_ids: &t.generation_ids,
            id,
            links: Links {
                cancel: format!("/v1/batches/{id}/cancel"),
                itself: format!("/v1/batches/{id}"),
            },
            metadata: b.metadata.as_ref().map(|m| &m.0),
            object: "batch",
            priority: b.priority,
            size: b.size,
            status: b.status,
            webhook_url: b.webhook_url.as_deref(),
        }
    }

    pub fn value(&self) -> Value {
        serde_json::to_value(self).expect("a batch always serializes")
    }
}
