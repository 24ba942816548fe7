//! Public ids carry a type prefix (`gen_…`, `sub_…`, `evt_…`, `dlv_…`, `key_…`, `ten_…`,
//! `tok_…`), Stripe and Svix style, so an id pasted in the wrong place is refused by its shape.
//! Inside, rows are keyed by time-ordered UUIDv7s (compact, index-friendly, creation-ordered).
//!
//! Each kind is its own type: a `GenerationId` cannot be passed where a `SubscriptionId` is
//! wanted, and a handler that takes `web::Path<GenerationId>` never sees a malformed one — the
//! path extractor refuses it with the same 404 a missing row gets (`api::id_path_error`). In
//! Postgres they are plain `uuid` columns (`sqlx(transparent)`); on the wire, prefixed strings.
use std::{fmt, str::FromStr};

use uuid::Uuid;

/// A fresh, time-ordered id.
pub fn new_uuid() -> Uuid {
    Uuid::now_v7()
}

/// The smallest UUIDv7 of `at`'s millisecond: every id made from that moment on sorts at or
/// after it, every earlier one before it.
pub fn v7_at(at: chrono::DateTime<chrono::Utc>) -> Uuid {
    Uuid::from_u128((at.timestamp_millis().max(0) as u128) << 80)
}

/// The smallest UUIDv7 of the first millisecond of `day` (UTC): every id `new_uuid` makes from
/// that moment on sorts at or after it, every earlier one before it.
pub fn v7_floor(day: chrono::NaiveDate) -> Uuid {
    let ms = day
        .and_time(chrono::NaiveTime::MIN)
        .and_utc()
        .timestamp_millis()
        .max(0) as u128;
    Uuid::from_u128(ms << 80)
}

/// Parses `prefix_<32 hex>`; anything else (another kind's prefix included) is `None`.
fn decode(prefix: &str, s: &str) -> Option<Uuid> {
    let rest = s.strip_prefix(prefix)?.strip_prefix('_')?;
    if rest.len() != 32 || !rest.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    Uuid::try_parse(rest).ok()
}

/// What `FromStr` says about a string that is not an id of the wanted kind. Its text is the
/// API's 404 detail ("no generation gen_x"): a malformed id and an unknown one look the same.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("no {noun} {raw}")]
pub struct NotAnId {
    pub noun: &'static str,
    pub raw: String,
}

/// What every id type shares, for code generic over kinds (cursors, path errors).
pub trait PrefixedId: Copy + FromStr<Err = NotAnId> + fmt::Display {
    const PREFIX: &'static str;
    /// How a message names the thing: "generation", "subscription"…
    const NOUN: &'static str;
    fn uuid(self) -> Uuid;
}

macro_rules! prefixed_id {
    ($(#[$doc:meta])* $name:ident, $prefix:literal, $noun:literal) => {
        $(#[$doc])*
        #[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, sqlx::Type)]
        #[sqlx(transparent)]
        pub struct $name(Uuid);

        impl $name {
            /// A fresh, time-ordered id.
            pub fn new() -> Self {
                Self(new_uuid())
            }
            pub const fn from_uuid(id: Uuid) -> Self {
                Self(id)
            }
            pub const fn uuid(self) -> Uuid {
                self.0
            }
        }

        impl Default for $name {
            fn default() -> Self {
                Self::new()
            }
        }

        impl PrefixedId for $name {
            const PREFIX: &'static str = $prefix;
            const NOUN: &'static str = $noun;
            fn uuid(self) -> Uuid {
                self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, concat!($prefix, "_{}"), self.0.simple())
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Display::fmt(self, f)
            }
        }

        impl FromStr for $name {
            type Err = NotAnId;
            fn from_str(s: &str) -> Result<Self, NotAnId> {
                decode($prefix, s).map(Self).ok_or_else(|| NotAnId {
                    noun: $noun,
                    raw: s.to_owned(),
                })
            }
        }

        impl utoipa::PartialSchema for $name {
            fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
                utoipa::openapi::ObjectBuilder::new()
                    .schema_type(utoipa::openapi::schema::Type::String)
                    .pattern(Some(concat!("^", $prefix, "_[0-9a-f]{32}$")))
                    .description(Some(concat!("a ", $noun, " id")))
                    .into()
            }
        }

        impl utoipa::ToSchema for $name {}

        impl serde::Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.collect_str(self)
            }
        }

        impl<'de> serde::Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let raw = <std::borrow::Cow<'de, str>>::deserialize(d)?;
                raw.parse().map_err(serde::de::Error::custom)
            }
        }
    };
}

