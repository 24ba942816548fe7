//! The subscription object. Its signing secret appears only in the answer that created or
//! rotated it, to the caller that holds it in the clear.
use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::Value;

use crate::{
    domain::{ids::SubscriptionId, states::SubscriptionStatus},
    storage::subscriptions::Subscription,
};

/// A webhook endpoint of the caller's.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[schema(as = Subscription)]
pub struct SubscriptionObject<'a> {
    pub created_at: DateTime<Utc>,
    pub description: Option<&'a str>,
    pub disabled_reason: Option<&'a str>,
    pub event_types: &'a [String],
    pub failing_since: Option<DateTime<Utc>>,
    /// Exact values to match: `metadata` (an object) and `end_user`.
    #[schema(value_type = Option<Object>)]
    pub filter: Option<&'a Value>,
    /// Extra headers sent with every delivery (not the signed ones).
    #[schema(value_type = Object)]
    pub headers: &'a Value,
    pub id: SubscriptionId,
    pub max_in_flight: i32,
    /// Always `subscription`.
    pub object: &'static str,
    pub previous_secret_expires_at: Option<DateTime<Utc>>,
    pub rate_limit_per_sec: Option<i32>,
    /// `whsec_…`: only in the answer that created or rotated it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub secret: Option<&'a str>,
    pub status: SubscriptionStatus,
    pub target_url: &'a str,
    pub updated_at: DateTime<Utc>,
}

impl<'a> SubscriptionObject<'a> {
    /// `shown_secret`: the secret just created or rotated, in the clear.
    pub fn of(s: &'a Subscription, shown_secret: Option<&'a str>) -> Self {
        SubscriptionObject {
            created_at: s.created_at,
            description: s.description.as_deref(),
            disabled_reason: s.disabled_reason.as_deref(),
            event_types: &s.event_types,
            failing_since: s.failing_since,
            filter: s.filter.as_ref().map(|f| &f.0),
            headers: &s.headers.0,
            id: s.id,
            max_in_flight: s.max_in_flight,
            object: "subscription",
            previous_secret_expires_at: s.previous_secret_expires_at,
            rate_limit_per_sec: s.rate_limit_per_sec,
            secret: shown_secret,
            status: s.status,
            target_url: &s.target_url,
            updated_at: s.updated_at,
        }
    }

    pub fn value(&self) -> Value {
        serde_json::to_value(self).expect("a subscription always serializes")
    }
}
