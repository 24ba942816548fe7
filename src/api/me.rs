//! `GET /v1/me`: who the key (or browser token) belongs to. Integrations (Zapier's auth test)
//! use it to check a key.
use actix_web::{web, HttpResponse};
use serde_json::json;

use crate::{
    api::auth::Caller, api::state::AppState, delivery::tenant_secret::tenant_webhook_secret,
    error::ApiError,
};

/// With a browser token, `key` is the key that minted it, `key.scopes` the token's own, and
/// `token` says whom it acts for and until when.
pub async fn me(caller: Caller) -> HttpResponse {
    let mut body = json!({
        "tenant": { "id": caller.tenant_id.to_string(), "name": caller.tenant_name },
        "key": { "id": caller.key_id.to_string(), "scopes": caller.scopes.names() },
    });
    if let Some(t) = &caller.token {
        body["token"] =
            json!({"id": t.id.to_string(), "end_user": t.end_user, "expires_at": t.expires_at});
    }
    HttpResponse::Ok().json(body)
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
