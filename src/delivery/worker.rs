//! The delivery worker. Claims due deliveries in batches with a lease (committed before any
//! HTTP call), signs the exact stored payload bytes (Standard Webhooks), sends them through the
//! SSRF-guarded client under a global concurrency limit, and hands every outcome to one settler
//! task that records a whole batch of attempts — and the consequences: retries on the
//! schedule, 410 ⇒ disable now, exhaustion, auto-disable after days of failure — in one
//! transaction.
use std::{
    collections::{HashMap, HashSet},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use bytes::Bytes;
use chrono::Utc;
use rand::SeedableRng;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use sqlx::PgPool;
use tokio::sync::{mpsc, Notify, Semaphore};
use tokio_util::{sync::CancellationToken, task::TaskTracker};
use uuid::Uuid;

use super::{
    client::{ErrorClass, SafeClient, SendError},
    keys::OutboundKeys,
    retry::{self, AttemptOutcome, Decision, RetrySchedule},
    signing::{self, SigningSecret},
};
use crate::{
    domain::ids,
    metrics::Metrics,
    storage::{
        self,
        deliveries::{Claimed, Settled},
        subscriptions::Subscription,
    },
};

const CLAIM_BATCH: usize = 256;

/// Everything the delivery worker needs.
#[derive(Clone)]
pub struct Deliverer {
    pub pool: PgPool,
    pub client: SafeClient,
    pub schedule: RetrySchedule,
    pub keys: Option<Arc<OutboundKeys>>,
    pub metrics: Metrics,
    pub wake: Arc<Notify>,
    pub concurrency: usize,
    pub disable_after: Duration,
    pub drain: Duration,
    pub lease: Duration,
    /// Fired after each settled batch: slots under the in-flight caps may have freed up.
    settled: Arc<Notify>,
    buckets: Arc<Mutex<HashMap<Uuid, Bucket>>>,
}

/// A token bucket for a subscription's optional rate limit (per instance).
struct Bucket {
    tokens: f64,
    at: Instant,
}

/// One attempt's result, waiting for the settler.
struct Outcome {
    settled: Settled,
    claimed: Claimed,
    decision: Decision,
}

impl Deliverer {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        pool: PgPool,
        client: SafeClient,
        schedule: RetrySchedule,
        keys: Option<Arc<OutboundKeys>>,
        metrics: Metrics,
        wake: Arc<Notify>,
        concurrency: usize,
        disable_after: Duration,
        drain: Duration,
        lease: Duration,
    ) -> Self {
        Deliverer {
            lease,
            settled: Arc::new(Notify::new()),
            pool,
            client,
            schedule,
            keys,
            metrics,
            wake,
            concurrency,
            disable_after,
            drain,
            buckets: Default::default(),
        }
    }

    /// Runs until cancelled; on stop, in-flight attempts finish within the drain time and the
    /// leases of anything unsent are released for the next instance.
    pub async fn run(self, stop: CancellationToken) {
        let permits = Arc::new(Semaphore::new(self.concurrency));
        let tracker = TaskTracker::new();
        let (tx, rx) = mpsc::channel::<Outcome>(4 * self.concurrency);
        let settler = tokio::spawn(self.clone().settler(rx));
        let in_flight: Arc<Mutex<HashSet<Uuid>>> = Default::default();
        while !stop.is_cancelled() {
            let available = permits.available_permits().min(CLAIM_BATCH);
            let claimed = if available == 0 {
                Vec::new()
            } else {
                match storage::deliveries::claim(
                    &self.pool,
                    available as i64,
                    self.lease.as_secs_f64(),
                )
                .await
                {
                    Ok(c) => c,
                    Err(e) => {
                        tracing::warn!(error = %e, "claiming deliveries failed; retrying shortly");
                        tokio::select! { _ = stop.cancelled() => break, _ = tokio::time::sleep(Duration::from_secs(1)) => {} }
                        continue;
                    }
                }
            };
            let got = claimed.len();
            let full = got > 0 && got == available;
            if !claimed.is_empty() {
                let prepared = match self.prepare(claimed).await {
                    Ok(p) => p,
                    Err(e) => {
                        tracing::warn!(error = %e, "loading delivery targets failed; leases will expire and be retried");
                        continue;
                    }
                };
                for (claimed, target) in prepared {
                    let permit = permits
                        .clone()
                        .acquire_owned()
                        .await
                        .expect("open semaphore");
                    let me = self.clone();
                    let tx = tx.clone();
                    let in_flight = in_flight.clone();
                    in_flight.lock().expect("lock").insert(claimed.id);
                    tracker.spawn(async move {
                        let id = claimed.id;
                        let outcome = me.attempt(claimed, target).await;
                        in_flight.lock().expect("lock").remove(&id);
                        let _ = tx.send(outcome).await;
                        drop(permit);
                    });
                }
            }
            if full {
                tokio::select! { _ = stop.cancelled() => break, _ = permits.acquire() => {} }
                continue;
            }
            if got > 0 {
                // More may be due: claim again at once; an empty claim is what ends the burst.
                continue;
            }
            // Nothing claimable: sleep until the next scheduled attempt or lease expiry, a new
            // event (NOTIFY), or a settled batch freeing in-flight slots — never a busy loop.
            let wait = match storage::deliveries::next_due(&self.pool).await {
                Ok(Some(due)) => (due - Utc::now())
                    .to_std()
                    .unwrap_or(Duration::ZERO)
                    .min(Duration::from_secs(5)),
                _ => Duration::from_secs(5),
            };
            tokio::select! {
                _ = stop.cancelled() => break,
                _ = self.wake.notified() => {},
                _ = self.settled.notified() => {},
                _ = tokio::time::sleep(wait) => {},
            }
        }
        tracker.close();
        if tokio::time::timeout(self.drain, tracker.wait())
            .await
            .is_err()
        {
            let left: Vec<Uuid> = in_flight.lock().expect("lock").iter().copied().collect();
            tracing::warn!(
                count = left.len(),
                "drain time over: releasing delivery leases"
            );
            let _ = storage::deliveries::release(&self.pool, &left, 0.0).await;
        }
        drop(tx);
        let _ = settler.await;
    }

    /// Resolves each claimed delivery's target, secrets and headers (one query per batch), and
    /// puts back those a subscription's rate limit does not allow yet.
    async fn prepare(&self, claimed: Vec<Claimed>) -> Result<Vec<(Claimed, Target)>, sqlx::Error> {
        let sub_ids: Vec<Uuid> = claimed
            .iter()
            .filter_map(|c| c.subscription_id)
            .collect::<HashSet<_>>()
            .into_iter()
            .collect();
        let subs: HashMap<Uuid, Subscription> =
            storage::subscriptions::get_many(&self.pool, &sub_ids)
                .await?
                .into_iter()
                .map(|s| (s.id, s))
                .collect();
        let mut tenant_secrets: HashMap<Uuid, SigningSecret> = HashMap::new();
        let mut ready = Vec::with_capacity(claimed.len());
        let mut held = Vec::new();
        for c in claimed {
            let target = match c.subscription_id.and_then(|id| subs.get(&id)) {
                Some(sub) => {
                    if !self.take_token(sub) {
                        held.push(c.id);
                        continue;
                    }
                    Target::from_subscription(sub)
                }
                None => {
                    let secret = match tenant_secrets.get(&c.tenant_id) {
                        Some(s) => s.clone(),
                        None => {
                            let s = tenant_webhook_secret(&self.pool, c.tenant_id).await?;
                            tenant_secrets.insert(c.tenant_id, s.clone());
                            s
                        }
                    };
                    Target {
                        url: c.target_url.clone(),
                        secrets: vec![secret],
                        headers: Vec::new(),
                    }
                }
            };
            ready.push((c, target));
        }
        if !held.is_empty() {
            storage::deliveries::release(&self.pool, &held, 0.2).await?;
        }
        Ok(ready)
    }

    fn take_token(&self, sub: &Subscription) -> bool {
        let Some(rate) = sub.rate_limit_per_sec.filter(|r| *r > 0) else {
            return true;
        };
        let rate = f64::from(rate);
        let mut buckets = self.buckets.lock().expect("lock");
        let now = Instant::now();
        let b = buckets.entry(sub.id).or_insert(Bucket {
            tokens: rate,
            at: now,
        });
        b.tokens = (b.tokens + now.duration_since(b.at).as_secs_f64() * rate).min(rate);
        b.at = now;
        if b.tokens >= 1.0 {
            b.tokens -= 1.0;
            true
        } else {
            false
        }
    }

    /// Signs and sends one delivery; never fails — every result becomes an `Outcome`.
    async fn attempt(&self, c: Claimed, target: Target) -> Outcome {
        let started_at = Utc::now();
        let msg_id = ids::encode(ids::Kind::Event, c.event_id);
        let body = Bytes::from(c.payload.clone());
        let ts = started_at.timestamp();
        let secret_refs: Vec<&SigningSecret> = target.secrets.iter().collect();
        let signature = signing::sign(
            &msg_id,
            ts,
            &body,
            &secret_refs,
            self.keys.as_deref().map(OutboundKeys::signing_key),
        );
        let mut headers = HeaderMap::new();
        headers.insert(
            reqwest::header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        for (name, value) in [
            ("webhook-id", msg_id.clone()),
            ("webhook-timestamp", ts.to_string()),
            ("webhook-signature", signature),
        ] {
            if let Ok(v) = HeaderValue::from_str(&value) {
                headers.insert(HeaderName::from_static(name), v);
            }
        }
        for (name, value) in &target.headers {
            if let (Ok(n), Ok(v)) = (
                HeaderName::from_bytes(name.as_bytes()),
                HeaderValue::from_str(value),
            ) {
                headers.insert(n, v);
            }
        }
        let result = match url::Url::parse(&target.url) {
            Ok(url) => self.client.post(&url, headers, body).await,
            Err(e) => Err(SendError {
                class: ErrorClass::InvalidTarget,
                message: format!("stored target is not a URL: {e}"),
                duration: Duration::ZERO,
            }),
        };
        let mut rng = rand::rngs::StdRng::from_entropy();
        let (code, class, excerpt, outcome, retry_after, duration) = match &result {
            Ok(d) => {
                let outcome = AttemptOutcome::from_status(d.status);
                let retry_after = d
                    .headers
                    .get(reqwest::header::RETRY_AFTER)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| retry::parse_retry_after(v, Utc::now()));
                let class = if (200..300).contains(&d.status) {
                    None
                } else {
                    Some("http_status")
                };
                (
                    Some(i32::from(d.status)),
                    class,
                    Some(d.body_excerpt.clone()),
                    outcome,
                    retry_after,
                    d.duration,
                )
            }
            Err(e) => {
                let outcome = if e.class.as_str() == "timeout" {
                    AttemptOutcome::Timeout
                } else {
                    AttemptOutcome::Failed
                };
                (
                    None,
                    Some(e.class.as_str()),
                    Some(e.message.clone()),
                    outcome,
                    None,
                    e.duration,
                )
            }
        };
        let decision = retry::next_attempt(
            &self.schedule,
            c.attempts.max(1) as u32,
            outcome,
            retry_after,
            &mut rng,
        );
        let (new_status, next_attempt_at, label) = match decision {
            Decision::Done => ("succeeded", None, "succeeded"),
            Decision::Disable => ("failed", None, "gone"),
            Decision::RetryIn(d) => (
                "pending",
                Some(Utc::now() + chrono::Duration::from_std(d).unwrap_or_default()),
                "retry_scheduled",
            ),
            Decision::Exhausted => ("exhausted", None, "exhausted"),
        };
        self.metrics
            .deliveries
            .with_label_values(&[label, class.unwrap_or("none")])
            .inc();
        if new_status == "succeeded" {
            let latency = (Utc::now() - c.event_created_at)
                .to_std()
                .unwrap_or_default();
            self.metrics.delivery_latency.observe(latency.as_secs_f64());
        }
        tracing::info!(
            delivery = %ids::encode(ids::Kind::Delivery, c.id),
            event = %msg_id,
            attempt = c.attempts,
            status_code = code,
            error_class = class.unwrap_or(""),
            duration_ms = duration.as_secs_f64() * 1000.0,
            outcome = label,
            "delivery attempt"
        );
        Outcome {
            settled: Settled {
                delivery_id: c.id,
                attempt: c.attempts,
                started_at,
                duration_ms: duration.as_millis().min(i32::MAX as u128) as i32,
                status_code: code,
                error_class: class,
                excerpt,
                new_status,
                next_attempt_at,
            },
            claimed: c,
            decision,
        }
    }

    /// Drains outcomes in batches: one transaction records each batch and its consequences.
    async fn settler(self, mut rx: mpsc::Receiver<Outcome>) {
        let mut buf = Vec::with_capacity(512);
        while rx.recv_many(&mut buf, 512).await > 0 {
            let batch = std::mem::take(&mut buf);
            if let Err(e) = self.settle(&batch).await {
                // The leases expire and the deliveries are attempted again: at-least-once.
                tracing::error!(error = %e, count = batch.len(), "recording delivery attempts failed");
            }
            self.settled.notify_one();
        }
    }

    async fn settle(&self, batch: &[Outcome]) -> Result<(), sqlx::Error> {
        let mut tx = self.pool.begin().await?;
        let settled: Vec<Settled> = batch.iter().map(|o| o.settled.clone()).collect();
        storage::deliveries::settle(&mut tx, &settled).await?;
        let subs = |pred: fn(&Decision) -> bool| -> Vec<Uuid> {
            batch
                .iter()
                .filter(|o| pred(&o.decision))
                .filter_map(|o| o.claimed.subscription_id)
                .collect::<HashSet<_>>()
                .into_iter()
                .collect()
        };
        let failing = subs(|d| matches!(d, Decision::RetryIn(_) | Decision::Exhausted));
        let healthy = subs(|d| matches!(d, Decision::Done));
        let gone = subs(|d| matches!(d, Decision::Disable));
        let mut disable: Vec<(Uuid, String)> = gone
            .into_iter()
            .map(|id| (id, "the target answered 410 Gone".to_owned()))
            .collect();
        if !failing.is_empty() {
            let overdue: Vec<Uuid> = sqlx::query_scalar::<_, Option<Uuid>>(
                "UPDATE subscriptions SET failing_since = COALESCE(failing_since, now()) WHERE id = ANY($1)
                 RETURNING CASE WHEN failing_since < now() - make_interval(secs => $2) THEN id END",
            )
            .bind(&failing)
            .bind(self.disable_after.as_secs_f64())
            .fetch_all(&mut *tx)
            .await?
            .into_iter()
            .flatten()
            .collect();
            let days = self.disable_after.as_secs_f64() / 86_400.0;
            disable.extend(
                overdue
                    .into_iter()
                    .map(|id| (id, format!("every delivery failed for {days:.1} days"))),
            );
        }
        if !healthy.is_empty() {
            sqlx::query("UPDATE subscriptions SET failing_since = NULL WHERE id = ANY($1) AND failing_since IS NOT NULL")
                .bind(&healthy)
                .execute(&mut *tx)
                .await?;
        }
        for (id, reason) in disable {
            if storage::subscriptions::disable(&mut *tx, id, &reason).await? {
                if let Some(sub) = storage::subscriptions::get_many(&mut *tx, &[id])
                    .await?
                    .pop()
                {
                    tracing::warn!(subscription = %sub.public_id(), reason, "subscription disabled");
                    storage::events::append(
                        &mut tx,
                        sub.tenant_id,
                        "subscription.disabled",
                        None,
                        sub.to_json(false),
                    )
                    .await?;
                }
            }
        }
        for o in batch
            .iter()
            .filter(|o| matches!(o.decision, Decision::Exhausted))
        {
            if matches!(
                o.claimed.event_type.as_str(),
                "delivery.exhausted" | "subscription.disabled"
            ) {
                continue; // never announce the failure of an announcement of failure
            }
            if let Some(d) =
                storage::deliveries::get(&mut *tx, o.claimed.tenant_id, o.claimed.id).await?
            {
                storage::events::append(
                    &mut tx,
                    o.claimed.tenant_id,
                    "delivery.exhausted",
                    None,
                    d.to_json(),
                )
                .await?;
            }
        }
        tx.commit().await?;
        Ok(())
    }
}

