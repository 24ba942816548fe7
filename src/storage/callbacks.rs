//! fal callbacks as received (or fetched by the reconciler), unique on fal's request id.
use serde_json::Value;
use sqlx::{types::Json, PgExecutor};
use uuid::Uuid;

/// Records a callback; `false` when this request id was already recorded (a duplicate).
pub async fn record(
    db: impl PgExecutor<'_>,
    generation_id: Uuid,
    fal_request_id: &str,
    source: &str,
    fal_status: &str,
    body: &Value,
    announced: bool,
) -> Result<bool, sqlx::Error> {
    let inserted = sqlx::query(
        "INSERT INTO fal_callbacks (generation_id, fal_request_id, source, fal_status, body, announced)
         VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (fal_request_id) DO NOTHING",
    )
    .bind(generation_id)
    .bind(fal_request_id)
    .bind(source)
    .bind(fal_status)
    .bind(Json(body))
    .bind(announced)
    .execute(db)
    .await?;
    Ok(inserted.rows_affected() == 1)
}
