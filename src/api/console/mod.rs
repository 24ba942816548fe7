//! `/console`: the web console, served by fluxgate itself from files embedded in the binary
//! (`assets/`, listed by `build.rs`), so it needs no other server and no build step.
//!
//! The page holds an API key (or a browser token), so it is served to be hard to subvert:
//! - a `Content-Security-Policy` that runs only these files (no inline script or style, no
//!   `eval`), connects only to this origin, and loads images only from this origin, https, and
//!   the plain-http hosts this deployment itself links images to (the fal simulator, a local
//!   asset base);
//! - no framing, no referrer (the address never leaves with a request), `nosniff`;
//! - it is CSRF-safe by design: the key travels only in `Authorization` headers that its
//!   scripts add, never in a cookie a browser would attach to a forged request.
//!
//! The files are answered with a strong `ETag` and `no-cache`: a browser revalidates each load
//! (one cheap 304) and never runs a stale script after an upgrade.
use std::{collections::HashMap, sync::OnceLock};

use actix_web::{
    http::header::{self, HeaderValue},
    web, HttpRequest, HttpResponse,
};
use sha2::{Digest, Sha256};

use crate::{api::state::AppState, error::ApiError};

/// `(path under /console/, contents)`, generated from `assets/` at build time.
const FILES: &[(&str, &[u8])] = include!(concat!(env!("OUT_DIR"), "/console_files.rs"));

struct File {
    body: &'static [u8],
    content_type: &'static str,
    etag: String,
}

fn files() -> &'static HashMap<&'static str, File> {
    static FILES_BY_PATH: OnceLock<HashMap<&'static str, File>> = OnceLock::new();
    FILES_BY_PATH.get_or_init(|| {
        FILES
            .iter()
            .map(|(path, body)| {
                let digest = Sha256::digest(body);
                let file = File {
                    body,
                    content_type: content_type(path),
                    etag: format!("\"{}\"", hex::encode(&digest[..12])),
                };
                (*path, file)
            })
            .collect()
    })
}

fn content_type(path: &str) -> &'static str {
    match path.rsplit('.').next().unwrap_or_default() {
        "html" => "text/html; charset=utf-8",
        "css" => "text/css; charset=utf-8",
        "js" => "text/javascript; charset=utf-8",
        "svg" => "image/svg+xml",
        "png" => "image/png",
        "json" => "application/json",
        _ => "application/octet-stream",
    }
}

/// `GET /console`: the page.
pub async fn index(req: HttpRequest, state: web::Data<AppState>) -> HttpResponse {
    serve(&req, &state, "index.html")
        .unwrap_or_else(|e| actix_web::ResponseError::error_response(&e))
}

/// `GET /console/{file}`: its scripts and styles.
pub async fn file(
    req: HttpRequest,
    path: web::Path<String>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    serve(&req, &state, path.as_str())
}

fn serve(req: &HttpRequest, state: &AppState, path: &str) -> Result<HttpResponse, ApiError> {
    let path = if path.is_empty() { "index.html" } else { path };
    let file = files()
        .get(path)
        .ok_or_else(|| ApiError::not_found(format!("the console has no file {path}")))?;
    let fresh = req
        .headers()
        .get(header::IF_NONE_MATCH)
        .is_some_and(|v| v.as_bytes() == file.etag.as_bytes());
    let mut res = if fresh {
        HttpResponse::NotModified()
    } else {
        HttpResponse::Ok()
    };
    res.insert_header((header::CONTENT_TYPE, file.content_type))
        .insert_header((header::ETAG, file.etag.as_str()))
        .insert_header((header::CACHE_CONTROL, "no-cache"))
        .insert_header((header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
        .insert_header((header::REFERRER_POLICY, "no-referrer"))
        .insert_header((header::X_FRAME_OPTIONS, "DENY"))
        .insert_header(("Cross-Origin-Opener-Policy", "same-origin"))
        .insert_header(("Cross-Origin-Resource-Policy", "same-origin"));
    if let Ok(csp) = HeaderValue::from_str(&policy(state)) {
        res.insert_header((header::CONTENT_SECURITY_POLICY, csp));
    }
    Ok(if fresh {
        res.finish()
    } else {
        res.body(file.body)
    })
}

/// The page's Content-Security-Policy.
fn policy(state: &AppState) -> String {
    let mut images = vec![
        "'self'".to_owned(),
        "data:".into(),
        "blob:".into(),
        "https:".into(),
    ];
    images.extend(http_image_origins(state));
    format!(
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src {}; connect-src 'self'; \
         base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
        images.join(" ")
    )
}

/// Plain-http origins this deployment links images to: fal's base when it is a local
/// simulator, and a local public asset base. https ones are already allowed.
fn http_image_origins(state: &AppState) -> Vec<String> {
    let settings = &state.settings;
    [
        Some(&settings.fal.queue_url),
        settings.storage.asset_base_url.as_ref(),
    ]
    .into_iter()
    .flatten()
    .filter(|u| u.scheme() == "http")
    .map(|u| u.origin().ascii_serialization())
    .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_file_of_the_console_is_embedded_with_its_type() {
        let files = files();
        let index = files.get("index.html").expect("index.html");
        assert_eq!(index.content_type, "text/html; charset=utf-8");
        assert!(files.get("js/main.js").is_some(), "the entry script");
        for (path, file) in files {
            assert_ne!(file.content_type, "application/octet-stream", "{path}");
        }
    }
}
