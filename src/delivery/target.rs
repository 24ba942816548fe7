//! Where and how each claimed delivery is sent. Subscriptions are cached by their `updated_at`
//! (every change bumps it and the claim returns it), so the hot path neither re-reads them nor
//! re-parses their URL, secrets and headers; tenants' webhook secrets never change once made.
//! Also the per-instance token buckets of subscriptions' optional rate limits.
use crate::domain::ids::DeliveryId;
use crate::domain::ids::SubscriptionId;
use crate::domain::ids::TenantId;
use std::{
    collections::{HashMap, HashSet},
    sync::Arc,
    time::Instant,
};

use chrono::{DateTime, Utc};
use reqwest::header::{HeaderMap, HeaderName, HeaderValue, CONTENT_TYPE};
use sqlx::PgPool;
use url::Url;

use secrecy::ExposeSecret;

use super::{
    signing::SigningSecret,
    tenant_secret::{tenant_webhook_secret, TenantSecretError},
};
use crate::{
    secrets::{Keyring, Owner},
    storage::{self, delivery_queue::Claimed, subscriptions::Subscription},
};

/// One receiver, ready to sign for and send to.
pub struct Target {
    /// The parsed URL, or why the stored one is not a URL.
    pub url: Result<Url, String>,
    secret: Option<SigningSecret>,
    /// The secret before a rotation, and until when it still signs.
    previous: Option<(SigningSecret, DateTime<Utc>)>,
    /// `content-type` and the subscription's own headers.
    pub headers: HeaderMap,
    rate_limit_per_sec: Option<i32>,
}

impl Target {
    fn new(url: &str, secret: Option<SigningSecret>, headers: HeaderMap) -> Target {
        Target {
            url: Url::parse(url).map_err(|e| format!("stored target is not a URL: {e}")),
            secret,
            previous: None,
            headers,
            rate_limit_per_sec: None,
        }
    }

    /// A receiver whose secret cannot be read is never sent to unsigned: each attempt fails as
    /// an invalid target, with the reason in the attempt log, until the key is configured.
    fn unusable(reason: String) -> Target {
        Target {
            url: Err(reason),
            secret: None,
            previous: None,
            headers: base_headers(),
            rate_limit_per_sec: None,
        }
    }

    fn from_subscription(sub: &Subscription, keyring: &Keyring) -> Target {
        let owner = Owner::Subscription(sub.id);
        let open = |stored: &str| {
            keyring
                .open(stored, owner)
                .map_err(|e| format!("the subscription's signing secret cannot be read: {e}"))
                .and_then(|s| {
                    SigningSecret::parse(s.expose_secret()).map_err(|_| {
                        "the subscription's stored signing secret is malformed".to_owned()
                    })
                })
        };
        let secret = match open(sub.secret.as_str()) {
            Ok(s) => s,
            Err(why) => {
                tracing::error!(subscription = %sub.public_id(), reason = %why, "deliveries to this subscription cannot be signed");
                return Target::unusable(why);
            }
        };
        let mut headers = base_headers();
        for (name, value) in sub.headers.0.as_object().into_iter().flatten() {
            if let (Ok(n), Some(Ok(v))) = (
                HeaderName::from_bytes(name.as_bytes()),
                value.as_str().map(HeaderValue::from_str),
            ) {
                headers.insert(n, v);
            }
        }
        let mut t = Target::new(&sub.target_url, Some(secret), headers);
        t.previous = sub
            .previous_secret
            .as_ref()
            .and_then(|old| open(old.as_str()).ok())
            .zip(sub.previous_secret_expires_at);
        t.rate_limit_per_sec = sub.rate_limit_per_sec.filter(|r| *r > 0);
        t
    }

    /// The secrets that sign now: the current one, and the previous one in its grace period.
    pub fn secrets(&self) -> Vec<&SigningSecret> {
        let previous = self
            .previous
            .as_ref()
            .filter(|(_, until)| *until > Utc::now())
            .map(|(s, _)| s);
        self.secret.iter().chain(previous).collect()
    }
}

