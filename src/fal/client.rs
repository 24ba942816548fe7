//! fal's queue API: submit with a webhook, status, result, cancel. Every call
//! has a timeout; errors come back classified (`errors.rs`). The client never retries by
//! itself: retry policy belongs to the submission worker, which persists its schedule.
use std::time::{Duration, Instant};

use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use url::Url;

use super::errors::FalError;

/// fal's queue priority header: `low` waits behind all `normal` work on the endpoint.
pub const PRIORITY_HEADER: &str = "X-Fal-Queue-Priority";

/// fal's start timeout header: the seconds a request may wait to start (queueing and fal's own
/// retries included); past it fal fails the request unrun.
pub const START_TIMEOUT_HEADER: &str = "X-Fal-Request-Timeout";
/// Turns fal's model fallbacks off for one request (the header's name is fal's as reported; a
/// fal that does not know it ignores it).
pub const NO_FALLBACKS_HEADER: &str = "X-Fal-Disable-Fallbacks";

/// How one request is to be queued at fal, beside its body.
#[derive(Debug, Clone, Copy)]
pub struct SubmitOptions {
    pub priority: crate::domain::states::Priority,
    pub start_timeout_secs: Option<u32>,
    /// Whether fal may run it on a fallback endpoint.
    pub fallbacks: bool,
}

impl SubmitOptions {
    fn headers(&self) -> reqwest::header::HeaderMap {
        let mut h = reqwest::header::HeaderMap::new();
        if let Some(secs) = self.start_timeout_secs {
            h.insert(START_TIMEOUT_HEADER, secs.into());
        }
        if !self.fallbacks {
            h.insert(
                NO_FALLBACKS_HEADER,
                reqwest::header::HeaderValue::from_static("true"),
            );
        }
        h
    }
}

#[derive(Clone)]
pub struct FalClient {
    http: reqwest::Client,
    base: Url,
    key: SecretString,
    timeout: Duration,
}

impl std::fmt::Debug for FalClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FalClient")
            .field("base", &self.base.as_str())
            .finish_non_exhaustive()
    }
}

/// What fal answers to a submit.
#[derive(Debug, Clone, Deserialize)]
pub struct Submitted {
    pub request_id: String,
    pub response_url: Option<String>,
    pub status_url: Option<String>,
    pub cancel_url: Option<String>,
    #[serde(default)]
    pub queue_position: Option<i64>,
}

/// A queue status (`IN_QUEUE`, `IN_PROGRESS`, `COMPLETED`).
#[derive(Debug, Clone, Deserialize)]
pub struct QueueStatus {
    pub status: String,
    #[serde(default)]
    pub error: Option<String>,
    #[serde(default)]
    pub error_type: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CancelOutcome {
    /// 202: fal will remove it if queued; a running request may still complete.
    Requested,
    AlreadyCompleted,
    NotFound,
}

/// An answer read whole: status, headers and body bytes.
struct Answer {
    status: u16,
    headers: reqwest::header::HeaderMap,
    body: bytes::Bytes,
}

impl Answer {
    async fn read(res: reqwest::Response) -> Result<Answer, FalError> {
        let status = res.status().as_u16();
        let headers = res.headers().clone();
        let body = res
            .bytes()
            .await
            .map_err(|e| FalError::from_transport(&e))?;
        Ok(Answer {
            status,
            headers,
            body,
        })
    }

    fn error(&self) -> FalError {
        FalError::from_response(self.status, &self.headers, &self.body)
    }

    /// The body as `T`, or an error naming what was not understood.
    fn json<T: serde::de::DeserializeOwned>(&self, what: &str) -> Result<T, FalError> {
        serde_json::from_slice(&self.body).map_err(|e| FalError {
            message: format!("fal's {what} answer was not understood: {e}"),
            ..FalError::from_response(502, &self.headers, &self.body)
        })
    }
}

/// The result of fetching `response_url`: fal's status and the body as JSON.
#[derive(Debug, Clone)]
pub struct FetchedResult {
    pub status: u16,
    pub body: serde_json::Value,
}

impl FalClient {
    pub fn new(
        http: reqwest::Client,
        base: Url,
        key: SecretString,
        timeout: Duration,
    ) -> FalClient {
        FalClient {
            http,
            base,
            key,
            timeout,
        }
    }

