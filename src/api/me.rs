//! `GET /v1/me`: who the key belongs to. Integrations (Zapier's auth test) use it to check a key.
use actix_web::{web, HttpResponse};
use serde_json::json;

use crate::{
    api::auth::Caller, api::state::AppState, delivery::tenant_secret::tenant_webhook_secret,
    error::ApiError,
};

pub async fn me(caller: Caller) -> HttpResponse {
    HttpResponse::Ok().json(json!({
        "tenant": { "id": caller.tenant_id.to_string(), "name": caller.tenant_name },
        "key": { "id": caller.key_id.to_string(), "scopes": caller.scopes.names() },
    }))
}

/// `GET /v1/webhook-secret`: the `whsec_…` secret that signs deliveries to a generation's own
/// `webhook_url` (subscriptions each have their own).
pub async fn webhook_secret(
    caller: Caller,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let secret = tenant_webhook_secret(
        &state.pool,
        &state.settings.storage.keyring,
        caller.tenant_id,
    )
    .await?;
    Ok(HttpResponse::Ok().json(json!({ "secret": secret.as_str() })))
}
