//! The last line of defence: a handler that panics is answered a 500 problem instead of a
//! dropped connection, and counted (`fluxgate_http_panics_total`); the panic hook has logged it
//! once, in the request's span, with its request id. Wrapped around each resource (`resource`
//! in `mod.rs`), where routing is done: the request can be kept for the answer without
//! getting in the way of the router, which needs it to itself.
use std::panic::AssertUnwindSafe;

use actix_web::{
    body::{BoxBody, MessageBody},
    dev::{ServiceRequest, ServiceResponse},
    http::StatusCode,
    middleware::Next,
    web, ResponseError,
};
use futures_util::FutureExt;

use crate::{error::ApiError, metrics::Metrics};

pub async fn answer_panics(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, actix_web::Error> {
    let request = req.request().clone();
    let metrics = req.app_data::<web::Data<Metrics>>().cloned();
    match AssertUnwindSafe(next.call(req)).catch_unwind().await {
        Ok(res) => res.map(ServiceResponse::map_into_boxed_body),
        Err(_) => {
            if let Some(m) = metrics {
                m.http_panics.inc();
            }
            let problem = ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                "Internal Server Error",
                "an unexpected error occurred; it has been logged",
            );
            Ok(ServiceResponse::new(request, problem.error_response()))
        }
    }
}

#[cfg(test)]
mod tests {
    use actix_web::{test, web, App};

    #[actix_web::test]
    async fn a_panicking_handler_is_answered_a_500_problem_and_counted() {
        let metrics = crate::metrics::Metrics::new();
        let app = test::init_service(
            App::new()
                .app_data(web::Data::new(metrics.clone()))
                .service(crate::api::resource("/boom").route(web::get().to(|| async {
                    if true {
                        panic!("a bug");
                    }
                    "unreachable"
                }))),
        )
        .await;
        let res =
            test::call_service(&app, test::TestRequest::get().uri("/boom").to_request()).await;
        assert_eq!(res.status(), 500);
        let body: serde_json::Value = test::read_body_json(res).await;
        assert_eq!(body["code"], "internal");
        assert!(!body.to_string().contains("a bug"), "{body}");
        assert_eq!(metrics.http_panics.get(), 1);
        // The worker is still serving.
        let again =
            test::call_service(&app, test::TestRequest::get().uri("/boom").to_request()).await;
        assert_eq!(again.status(), 500);
    }
}
