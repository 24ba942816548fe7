//! fal's error taxonomy mapped onto the classes fluxgate acts on: fail at once, back off, or retry.
use std::time::Duration;

use reqwest::header::HeaderMap;

/// What kind of failure a fal call ended in; each class has one retry policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorClass {
    /// 401/403: bad key or locked account. Never retried; operators are alerted.
    Auth,
    /// 400/422 (and other 4xx): the input was refused. Never retried.
    Validation,
    /// 422 with `type: content_policy_violation`. Never retried.
    ContentPolicy,
    /// 429: back off and retry within a budget.
    RateLimited,
    /// 5xx from fal: retried a few times.
    Server,
    /// No answer in time: retried a few times.
    Timeout,
    /// Could not connect or the connection broke: retried a few times.
    Connection,
    /// 504 with `X-Fal-Request-Timeout-Type: user`: the caller's own deadline. Never retried.
    UserDeadline,
}

impl ErrorClass {
    /// Bounded label for metrics and logs.
    pub fn label(self) -> &'static str {
        match self {
            ErrorClass::Auth => "auth",
            ErrorClass::Validation => "validation",
            ErrorClass::ContentPolicy => "content_policy",
            ErrorClass::RateLimited => "rate_limited",
            ErrorClass::Server => "server_error",
            ErrorClass::Timeout => "timeout",
            ErrorClass::Connection => "connection",
            ErrorClass::UserDeadline => "user_deadline",
        }
    }

    /// Transient classes are retried with backoff; the rest fail at once.
    pub fn is_transient(self) -> bool {
        matches!(
            self,
            ErrorClass::Server | ErrorClass::Timeout | ErrorClass::Connection
        )
    }
}

/// A failed fal call. The body is fal's own JSON (field errors are passed through to users).
#[derive(Debug, Clone)]
pub struct FalError {
    pub class: ErrorClass,
    pub status: Option<u16>,
    pub retry_after: Option<Duration>,
    pub body: Option<serde_json::Value>,
    pub message: String,
}

impl std::fmt::Display for FalError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.status {
            Some(s) => write!(
                f,
                "fal answered {s} ({}): {}",
                self.class.label(),
                self.message
            ),
            None => write!(
                f,
                "fal call failed ({}): {}",
                self.class.label(),
                self.message
            ),
        }
    }
}

impl std::error::Error for FalError {}

impl FalError {
    pub fn from_transport(e: &reqwest::Error) -> FalError {
        let class = if e.is_timeout() {
            ErrorClass::Timeout
        } else {
            ErrorClass::Connection
        };
        // reqwest's Display never includes headers, so the key cannot leak through it.
        FalError {
            class,
            status: None,
            retry_after: None,
            body: None,
            message: e.to_string(),
        }
    }

    /// Classifies a non-2xx answer from its status, headers and body.
    pub fn from_response(status: u16, headers: &HeaderMap, body: &[u8]) -> FalError {
        let json: Option<serde_json::Value> = serde_json::from_slice(body).ok();
        let header = |name: &str| {
            headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_ascii_lowercase)
        };
        let class = match status {
            401 | 403 => ErrorClass::Auth,
            429 => ErrorClass::RateLimited,
            504 if header("x-fal-request-timeout-type").as_deref() == Some("user") => {
                ErrorClass::UserDeadline
            }
            500..=599 => ErrorClass::Server,
            422 if json.as_ref().is_some_and(has_content_policy_violation) => {
                ErrorClass::ContentPolicy
            }
            _ => ErrorClass::Validation,
        };
        let message = json
            .as_ref()
            .and_then(detail_message)
            .unwrap_or_else(|| String::from_utf8_lossy(&body[..body.len().min(300)]).into_owned());
        FalError {
            class,
            status: Some(status),
            retry_after: parse_retry_after(headers),
            body: json,
            message,
        }
    }
}

