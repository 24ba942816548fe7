//! The SSRF guard: which outbound targets fluxgate may talk to. A target is https (plain
//! http only where configured), names a host without credentials, and reaches only globally
//! routable addresses: the literal address, or *every* address its name resolves to. A CIDR
//! allow-list exempts tests and private deployments. `client.rs` resolves through
//! [`resolve_host`], so the addresses vetted here are the only ones it connects to.
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use url::{Host, Url};

use super::client::ErrorClass;
use crate::domain::cidr::Cidr;

/// What the guard lets through beyond globally routable https targets.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TargetPolicy {
    /// Accept `http://` targets (dev and tests).
    pub allow_http: bool,
    /// Addresses reachable even when not globally routable.
    pub allowed: Vec<Cidr>,
}

/// Why an address is refused, worded to follow the address in a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Refusal {
    /// "a private address", "a loopback address", …
    pub what: &'static str,
    /// The IPv4 address a v6 form (mapped, NAT64, 6to4, …) carries, when that is what was judged.
    pub embedded: Option<Ipv4Addr>,
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.embedded {
            Some(v4) => write!(f, "which embeds {v4}, {}", self.what),
            None => f.write_str(self.what),
        }
    }
}

/// A target the guard refuses. Messages read as the detail of a `target_url`/`webhook_url` field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TargetError {
    #[error("must be an https URL, not {0}:")]
    UnsupportedScheme(String),
    #[error("must use https (plain http targets are not allowed on this server)")]
    HttpNotAllowed,
    #[error("must have a host")]
    MissingHost,
    #[error("must not contain credentials (user:password@)")]
    Credentials,
    #[error("must not use port 0")]
    PortZero,
    #[error("names {host}, which is always a loopback host")]
    LoopbackName { host: String },
    #[error("points at {addr}, {refusal}")]
    BlockedAddress { addr: IpAddr, refusal: Refusal },
    #[error("host {host} resolves to {addr}, {refusal}")]
    BlockedResolution {
        host: String,
        addr: IpAddr,
        refusal: Refusal,
    },
    #[error("host {host} could not be resolved ({reason})")]
    Dns { host: String, reason: String },
}

impl TargetError {
    /// `invalid_target` (the URL's shape), `ssrf_blocked` (where it points) or `dns`.
    pub fn class(&self) -> &'static str {
        ErrorClass::from(self).as_str()
    }
}

impl TargetPolicy {
    /// Why `ip` may not be connected to, or `None` when it may.
    pub fn refusal(&self, ip: IpAddr) -> Option<Refusal> {
        // A v4-mapped v6 address *is* the v4 address on a dual-stack socket, so the allow-list
        // speaks for both spellings.
        let mapped = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4),
            IpAddr::V4(_) => None,
        };
        let allowed = |ip: IpAddr| self.allowed.iter().any(|c| c.contains(ip));
        if allowed(ip) || mapped.is_some_and(allowed) {
            return None;
        }
        refusal(ip)
    }

    pub fn permits(&self, ip: IpAddr) -> bool {
        self.refusal(ip).is_none()
    }

    /// `localhost` names are refused by name (no DNS needed) unless loopback is allow-listed.
    fn allows_loopback(&self) -> bool {
        self.permits(Ipv4Addr::LOCALHOST.into()) || self.permits(Ipv6Addr::LOCALHOST.into())
    }
}

/// Whether `ip` is on the public internet: not loopback, private, link-local (cloud metadata),
/// CGNAT, documentation, multicast, reserved, nor a v6 form embedding such a v4 address.
pub fn is_globally_routable(ip: IpAddr) -> bool {
    refusal(ip).is_none()
}

/// Vets a URL without DNS: scheme, host, credentials, port, and literal addresses (including the
/// odd forms `url` normalises, such as `http://2130706433/` → 127.0.0.1). Names are vetted when
/// they are resolved ([`resolve`], and the client's resolver).
pub fn check_url(policy: &TargetPolicy, url: &Url) -> Result<(), TargetError> {
    match url.scheme() {
        "https" => {}
        "http" if policy.allow_http => {}
        "http" => return Err(TargetError::HttpNotAllowed),
        other => return Err(TargetError::UnsupportedScheme(other.to_owned())),
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(TargetError::Credentials);
    }
    if url.port() == Some(0) {
        return Err(TargetError::PortZero);
    }
    match url.host() {
        None => Err(TargetError::MissingHost),
        Some(Host::Domain(name)) => check_name(policy, name),
        Some(Host::Ipv4(v4)) => check_literal(policy, v4.into()),
        Some(Host::Ipv6(v6)) => check_literal(policy, v6.into()),
    }
}

