//! What a key may do. A key carries a set of scopes (`fluxgate keys create --scopes`); each
//! `/v1` route needs one of them (`api::scopes`), and a key without it is answered 403
//! `insufficient_scope`, naming the scope. Keys made without `--scopes`, and every key made
//! before scopes existed, hold them all.
use std::fmt;

/// One permission.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Scope {
    /// Create generations and edits, estimate their price, cancel them.
    GenerationsWrite,
    /// Read generations and follow one's events.
    GenerationsRead,
    /// Read the tenant's event log and its live stream.
    EventsRead,
    /// Create, change, test and recover subscriptions; read and retry their deliveries.
    SubscriptionsManage,
    /// The tenant's usage and spend, and the secret that signs per-request webhooks.
    Admin,
}

impl Scope {
    pub const ALL: [Scope; 5] = [
        Scope::GenerationsWrite,
        Scope::GenerationsRead,
        Scope::EventsRead,
        Scope::SubscriptionsManage,
        Scope::Admin,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Scope::GenerationsWrite => "generations:write",
            Scope::GenerationsRead => "generations:read",
            Scope::EventsRead => "events:read",
            Scope::SubscriptionsManage => "subscriptions:manage",
            Scope::Admin => "admin",
        }
    }

    pub fn parse(s: &str) -> Option<Scope> {
        Scope::ALL.into_iter().find(|scope| scope.as_str() == s)
    }

    fn bit(self) -> u8 {
        1 << Scope::ALL.iter().position(|s| *s == self).unwrap_or(0)
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A set of scopes.
#[derive(Clone, Copy, PartialEq, Eq, Default)]
pub struct Scopes(u8);

impl Scopes {
    pub fn all() -> Scopes {
        Scopes::from_iter(Scope::ALL)
    }

    /// What a browser token may hold: create and read its end user's generations, and follow
    /// its events. Never subscriptions, usage or secrets, whatever the minting key holds.
    pub fn browser() -> Scopes {
        Scopes::from_iter([
            Scope::GenerationsWrite,
            Scope::GenerationsRead,
            Scope::EventsRead,
        ])
    }

    pub fn contains(self, scope: Scope) -> bool {
        self.0 & scope.bit() != 0
    }

    pub fn iter(self) -> impl Iterator<Item = Scope> {
        Scope::ALL.into_iter().filter(move |s| self.contains(*s))
    }

    /// The names, in the documented order.
    pub fn names(self) -> Vec<&'static str> {
        self.iter().map(Scope::as_str).collect()
    }

    /// A comma-separated list (`generations:write,events:read`); the error names what is not a
    /// scope. An empty list is refused: a key that may do nothing is a mistake.
    pub fn parse_list(list: &str) -> Result<Scopes, String> {
        let mut scopes = Scopes::default();
        for name in list.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            let scope = Scope::parse(name).ok_or_else(|| {
                format!(
                    "{name:?} is not a scope (the scopes are {})",
                    Scopes::all().names().join(", ")
                )
            })?;
            scopes.0 |= scope.bit();
        }
        if scopes == Scopes::default() {
            return Err(format!(
                "name at least one scope ({})",
                Scopes::all().names().join(", ")
            ));
        }
        Ok(scopes)
    }

    /// From stored names; a name this version does not know grants nothing.
    pub fn from_names<S: AsRef<str>>(names: &[S]) -> Scopes {
        Scopes::from_iter(names.iter().filter_map(|n| Scope::parse(n.as_ref())))
    }

    /// Whether every scope of `other` is in this set.
    pub fn covers(self, other: Scopes) -> bool {
        self.0 & other.0 == other.0
    }
}

impl FromIterator<Scope> for Scopes {
    fn from_iter<I: IntoIterator<Item = Scope>>(scopes: I) -> Scopes {
        Scopes(scopes.into_iter().fold(0, |bits, s| bits | s.bit()))
    }
}

impl fmt::Debug for Scopes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_set().entries(self.names()).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_list_of_scopes_parses_to_exactly_those_scopes() {
        let s = Scopes::parse_list("events:read, generations:write").unwrap();
        assert_eq!(s.names(), ["generations:write", "events:read"]);
        assert!(s.contains(Scope::EventsRead) && !s.contains(Scope::Admin));
        assert!(Scopes::all().covers(s) && !s.covers(Scopes::all()));
    }

    #[test]
    fn an_unknown_or_empty_list_is_refused_by_name() {
        let err = Scopes::parse_list("generations:write,root").unwrap_err();
        assert!(err.contains("\"root\" is not a scope"), "{err}");
        assert!(Scopes::parse_list(" , ").is_err());
    }

    #[test]
    fn stored_names_round_trip_and_unknown_ones_grant_nothing() {
        let all = Scopes::all();
        assert_eq!(Scopes::from_names(&all.names()), all);
        assert_eq!(Scopes::from_names(&["superuser"]), Scopes::default());
    }
}