fn base_headers() -> HeaderMap {
    let mut h = HeaderMap::new();
    h.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    h
}

/// A token bucket for a subscription's optional rate limit (per instance).
struct Bucket {
    tokens: f64,
    at: Instant,
}

/// Owned by the delivery loop, so no locks.
#[derive(Default)]
pub struct Targets {
    subs: HashMap<SubscriptionId, (DateTime<Utc>, Arc<Target>)>,
    /// Each tenant's secret, or why it cannot be read.
    tenants: HashMap<TenantId, Result<SigningSecret, String>>,
    buckets: HashMap<SubscriptionId, Bucket>,
}

impl Targets {
    /// Each claimed delivery with its target, and the ids a rate limit holds back for now.
    pub async fn resolve(
        &mut self,
        pool: &PgPool,
        keyring: &Keyring,
        claimed: Vec<Claimed>,
    ) -> Result<(Vec<(Claimed, Arc<Target>)>, Vec<DeliveryId>), sqlx::Error> {
        self.load_stale(pool, keyring, &claimed).await?;
        let mut ready = Vec::with_capacity(claimed.len());
        let mut held = Vec::new();
        for c in claimed {
            let cached = c.subscription_id.and_then(|id| self.subs.get(&id));
            let target = match cached {
                Some((_, t)) => {
                    let t = t.clone();
                    if !self.take_token(c.subscription_id, t.rate_limit_per_sec) {
                        held.push(c.id);
                        continue;
                    }
                    t
                }
                // A per-request `webhook_url`, signed with the tenant's secret.
                None => match self.tenant_secret(pool, keyring, c.tenant_id).await? {
                    Ok(secret) => {
                        Arc::new(Target::new(&c.target_url, Some(secret), base_headers()))
                    }
                    Err(why) => Arc::new(Target::unusable(why)),
                },
            };
            ready.push((c, target));
        }
        Ok((ready, held))
    }

    /// Reads the subscriptions that are new here or changed since cached, in one query.
    async fn load_stale(
        &mut self,
        pool: &PgPool,
        keyring: &Keyring,
        claimed: &[Claimed],
    ) -> Result<(), sqlx::Error> {
        let stale: Vec<SubscriptionId> = claimed
            .iter()
            .filter_map(|c| {
                let id = c.subscription_id?;
                match self.subs.get(&id) {
                    Some((v, _)) if Some(*v) == c.subscription_version => None,
                    _ => Some(id),
                }
            })
            .collect::<HashSet<_>>()
            .into_iter()
            .collect();
        if stale.is_empty() {
            return Ok(());
        }
        for s in storage::subscriptions::get_many(pool, &stale).await? {
            let target = Arc::new(Target::from_subscription(&s, keyring));
            self.subs.insert(s.id, (s.updated_at, target));
        }
        Ok(())
    }

    /// The tenant's secret, or why it cannot be read; cached, since tenants' secrets never
    /// change once made.
    async fn tenant_secret(
        &mut self,
        pool: &PgPool,
        keyring: &Keyring,
        tenant_id: TenantId,
    ) -> Result<Result<SigningSecret, String>, sqlx::Error> {
        if let Some(s) = self.tenants.get(&tenant_id) {
            return Ok(s.clone());
        }
        let secret = match tenant_webhook_secret(pool, keyring, tenant_id).await {
            Ok(secret) => Ok(secret),
            Err(TenantSecretError::Db(e)) => return Err(e),
            Err(e) => {
                tracing::error!(tenant = %tenant_id, error = %e, "per-request webhooks of this tenant cannot be signed");
                Err(e.to_string())
            }
        };
        self.tenants.insert(tenant_id, secret.clone());
        Ok(secret)
    }

    fn take_token(&mut self, sub: Option<SubscriptionId>, rate: Option<i32>) -> bool {
        let (Some(sub), Some(rate)) = (sub, rate) else {
            return true;
        };
        let rate = f64::from(rate);
        let now = Instant::now();
        let b = self.buckets.entry(sub).or_insert(Bucket {
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
}
