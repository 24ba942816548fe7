//! Durable image copies (`FLUXGATE_STORAGE`): results are announced with fluxgate's copies,
//! inline images never reach subscribers, and a copy that fails records nothing.
use base64::Engine;
use ed25519_dalek::SigningKey;
use fluxgate::startup::Workers;
use serde_json::{json, Value};

use crate::helpers::{
    post_fal_callback, problem, spawn_app_with, test_settings, TestApp, TestOptions, SIM_SEED,
};

fn with_store(dir: &tempfile::TempDir, workers: Workers) -> TestOptions {
    let mut settings = test_settings();
    settings.storage.images = Some(format!("file://{}", dir.path().display()));
    TestOptions {
        settings,
        workers,
        ..Default::default()
    }
}

async fn fetch(app: &TestApp, url: &str) -> (String, Vec<u8>) {
    let res = app.client.get(url).send().await.unwrap();
    assert_eq!(res.status(), 200, "{url}");
    let ct = res.headers()["content-type"].to_str().unwrap().to_owned();
    (ct, res.bytes().await.unwrap().to_vec())
}

async fn completed_event(app: &TestApp, id: &str) -> Value {
    let events: Value = app
        .get("/v1/events?type=generation.completed")
        .await
        .json()
        .await
        .unwrap();
    events["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["data"]["id"] == id)
        .cloned()
        .expect("the completed event")
}

#[tokio::test]
async fn results_are_announced_with_copies_of_their_images() {
    let dir = tempfile::tempdir().unwrap();
    let app = spawn_app_with(with_store(&dir, Workers::ALL)).await;
    let g = app
        .generate(json!({"prompt": "two lighthouses", "num_images": 2, "image_size": "square"}))
        .await;
    let id = g["id"].as_str().unwrap();
    let done = app.wait_terminal(id).await;
    assert_eq!(done["status"], "completed", "{done}");
    let event = completed_event(&app, id).await;
    assert_eq!(event["data"]["images"], done["images"]);
    let images = done["images"].as_array().unwrap();
    assert_eq!(images.len(), 2);
    for (i, image) in images.iter().enumerate() {
        let url = image["url"].as_str().unwrap();
        let file = url
            .strip_prefix(&app.url(&format!("/assets/{id}/")))
            .unwrap_or_else(|| panic!("{url} is a copy's"));
        assert!(
            file.starts_with(&format!("{i}-")) && file.ends_with(".png"),
            "{file}"
        );
        let source = image["source_url"].as_str().expect("fal's URL is kept");
        assert!(
            source.starts_with(app.sim.base_url().trim_end_matches('/')),
            "{source}"
        );
        let (ct, copy) = fetch(&app, url).await;
        assert_eq!(ct, "image/png");
        assert!(copy.starts_with(b"\x89PNG\r\n\x1a\n"), "a real PNG");
        assert_eq!(copy, fetch(&app, source).await.1, "the copy is fal's image");
        assert_eq!(std::fs::read(dir.path().join(id).join(file)).unwrap(), copy);
        // Streamed with what browsers and CDNs rely on, and a byte range on request.
        let range = |r: &'static str| app.client.get(url).header("range", r).send();
        let res = range("bytes=0-7").await.unwrap();
        assert_eq!(res.status(), 206);
        let h = res.headers();
        assert_eq!(
            h["content-range"],
            format!("bytes 0-7/{}", copy.len()).as_str()
        );
        assert_eq!(h["x-content-type-options"], "nosniff");
        assert_eq!(h["accept-ranges"], "bytes");
        assert!(h.contains_key("etag"), "{h:?}");
        assert_eq!(res.bytes().await.unwrap().as_ref(), &copy[..8]);
        let res = range("bytes=-4").await.unwrap();
        assert_eq!(res.bytes().await.unwrap().as_ref(), &copy[copy.len() - 4..]);
        problem(
            range("bytes=99999999-").await.unwrap(),
            416,
            "invalid_range",
        )
        .await;
        problem(range("bytes=0-1,4-5").await.unwrap(), 416, "invalid_range").await;
    }
    // Nothing outside what the store writes is served.
    let res = app
        .client
        .get(app.url(&format!("/assets/{id}/9-0123456789abcdef.png")))
        .send()
        .await
        .unwrap();
    problem(res, 404, "not_found").await;
    let res = app
        .client
        .get(app.url(&format!("/assets/{id}/..%2F..%2Fetc.png")))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 404);
}

