//! The HTTP surface. `configure` is the ONE route table: the server and the tests both use it.
pub mod auth;
pub mod batches;
pub mod body;
pub mod console;
pub mod cors;
pub mod deliveries;
pub mod events;
pub mod fal_hook;
pub mod generations;
pub mod health;
pub mod idempotent;
pub mod images;
pub mod me;
pub mod openapi;
pub mod paging;
pub mod panics;
pub mod scopes;
pub mod state;
pub mod streams;
pub mod subscriptions;
pub mod tokens;
pub mod usage;

use actix_web::{web, HttpRequest, HttpResponse, ResponseError};

use crate::error::ApiError;

/// Registers every route. Each resource answers 405 (as problem+json) for methods it lacks;
/// anything unrouted is a 404 problem.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.app_data(web::PathConfig::default().error_handler(id_path_error))
        .service(resource("/healthz").route(web::get().to(health::healthz)))
        .service(resource("/readyz").route(web::get().to(health::readyz)))
        .service(resource("/metrics").route(web::get().to(health::metrics)))
        .service(resource("/hooks/fal/{generation_id}").route(web::post().to(fal_hook::receive)))
        .service(resource("/.well-known/jwks.json").route(web::get().to(health::jwks)))
        .service(resource("/openapi.json").route(web::get().to(openapi::serve)))
        .service(resource("/console").route(web::get().to(console::index)))
        .service(resource("/console/{file:.*}").route(web::get().to(console::file)))
        .service(resource("/assets/{generation_id}/{file}").route(web::get().to(images::serve)))
        .service(
            web::scope("/v1")
                .wrap(actix_web::middleware::from_fn(auth::require_api_key))
                .wrap(actix_web::middleware::from_fn(cors::cors))
                .service(resource("/me").route(web::get().to(me::me)))
                .service(
                    resource("/generations")
                        .route(web::post().to(generations::create))
                        .route(web::get().to(generations::list)),
                )
                .service(resource("/generations/{id}").route(web::get().to(generations::get)))
                .service(
                    resource("/generations/{id}/cancel").route(web::post().to(generations::cancel)),
                )
                .service(
                    resource("/generations/{id}/events").route(web::get().to(streams::generation)),
                )
                .service(resource("/events/stream").route(web::get().to(streams::tenant)))
                .service(resource("/edits").route(web::post().to(generations::create_edit)))
                .service(
                    resource("/batches")
                        .route(web::post().to(batches::create))
                        .route(web::get().to(batches::list)),
                )
                .service(resource("/batches/{id}").route(web::get().to(batches::get)))
                .service(resource("/batches/{id}/cancel").route(web::post().to(batches::cancel)))
                .service(resource("/estimates").route(web::post().to(generations::estimate)))
                .service(
                    resource("/subscriptions")
                        .route(web::post().to(subscriptions::create))
                        .route(web::get().to(subscriptions::list)),
                )
                .service(
                    resource("/subscriptions/{id}")
                        .route(web::get().to(subscriptions::get))
                        .route(web::patch().to(subscriptions::patch))
                        .route(web::delete().to(subscriptions::delete)),
                )
                .service(
                    resource("/subscriptions/{id}/rotate-secret")
                        .route(web::post().to(subscriptions::rotate_secret)),
                )
                .service(
                    resource("/subscriptions/{id}/test").route(web::post().to(subscriptions::test)),
                )
                .service(
                    resource("/subscriptions/{id}/recover")
                        .route(web::post().to(subscriptions::recover)),
                )
                .service(
                    resource("/subscriptions/{id}/deliveries")
                        .route(web::get().to(subscriptions::deliveries)),
                )
                .service(resource("/deliveries/{id}").route(web::get().to(deliveries::get)))
                .service(
                    resource("/deliveries/{id}/retry").route(web::post().to(deliveries::retry)),
                )
                .service(resource("/events").route(web::get().to(events::list)))
                .service(resource("/usage").route(web::get().to(usage::get)))
                .service(resource("/webhook-secret").route(web::get().to(me::webhook_secret)))
                .service(resource("/tokens").route(web::post().to(tokens::create)))
                .service(resource("/tokens/{id}").route(web::delete().to(tokens::revoke)))
                .default_service(web::to(not_found)),
        );
}

/// A resource whose unknown methods get a 405 problem, and whose handlers' panics a 500
/// problem (`panics.rs`).
pub fn resource(
    path: &str,
) -> actix_web::Resource<
    impl actix_web::dev::ServiceFactory<
        actix_web::dev::ServiceRequest,
        Config = (),
        Response = actix_web::dev::ServiceResponse,
        Error = actix_web::Error,
        InitError = (),
    >,
> {
    web::resource(path)
        .default_service(web::to(method_not_allowed))
        .wrap(actix_web::middleware::from_fn(panics::answer_panics))
}

/// A path id that is not of its kind (`web::Path<GenerationId>` given `sub_…` or `gen_x`) is
/// answered as an unknown one is, 404 "no generation gen_x": its shape tells a caller nothing
/// a lookup would not.
fn id_path_error(err: actix_web::error::PathError, _: &HttpRequest) -> actix_web::Error {
    let detail = match err {
        actix_web::error::PathError::Deserialize(e) => e.to_string(),
        other => other.to_string(),
    };
    ApiError::not_found(detail).into()
}

pub async fn not_found(req: HttpRequest) -> HttpResponse {
    ApiError::not_found(format!("no route for {} {}", req.method(), req.path())).error_response()
}

async fn method_not_allowed(req: HttpRequest) -> HttpResponse {
    ApiError::method_not_allowed(format!("{} is not allowed on {}", req.method(), req.path()))
        .error_response()
}