/// [`check_url`], then resolve the host and vet every address it resolves to: one refused
/// address refuses the target, so a DNS answer mixing a public and a private address fails.
pub async fn resolve(policy: &TargetPolicy, url: &Url) -> Result<Vec<SocketAddr>, TargetError> {
    check_url(policy, url)?;
    // http and https always have a known default port.
    let port = url.port_or_known_default().unwrap_or(443);
    match url.host() {
        None => Err(TargetError::MissingHost),
        Some(Host::Domain(name)) => resolve_host(policy, name, port).await,
        Some(Host::Ipv4(v4)) => Ok(vec![SocketAddr::new(v4.into(), port)]),
        Some(Host::Ipv6(v6)) => Ok(vec![SocketAddr::new(v6.into(), port)]),
    }
}

/// What a request that names a target (a subscription's `target_url`, a generation's
/// `webhook_url`) is told when it is refused: [`resolve`] within 5 s, as a message for its
/// field. Vetting at the door spares a caller discovering a refused target only when its
/// deliveries fail; every delivery vets again (`delivery::client`), since DNS can change.
pub async fn vet(policy: &TargetPolicy, url: &Url) -> Result<(), String> {
    match tokio::time::timeout(std::time::Duration::from_secs(5), resolve(policy, url)).await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err("the host name did not resolve within 5 s".to_owned()),
    }
}

/// Resolves `host` with the system resolver and vets the answer (the client's DNS hook).
pub(crate) async fn resolve_host(
    policy: &TargetPolicy,
    host: &str,
    port: u16,
) -> Result<Vec<SocketAddr>, TargetError> {
    check_name(policy, host)?;
    let found = tokio::net::lookup_host((host, port))
        .await
        .map_err(|e| TargetError::Dns {
            host: host.to_owned(),
            reason: e.to_string(),
        })?;
    vet_resolved(policy, host, found)
}

/// Every address must pass; the survivors are deduplicated in the resolver's order.
pub(crate) fn vet_resolved(
    policy: &TargetPolicy,
    host: &str,
    addrs: impl IntoIterator<Item = SocketAddr>,
) -> Result<Vec<SocketAddr>, TargetError> {
    let mut vetted: Vec<SocketAddr> = Vec::new();
    for addr in addrs {
        if let Some(refusal) = policy.refusal(addr.ip()) {
            return Err(TargetError::BlockedResolution {
                host: host.to_owned(),
                addr: addr.ip(),
                refusal,
            });
        }
        if !vetted.contains(&addr) {
            vetted.push(addr);
        }
    }
    if vetted.is_empty() {
        return Err(TargetError::Dns {
            host: host.to_owned(),
            reason: "no addresses".into(),
        });
    }
    Ok(vetted)
}

fn check_name(policy: &TargetPolicy, host: &str) -> Result<(), TargetError> {
    if host.is_empty() {
        return Err(TargetError::MissingHost);
    }
    let name = host.trim_end_matches('.').to_ascii_lowercase();
    // RFC 6761: these always mean this machine, whatever a resolver says.
    let loopback =
        name == "localhost" || name.ends_with(".localhost") || name == "localhost.localdomain";
    if loopback && !policy.allows_loopback() {
        return Err(TargetError::LoopbackName {
            host: host.to_owned(),
        });
    }
    Ok(())
}

fn check_literal(policy: &TargetPolicy, addr: IpAddr) -> Result<(), TargetError> {
    match policy.refusal(addr) {
        Some(refusal) => Err(TargetError::BlockedAddress { addr, refusal }),
        None => Ok(()),
    }
}

const PRIVATE: &str = "a private address";
const LOOPBACK: &str = "a loopback address";
const DOCUMENTATION: &str = "a documentation address";
const RESERVED: &str = "a reserved address";
const MULTICAST: &str = "a multicast address";

const fn v4(a: u8, b: u8, c: u8, d: u8, prefix: u8) -> Cidr {
    Cidr {
        addr: IpAddr::V4(Ipv4Addr::new(a, b, c, d)),
        prefix,
    }
}

const fn v6(a: u16, b: u16, c: u16, d: u16, prefix: u8) -> Cidr {
    Cidr {
        addr: IpAddr::V6(Ipv6Addr::new(a, b, c, d, 0, 0, 0, 0)),
        prefix,
    }
}