#[tokio::test]
async fn inline_images_are_stored_and_never_reach_subscribers() {
    let dir = tempfile::tempdir().unwrap();
    let app = spawn_app_with(with_store(&dir, Workers::ALL)).await;
    let g = app
        .generate(json!({"prompt": "inline", "sync_mode": true, "output_format": "webp", "image_size": "square"}))
        .await;
    let id = g["id"].as_str().unwrap();
    let done = app.wait_terminal(id).await;
    assert_eq!(done["status"], "completed", "{done}");
    let event = completed_event(&app, id).await;
    assert!(
        !event.to_string().contains("data:"),
        "no image bytes in the event"
    );
    let image = &event["data"]["images"][0];
    let url = image["url"].as_str().unwrap();
    assert!(
        url.starts_with(&app.url(&format!("/assets/{id}/0-"))) && url.ends_with(".webp"),
        "{url}"
    );
    assert!(image["source_url"].is_null());
    let (ct, copy) = fetch(&app, image["url"].as_str().unwrap()).await;
    assert_eq!(ct, "image/webp");
    assert_eq!(&copy[..4], b"RIFF");
    // fal's callback itself is kept as it came, inline image and all.
    let raw: String = sqlx::query_scalar("SELECT body::text FROM fal_callbacks")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    let inline: Value = serde_json::from_str(&raw).unwrap();
    let data = inline["payload"]["images"][0]["url"].as_str().unwrap();
    let encoded = data.split_once(";base64,").expect("a data URI").1;
    assert_eq!(
        base64::engine::general_purpose::STANDARD
            .decode(encoded)
            .unwrap(),
        copy
    );
}

async fn post_signed(app: &TestApp, gen_id: &str, body: &Value) -> reqwest::Response {
    post_fal_callback(app, gen_id, body, &SigningKey::from_bytes(&SIM_SEED), None).await
}

#[tokio::test]
async fn a_copy_that_fails_records_nothing_and_fal_redelivers() {
    let dir = tempfile::tempdir().unwrap();
    let app = spawn_app_with(with_store(&dir, Workers::NONE)).await;
    let g = app.generate(json!({"prompt": "a", "num_images": 2})).await;
    let id = g["id"].as_str().unwrap();
    let callback = |url: &str| {
        json!({"request_id": "req-1", "status": "OK", "payload": {
            "images": [{"url": url, "width": 1024, "height": 768, "content_type": "image/png"}],
            "seed": 42, "has_nsfw_concepts": [false], "timings": {"inference": 0.3}, "prompt": "a"}})
    };
    // Nothing listens on port 1: the download fails.
    let res = post_signed(&app, id, &callback("http://127.0.0.1:1/x.png")).await;
    let p = problem(res, 503, "image_copy_failed").await;
    assert!(p["detail"].as_str().unwrap().contains("image 0"), "{p}");
    let stored: i64 = sqlx::query_scalar("SELECT count(*) FROM fal_callbacks")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(stored, 0, "nothing recorded");
    assert_eq!(app.generation(id).await["status"], "accepted");

    // fal's redelivery, once the image can be fetched, goes through. An image that can never
    // be fetched (fal's CDN says 404) does not hold the result back: it keeps fal's URL.
    let data = format!(
        "data:image/png;base64,{}",
        base64::engine::general_purpose::STANDARD.encode(b"\x89PNG\r\n\x1a\nredelivered")
    );
    let gone = format!(
        "{}/files/never-was.png",
        app.sim.base_url().trim_end_matches('/')
    );
    let mut body = callback(&data);
    body["payload"]["images"]
        .as_array_mut()
        .unwrap()
        .push(json!({"url": gone, "content_type": "image/png"}));
    let res = post_signed(&app, id, &body).await;
    assert_eq!(res.status(), 200, "{:?}", res.text().await);
    let done = app.generation(id).await;
    assert_eq!(done["status"], "completed");
    let copied = done["images"][0]["url"].as_str().unwrap();
    assert!(
        copied.starts_with(&app.url(&format!("/assets/{id}/0-"))),
        "{copied}"
    );
    assert_eq!(fetch(&app, copied).await.1, b"\x89PNG\r\n\x1a\nredelivered");
    assert_eq!(done["images"][1]["url"], gone);
    let why = done["images"][1]["copy_error"].as_str().unwrap();
    assert!(why.contains("404"), "{why}");
}