prefixed_id!(
    /// An account: everything a tenant owns is keyed by it.
    TenantId, "ten", "tenant"
);
prefixed_id!(
    /// One API key of a tenant (not the secret: the row that holds its hash).
    ApiKeyId, "key", "key"
);
prefixed_id!(
    /// One requested generation (or edit), from acceptance to its terminal state.
    GenerationId, "gen", "generation"
);
prefixed_id!(
    /// One webhook endpoint of a tenant.
    SubscriptionId, "sub", "subscription"
);
prefixed_id!(
    /// One event in a tenant's log; also the `webhook-id` of every delivery of it.
    EventId, "evt", "event"
);
prefixed_id!(
    /// One event's delivery to one subscription, with its attempts.
    DeliveryId, "dlv", "delivery"
);
prefixed_id!(
    /// A batch of generation and edit requests accepted together (`POST /v1/batches`).
    BatchId, "bat", "batch"
);
prefixed_id!(
    /// One browser token a key minted for an end user (the row, not the signed token).
    BrowserTokenId, "tok", "token"
);

/// What authenticated a request: an API key, or a browser token a key minted. Live streams are
/// held by one (`live::gate`), and end when it is revoked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CredentialId {
    Key(ApiKeyId),
    Token(BrowserTokenId),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_days_ids_sort_between_its_floor_and_the_next_days() {
        let at = |secs: i64, ms: u32| {
            let ts = uuid::Timestamp::from_unix(uuid::NoContext, secs as u64, ms * 1_000_000);
            Uuid::new_v7(ts)
        };
        let day = chrono::NaiveDate::from_ymd_opt(2026, 11, 24).unwrap();
        let midnight = day.and_time(chrono::NaiveTime::MIN).and_utc().timestamp();
        let (floor, next) = (v7_floor(day), v7_floor(day.succ_opt().unwrap()));
        assert!(at(midnight, 0) >= floor);
        assert!(at(midnight + 86_399, 999) < next);
        assert!(at(midnight - 1, 999) < floor);
        assert!(at(midnight + 86_400, 0) >= next);
    }

    #[test]
    fn ids_round_trip_and_refuse_other_prefixes() {
        let id = GenerationId::new();
        let s = id.to_string();
        assert!(s.starts_with("gen_") && s.len() == 36);
        assert_eq!(s.parse::<GenerationId>(), Ok(id));
        assert!(s.parse::<SubscriptionId>().is_err());
        assert!("gen_xyz".parse::<GenerationId>().is_err());
        let hyphenated = format!("gen_{}", id.uuid().hyphenated());
        assert_eq!(
            hyphenated.parse::<GenerationId>().unwrap_err().to_string(),
            format!("no generation {hyphenated}")
        );
    }

    #[test]
    fn ids_travel_in_json_as_their_prefixed_strings() {
        let id = DeliveryId::new();
        let json = serde_json::to_string(&id).unwrap();
        assert_eq!(json, format!("\"{id}\""));
        assert_eq!(serde_json::from_str::<DeliveryId>(&json).unwrap(), id);
        let wrong = serde_json::from_str::<EventId>(&json).unwrap_err();
        assert!(wrong.to_string().starts_with("no event dlv_"), "{wrong}");
    }
}
