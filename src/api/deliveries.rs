//! One delivery with its every attempt, and a manual retry.
use crate::wire::DeliveryObject;
use actix_web::{web, HttpResponse};

use crate::{
    api::auth::Caller, api::state::AppState, domain::ids::DeliveryId, error::ApiError, storage,
};

fn not_found(id: DeliveryId) -> ApiError {
    ApiError::not_found(format!("no delivery {id}"))
}

pub async fn get(
    path: web::Path<DeliveryId>,
    state: web::Data<AppState>,
    caller: Caller,
) -> Result<HttpResponse, ApiError> {
    let id = path.into_inner();
    let d = storage::deliveries::get(&state.pool, caller.tenant_id, id)
        .await?
        .ok_or_else(|| not_found(id))?;
    let attempts = storage::deliveries::attempts(&state.pool, id).await?;
    Ok(HttpResponse::Ok().json(DeliveryObject {
        attempts_log: Some(serde_json::to_value(attempts).unwrap_or_default()),
        ..DeliveryObject::of(&d)
    }))
}

pub async fn retry(
    path: web::Path<DeliveryId>,
    state: web::Data<AppState>,
    caller: Caller,
) -> Result<HttpResponse, ApiError> {
    let d = state
        .subscriptions()
        .retry_delivery(caller.tenant_id, path.into_inner())
        .await
        .map_err(super::subscriptions::refused)?;
    Ok(HttpResponse::Accepted().json(DeliveryObject::of(&d)))
}