/// `detail` is either a string or a list of `{loc, msg, type}`; branch on `type`, never `msg`.
pub fn has_content_policy_violation(body: &serde_json::Value) -> bool {
    body["detail"].as_array().is_some_and(|items| {
        items
            .iter()
            .any(|d| d["type"] == "content_policy_violation")
    })
}

fn detail_message(body: &serde_json::Value) -> Option<String> {
    match &body["detail"] {
        serde_json::Value::String(s) => Some(s.clone()),
        serde_json::Value::Array(items) => Some(
            items
                .iter()
                .map(|d| {
                    let loc = d["loc"].as_array().map(|l| {
                        l.iter()
                            .filter(|p| p != &"body")
                            .map(|p| {
                                p.as_str()
                                    .map(str::to_owned)
                                    .unwrap_or_else(|| p.to_string())
                            })
                            .collect::<Vec<_>>()
                            .join(".")
                    });
                    format!(
                        "{}: {}",
                        loc.unwrap_or_default(),
                        d["msg"].as_str().unwrap_or("invalid")
                    )
                })
                .collect::<Vec<_>>()
                .join("; "),
        ),
        _ => None,
    }
}

/// `Retry-After` as seconds or an HTTP date.
pub fn parse_retry_after(headers: &HeaderMap) -> Option<Duration> {
    let v = headers
        .get(reqwest::header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim();
    if let Ok(secs) = v.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let when = chrono::DateTime::parse_from_rfc2822(v).ok()?;
    let delta = when.with_timezone(&chrono::Utc) - chrono::Utc::now();
    Some(delta.to_std().unwrap_or(Duration::ZERO))
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::{HeaderValue, RETRY_AFTER};

    fn classify(status: u16, body: &str, headers: &[(&'static str, &str)]) -> FalError {
        let mut map = HeaderMap::new();
        for (k, v) in headers {
            map.insert(*k, HeaderValue::from_str(v).unwrap());
        }
        FalError::from_response(status, &map, body.as_bytes())
    }

    #[test]
    fn each_fal_answer_maps_to_its_class() {
        assert_eq!(
            classify(
                401,
                r#"{"detail":"No user found for Key ID and Secret"}"#,
                &[]
            )
            .class,
            ErrorClass::Auth
        );
        assert_eq!(
            classify(403, r#"{"detail":"User is locked."}"#, &[]).class,
            ErrorClass::Auth
        );
        let v = classify(
            422,
            r#"{"detail":[{"loc":["body","guidance_scale"],"msg":"too big","type":"less_than_equal"}]}"#,
            &[],
        );
        assert_eq!(v.class, ErrorClass::Validation);
        assert_eq!(v.message, "guidance_scale: too big");
        let p = classify(
            422,
            r#"{"detail":[{"loc":["body","prompt"],"msg":"x","type":"content_policy_violation"}]}"#,
            &[],
        );
        assert_eq!(p.class, ErrorClass::ContentPolicy);
        let r = classify(429, "{}", &[("retry-after", "7")]);
        assert_eq!(
            (r.class, r.retry_after),
            (ErrorClass::RateLimited, Some(Duration::from_secs(7)))
        );
        assert_eq!(
            classify(
                503,
                r#"{"detail":"x","error_type":"runner_scheduling_failure"}"#,
                &[]
            )
            .class,
            ErrorClass::Server
        );
        assert_eq!(
            classify(504, "{}", &[("x-fal-request-timeout-type", "user")]).class,
            ErrorClass::UserDeadline
        );
        assert_eq!(classify(504, "{}", &[]).class, ErrorClass::Server);
        assert_eq!(classify(400, "not json", &[]).message, "not json");
    }

    #[test]
    fn retry_after_accepts_http_dates() {
        let mut map = HeaderMap::new();
        let later = (chrono::Utc::now() + chrono::Duration::seconds(30)).to_rfc2822();
        map.insert(RETRY_AFTER, HeaderValue::from_str(&later).unwrap());
        let d = parse_retry_after(&map).unwrap();
        assert!(
            d > Duration::from_secs(25) && d <= Duration::from_secs(30),
            "{d:?}"
        );
    }
}
