//! `GET /v1/me`: who the key belongs to. Integrations (Zapier's auth test) use it to check a key.
use actix_web::HttpResponse;
use serde_json::json;

use crate::{api::auth::Caller, domain::ids};

pub async fn me(caller: Caller) -> HttpResponse {
    HttpResponse::Ok().json(json!({
        "tenant": { "id": ids::encode(ids::Kind::Tenant, caller.tenant_id), "name": caller.tenant_name },
        "key": { "id": ids::encode(ids::Kind::Key, caller.key_id) },
    }))
}
