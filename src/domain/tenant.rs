//! Tenant names: short slugs an operator types on the command line.

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TenantName(String);

impl TenantName {
    pub fn parse(s: &str) -> Result<TenantName, String> {
        let ok = (1..=63).contains(&s.len())
            && s.bytes()
                .next()
                .is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
            && s.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_');
        if ok {
            Ok(TenantName(s.to_owned()))
        } else {
            Err(format!(
                "invalid tenant name {s:?}: use 1-63 lowercase letters, digits, '-' or '_', starting with a letter or digit"
            ))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tenant_names_are_slugs() {
        assert!(TenantName::parse("acme-prod_2").is_ok());
        for bad in ["", "Acme", "-x", "a b", "a/b", &"x".repeat(64)] {
            assert!(TenantName::parse(bad).is_err(), "{bad}");
        }
    }
}
