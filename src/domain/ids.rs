//! Public ids carry a type prefix (`gen_…`, `sub_…`, `evt_…`, `dlv_…`, `key_…`, `ten_…`), Stripe
//! and Svix style, so an id pasted in the wrong place is refused by its shape. Inside, rows are
//! keyed by time-ordered UUIDv7s (compact, index-friendly, creation-ordered).
use uuid::Uuid;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Tenant,
    Key,
    Generation,
    Subscription,
    Event,
    Delivery,
}

impl Kind {
    pub const fn prefix(self) -> &'static str {
        match self {
            Kind::Tenant => "ten",
            Kind::Key => "key",
            Kind::Generation => "gen",
            Kind::Subscription => "sub",
            Kind::Event => "evt",
            Kind::Delivery => "dlv",
        }
    }
}

pub fn new_uuid() -> Uuid {
    Uuid::now_v7()
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

pub fn encode(kind: Kind, id: Uuid) -> String {
    format!("{}_{}", kind.prefix(), id.simple())
}

/// Parses `prefix_<32 hex>`; anything else (another kind's prefix included) is `None`.
pub fn decode(kind: Kind, s: &str) -> Option<Uuid> {
    let rest = s.strip_prefix(kind.prefix())?.strip_prefix('_')?;
    if rest.len() != 32 || !rest.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    Uuid::try_parse(rest).ok()
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
        let id = new_uuid();
        let s = encode(Kind::Generation, id);
        assert!(s.starts_with("gen_") && s.len() == 36);
        assert_eq!(decode(Kind::Generation, &s), Some(id));
        assert_eq!(decode(Kind::Subscription, &s), None);
        assert_eq!(decode(Kind::Generation, "gen_xyz"), None);
        assert_eq!(
            decode(Kind::Generation, &format!("gen_{}", id.hyphenated())),
            None
        );
    }
}
