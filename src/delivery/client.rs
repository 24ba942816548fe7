//! The only HTTP client that talks to user-supplied URLs. Every name is resolved by our own
//! resolver, which vets every address (`ssrf.rs`) and hands reqwest only those, so a connection
//! can reach nothing else (no DNS rebinding between check and connect); literal-IP URLs, which
//! reqwest never resolves, are vetted by `check_url` first. Redirects are never followed, no
//! proxy is used, no cookies are kept, and one long-lived client pools keep-alive connections
//! per receiver.
use std::error::Error as StdError;
use std::fmt;
use std::io;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use reqwest::header::{HeaderMap, COOKIE};
use tokio::time::timeout_at;
use url::Url;

use super::ssrf::{self, TargetError, TargetPolicy};

/// How much of a receiver's response body is kept for the attempt log, in bytes.
pub const EXCERPT_LIMIT: usize = 4096;
pub const USER_AGENT: &str = concat!("fluxgate-webhooks/", env!("CARGO_PKG_VERSION"));

/// Per-attempt limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    /// The whole attempt: resolution, connection, request, response head and excerpt.
    pub attempt: Duration,
    /// Establishing a connection (resolution, TCP and TLS), within `attempt`.
    pub connect: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            attempt: Duration::from_secs(15),
            connect: Duration::from_secs(5),
        }
    }
}

/// An answer from the receiver, whatever its status (a 3xx is returned, never followed).
#[derive(Debug, Clone)]
pub struct Delivered {
    pub status: u16,
    pub headers: HeaderMap,
    /// The first [`EXCERPT_LIMIT`] bytes of the body as lossy UTF-8; no more is read.
    pub body_excerpt: String,
    pub duration: Duration,
}

impl Delivered {
    pub fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }
}

/// Why an attempt got no answer from the receiver.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{class}: {message}")]
pub struct SendError {
    pub class: ErrorClass,
    pub message: String,
    pub duration: Duration,
}

/// The attempt-log error classes that come from the transport (the DB's CHECK holds these
/// strings; `http_status` is the caller's, for answers that are not 2xx).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorClass {
    Timeout,
    Connect,
    Dns,
    Tls,
    SsrfBlocked,
    InvalidTarget,
}

impl ErrorClass {
    pub const ALL: [ErrorClass; 6] = [
        ErrorClass::Timeout,
        ErrorClass::Connect,
        ErrorClass::Dns,
        ErrorClass::Tls,
        ErrorClass::SsrfBlocked,
        ErrorClass::InvalidTarget,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ErrorClass::Timeout => "timeout",
            ErrorClass::Connect => "connect",
            ErrorClass::Dns => "dns",
            ErrorClass::Tls => "tls",
            ErrorClass::SsrfBlocked => "ssrf_blocked",
            ErrorClass::InvalidTarget => "invalid_target",
        }
    }
}

impl fmt::Display for ErrorClass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl From<&TargetError> for ErrorClass {
    fn from(e: &TargetError) -> Self {
        match e {
            TargetError::Dns { .. } => ErrorClass::Dns,
            TargetError::LoopbackName { .. }
            | TargetError::BlockedAddress { .. }
            | TargetError::BlockedResolution { .. } => ErrorClass::SsrfBlocked,
            TargetError::UnsupportedScheme(_)
            | TargetError::HttpNotAllowed
            | TargetError::MissingHost
            | TargetError::Credentials
            | TargetError::PortZero => ErrorClass::InvalidTarget,
        }
    }
}

/// Cheap to clone: clones share one connection pool.
#[derive(Clone)]
pub struct SafeClient {
    http: reqwest::Client,
    policy: Arc<TargetPolicy>,
    attempt_timeout: Duration,
}

impl fmt::Debug for SafeClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SafeClient")
            .field("policy", &self.policy)
            .field("attempt_timeout", &self.attempt_timeout)
            .finish_non_exhaustive()
    }
}

