//! `GET /assets/{generation_id}/{file}`: the image copies this instance's store holds (see
//! `crate::assets`). Like fal's CDN URLs, these are capabilities: unguessable, no key needed.
use actix_web::{web, HttpResponse};

use crate::{api::state::AppState, error::ApiError};

pub async fn serve(
    path: web::Path<(String, String)>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let (generation, file) = path.into_inner();
    let missing = || ApiError::not_found(format!("no image {generation}/{file}"));
    let store = state.pipeline.assets.as_ref().ok_or_else(missing)?;
    let (path, content_type) = store.file(&generation, &file).ok_or_else(missing)?;
    let bytes = tokio::fs::read(&path).await.map_err(|_| missing())?;
    Ok(HttpResponse::Ok()
        .content_type(content_type)
        .insert_header(("cache-control", "public, max-age=31536000, immutable"))
        .body(bytes))
}