/// Where and how one delivery is sent.
struct Target {
    url: String,
    secrets: Vec<SigningSecret>,
    headers: Vec<(String, String)>,
}

impl Target {
    fn from_subscription(sub: &Subscription) -> Target {
        let mut secrets: Vec<SigningSecret> =
            SigningSecret::parse(&sub.secret).into_iter().collect();
        if let (Some(old), Some(until)) = (&sub.previous_secret, sub.previous_secret_expires_at) {
            if until > Utc::now() {
                secrets.extend(SigningSecret::parse(old));
            }
        }
        let headers = sub
            .headers
            .0
            .as_object()
            .map(|h| {
                h.iter()
                    .filter_map(|(k, v)| v.as_str().map(|v| (k.clone(), v.to_owned())))
                    .collect()
            })
            .unwrap_or_default();
        Target {
            url: sub.target_url.clone(),
            secrets,
            headers,
        }
    }
}

/// The tenant's secret for per-request `webhook_url` deliveries, created on first use.
pub async fn tenant_webhook_secret(
    pool: &PgPool,
    tenant_id: Uuid,
) -> Result<SigningSecret, sqlx::Error> {
    let fresh = SigningSecret::generate();
    let stored: String = sqlx::query_scalar("UPDATE tenants SET webhook_secret = COALESCE(webhook_secret, $2) WHERE id = $1 RETURNING webhook_secret")
        .bind(tenant_id)
        .bind(fresh.as_str())
        .fetch_one(pool)
        .await?;
    Ok(SigningSecret::parse(&stored).unwrap_or(fresh))
}
