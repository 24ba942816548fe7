//! Bearer authentication for every `/v1` route, by API key (`fg_…`) or browser token (`fgt_…`),
//! and the scope its route needs (`api::scopes`). The authenticated caller is put in the
//! request's extensions, where handlers read it with the `Caller` extractor.
use crate::domain::ids::{ApiKeyId, BrowserTokenId, CredentialId, TenantId};
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
    domain::{
        api_key::PresentedKey, browser_token::TokenRefused, request_policy::RequestPolicy,
        scope::Scopes,
    },
    error::ApiError,
    storage,
};

/// The tenant (and key) a request is made by.
#[derive(Debug, Clone)]
pub struct Caller {
    pub tenant_id: TenantId,
    pub tenant_name: String,
    /// The API key; for a browser token, the key that minted it.
    pub key_id: ApiKeyId,
    /// What the key (or token) may do.
    pub scopes: Scopes,
    /// Set when a browser token authenticated the request: it acts for one end user.
    pub token: Option<TokenGrant>,
    /// Web origins the tenant lets call the API from a browser (CORS).
    pub allowed_origins: Vec<String>,
    /// The tenant runs fal's safety checker on every request (`tenants update`).
    pub require_safety_checker: bool,
}

/// What a browser token grants beyond its scopes.
#[derive(Debug, Clone)]
pub struct TokenGrant {
    pub id: BrowserTokenId,
    pub end_user: String,
    pub expires_at: chrono::DateTime<chrono::Utc>,
}

impl Caller {
    /// What holds this caller's live streams open.
    pub fn credential(&self) -> CredentialId {
        match &self.token {
            Some(t) => CredentialId::Token(t.id),
            None => CredentialId::Key(self.key_id),
        }
    }

    /// The end user a browser token acts for: everything it reads and makes is that user's.
    pub fn end_user(&self) -> Option<&str> {
        self.token.as_ref().map(|t| t.end_user.as_str())
    }

    /// Whether the caller may read `g`: a browser token sees only its end user's generations.
    pub fn may_see(&self, g: &crate::storage::generations::Generation) -> bool {
        self.end_user()
            .is_none_or(|own| g.end_user.as_deref() == Some(own))
    }

    /// What this caller's generation requests must respect.
    pub fn request_policy(&self) -> RequestPolicy<'_> {
        RequestPolicy {
            end_user: self.end_user(),
            require_safety_checker: self.require_safety_checker || self.token.is_some(),
        }
    }
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
            _ if caller.token.is_some() && !scopes::token_may(req.method(), &pattern) => {
                Err(ApiError::new(
                    actix_web::http::StatusCode::FORBIDDEN,
                    "token_not_allowed",
                    "Forbidden",
                    format!(
                        "a browser token may create and read its end user's generations and follow its events; {} {} needs an API key",
                        req.method(),
                        req.path()
                    ),
                ))
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
            "missing Authorization header: send `Authorization: Bearer <api key or browser token>`",
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
    let state = req
        .app_data::<web::Data<AppState>>()
        .ok_or_else(|| ApiError::internal("AppState missing from the app"))?;
    if token.starts_with(crate::domain::browser_token::PREFIX) {
        return authenticate_token(state, token).await;
    }
    let key = PresentedKey::parse(token).ok_or_else(|| {
        code(
            "malformed_api_key",
            "the API key is malformed: fluxgate keys look like fg_<12 chars>_<40 chars>",
        )
    })?;
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
            token: None,
            allowed_origins: c.allowed_origins,
            require_safety_checker: c.require_safety_checker,
        }),
        Some(c) if matches && c.revoked => {
            Err(code("revoked_api_key", "this API key has been revoked"))
        }
        _ => Err(code("invalid_api_key", "unknown API key")),
    }
}

/// A browser token: its signature and expiry are checked before anything is read, then its row
/// says whose it is and whether it (or the key that minted it) was revoked.
async fn authenticate_token(state: &AppState, token: &str) -> Result<Caller, ApiError> {
    let now = chrono::Utc::now().timestamp();
    let (id, _) = state.tokens.check(token, now).map_err(|why| {
        let name = match why {
            TokenRefused::Malformed => "malformed_token",
            TokenRefused::Forged => "invalid_token",
            TokenRefused::Expired => "expired_token",
        };
        code(name, &why.to_string())
    })?;
    let cred = storage::browser_tokens::credential(&state.pool, id)
        .await?
        .ok_or_else(|| code("invalid_token", "unknown browser token"))?;
    if cred.revoked {
        return Err(code(
            "revoked_token",
            "this browser token (or the key that minted it) has been revoked",
        ));
    }
    Ok(Caller {
        tenant_id: cred.tenant_id,
        tenant_name: cred.tenant_name,
        key_id: cred.key_id,
        scopes: Scopes::from_names(&cred.scopes),
        token: Some(TokenGrant {
            id,
            end_user: cred.end_user,
            expires_at: cred.expires_at,
        }),
        allowed_origins: cred.allowed_origins,
        require_safety_checker: cred.require_safety_checker,
    })
}

fn code(code: &'static str, detail: &str) -> ApiError {
    ApiError {
        code,
        ..ApiError::unauthorized(detail)
    }
}
