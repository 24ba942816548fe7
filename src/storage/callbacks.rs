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
    pub received_at: chrono::DateTime<chrono::Utc>,
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
    let received_at: Vec<_> = callbacks.iter().map(|c| c.received_at).collect();
    sqlx::query(
        "INSERT INTO fal_callbacks (generation_id, fal_request_id, source, fal_status, body, announced, received_at)
         SELECT * FROM unnest($1::uuid[], $2::text[], $3::text[], $4::text[], $5::jsonb[], $6::bool[], $7::timestamptz[])
         ON CONFLICT (fal_request_id) DO NOTHING",
    )
    .bind(&generation)
    .bind(&request_id)
    .bind(&source)
    .bind(&fal_status)
    .bind(&body)
    .bind(&announced)
    .bind(&received_at)
    .execute(db)
    .await?;
    Ok(())
}
