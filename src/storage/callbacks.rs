//! fal callbacks as received (or fetched by the reconciler), unique on fal's request id.
use serde_json::Value;
use sqlx::{types::Json, PgExecutor};
use uuid::Uuid;

/// A callback to record.
#[derive(Debug)]
pub struct NewCallback<'a> {
    pub generation_id: Uuid,
    pub fal_request_id: &'a str,
    pub source: &'a str,
    pub fal_status: &'a str,
    pub body: &'a Value,
    pub announced: bool,
}

/// Records a batch of callbacks in one statement; request ids recorded already are skipped.
pub async fn record_many(
    db: impl PgExecutor<'_>,
    callbacks: &[NewCallback<'_>],
) -> Result<(), sqlx::Error> {
    let request_id: Vec<&str> = callbacks.iter().map(|c| c.fal_request_id).collect();
    let source: Vec<&str> = callbacks.iter().map(|c| c.source).collect();
    let fal_status: Vec<&str> = callbacks.iter().map(|c| c.fal_status).collect();
    let generation: Vec<Uuid> = callbacks.iter().map(|c| c.generation_id).collect();
    let body: Vec<Json<&Value>> = callbacks.iter().map(|c| Json(c.body)).collect();
    let announced: Vec<bool> = callbacks.iter().map(|c| c.announced).collect();
    sqlx::query(
        "INSERT INTO fal_callbacks (generation_id, fal_request_id, source, fal_status, body, announced)
         SELECT * FROM unnest($1::uuid[], $2::text[], $3::text[], $4::text[], $5::jsonb[], $6::bool[])
         ON CONFLICT (fal_request_id) DO NOTHING",
    )
    .bind(&generation)
    .bind(&request_id)
    .bind(&source)
    .bind(&fal_status)
    .bind(&body)
    .bind(&announced)
    .execute(db)
    .await?;
    Ok(())
}