    fn auth(&self) -> String {
        format!("Key {}", self.key.expose_secret())
    }

    /// `POST {base}/{model}?fal_webhook=…` with the exact input bytes.
    pub async fn submit(
        &self,
        model: &str,
        input: &serde_json::Value,
        webhook: &str,
        options: SubmitOptions,
    ) -> Result<Submitted, FalError> {
        let mut url = self.base.clone();
        {
            let mut segments = url.path_segments_mut().map_err(|_| bad_base())?;
            segments.pop_if_empty();
            for part in model.split('/') {
                segments.push(part);
            }
        }
        url.query_pairs_mut().append_pair("fal_webhook", webhook);
        let res = self
            .http
            .post(url)
            .header(reqwest::header::AUTHORIZATION, self.auth())
            .header(PRIORITY_HEADER, options.priority.as_str())
            .headers(options.headers())
            .timeout(self.timeout)
            .json(input)
            .send()
            .await
            .map_err(|e| FalError::from_transport(&e))?;
        let answer = Answer::read(res).await?;
        if !(200..300).contains(&answer.status) {
            return Err(answer.error());
        }
        answer.json("submit")
    }

    pub async fn status(&self, status_url: &str) -> Result<QueueStatus, FalError> {
        let answer = Answer::read(self.get(status_url).await?).await?;
        if answer.status != 200 && answer.status != 202 {
            return Err(answer.error());
        }
        answer.json("status")
    }

    /// Fetches the result; a failed request answers with its own error status and body, which
    /// is returned (not an `Err`) so the caller can record it like an ERROR callback.
    pub async fn result(&self, response_url: &str) -> Result<FetchedResult, FalError> {
        let answer = Answer::read(self.get(response_url).await?).await?;
        if answer.status >= 500 || matches!(answer.status, 401 | 403 | 429) {
            return Err(answer.error());
        }
        let body = serde_json::from_slice(&answer.body).unwrap_or(serde_json::Value::Null);
        Ok(FetchedResult {
            status: answer.status,
            body,
        })
    }

    /// `PUT {cancel_url}`, parsed leniently (some sources declare `{"success": bool}`).
    pub async fn cancel(&self, cancel_url: &str) -> Result<CancelOutcome, FalError> {
        let res = self
            .http
            .put(cancel_url)
            .header(reqwest::header::AUTHORIZATION, self.auth())
            .timeout(self.timeout)
            .send()
            .await
            .map_err(|e| FalError::from_transport(&e))?;
        let answer = Answer::read(res).await?;
        let json: serde_json::Value = serde_json::from_slice(&answer.body).unwrap_or_default();
        match (answer.status, json["status"].as_str()) {
            (_, Some("ALREADY_COMPLETED")) => Ok(CancelOutcome::AlreadyCompleted),
            (_, Some("NOT_FOUND")) | (404, _) => Ok(CancelOutcome::NotFound),
            (200..=299, _) if json["success"] != false => Ok(CancelOutcome::Requested),
            (400, _) => Ok(CancelOutcome::AlreadyCompleted),
            _ => Err(answer.error()),
        }
    }

    async fn get(&self, url: &str) -> Result<reqwest::Response, FalError> {
        let started = Instant::now();
        let res = self
            .http
            .get(url)
            .header(reqwest::header::AUTHORIZATION, self.auth())
            .timeout(self.timeout)
            .send()
            .await
            .map_err(|e| FalError::from_transport(&e));
        tracing::debug!(elapsed_ms = started.elapsed().as_millis() as u64, "fal GET");
        res
    }
}

fn bad_base() -> FalError {
    FalError {
        class: super::errors::ErrorClass::Connection,
        status: None,
        retry_after: None,
        body: None,
        message: "the fal queue URL cannot take a path".into(),
    }
}
