//! Bearer API-key authentication for every `/v1` route, and the scope its route needs
//! (`api::scopes`). The authenticated caller is put in the request's extensions, where handlers
//! read it with the `Caller` extractor.
use crate::domain::ids::{ApiKeyId, TenantId};
use std::future::{ready, Ready};

use actix_web::{
    body::{EitherBody, MessageBody},
    dev::{Payload, ServiceRequest, ServiceResponse},
    http::header,
    middleware::Next,
    web, FromRequest, HttpMessage, HttpRequest, ResponseError,
};

use crate::{
    api::{
        scopes::{self, Need},
        state::AppState,
    },
    domain::{api_key::PresentedKey, scope::Scopes},
    error::ApiError,
    storage,
};

/// The tenant (and key) a request is made by.
#[derive(Debug, Clone)]
pub struct Caller {
    pub tenant_id: TenantId,
    pub tenant_name: String,
    pub key_id: ApiKeyId,
    /// What the key may do.
    pub scopes: Scopes,
}

impl FromRequest for Caller {
    type Error = ApiError;
    type Future = Ready<Result<Caller, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        ready(
            req.extensions()
                .get::<Caller>()
                .cloned()
                .ok_or_else(|| ApiError::unauthorized("this route requires an API key")),
        )
    }
}

pub async fn require_api_key<B: MessageBody + 'static>(
    req: ServiceRequest,
    next: Next<B>,
) -> Result<ServiceResponse<EitherBody<B>>, actix_web::Error> {
    let allowed = authenticate(&req).await.and_then(|caller| {
        let pattern = req.match_pattern().unwrap_or_default();
        match scopes::needed(req.method(), &pattern) {
            Need::Scope(scope) if !caller.scopes.contains(scope) => {
                Err(ApiError::insufficient_scope(scope))
            }
            _ => Ok(caller),
        }
    });
    match allowed {
        Ok(caller) => {
            tracing::Span::current().record("tenant", caller.tenant_name.as_str());
            req.extensions_mut().insert(caller);
            Ok(next.call(req).await?.map_into_left_body())
        }
        Err(err) => {
            let mut res = err.error_response();
            if err.status == actix_web::http::StatusCode::UNAUTHORIZED {
                res.headers_mut().insert(
                    header::WWW_AUTHENTICATE,
                    header::HeaderValue::from_static("Bearer"),
                );
            }
            Ok(req.into_response(res).map_into_right_body())
        }
    }
}

async fn authenticate(req: &ServiceRequest) -> Result<Caller, ApiError> {
    let Some(value) = req.headers().get(header::AUTHORIZATION) else {
        return Err(code(
            "missing_api_key",
            "missing Authorization header: send `Authorization: Bearer <api key>`",
        ));
    };
    let token = value
        .to_str()
        .ok()
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        })
        .map(str::trim)
        .ok_or_else(|| {
            code(
                "malformed_api_key",
                "the Authorization header must be `Bearer <api key>`",
            )
        })?;
    let key = PresentedKey::parse(token).ok_or_else(|| {
        code(
            "malformed_api_key",
            "the API key is malformed: fluxgate keys look like fg_<12 chars>_<40 chars>",
        )
    })?;
    let state = req
        .app_data::<web::Data<AppState>>()
        .ok_or_else(|| ApiError::internal("AppState missing from the app"))?;
    let cred = storage::keys::credential_by_lookup(&state.pool, &key.lookup).await?;
    // Compare against a dummy hash when the key is unknown so both paths do the same work.
    let (matches, cred) = match cred {
        Some(c) => (key.matches(&c.secret_hash), Some(c)),
        None => {
            let _ = key.matches(&[0u8; 32]);
            (false, None)
        }
    };
    match cred {
        Some(c) if matches && !c.revoked => Ok(Caller {
            tenant_id: c.tenant_id,
            tenant_name: c.tenant_name,
            key_id: c.id,
            scopes: Scopes::from_names(&c.scopes),
        }),
        Some(c) if matches && c.revoked => {
            Err(code("revoked_api_key", "this API key has been revoked"))
        }
        _ => Err(code("invalid_api_key", "unknown API key")),
    }
}

fn code(code: &'static str, detail: &str) -> ApiError {
    ApiError {
        code,
        ..ApiError::unauthorized(detail)
    }
}