impl SafeClient {
    /// Fails only if the TLS backend cannot be initialised.
    pub fn new(policy: TargetPolicy, timeouts: Timeouts) -> Result<SafeClient, reqwest::Error> {
        let policy = Arc::new(policy);
        let http = reqwest::Client::builder()
            .dns_resolver(Arc::new(VettingResolver {
                policy: Arc::clone(&policy),
            }))
            .redirect(reqwest::redirect::Policy::none())
            // A proxy would resolve and connect on our behalf, past the guard (and reqwest
            // otherwise honours HTTP(S)_PROXY from the environment).
            .no_proxy()
            .user_agent(USER_AGENT)
            .connect_timeout(timeouts.connect.min(timeouts.attempt))
            .build()?;
        Ok(SafeClient {
            http,
            policy,
            attempt_timeout: timeouts.attempt,
        })
    }

    pub fn policy(&self) -> &TargetPolicy {
        &self.policy
    }

    /// POSTs `body` to `url`. `Ok` is any answer (the caller judges the status); `Err` is no
    /// answer, classified. Refusals happen before any connection is attempted.
    pub async fn post(
        &self,
        url: &Url,
        mut headers: HeaderMap,
        body: Bytes,
    ) -> Result<Delivered, SendError> {
        let started = Instant::now();
        let deadline = tokio::time::Instant::from_std(started + self.attempt_timeout);
        let fail = |class: ErrorClass, message: String| SendError {
            class,
            message,
            duration: started.elapsed(),
        };
        // reqwest never calls the resolver for a literal IP, so this is where those are vetted.
        ssrf::check_url(&self.policy, url).map_err(|e| fail((&e).into(), e.to_string()))?;
        headers.remove(COOKIE);
        let send = self
            .http
            .post(url.clone())
            .headers(headers)
            .body(body)
            .send();
        let mut response = match timeout_at(deadline, send).await {
            Err(_) => {
                let message = format!("no response within {:?}", self.attempt_timeout);
                return Err(fail(ErrorClass::Timeout, message));
            }
            Ok(Err(e)) => {
                let (class, message) = classify(&e);
                return Err(fail(class, message));
            }
            Ok(Ok(response)) => response,
        };
        let status = response.status().as_u16();
        let headers = std::mem::take(response.headers_mut());
        let body_excerpt = read_excerpt(&mut response, deadline).await;
        let duration = started.elapsed();
        tracing::debug!(
            host = url.host_str(),
            status,
            duration_ms = duration.as_millis() as u64,
            "receiver answered"
        );
        Ok(Delivered {
            status,
            headers,
            body_excerpt,
            duration,
        })
    }
}

impl SafeClient {
    /// GETs `url` under the same guard as `post`; the caller reads (and bounds) the body.
    /// Refusals happen before any connection is attempted.
    pub async fn get(&self, url: &Url) -> Result<reqwest::Response, SendError> {
        let started = Instant::now();
        let deadline = tokio::time::Instant::from_std(started + self.attempt_timeout);
        let fail = |class: ErrorClass, message: String| SendError {
            class,
            message,
            duration: started.elapsed(),
        };
        ssrf::check_url(&self.policy, url).map_err(|e| fail((&e).into(), e.to_string()))?;
        match timeout_at(deadline, self.http.get(url.clone()).send()).await {
            Err(_) => Err(fail(
                ErrorClass::Timeout,
                format!("no response within {:?}", self.attempt_timeout),
            )),
            Ok(Err(e)) => {
                let (class, message) = classify(&e);
                Err(fail(class, message))
            }
            Ok(Ok(response)) => Ok(response),
        }
    }
}

/// reqwest's resolver for every new connection to a named host: vetted addresses or an error.
struct VettingResolver {
    policy: Arc<TargetPolicy>,
}

impl Resolve for VettingResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let policy = Arc::clone(&self.policy);
        Box::pin(async move {
            // Port 0: reqwest puts the URL's port on each address.
            let addrs = ssrf::resolve_host(&policy, name.as_str(), 0).await?;
            Ok(Box::new(addrs.into_iter()) as Addrs)
        })
    }
}

