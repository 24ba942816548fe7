//! The `types` filter of a tenant stream: exact event types and `prefix.*` wildcards.
use crate::storage::events::TypeMatch;

/// A parsed `types=` list; empty means every type.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TypeFilter {
    exact: Vec<String>,
    /// Each wildcard's prefix with its trailing dot (`generation.*` → `generation.`).
    prefixes: Vec<String>,
}

impl TypeFilter {
    /// Parses `generation.completed,generation.*`. `*` alone (or nothing) means every type.
    pub fn parse(list: &str) -> Result<TypeFilter, String> {
        let mut filter = TypeFilter::default();
        let mut everything = false;
        for item in list.split(',').map(str::trim) {
            if item == "*" {
                everything = true;
            } else if let Some(prefix) = item.strip_suffix(".*").filter(|p| is_type(p)) {
                filter.prefixes.push(format!("{prefix}."));
            } else if is_type(item) {
                filter.exact.push(item.to_owned());
            } else if item.is_empty() {
                return Err("must be a comma-separated list without empty entries".into());
            } else {
                return Err(format!(
                    "{item:?} is neither an event type (such as generation.completed) nor a wildcard (such as generation.*)"
                ));
            }
        }
        if everything {
            return Ok(TypeFilter::default());
        }
        Ok(filter)
    }

    pub fn is_everything(&self) -> bool {
        self.exact.is_empty() && self.prefixes.is_empty()
    }

    pub fn matches(&self, kind: &str) -> bool {
        self.is_everything()
            || self.exact.iter().any(|t| t == kind)
            || self.prefixes.iter().any(|p| kind.starts_with(p.as_str()))
    }

    pub fn as_sql(&self) -> TypeMatch<'_> {
        TypeMatch {
            all: self.is_everything(),
            exact: &self.exact,
            prefixes: &self.prefixes,
        }
    }
}

/// Dot-separated lowercase words: `generation.completed`, `alert.quota_reached`.
fn is_type(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 100
        && s.split('.').all(|word| {
            word.starts_with(|c: char| c.is_ascii_lowercase())
                && word
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exact_types_and_wildcards_match_what_they_name() {
        let f = TypeFilter::parse("generation.completed, alert.*").unwrap();
        assert!(f.matches("generation.completed"));
        assert!(!f.matches("generation.failed"));
        assert!(f.matches("alert.quota_reached"));
        assert!(!f.matches("alerts.x") && !f.matches("alert"));
        assert!(TypeFilter::parse("*").unwrap().matches("anything.at_all"));
        assert!(TypeFilter::parse("generation.*,*").unwrap().is_everything());
    }

    #[test]
    fn malformed_entries_are_refused() {
        for bad in [
            "",
            "generation.completed,",
            "Generation.completed",
            "generation.",
            "generation.**",
            "gen%",
            ".*",
            "*.completed",
        ] {
            assert!(TypeFilter::parse(bad).is_err(), "{bad:?}");
        }
    }
}
