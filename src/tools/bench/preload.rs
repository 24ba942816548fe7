//! `--preload N`: history for the scenarios to run against. N events (each a realistic
//! `generation.completed` payload), N succeeded deliveries with one attempt each, and N/4
//! finished generations with their stored fal callbacks, spread over the 31 days before now
//! (ids are UUIDv7 of those times, as the rows' inserts would have made them), under another
//! tenant. Written in bulk, in chunks that each commit, into a template database that every
//! scenario's database is then copied from (`CREATE DATABASE … TEMPLATE`), outside any timing.
use anyhow::Context;
use sqlx::{Connection, PgConnection};

/// Rows per statement.
const CHUNK: i64 = 500_000;

/// fal's request id of history row i: shaped like fal's (a random UUID), so new ids land on
/// pages all over its indexes as they do in production, not at one end of them.
const RID: &str = "md5(i::text || 'r')::uuid::text";

/// Fills the database at `url` with `n` rows of history per table (see the module's opening).
pub async fn fill(url: &str, n: u64) -> anyhow::Result<()> {
    let mut conn = PgConnection::connect(url).await?;
    let n = n as i64;
    let generations = (n / 4).max(1);
    // The time of row i of `total`: 31 days ago to a minute ago, in order.
    let at = "now() - interval '31 days' + (i::float8 / $3) * (interval '31 days' - interval '1 minute')";
    // A UUIDv7 of time `t`: 48 bits of Unix milliseconds, the version, random bits, the variant.
    let v7 = |t: &str| {
        format!(
            "(lpad(to_hex((extract(epoch FROM {t}) * 1000)::bigint), 12, '0') || '7'
              || substr(md5(i::text || 'a'), 1, 3) || '8' || substr(md5(i::text || 'b'), 1, 15))::uuid"
        )
    };
    let tenant = "'00000000-0000-7000-8000-0000000000aa'::uuid";
    let statements = [
        (
            generations,
            format!(
                "INSERT INTO generations (id, tenant_id, status, model, input, estimated_cost_micros,
                                          cost_micros, result, seed, fal_request_id, created_at, submitted_at,
                                          finished_at, updated_at)
                 SELECT {id}, {tenant}, 'completed', 'fal-ai/flux-2',
                        jsonb_build_object('prompt', 'history #' || i, 'image_size', jsonb_build_object('width', 1024, 'height', 768),
                                           'num_images', 1, 'output_format', 'png'),
                        12000, 12000,
                        jsonb_build_object('images', jsonb_build_array(jsonb_build_object(
                            'url', 'https://v3.fal.media/files/history/' || i || '.png', 'width', 1024, 'height', 768,
                            'content_type', 'image/png')), 'seed', i, 'has_nsfw_concepts', '[false]'::jsonb,
                            'timings', '{{\"inference\": 1.1}}'::jsonb),
                        i, {rid}, {at}, {at}, {at}, {at}
                 FROM generate_series($1, $2) i",
                id = v7(at),
                rid = RID
            ),
        ),
        (
            generations,
            format!(
                "INSERT INTO fal_callbacks (generation_id, fal_request_id, source, fal_status, body, announced, received_at)
                 SELECT {id}, {rid}, 'webhook', 'OK',
                        json_build_object('request_id', {rid}, 'status', 'OK', 'payload', json_build_object(
                            'images', json_build_array(json_build_object('url', 'https://v3.fal.media/files/history/' || i || '.png',
                            'width', 1024, 'height', 768, 'content_type', 'image/png')), 'seed', i)),
                        true, {at}
                 FROM generate_series($1, $2) i",
                id = v7(at),
                rid = RID
            ),
        ),
        (
            n,
            format!(
                "INSERT INTO events (id, tenant_id, type, generation_id, payload, created_at)
                 SELECT {id}, {tenant}, 'generation.completed', NULL,
                        json_build_object('type', 'generation.completed', 'timestamp', {at}, 'data', json_build_object(
                            'object', 'generation', 'status', 'completed', 'model', 'fal-ai/flux-2',
                            'images', json_build_array(json_build_object('url', 'https://v3.fal.media/files/history/' || i || '.png',
                            'width', 1024, 'height', 768, 'content_type', 'image/png')),
                            'seed', i, 'cost_micros', 12000, 'input', json_build_object('prompt', 'history #' || i))),
                        {at}
                 FROM generate_series($1, $2) i",
                id = v7(at)
            ),
        ),
        (
            n,
            format!(
                "INSERT INTO deliveries (id, tenant_id, event_id, subscription_id, target_url, status, attempts,
                                         next_attempt_at, last_status_code, created_at, finished_at)
                 SELECT {id}, {tenant}, {event}, '00000000-0000-7000-8000-0000000000bb'::uuid,
                        'https://hooks.example.com/fluxgate', 'succeeded', 1, {at}, 200, {at}, {at}
                 FROM generate_series($1, $2) i",
                id = v7(at).replace("|| 'a'", "|| 'c'"),
                event = v7(at)
            ),
        ),
        (
            n,
            format!(
                "INSERT INTO delivery_attempts (delivery_id, attempt, started_at, duration_ms, status_code, response_excerpt)
                 SELECT {id}, 1, {at}, 12, 200, 'ok'
                 FROM generate_series($1, $2) i",
                id = v7(at).replace("|| 'a'", "|| 'c'")
            ),
        ),
    ];
    for (total, sql) in statements {
        let mut from = 1;
        while from <= total {
            let to = (from + CHUNK - 1).min(total);
            sqlx::query(&sql)
                .bind(from)
                .bind(to)
                .bind(total as f64)
                .execute(&mut conn)
                .await
                .with_context(|| format!("preloading rows {from}..{to}"))?;
            from = to + 1;
        }
    }
    // As autovacuum would have, long before: visibility and statistics for the planner.
    sqlx::query("VACUUM ANALYZE").execute(&mut conn).await?;
    conn.close().await?;
    Ok(())
}
