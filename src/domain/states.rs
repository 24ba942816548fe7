//! The states of what the product talks about, each an enum that is the only spelling of its
//! states in Rust. Stored as `text` (each column has a CHECK listing the same strings; a test
//! holds the two to each other), so the schema stays readable with `psql` and a new state is
//! one migration of a CHECK, not a type change. SQL in `storage/` still names states literally
//! where it filters: partial indexes (`WHERE status = 'accepted'`) are only used for a query
//! that spells the same literal.
use std::fmt;

use super::event_type::EventType;

use sqlx::{
    encode::IsNull,
    error::BoxDynError,
    postgres::{PgArgumentBuffer, PgTypeInfo, PgValueRef},
    Decode, Encode, Postgres, Type,
};

/// An enum stored and sent as one of a fixed set of strings (`Display`, `Serialize`, sqlx
/// `Type`/`Encode`/`Decode` as `text`, `parse`, `ALL`, `names`).
macro_rules! text_states {
    ($(#[$doc:meta])* $name:ident { $($(#[$vdoc:meta])* $variant:ident => $text:literal),+ $(,)? }) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum $name {
            $($(#[$vdoc])* $variant),+
        }

        impl $name {
            /// Every state, in the order the API documents them.
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            pub const fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $text),+
                }
            }

            pub fn parse(text: &str) -> Option<$name> {
                match text {
                    $($text => Some($name::$variant),)+
                    _ => None,
                }
            }

            /// Every state's spelling, for messages and the API document.
            pub fn names() -> Vec<&'static str> {
                Self::ALL.iter().map(|s| s.as_str()).collect()
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl utoipa::PartialSchema for $name {
            fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
                utoipa::openapi::ObjectBuilder::new()
                    .schema_type(utoipa::openapi::schema::Type::String)
                    .enum_values(Some(Self::names()))
                    .into()
            }
        }

        impl utoipa::ToSchema for $name {}

        impl serde::Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(self.as_str())
            }
        }

        impl Type<Postgres> for $name {
            fn type_info() -> PgTypeInfo {
                <&str as Type<Postgres>>::type_info()
            }

            fn compatible(ty: &PgTypeInfo) -> bool {
                <&str as Type<Postgres>>::compatible(ty)
            }
        }

        impl Encode<'_, Postgres> for $name {
            fn encode_by_ref(&self, buf: &mut PgArgumentBuffer) -> Result<IsNull, BoxDynError> {
                <&str as Encode<Postgres>>::encode_by_ref(&self.as_str(), buf)
            }
        }

        impl<'r> Decode<'r, Postgres> for $name {
            fn decode(value: PgValueRef<'r>) -> Result<Self, BoxDynError> {
                let text = <&str as Decode<Postgres>>::decode(value)?;
                $name::parse(text)
                    .ok_or_else(|| format!("{text:?} is not a {}", stringify!($name)).into())
            }
        }
    };
}

pub(crate) use text_states;

text_states! {
    /// A generation's state: `accepted` (stored, the outbox) → `queued` (fal took it) →
    /// `completed` | `failed` | `cancelled`.
    GenerationStatus {
        Accepted => "accepted",
        Queued => "queued",
        Completed => "completed",
        Failed => "failed",
        Cancelled => "cancelled",
    }
}

/// The one statement of a generation's machine: the moves it may make, and the event each
/// arrival announces. `storage::generations` writes a move only from a state this allows
/// (`finish` only from a non-terminal one, `record_accepted` only from `accepted`).
impl GenerationStatus {
    pub fn may_become(self, next: GenerationStatus) -> bool {
        use GenerationStatus::*;
        matches!(
            (self, next),
            (Accepted, Queued) | (Accepted | Queued, Failed | Cancelled) | (Queued, Completed)
        )
    }

    /// The event announcing that a generation arrived in this state; `accepted` is answered
    /// to the caller, not announced.
    pub fn announced_by(self) -> Option<EventType> {
        match self {
            GenerationStatus::Accepted => None,
            GenerationStatus::Queued => Some(EventType::GenerationQueued),
            GenerationStatus::Completed => Some(EventType::GenerationCompleted),
            GenerationStatus::Failed => Some(EventType::GenerationFailed),
            GenerationStatus::Cancelled => Some(EventType::GenerationCancelled),
        }
    }

    /// Completed, failed or cancelled: nothing moves it any more.
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            GenerationStatus::Completed | GenerationStatus::Failed | GenerationStatus::Cancelled
        )
    }
}

text_states! {
    /// A delivery's state: `pending` until it succeeds, is exhausted (the schedule ran out),
    /// fails for good (the receiver said 410), or is cancelled with its subscription.
    DeliveryStatus {
        Pending => "pending",
        Succeeded => "succeeded",
        Failed => "failed",
        Exhausted => "exhausted",
        Cancelled => "cancelled",
    }
}

/// A delivery's machine: `pending` settles into any other state; a manual retry or a
/// recovery puts a failed or exhausted one back to `pending`; a succeeded one stays.
impl DeliveryStatus {
    pub fn may_become(self, next: DeliveryStatus) -> bool {
        use DeliveryStatus::*;
        match (self, next) {
            (Pending, Pending) => false,
            (Pending, _) => true,
            (Failed | Exhausted, Pending) => true,
            _ => false,
        }
    }
}

text_states! {
    /// A subscription's state.
    SubscriptionStatus {
        Active => "active",
        Disabled => "disabled",
    }
}

text_states! {
    /// Where a generation waits in fal's queue (`X-Fal-Queue-Priority`), and in which order the
    /// submitter takes its outbox: every `normal` request before any `low` one.
    Priority {
        Normal => "normal",
        Low => "low",
    }
}

text_states! {
    /// A batch's state: `running` until every member is terminal, then `completed`, whatever
    /// each member's outcome (its counts say how many failed).
    BatchStatus {
        Running => "running",
        Completed => "completed",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_state_reads_back_as_itself_and_nothing_else_reads() {
        for s in GenerationStatus::ALL {
            assert_eq!(GenerationStatus::parse(s.as_str()), Some(*s));
        }
        assert_eq!(GenerationStatus::parse("Accepted"), None);
        assert_eq!(
            serde_json::to_value(DeliveryStatus::Exhausted).unwrap(),
            "exhausted"
        );
        let terminal: Vec<_> = GenerationStatus::ALL
            .iter()
            .filter(|s| s.is_terminal())
            .map(|s| s.as_str())
            .collect();
        assert_eq!(terminal, ["completed", "failed", "cancelled"]);
    }

    #[test]
    fn a_generation_moves_forward_only_and_every_move_is_announced() {
        use GenerationStatus::*;
        for from in GenerationStatus::ALL {
            for to in GenerationStatus::ALL {
                if from.may_become(*to) {
                    assert!(
                        !from.is_terminal(),
                        "{from} is terminal yet may become {to}"
                    );
                    assert!(to.announced_by().is_some(), "{from} → {to} is silent");
                }
            }
        }
        assert!(
            !Accepted.may_become(Completed),
            "a result is announced after queued"
        );
        assert!(!Completed.may_become(Failed));
        assert!(DeliveryStatus::Exhausted.may_become(DeliveryStatus::Pending));
        assert!(!DeliveryStatus::Succeeded.may_become(DeliveryStatus::Pending));
    }
}
