//! `GET /assets/{generation_id}/{file}`: the image copies of the store (see `crate::assets`),
//! streamed from it, so any instance serves every copy of a shared object store. Like fal's CDN
//! URLs, these are capabilities: unguessable, no key needed; in private mode
//! (`FLUXGATE_ASSET_URL_TTL_SECS`) each link is signed and expires (`assets::links`), and the
//! signature is checked before the store is touched. A single `Range` is honoured (206), the
//! store's `ETag` is passed on, and `nosniff` keeps browsers to the declared type.
use actix_web::{http::StatusCode, web, HttpRequest, HttpResponse};
use futures_util::TryStreamExt;
use object_store::GetRange;

use crate::{api::state::AppState, assets::links::LinkRefused, error::ApiError};

pub async fn serve(
    req: HttpRequest,
    path: web::Path<(String, String)>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let (generation, file) = path.into_inner();
    let missing = || ApiError::not_found(format!("no image {generation}/{file}"));
    let assets = state.pipeline.assets.as_ref().ok_or_else(missing)?;
    let (key, content_type) = assets.key(&generation, &file).ok_or_else(missing)?;
    let query =
        web::Query::<std::collections::HashMap<String, String>>::from_query(req.query_string())
            .map(web::Query::into_inner)
            .unwrap_or_default();
    let param = |name: &str| query.get(name).map(String::as_str);
    let now = chrono::Utc::now().timestamp();
    if let Err(refused) = assets
        .links()
        .check(&key, param("expires"), param("signature"), now)
    {
        let code = match refused {
            LinkRefused::Expired => "asset_link_expired",
            LinkRefused::Unsigned | LinkRefused::Forged => "invalid_asset_signature",
        };
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            code,
            "Forbidden",
            refused.to_string(),
        ));
    }
    let range = match req.headers().get("range").map(|v| v.to_str()) {
        None => None,
        Some(v) => Some(parse_range(v.unwrap_or_default()).ok_or_else(|| {
            ApiError::new(
                StatusCode::RANGE_NOT_SATISFIABLE,
                "invalid_range",
                "Range Not Satisfiable",
                "only one byte range is served (bytes=a-b, bytes=a- or bytes=-n)",
            )
        })?),
    };
    let object = match assets.store().get(&key, range).await {
        Ok(Some(object)) => object,
        Ok(None) => return Err(missing()),
        Err(object_store::Error::NotModified { .. }) => return Err(missing()),
        Err(e) if e.to_string().contains("Range") || e.to_string().contains("range") => {
            return Err(ApiError::new(
                StatusCode::RANGE_NOT_SATISFIABLE,
                "invalid_range",
                "Range Not Satisfiable",
                "the range is outside the image",
            ))
        }
        Err(e) => {
            tracing::error!(error = %e, store = assets.store().name(), "reading an image copy failed");
            return Err(ApiError::unavailable(
                "store_unavailable",
                "the image store could not be read; retry shortly",
            ));
        }
    };
    let mut res = match &object.range {
        Some(r) => {
            let mut res = HttpResponse::build(StatusCode::PARTIAL_CONTENT);
            res.insert_header((
                "content-range",
                format!("bytes {}-{}/{}", r.start, r.end - 1, object.size),
            ));
            res.insert_header(("content-length", (r.end - r.start).to_string()));
            res
        }
        None => {
            let mut res = HttpResponse::Ok();
            res.insert_header(("content-length", object.size.to_string()));
            res
        }
    };
    // A private link must not outlive its expiry in a shared cache.
    let cache = if assets.links().is_private() {
        "private, max-age=300"
    } else {
        crate::assets::store::CACHE_CONTROL
    };
    res.content_type(content_type)
        .insert_header(("cache-control", cache))
        .insert_header(("x-content-type-options", "nosniff"))
        .insert_header(("accept-ranges", "bytes"));
    if let Some(tag) = &object.e_tag {
        res.insert_header(("etag", tag.as_str()));
    }
    let body = object
        .body
        .map_err(|e| std::io::Error::other(e.to_string()));
    Ok(res.streaming(body))
}

/// `bytes=a-b`, `bytes=a-` or `bytes=-n`: one range; anything else is `None`.
fn parse_range(v: &str) -> Option<GetRange> {
    let spec = v.trim().strip_prefix("bytes=")?;
    if spec.contains(',') {
        return None;
    }
    let (a, b) = spec.split_once('-')?;
    match (a.trim(), b.trim()) {
        ("", n) => n.parse().ok().filter(|n| *n > 0).map(GetRange::Suffix),
        (a, "") => a.parse().ok().map(GetRange::Offset),
        (a, b) => {
            let (a, b): (u64, u64) = (a.parse().ok()?, b.parse().ok()?);
            (a <= b).then_some(GetRange::Bounded(a..b + 1))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_byte_range_is_read_and_others_are_refused() {
        assert_eq!(parse_range("bytes=0-9"), Some(GetRange::Bounded(0..10)));
        assert_eq!(parse_range("bytes=5-"), Some(GetRange::Offset(5)));
        assert_eq!(parse_range("bytes=-4"), Some(GetRange::Suffix(4)));
        for bad in [
            "bytes=9-0",
            "bytes=0-1,3-4",
            "items=0-1",
            "bytes=-0",
            "bytes=x-",
        ] {
            assert_eq!(parse_range(bad), None, "{bad}");
        }
    }
}
