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
