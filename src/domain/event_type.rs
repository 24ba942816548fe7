//! The types of event fluxgate emits: the one list that subscriptions' `event_types`, stream
//! filters, fan-out and the API document all read. Stored as `events.type` text.
use std::fmt;

use sqlx::{
    encode::IsNull,
    error::BoxDynError,
    postgres::{PgArgumentBuffer, PgTypeInfo, PgValueRef},
    Decode, Encode, Postgres, Type,
};

use super::states::text_states;

text_states! {
    /// What happened. `generation.*` follow a generation's states; `batch.completed` says a
    /// batch's members are all terminal; `alert.*` are operators' alerts firing and
    /// recovering; `test.ping` tests one subscription.
    EventType {
        GenerationQueued => "generation.queued",
        GenerationCompleted => "generation.completed",
        GenerationFailed => "generation.failed",
        GenerationCancelled => "generation.cancelled",
        BatchCompleted => "batch.completed",
        SubscriptionDisabled => "subscription.disabled",
        DeliveryExhausted => "delivery.exhausted",
        AlertFalErrorRate => "alert.fal_error_rate",
        AlertFalErrorRateRecovered => "alert.fal_error_rate_recovered",
        AlertDeliveryFailureRate => "alert.delivery_failure_rate",
        AlertDeliveryFailureRateRecovered => "alert.delivery_failure_rate_recovered",
        TestPing => "test.ping",
    }
}

impl EventType {
    /// About one generation: carries its `metadata`, `end_user` and `webhook_url`, which
    /// subscription filters and per-request callbacks read.
    pub fn is_generation(self) -> bool {
        self.as_str().starts_with("generation.")
    }

    /// About one batch: carries the batch's `webhook_url`, which gets it like a generation's.
    pub fn is_batch(self) -> bool {
        self.as_str().starts_with("batch.")
    }

    /// A generation's last event: its stream ends after it.
    pub fn ends_a_generation(self) -> bool {
        matches!(
            self,
            EventType::GenerationCompleted
                | EventType::GenerationFailed
                | EventType::GenerationCancelled
        )
    }

    /// Fanned out to every matching subscription (a `test.ping` goes only to the one tested).
    pub fn fans_out(self) -> bool {
        self != EventType::TestPing
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_generations_outcomes_end_its_stream() {
        let ending: Vec<_> = EventType::ALL
            .iter()
            .filter(|t| t.ends_a_generation())
            .map(|t| t.as_str())
            .collect();
        assert_eq!(
            ending,
            [
                "generation.completed",
                "generation.failed",
                "generation.cancelled"
            ]
        );
        assert!(EventType::GenerationQueued.is_generation());
        assert!(!EventType::DeliveryExhausted.is_generation());
        assert_eq!(
            EventType::parse("alert.fal_error_rate"),
            Some(EventType::AlertFalErrorRate)
        );
    }
}