/// IANA's special-purpose IPv4 ranges that are not globally reachable. First match names it.
const V4_REFUSED: &[(Cidr, &str)] = &[
    (v4(0, 0, 0, 0, 32), "the unspecified address"),
    (v4(0, 0, 0, 0, 8), "a \"this network\" address"),
    (v4(10, 0, 0, 0, 8), PRIVATE),
    (v4(100, 64, 0, 0, 10), "a carrier-grade NAT address"),
    (v4(127, 0, 0, 0, 8), LOOPBACK),
    (
        v4(169, 254, 0, 0, 16),
        "a link-local address (where cloud metadata services live)",
    ),
    (v4(172, 16, 0, 0, 12), PRIVATE),
    (v4(192, 0, 0, 0, 24), "an IETF protocol address"),
    (v4(192, 0, 2, 0, 24), DOCUMENTATION),
    (v4(192, 88, 99, 0, 24), "a 6to4 relay anycast address"),
    (v4(192, 168, 0, 0, 16), PRIVATE),
    (v4(198, 18, 0, 0, 15), "a benchmarking address"),
    (v4(198, 51, 100, 0, 24), DOCUMENTATION),
    (v4(203, 0, 113, 0, 24), DOCUMENTATION),
    (v4(224, 0, 0, 0, 4), MULTICAST),
    (v4(255, 255, 255, 255, 32), "the broadcast address"),
    (v4(240, 0, 0, 0, 4), RESERVED),
];

/// IPv6 ranges refused outright (the forms that embed an IPv4 address are judged by it first).
const V6_REFUSED: &[(Cidr, &str)] = &[
    (v6(0x64, 0xff9b, 1, 0, 48), "a local-use NAT64 address"),
    (v6(0x100, 0, 0, 0, 64), "a discard-only address"),
    (v6(0x2001, 0, 0, 0, 32), "a Teredo tunnel address"),
    (v6(0x2001, 0, 0, 0, 23), "an IETF protocol address"),
    (v6(0x2001, 0xdb8, 0, 0, 32), DOCUMENTATION),
    (v6(0x3fff, 0, 0, 0, 20), DOCUMENTATION),
    (v6(0x5f00, 0, 0, 0, 16), "a segment-routing address"),
    (v6(0xfc00, 0, 0, 0, 7), "a unique-local (private) address"),
    (v6(0xfe80, 0, 0, 0, 10), "a link-local address"),
    (v6(0xfec0, 0, 0, 0, 10), "a site-local address"),
    (v6(0xff00, 0, 0, 0, 8), MULTICAST),
];

