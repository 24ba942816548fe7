//! Web origins (`https://app.example.com`, `http://localhost:5173`): what a tenant lets call the
//! API from a browser (`tenants update --allowed-origins`), stored and compared in the form a
//! browser sends in its `Origin` header — lowercase scheme and host, the port only when it is
//! not the scheme's default, no path.

/// Parses what an operator typed; the error says what is wrong with it.
pub fn parse(s: &str) -> Result<String, String> {
    let url = url::Url::parse(s.trim()).map_err(|e| format!("{s:?} is not an origin: {e}"))?;
    if !matches!(url.scheme(), "https" | "http") {
        return Err(format!("{s:?} is not an http(s) origin"));
    }
    if url.host_str().is_none() || !url.username().is_empty() || url.password().is_some() {
        return Err(format!("{s:?} must be scheme://host[:port]"));
    }
    if url.path() != "/" || url.query().is_some() || url.fragment().is_some() {
        return Err(format!(
            "{s:?} has a path, query or fragment; an origin is only scheme://host[:port]"
        ));
    }
    Ok(url.origin().ascii_serialization())
}

/// A presented `Origin` header, if it is one in the canonical form (anything else can match no
/// allowed origin, so it is not looked up).
pub fn presented(header: &[u8]) -> Option<&str> {
    let s = std::str::from_utf8(header).ok()?;
    (s.len() <= 300 && parse(s).is_ok_and(|canonical| canonical == s)).then_some(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_origin_is_stored_as_a_browser_sends_it() {
        assert_eq!(
            parse("https://App.Example.com/").unwrap(),
            "https://app.example.com"
        );
        assert_eq!(parse("https://a.example:443").unwrap(), "https://a.example");
        assert_eq!(
            parse("http://localhost:5173").unwrap(),
            "http://localhost:5173"
        );
        for bad in [
            "app.example.com",
            "ftp://a.example",
            "https://a.example/app",
            "https://u@a.example",
        ] {
            assert!(parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn only_a_canonical_origin_header_is_looked_up() {
        assert_eq!(presented(b"https://a.example"), Some("https://a.example"));
        assert_eq!(presented(b"https://A.example"), None);
        assert_eq!(presented(b"null"), None);
        assert_eq!(presented(b"https://a.example/"), None);
    }
}
