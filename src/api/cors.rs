//! CORS for browser front ends, per tenant (`fluxgate tenants update NAME --allowed-origins`).
//!
//! A request from a page carries an `Origin` header. Only a canonical one is considered (no
//! lookup otherwise). A preflight (`OPTIONS` with `Access-Control-Request-Method`) carries no
//! credentials, so it is allowed when any tenant allows its origin; the real request then gets
//! CORS headers only if the tenant its key or token belongs to allows that origin, so a page
//! cannot read another tenant's answers. An unauthenticated answer (a 401, an expired token)
//! gets them when some tenant allows the origin, so the page can tell its token has expired.
//! Every other origin gets no CORS headers, and the browser keeps the answer from the page.
//! Keys travel only in `Authorization` headers, never cookies, so there are no credentials a
//! page could borrow: `Access-Control-Allow-Credentials` is never sent.
use actix_web::{
    body::{EitherBody, MessageBody},
    dev::{ServiceRequest, ServiceResponse},
    http::{
        header::{self, HeaderValue},
        Method,
    },
    middleware::Next,
    web, HttpMessage, HttpResponse, ResponseError,
};

use crate::{api::auth::Caller, api::state::AppState, domain::origin, error::ApiError, storage};

const ALLOW_METHODS: &str = "GET, POST, PATCH, DELETE";
const ALLOW_HEADERS: &str = "authorization, content-type, idempotency-key, last-event-id";
/// What a page may read of an answer besides the simple headers.
const EXPOSE_HEADERS: &str = "x-request-id, location, retry-after, ratelimit-limit, ratelimit-remaining, ratelimit-reset, idempotent-replayed, www-authenticate";
/// How long a browser may reuse a preflight's answer.
const MAX_AGE_SECS: &str = "600";

pub async fn cors<B: MessageBody + 'static>(
    req: ServiceRequest,
    next: Next<B>,
) -> Result<ServiceResponse<EitherBody<B>>, actix_web::Error> {
    let Some(origin) = req
        .headers()
        .get(header::ORIGIN)
        .and_then(|v| origin::presented(v.as_bytes()))
        .map(str::to_owned)
    else {
        return Ok(next.call(req).await?.map_into_left_body());
    };
    let preflight = req.method() == Method::OPTIONS
        && req
            .headers()
            .contains_key(header::ACCESS_CONTROL_REQUEST_METHOD);
    if preflight {
        let allowed = any_tenant_allows(req.app_data(), &origin).await?;
        let res = if allowed {
            let mut res = HttpResponse::NoContent().finish();
            allow(res.headers_mut(), &origin);
            let h = res.headers_mut();
            h.insert(
                header::ACCESS_CONTROL_ALLOW_METHODS,
                HeaderValue::from_static(ALLOW_METHODS),
            );
            h.insert(
                header::ACCESS_CONTROL_ALLOW_HEADERS,
                HeaderValue::from_static(ALLOW_HEADERS),
            );
            h.insert(
                header::ACCESS_CONTROL_MAX_AGE,
                HeaderValue::from_static(MAX_AGE_SECS),
            );
            res
        } else {
            ApiError::new(
                actix_web::http::StatusCode::FORBIDDEN,
                "origin_not_allowed",
                "Forbidden",
                format!("{origin} may not call this API from a browser; a tenant allows it with `fluxgate tenants update NAME --allowed-origins {origin}`"),
            )
            .error_response()
        };
        let mut res = req.into_response(res);
        vary(res.headers_mut());
        return Ok(res.map_into_right_body());
    }
    let mut res = next.call(req).await?;
    let caller_allows = res
        .request()
        .extensions()
        .get::<Caller>()
        .map(|c| c.allowed_origins.contains(&origin));
    let allowed = match caller_allows {
        Some(allowed) => allowed,
        None => any_tenant_allows(res.request().app_data(), &origin).await?,
    };
    if allowed {
        allow(res.headers_mut(), &origin);
    }
    vary(res.headers_mut());
    Ok(res.map_into_left_body())
}

async fn any_tenant_allows(
    state: Option<&web::Data<AppState>>,
    origin: &str,
) -> Result<bool, ApiError> {
    let state = state.ok_or_else(|| ApiError::internal("AppState missing from the app"))?;
    Ok(storage::tenants::origin_allowed(&state.pool, origin).await?)
}

fn allow(h: &mut header::HeaderMap, origin: &str) {
    if let Ok(v) = HeaderValue::from_str(origin) {
        h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, v);
        h.insert(
            header::ACCESS_CONTROL_EXPOSE_HEADERS,
            HeaderValue::from_static(EXPOSE_HEADERS),
        );
    }
}

/// The answer depends on `Origin`: caches must keep one per origin.
fn vary(h: &mut header::HeaderMap) {
    h.append(header::VARY, HeaderValue::from_static("Origin"));
}
