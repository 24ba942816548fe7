//! The one API error type. Every failure a client can see becomes an RFC 9457
//! `application/problem+json` body with a stable machine `code`; causes are logged, never leaked.
use actix_web::{http::StatusCode, HttpResponse, ResponseError};
use serde::Serialize;

use crate::domain::FieldError;

pub const PROBLEM_JSON: &str = "application/problem+json";

/// An error answered to an API client.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub title: &'static str,
    pub detail: String,
    pub errors: Vec<FieldError>,
    /// Extra members merged into the problem body (e.g. fal's own details).
    pub extra: Option<Box<serde_json::Map<String, serde_json::Value>>>,
    /// Extra response headers (`Retry-After`, `RateLimit-*`).
    pub headers: Vec<(&'static str, String)>,
}

#[derive(Serialize)]
struct Problem<'a> {
    #[serde(rename = "type")]
    kind: String,
    title: &'a str,
    status: u16,
    detail: &'a str,
    code: &'a str,
    #[serde(skip_serializing_if = "<[FieldError]>::is_empty")]
    errors: &'a [FieldError],
    #[serde(flatten, skip_serializing_if = "Option::is_none")]
    extra: Option<&'a serde_json::Map<String, serde_json::Value>>,
}

impl ApiError {
    pub fn new(
        status: StatusCode,
        code: &'static str,
        title: &'static str,
        detail: impl Into<String>,
    ) -> Self {
        Self {
            status,
            code,
            title,
            detail: detail.into(),
            errors: Vec::new(),
            extra: None,
            headers: Vec::new(),
        }
    }

    pub fn unauthorized(detail: impl Into<String>) -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "Unauthorized",
            detail,
        )
    }

    /// 403 `insufficient_scope`: the key is valid but may not do this; `scope` names what it
    /// lacks (the body's `scope` member, and `WWW-Authenticate` as OAuth's bearer scheme says).
    pub fn insufficient_scope(scope: crate::domain::scope::Scope) -> Self {
        Self::new(
            StatusCode::FORBIDDEN,
            "insufficient_scope",
            "Forbidden",
            format!("this key lacks the scope {scope}, which this route needs"),
        )
        .with_extra("scope", scope.as_str().into())
        .with_header(
            "www-authenticate",
            format!("Bearer error=\"insufficient_scope\", scope=\"{scope}\""),
        )
    }

    pub fn not_found(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", "Not Found", detail)
    }

    pub fn method_not_allowed(detail: impl Into<String>) -> Self {
        Self::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
            "Method Not Allowed",
            detail,
        )
    }

    pub fn conflict(code: &'static str, detail: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, code, "Conflict", detail)
    }

    pub fn bad_request(code: &'static str, detail: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, "Bad Request", detail)
    }

    /// 422 naming every bad field.
    pub fn validation(errors: Vec<FieldError>) -> Self {
        let detail = match errors.as_slice() {
            [one] => format!("{}: {}", one.field, one.message),
            many => format!(
                "{} fields are invalid: {}",
                many.len(),
                many.iter()
                    .map(|e| e.field.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        };
        Self {
            errors,
            ..Self::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "validation_failed",
                "Validation Failed",
                detail,
            )
        }
    }

    pub fn payload_too_large(limit: usize) -> Self {
        Self::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            "Payload Too Large",
            format!("the request body is larger than the limit of {limit} bytes"),
        )
    }

    pub fn unavailable(code: &'static str, detail: impl Into<String>) -> Self {
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            code,
            "Service Unavailable",
            detail,
        )
    }

    /// An unexpected failure: the cause is logged with the request's span, the client sees only
    /// that something went wrong on our side.
    pub fn internal(cause: impl std::fmt::Display) -> Self {
        tracing::error!(error = %cause, "internal error");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "Internal Server Error",
            "an unexpected error occurred; it has been logged",
        )
    }

    pub fn with_header(mut self, name: &'static str, value: impl ToString) -> Self {
        self.headers.push((name, value.to_string()));
        self
    }

    pub fn with_extra(mut self, key: &str, value: serde_json::Value) -> Self {
        self.extra
            .get_or_insert_with(Default::default)
            .insert(key.to_owned(), value);
        self
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} ({}): {}",
            self.status.as_u16(),
            self.code,
            self.detail
        )
    }
}

impl ApiError {
    /// The problem body as bytes (what `error_response` sends), for Idempotency-Key replays.
    pub fn body_bytes(&self) -> Vec<u8> {
        let body = Problem {
            kind: format!(
                "https://fluxgate.dev/problems/{}",
                self.code.replace('_', "-")
            ),
            title: self.title,
            status: self.status.as_u16(),
            detail: &self.detail,
            code: self.code,
            errors: &self.errors,
            extra: self.extra.as_deref(),
        };
        serde_json::to_vec(&body).unwrap_or_default()
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        self.status
    }

    fn error_response(&self) -> HttpResponse {
        let mut res = HttpResponse::build(self.status);
        res.content_type(PROBLEM_JSON);
        for (name, value) in &self.headers {
            res.insert_header((*name, value.as_str()));
        }
        res.body(self.body_bytes())
    }
}

impl From<sqlx::Error> for ApiError {
    fn from(e: sqlx::Error) -> Self {
        match &e {
            sqlx::Error::PoolTimedOut | sqlx::Error::Io(_) | sqlx::Error::PoolClosed => {
                tracing::error!(error = %e, "database unavailable");
                Self::unavailable(
                    "database_unavailable",
                    "the database is unavailable; retry shortly",
                )
            }
            _ => Self::internal(e),
        }
    }
}

impl From<anyhow::Error> for ApiError {
    fn from(e: anyhow::Error) -> Self {
        Self::internal(format!("{e:#}"))
    }
}
