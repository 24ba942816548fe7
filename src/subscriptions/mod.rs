//! Managing a tenant's webhook subscriptions (REST Hooks): the use cases behind
//! `/v1/subscriptions`. A request arrives parsed and its target vetted (`api::subscriptions`);
//! here each secret is made and sealed for its row before it is stored, the tenant's cap is
//! kept under a lock, and every change that the delivery loop must see wakes it.
use std::sync::Arc;

use chrono::{DateTime, Utc};
use sqlx::PgPool;
use tokio::sync::Notify;

use crate::{
    delivery::signing::SigningSecret,
    domain::{
        event_type::EventType,
        ids::{DeliveryId, EventId, SubscriptionId, TenantId},
    },
    secrets::{Keyring, Owner},
    storage::{
        self,
        deliveries::Delivery,
        subscriptions::{NewSubscription, Patch, Subscription},
    },
};

/// A subscription to create: every field validated.
pub struct Wanted {
    pub target_url: String,
    pub event_types: Vec<String>,
    pub filter: Option<serde_json::Value>,
    pub description: Option<String>,
    pub headers: serde_json::Value,
    pub max_in_flight: i32,
    pub rate_limit_per_sec: Option<i32>,
}

#[derive(Debug, thiserror::Error)]
pub enum SubscriptionError {
    #[error("no subscription {0}")]
    NotFound(SubscriptionId),
    #[error("no delivery {0}")]
    NoDelivery(DeliveryId),
    #[error("this delivery is being attempted right now")]
    DeliveryInFlight,
    #[error("this account has {0} subscriptions, the most it may have (FLUXGATE_MAX_SUBSCRIPTIONS_PER_TENANT); delete one first")]
    TooMany(i64),
    #[error(transparent)]
    Storage(#[from] sqlx::Error),
}

/// The use cases, over the handlers' pool.
pub struct Subscriptions<'a> {
    pub db: &'a PgPool,
    pub keyring: &'a Keyring,
    /// The most subscriptions a tenant may have.
    pub cap: i64,
    /// Wakes this instance's delivery loop (NOTIFY wakes the others).
    pub wake: &'a Arc<Notify>,
}

impl Subscriptions<'_> {
    /// Creates it with a fresh signing secret, shown to the caller only in this answer.
    pub async fn create(
        &self,
        tenant: TenantId,
        w: Wanted,
    ) -> Result<(Subscription, SigningSecret), SubscriptionError> {
        let secret = SigningSecret::generate();
        let id = SubscriptionId::new();
        let sealed = self.keyring.seal(secret.as_str(), Owner::Subscription(id));
        let new = NewSubscription {
            id,
            target_url: &w.target_url,
            event_types: &w.event_types,
            filter: w.filter.as_ref(),
            description: w.description.as_deref(),
            headers: &w.headers,
            secret: &sealed,
            max_in_flight: w.max_in_flight,
            rate_limit_per_sec: w.rate_limit_per_sec,
        };
        let sub = storage::subscriptions::insert_within(self.db, tenant, new, self.cap)
            .await?
            .ok_or(SubscriptionError::TooMany(self.cap))?;
        tracing::info!(subscription = %sub.public_id(), "subscription created");
        Ok((sub, secret))
    }

    pub async fn get(
        &self,
        tenant: TenantId,
        id: SubscriptionId,
    ) -> Result<Subscription, SubscriptionError> {
        storage::subscriptions::get(self.db, tenant, id)
            .await?
            .ok_or(SubscriptionError::NotFound(id))
    }

    /// Applies `patch`; the delivery loop reads the change at its next claim.
    pub async fn update(
        &self,
        tenant: TenantId,
        id: SubscriptionId,
        patch: Patch,
    ) -> Result<Subscription, SubscriptionError> {
        let sub = storage::subscriptions::update(self.db, tenant, id, patch)
            .await?
            .ok_or(SubscriptionError::NotFound(id))?;
        self.wake.notify_one();
        Ok(sub)
    }

    /// Deletes it (and cancels its pending deliveries); nothing to delete is no error.
    pub async fn delete(&self, tenant: TenantId, id: SubscriptionId) -> Result<(), sqlx::Error> {
        let mut tx = self.db.begin().await?;
        storage::subscriptions::delete(&mut tx, tenant, id).await?;
        tx.commit().await
    }

    /// A new secret; the old one still verifies for `grace_secs`.
    pub async fn rotate_secret(
        &self,
        tenant: TenantId,
        id: SubscriptionId,
        grace_secs: i64,
    ) -> Result<(Subscription, SigningSecret), SubscriptionError> {
        let secret = SigningSecret::generate();
        let sealed = self.keyring.seal(secret.as_str(), Owner::Subscription(id));
        let sub =
            storage::subscriptions::rotate_secret(self.db, tenant, id, &sealed, grace_secs as f64)
                .await?
                .ok_or(SubscriptionError::NotFound(id))?;
        Ok((sub, secret))
    }

    /// A `test.ping` event delivered to this subscription only, now.
    pub async fn ping(&self, sub: &Subscription) -> Result<(EventId, DeliveryId), sqlx::Error> {
        let mut tx = self.db.begin().await?;
        let data = serde_json::json!({"subscription_id": sub.public_id(), "message": "test event from fluxgate"});
        let event =
            storage::events::append(&mut tx, sub.tenant_id, EventType::TestPing, None, data)
                .await?;
        let delivery = storage::deliveries::insert_one(
            &mut *tx,
            sub.tenant_id,
            event.id,
            sub.id,
            &sub.target_url,
        )
        .await?;
        tx.commit().await?;
        self.wake.notify_one();
        Ok((event.id, delivery))
    }

    /// Makes one delivery due now (a manual retry, whatever its state); the row as it now is.
    pub async fn retry_delivery(
        &self,
        tenant: TenantId,
        id: DeliveryId,
    ) -> Result<Delivery, SubscriptionError> {
        if !storage::deliveries::retry_now(self.db, tenant, id).await? {
            return Err(match storage::deliveries::get(self.db, tenant, id).await? {
                None => SubscriptionError::NoDelivery(id),
                Some(_) => SubscriptionError::DeliveryInFlight,
            });
        }
        self.wake.notify_one();
        storage::deliveries::get(self.db, tenant, id)
            .await?
            .ok_or(SubscriptionError::NoDelivery(id))
    }

    /// Re-queues every failed delivery of `sub` created in `[since, until)`; how many.
    pub async fn recover(
        &self,
        sub: &Subscription,
        since: DateTime<Utc>,
        until: DateTime<Utc>,
    ) -> Result<u64, sqlx::Error> {
        let n = storage::deliveries::recover(self.db, sub.id, since, until).await?;
        self.wake.notify_one();
        Ok(n)
    }
}
