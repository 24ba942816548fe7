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
    let id = path.into_inner();
    if !storage::deliveries::retry_now(&state.pool, caller.tenant_id, id).await? {
        let exists = storage::deliveries::get(&state.pool, caller.tenant_id, id).await?;
        return Err(match exists {
            None => not_found(id),
            Some(_) => ApiError::conflict(
                "delivery_in_flight",
                "this delivery is being attempted right now",
            ),
        });
    }
    state.deliveries_wake.notify_one();
    let d = storage::deliveries::get(&state.pool, caller.tenant_id, id)
        .await?
        .ok_or_else(|| ApiError::not_found("gone"))?;
    Ok(HttpResponse::Accepted().json(DeliveryObject::of(&d)))
}
