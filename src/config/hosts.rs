//! Lists of host names an outbound fetch may go to (`FLUXGATE_IMAGE_HOSTS`).
/// Host names an outbound fetch may go to: each entry admits itself and its subdomains.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostList {
    Any,
    Only(Vec<String>),
}

/// fal's media CDN and API domains, where result images are served from.
pub const DEFAULT_IMAGE_HOSTS: &str = "fal.media,fal.run,fal.ai";

impl HostList {
    pub fn parse(v: &str) -> Result<HostList, String> {
        if v.trim() == "*" {
            return Ok(HostList::Any);
        }
        let mut hosts = Vec::new();
        for h in v.split(',').map(str::trim).filter(|h| !h.is_empty()) {
            let h = h.trim_end_matches('.').to_ascii_lowercase();
            let ok = h.bytes().all(|b| {
                b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b':' | b'[' | b']')
            });
            if !ok || h.starts_with('.') {
                return Err(format!(
                    "contains {h:?}, which is not a host name (list names such as fal.media, or `*`)"
                ));
            }
            hosts.push(h);
        }
        if hosts.is_empty() {
            return Err("must list at least one host, or `*`".into());
        }
        Ok(HostList::Only(hosts))
    }

    /// Whether `host` (a URL's host, lowercase) is admitted: equal to an entry or a subdomain.
    pub fn admits(&self, host: &str) -> bool {
        let host = host.trim_end_matches('.').to_ascii_lowercase();
        match self {
            HostList::Any => true,
            HostList::Only(list) => list.iter().any(|h| {
                host == *h
                    || host
                        .strip_suffix(h.as_str())
                        .is_some_and(|rest| rest.ends_with('.'))
            }),
        }
    }
}
