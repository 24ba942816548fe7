//! The objects fluxgate sends: a generation, a subscription and a delivery, exactly as API
//! responses, event data and webhook bodies carry them — one `Serialize` type per object, built
//! from the stored row, so every door sends the same shape and the API document is generated
//! from these very types (`api::openapi`).
//!
//! Fields are declared in alphabetical order: the order these objects have always been
//! serialized in, so stored event bodies and freshly built ones are byte-for-byte alike.
pub mod batch;
pub mod delivery;
pub mod generation;
pub mod subscription;

pub use batch::BatchObject;
pub use delivery::DeliveryObject;
pub use generation::GenerationObject;
pub use subscription::SubscriptionObject;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::ids::GenerationId;

    /// Answers serialize the struct; events store it through a `serde_json::Value`, whose keys
    /// are sorted. The two must be the same bytes.
    #[test]
    fn an_object_serializes_to_the_same_bytes_directly_and_through_a_value() {
        let mut g = crate::pipeline::submitted::tests::row(GenerationId::new());
        g.metadata = Some(sqlx::types::Json(serde_json::json!({"b": 1, "a": 2})));
        g.result = Some(sqlx::types::Json(
            serde_json::json!({"images": [{"url": "https://x/y.png"}], "timings": {}}),
        ));
        let object = GenerationObject::of(&g);
        let direct = serde_json::to_string(&object).unwrap();
        assert_eq!(direct, serde_json::to_string(&object.value()).unwrap());
        assert!(direct.contains(r#""links":{"cancel":"#), "{direct}");

        let now = chrono::Utc::now();
        let d = crate::storage::deliveries::Delivery {
            id: crate::domain::ids::DeliveryId::new(),
            tenant_id: g.tenant_id,
            event_id: crate::domain::ids::EventId::new(),
            subscription_id: None,
            target_url: "https://receiver.example/hook".into(),
            status: crate::domain::states::DeliveryStatus::Pending,
            attempts: 2,
            next_attempt_at: now,
            last_status_code: Some(503),
            last_error_class: Some("http_5xx".into()),
            created_at: now,
            finished_at: None,
            event_type: crate::domain::event_type::EventType::GenerationCompleted,
        };
        let object = DeliveryObject::of(&d);
        let direct = serde_json::to_string(&object).unwrap();
        assert_eq!(direct, serde_json::to_string(&object.value()).unwrap());
    }
}