/// Reads at most [`EXCERPT_LIMIT`] bytes. The status is already the receiver's verdict, so a body
/// that breaks off or outlives the deadline leaves a shorter excerpt, not a failed attempt (a
/// retry of an acknowledged delivery would be a duplicate).
async fn read_excerpt(response: &mut reqwest::Response, deadline: tokio::time::Instant) -> String {
    let mut buf = Vec::new();
    while buf.len() < EXCERPT_LIMIT {
        match timeout_at(deadline, response.chunk()).await {
            Ok(Ok(Some(chunk))) => {
                let take = chunk.len().min(EXCERPT_LIMIT - buf.len());
                buf.extend_from_slice(&chunk[..take]);
            }
            _ => break,
        }
    }
    excerpt_text(&buf)
}

/// Lossy UTF-8 without a character split by the cut, and without NULs, which Postgres `text`
/// cannot store.
fn excerpt_text(bytes: &[u8]) -> String {
    let whole = bytes.len() - partial_char_tail(bytes);
    String::from_utf8_lossy(&bytes[..whole]).replace('\0', "\u{FFFD}")
}

/// How many bytes at the end start a UTF-8 character that the cut left incomplete.
fn partial_char_tail(bytes: &[u8]) -> usize {
    for back in 1..=bytes.len().min(4) {
        let b = bytes[bytes.len() - back];
        if b & 0xc0 != 0x80 {
            let width = match b {
                0xc0..=0xdf => 2,
                0xe0..=0xef => 3,
                0xf0..=0xf7 => 4,
                _ => 1,
            };
            return if width > back { back } else { 0 };
        }
    }
    0
}

/// Maps a reqwest failure to its class and a message without the URL (which may carry a
/// receiver's secret token).
fn classify(err: &reqwest::Error) -> (ErrorClass, String) {
    let chain = causes(err);
    // Our resolver's verdict, wherever the connector wrapped it.
    if let Some(t) = chain.iter().find_map(|e| e.downcast_ref::<TargetError>()) {
        return (t.into(), t.to_string());
    }
    let mut parts: Vec<String> = chain.iter().skip(1).map(ToString::to_string).collect();
    parts.dedup();
    let message = if parts.is_empty() {
        err.to_string()
    } else {
        parts.join(": ")
    };
    let class = if err.is_timeout() {
        ErrorClass::Timeout
    } else if chain.iter().any(|e| {
        // tokio-rustls reports every handshake failure (bad certificate, alert, not TLS at all)
        // as InvalidData; nothing else on the connection path does.
        e.downcast_ref::<io::Error>()
            .is_some_and(|io| io.kind() == io::ErrorKind::InvalidData)
    }) {
        ErrorClass::Tls
    } else {
        ErrorClass::Connect
    };
    (class, message)
}

/// The error and its causes. An `io::Error`'s `source()` skips the error it wraps (hyper-rustls
/// wraps tokio-rustls's InvalidData error in another `io::Error`), so those are unwrapped by hand.
fn causes<'a>(err: &'a (dyn StdError + 'static)) -> Vec<&'a (dyn StdError + 'static)> {
    let mut chain = Vec::new();
    let mut next = Some(err);
    while let Some(e) = next {
        chain.push(e);
        next = match e.downcast_ref::<io::Error>().and_then(io::Error::get_ref) {
            Some(inner) => Some(inner as &(dyn StdError + 'static)),
            None => e.source(),
        };
    }
    chain
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_classes_spell_the_database_strings() {
        let names: Vec<_> = ErrorClass::ALL.iter().map(|c| c.as_str()).collect();
        assert_eq!(
            names,
            [
                "timeout",
                "connect",
                "dns",
                "tls",
                "ssrf_blocked",
                "invalid_target"
            ]
        );
    }

    #[test]
    fn an_excerpt_never_ends_in_half_a_character_or_holds_a_nul() {
        let euro = "€".as_bytes(); // three bytes
        assert_eq!(excerpt_text(&[b'a', euro[0], euro[1]]), "a");
        assert_eq!(excerpt_text(&[b'a', euro[0], euro[1], euro[2]]), "a€");
        assert_eq!(excerpt_text(b"a\0b"), "a\u{FFFD}b");
        assert_eq!(excerpt_text(&[b'a', 0xff]), "a\u{FFFD}");
    }
}
