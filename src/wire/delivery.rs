//! The delivery object: one event's delivery to one subscription.
use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::Value;

use crate::{
    domain::{
        event_type::EventType,
        ids::{DeliveryId, EventId, SubscriptionId},
        states::DeliveryStatus,
    },
    storage::deliveries::Delivery,
};

#[derive(Debug, Serialize, utoipa::ToSchema)]
#[schema(as = Delivery)]
pub struct DeliveryObject<'a> {
    /// How many attempts were made (`GET /v1/deliveries/{id}` lists each in `attempts_log`).
    pub attempts: i32,
    /// Every attempt (when, how long, status code, error class, response excerpt): only on
    /// `GET /v1/deliveries/{id}`.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Vec<Object>>)]
    pub attempts_log: Option<Value>,
    pub created_at: DateTime<Utc>,
    pub event_id: EventId,
    pub event_type: EventType,
    pub finished_at: Option<DateTime<Utc>>,
    pub id: DeliveryId,
    pub last_error_class: Option<&'a str>,
    pub last_status_code: Option<i32>,
    /// Only while it is pending.
    pub next_attempt_at: Option<DateTime<Utc>>,
    /// Always `delivery`.
    pub object: &'static str,
    pub status: DeliveryStatus,
    /// `null` for a per-request `webhook_url` delivery.
    pub subscription_id: Option<SubscriptionId>,
    pub target_url: &'a str,
}

impl<'a> DeliveryObject<'a> {
    pub fn of(d: &'a Delivery) -> Self {
        DeliveryObject {
            attempts: d.attempts,
            attempts_log: None,
            created_at: d.created_at,
            event_id: d.event_id,
            event_type: d.event_type,
            finished_at: d.finished_at,
            id: d.id,
            last_error_class: d.last_error_class.as_deref(),
            last_status_code: d.last_status_code,
            next_attempt_at: (d.status == DeliveryStatus::Pending).then_some(d.next_attempt_at),
            object: "delivery",
            status: d.status,
            subscription_id: d.subscription_id,
            target_url: &d.target_url,
        }
    }

    pub fn value(&self) -> Value {
        serde_json::to_value(self).expect("a delivery always serializes")
    }
}
