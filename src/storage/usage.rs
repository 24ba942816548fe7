//! The usage report of `GET /v1/usage`: requests, images, megapixels, spend, cache hits and savings, and failures
//! by code — per UTC day, optionally for one end user. Derived from the generations
//! themselves, so it is exact whatever instance served them.
use crate::domain::ids::TenantId;
use chrono::NaiveDate;
use serde::Serialize;
use std::collections::BTreeMap;

use crate::domain::ids;

#[derive(Debug, Clone, Default, Serialize, sqlx::FromRow)]
pub struct Day {
    pub date: NaiveDate,
    pub requests: i64,
    pub completed: i64,
    pub failed: i64,
    pub cancelled: i64,
    pub images: i64,
    pub megapixels: i64,
    pub spend_micros: i64,
    pub cache_hits: i64,
    pub cache_savings_micros: i64,
    #[sqlx(skip)]
    pub failures: BTreeMap<String, i64>,
}

pub async fn by_day(
    db: &sqlx::PgPool,
    tenant_id: TenantId,
    from: NaiveDate,
    to: NaiveDate,
    end_user: Option<&str>,
) -> Result<Vec<Day>, sqlx::Error> {
    // Generation ids are UUIDv7, so a tenant's generations of a period are a range of
    // `generations_tenant_recent`. The range is a day wider on each side than the dates: ids
    // come from fluxgate's clock and `created_at` from Postgres's, which need not agree.
    let (lo, hi) = (
        ids::v7_floor(from - chrono::Days::new(1)),
        ids::v7_floor(to + chrono::Days::new(2)),
    );
    let mut days: Vec<Day> = sqlx::query_as(
        "SELECT (created_at AT TIME ZONE 'UTC')::date AS date,
                count(*) AS requests,
                count(*) FILTER (WHERE status = 'completed') AS completed,
                count(*) FILTER (WHERE status = 'failed') AS failed,
                count(*) FILTER (WHERE status = 'cancelled') AS cancelled,
                COALESCE(sum(jsonb_array_length(result->'images')) FILTER (WHERE status = 'completed'), 0)::bigint AS images,
                COALESCE(sum(
                    (input->>'num_images')::bigint
                    * GREATEST(1, ceil((input->'image_size'->>'width')::numeric * (input->'image_size'->>'height')::numeric / 1048576))::bigint
                    + COALESCE(jsonb_array_length(input->'image_urls'), 0)
                ) FILTER (WHERE status = 'completed' AND NOT cached), 0)::bigint AS megapixels,
                COALESCE(sum(cost_micros), 0)::bigint AS spend_micros,
                count(*) FILTER (WHERE cached) AS cache_hits,
                COALESCE(sum(estimated_cost_micros) FILTER (WHERE cached), 0)::bigint AS cache_savings_micros
         FROM generations
         WHERE tenant_id = $1 AND id >= $5 AND id < $6
           AND created_at >= $2::date AND created_at < ($3::date + 1)
           AND ($4::text IS NULL OR end_user = $4)
         GROUP BY 1 ORDER BY 1",
    )
    .bind(tenant_id)
    .bind(from)
    .bind(to)
    .bind(end_user)
    .bind(lo)
    .bind(hi)
    .fetch_all(db)
    .await?;
    let failures: Vec<(NaiveDate, String, i64)> = sqlx::query_as(
        "SELECT (created_at AT TIME ZONE 'UTC')::date, COALESCE(error->>'code', 'unknown'), count(*)
         FROM generations
         WHERE tenant_id = $1 AND id >= $5 AND id < $6
           AND status = 'failed' AND created_at >= $2::date AND created_at < ($3::date + 1)
           AND ($4::text IS NULL OR end_user = $4)
         GROUP BY 1, 2",
    )
    .bind(tenant_id)
    .bind(from)
    .bind(to)
    .bind(end_user)
    .bind(lo)
    .bind(hi)
    .fetch_all(db)
    .await?;
    for (date, code, n) in failures {
        if let Some(day) = days.iter_mut().find(|d| d.date == date) {
            day.failures.insert(code, n);
        }
    }
    Ok(days)
}

/// One end user's share of a period.
#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct EndUserShare {
    pub end_user: String,
    pub requests: i64,
    pub images: i64,
    pub spend_micros: i64,
}

/// The end users who spent most from `from` to `to` (UTC dates), most first.
pub async fn top_end_users(
    db: &sqlx::PgPool,
    tenant_id: TenantId,
    from: NaiveDate,
    to: NaiveDate,
    limit: i64,
) -> Result<Vec<EndUserShare>, sqlx::Error> {
    let (lo, hi) = (
        ids::v7_floor(from - chrono::Days::new(1)),
        ids::v7_floor(to + chrono::Days::new(2)),
    );
    sqlx::query_as(
        "SELECT end_user, count(*) AS requests,
                COALESCE(sum(jsonb_array_length(result->'images')) FILTER (WHERE status = 'completed'), 0)::bigint AS images,
                COALESCE(sum(cost_micros), 0)::bigint AS spend_micros
         FROM generations
         WHERE tenant_id = $1 AND id >= $4 AND id < $5 AND end_user IS NOT NULL
           AND created_at >= $2::date AND created_at < ($3::date + 1)
         GROUP BY end_user ORDER BY spend_micros DESC, requests DESC, end_user LIMIT $6",
    )
    .bind(tenant_id)
    .bind(from)
    .bind(to)
    .bind(lo)
    .bind(hi)
    .bind(limit)
    .fetch_all(db)
    .await
}