fn refusal(ip: IpAddr) -> Option<Refusal> {
    let named = |table: &[(Cidr, &'static str)]| {
        table
            .iter()
            .find(|(net, _)| net.contains(ip))
            .map(|(_, what)| Refusal {
                what,
                embedded: None,
            })
    };
    let v6 = match ip {
        IpAddr::V4(_) => return named(V4_REFUSED),
        IpAddr::V6(v6) => v6,
    };
    if v6.is_unspecified() {
        return Some(Refusal {
            what: "the unspecified address",
            embedded: None,
        });
    }
    if v6.is_loopback() {
        return Some(Refusal {
            what: LOOPBACK,
            embedded: None,
        });
    }
    if let Some(inner) = embedded_v4(v6) {
        return refusal(inner.into()).map(|r| Refusal {
            what: r.what,
            embedded: Some(inner),
        });
    }
    if let Some(r) = named(V6_REFUSED) {
        return Some(r);
    }
    // Only 2000::/3 is allocated for global unicast; anything else is not a receiver.
    (v6.segments()[0] & 0xe000 != 0x2000).then_some(Refusal {
        what: "not a global unicast address",
        embedded: None,
    })
}

/// The IPv4 address inside IPv4-mapped, -translated and -compatible forms, NAT64 (64:ff9b::/96)
/// and 6to4 (2002::/16): each reaches that IPv4 host, so it is judged as that host.
fn embedded_v4(v6: Ipv6Addr) -> Option<Ipv4Addr> {
    let s = v6.segments();
    let join = |hi: u16, lo: u16| Ipv4Addr::from((u32::from(hi) << 16) | u32::from(lo));
    match s {
        [0, 0, 0, 0, 0, 0xffff, hi, lo] // ::ffff:a.b.c.d, mapped
        | [0, 0, 0, 0, 0xffff, 0, hi, lo] // ::ffff:0:a.b.c.d, translated
        | [0, 0, 0, 0, 0, 0, hi, lo] // ::a.b.c.d, compatible
        | [0x64, 0xff9b, 0, 0, 0, 0, hi, lo] => Some(join(hi, lo)),
        [0x2002, hi, lo, ..] => Some(join(hi, lo)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn sock(s: &str) -> SocketAddr {
        SocketAddr::new(ip(s), 443)
    }

    #[test]
    fn every_special_purpose_range_is_refused_and_public_addresses_are_not() {
        let refused = [
            "0.0.0.0",
            "0.1.2.3",
            "10.0.0.1",
            "100.64.0.1",
            "100.127.255.255",
            "127.0.0.1",
            "127.255.255.254",
            "169.254.169.254",
            "172.16.0.1",
            "172.31.255.255",
            "192.0.0.8",
            "192.0.2.1",
            "192.88.99.1",
            "192.168.1.1",
            "198.18.0.1",
            "198.19.255.255",
            "198.51.100.7",
            "203.0.113.9",
            "224.0.0.1",
            "239.255.255.250",
            "240.0.0.1",
            "255.255.255.255",
            "::",
            "::1",
            "::ffff:127.0.0.1",
            "::ffff:10.1.2.3",
            "::ffff:0:a00:1",
            "::127.0.0.1",
            "::a9fe:a9fe",
            "64:ff9b::a00:1",
            "64:ff9b::7f00:1",
            "64:ff9b:1::808:808",
            "2002:a00:1::",
            "2002:7f00:1::1",
            "2001::1",
            "2001:0:4136:e378::1",
            "2001:2::1",
            "2001:db8::1",
            "3fff::1",
            "100::1",
            "fc00::1",
            "fd12:3456::1",
            "fe80::1",
            "febf::1",
            "fec0::1",
            "ff02::1",
            "ff0e::1",
            "5f00::1",
            "4000::1",
        ];
        for s in refused {
            assert!(!is_globally_routable(ip(s)), "{s} should be refused");
        }
        let public = [
            "93.184.216.34",
            "8.8.8.8",
            "1.1.1.1",
            "100.63.255.255",
            "100.128.0.0",
            "172.32.0.1",
            "192.169.0.1",
            "198.20.0.1",
            "223.255.255.255",
            "2606:4700::1111",
            "2a00:1450:4001::200e",
            "::ffff:8.8.8.8",
            "64:ff9b::808:808",
            "2002:808:808::1",
        ];
        for s in public {
            assert!(is_globally_routable(ip(s)), "{s} should pass");
        }
    }

    #[test]
    fn a_refusal_names_the_embedded_ipv4_address_it_judged() {
        let policy = TargetPolicy::default();
        let r = policy.refusal(ip("64:ff9b::a00:1")).unwrap();
        assert_eq!(r.embedded, Some(Ipv4Addr::new(10, 0, 0, 1)));
        assert_eq!(r.to_string(), "which embeds 10.0.0.1, a private address");
    }

    #[test]
    fn the_allow_list_admits_private_addresses_and_their_mapped_spelling() {
        let policy = TargetPolicy {
            allow_http: true,
            allowed: vec![Cidr::parse("10.0.0.0/8").unwrap()],
        };
        assert!(policy.permits(ip("10.1.2.3")));
        assert!(policy.permits(ip("::ffff:10.1.2.3")));
        assert!(!policy.permits(ip("192.168.0.1")));
    }

    #[test]
    fn one_private_address_in_a_dns_answer_refuses_the_whole_answer() {
        let policy = TargetPolicy::default();
        let err = vet_resolved(
            &policy,
            "rebind.example",
            [sock("93.184.216.34"), sock("10.0.0.5")],
        )
        .unwrap_err();
        assert_eq!(err.class(), "ssrf_blocked");
        assert_eq!(
            err.to_string(),
            "host rebind.example resolves to 10.0.0.5, a private address"
        );
        let ok = vet_resolved(
            &policy,
            "ok.example",
            [sock("93.184.216.34"), sock("93.184.216.34")],
        )
        .unwrap();
        assert_eq!(ok, vec![sock("93.184.216.34")]);
    }

    #[test]
    fn an_empty_dns_answer_is_a_dns_error() {
        let err = vet_resolved(&TargetPolicy::default(), "void.example", []).unwrap_err();
        assert_eq!(err.class(), "dns");
    }
}
