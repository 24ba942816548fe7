//! Durable image copies (`FLUXGATE_STORAGE`): results are announced with fluxgate's copies,
//! inline images never reach subscribers, fal's webhook never waits for a download, and a copy
//! that fails is tried again without anything announced twice.
use std::sync::{
    atomic::{AtomicUsize, Ordering},
    Arc,
};

use base64::Engine;
use ed25519_dalek::SigningKey;
use fluxgate::{pipeline::copier, startup::Workers, storage};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

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

/// A CDN that answers 503 to its first `failures` requests and then `png` to every one.
async fn flaky_cdn(failures: usize, png: &'static [u8]) -> (String, Arc<AtomicUsize>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/image.png", listener.local_addr().unwrap());
    let served = Arc::new(AtomicUsize::new(0));
    let count = served.clone();
    tokio::spawn(async move {
        while let Ok((mut conn, _)) = listener.accept().await {
            let n = count.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                let _ = conn.read(&mut buf).await;
                let head = if n < failures {
                    "HTTP/1.1 503 Service Unavailable\r\ncontent-length: 0\r\n\r\n".to_owned()
                } else {
                    format!(
                        "HTTP/1.1 200 OK\r\ncontent-type: image/png\r\ncontent-length: {}\r\n\r\n",
                        png.len()
                    )
                };
                let _ = conn.write_all(head.as_bytes()).await;
                if n >= failures {
                    let _ = conn.write_all(png).await;
                }
            });
        }
    });
    (url, served)
}

fn fal_result(request_id: &str, urls: &[&str]) -> Value {
    let images: Vec<Value> = urls
        .iter()
        .map(|u| json!({"url": u, "width": 1024, "height": 768, "content_type": "image/png"}))
        .collect();
    json!({"request_id": request_id, "status": "OK", "payload": {
        "images": images, "seed": 42, "has_nsfw_concepts": [false], "timings": {"inference": 0.3}, "prompt": "a"}})
}

async fn count(app: &TestApp, sql: &str) -> i64 {
    sqlx::query_scalar(sql).fetch_one(&app.pool).await.unwrap()
}

/// Makes every queued copy due now, as its backoff would after a while.
async fn due_now(app: &TestApp) {
    sqlx::query("UPDATE image_copies SET due_at = now()")
        .execute(&app.pool)
        .await
        .unwrap();
}

#[tokio::test]
async fn a_copy_that_fails_is_tried_again_and_announced_once_it_succeeds() {
    let dir = tempfile::tempdir().unwrap();
    let app = spawn_app_with(with_store(&dir, Workers::NONE)).await;
    let g = app.generate(json!({"prompt": "a", "num_images": 2})).await;
    let id = g["id"].as_str().unwrap();
    let (cdn, served) = flaky_cdn(1, b"\x89PNG\r\n\x1a\nsecond try").await;
    // An image fal's CDN no longer has (404) does not hold the result back: it keeps fal's URL.
    let gone = format!(
        "{}/files/never-was.png",
        app.sim.base_url().trim_end_matches('/')
    );
    let res = post_signed(&app, id, &fal_result("req-1", &[&cdn, &gone])).await;
    assert_eq!(res.status(), 200);
    assert_eq!(res.json::<Value>().await.unwrap()["outcome"], "copying");

    // The first try meets a 503: nothing is recorded or announced yet, and it is kept.
    copier::copy_once(&app.pipeline).await.unwrap();
    assert_eq!(served.load(Ordering::SeqCst), 1);
    assert_eq!(count(&app, "SELECT count(*) FROM fal_callbacks").await, 0);
    assert_eq!(
        count(
            &app,
            "SELECT count(*) FROM events WHERE type = 'generation.completed'"
        )
        .await,
        0
    );
    assert_eq!(
        count(
            &app,
            "SELECT count(*) FROM image_copies WHERE last_error LIKE '%image 0%'"
        )
        .await,
        1
    );

    due_now(&app).await;
    copier::copy_once(&app.pipeline).await.unwrap();
    let done = app.generation(id).await;
    assert_eq!(done["status"], "completed", "{done}");
    let copied = done["images"][0]["url"].as_str().unwrap();
    assert!(
        copied.starts_with(&app.url(&format!("/assets/{id}/0-"))),
        "{copied}"
    );
    assert_eq!(fetch(&app, copied).await.1, b"\x89PNG\r\n\x1a\nsecond try");
    assert_eq!(done["images"][0]["source_url"], cdn.as_str());
    assert_eq!(done["images"][1]["url"], gone);
    let why = done["images"][1]["copy_error"].as_str().unwrap();
    assert!(why.contains("404"), "{why}");
    assert_eq!(count(&app, "SELECT count(*) FROM image_copies").await, 0);
    // fal's callback is recorded as it came, not as rewritten.
    let raw: String = sqlx::query_scalar("SELECT body::text FROM fal_callbacks")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert!(raw.contains(&cdn), "{raw}");
}

#[tokio::test]
async fn a_cdn_that_never_answers_does_not_hold_up_fals_webhook() {
    let dir = tempfile::tempdir().unwrap();
    // A copier runs here, and the CDN takes its connection but never answers.
    let app = spawn_app_with(with_store(&dir, Workers::ALL)).await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let stalled = format!("http://{}/slow.png", listener.local_addr().unwrap());
    let (accepted_tx, mut accepted) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok((conn, _)) = listener.accept().await {
            let _ = accepted_tx.send(conn);
        }
    });
    let g = app.generate(json!({"prompt": "a"})).await;
    let id = g["id"].as_str().unwrap();
    let res = post_signed(&app, id, &fal_result("req-slow", &[&stalled])).await;
    assert_eq!(res.status(), 200);
    assert_eq!(res.json::<Value>().await.unwrap()["outcome"], "copying");
    // The copier is at the CDN now, holding an open request that has had no answer.
    let _held = accepted.recv().await.expect("the copier connects");
    assert_ne!(app.generation(id).await["status"], "completed");
    assert_eq!(count(&app, "SELECT count(*) FROM image_copies").await, 1);
}

#[tokio::test]
async fn a_crash_at_any_step_of_the_copier_loses_nothing_and_announces_once() {
    let dir = tempfile::tempdir().unwrap();
    let app = spawn_app_with(with_store(&dir, Workers::NONE)).await;
    let g = app.generate(json!({"prompt": "a"})).await;
    let id = g["id"].as_str().unwrap();
    let png = format!(
        "data:image/png;base64,{}",
        base64::engine::general_purpose::STANDARD.encode(b"\x89PNG\r\n\x1a\ncrash")
    );
    let body = fal_result("req-crash", &[&png]);
    assert_eq!(post_signed(&app, id, &body).await.status(), 200);
    // fal delivers it again meanwhile: still one result queued.
    assert_eq!(post_signed(&app, id, &body).await.status(), 200);
    assert_eq!(count(&app, "SELECT count(*) FROM image_copies").await, 1);

    // A copier leases it and dies mid-copy: once the lease runs out, another takes it.
    let leased = storage::image_copies::claim(&app.pool, 16, 60.0)
        .await
        .unwrap();
    assert_eq!(leased.len(), 1);
    assert_eq!(
        copier::copy_once(&app.pipeline).await.unwrap(),
        0,
        "leased elsewhere"
    );
    sqlx::query("UPDATE image_copies SET lease_until = now() - interval '1 second'")
        .execute(&app.pool)
        .await
        .unwrap();
    assert_eq!(copier::copy_once(&app.pipeline).await.unwrap(), 1);
    assert_eq!(app.generation(id).await["status"], "completed");

    // A copier that applied the result and died before taking it off the queue: the next try
    // finds it recorded and only takes it off.
    let job = storage::image_copies::CopyJob {
        attempts: 0,
        ..leased[0].clone()
    };
    assert!(storage::image_copies::enqueue(&app.pool, &job)
        .await
        .unwrap());
    assert_eq!(copier::copy_once(&app.pipeline).await.unwrap(), 1);
    assert_eq!(count(&app, "SELECT count(*) FROM image_copies").await, 0);
    let announced = "SELECT count(*) FROM events WHERE type = 'generation.completed'";
    assert_eq!(count(&app, announced).await, 1, "announced exactly once");
}

#[tokio::test]
async fn private_links_expire_and_answers_mint_fresh_ones() {
    let dir = tempfile::tempdir().unwrap();
    let mut options = with_store(&dir, Workers::ALL);
    options.settings.storage.asset_url_ttl = Some(std::time::Duration::from_secs(600));
    let app = spawn_app_with(options).await;
    let g = app.generate(json!({"prompt": "private"})).await;
    let id = g["id"].as_str().unwrap();
    app.wait_terminal(id).await;
    let event = completed_event(&app, id).await;
    let announced = event["data"]["images"][0]["url"]
        .as_str()
        .unwrap()
        .to_owned();
    let (path, query) = announced.split_once('?').expect("a signed link");
    assert!(
        query.starts_with("expires=") && query.contains("&signature="),
        "{announced}"
    );
    let (ct, copy) = fetch(&app, &announced).await;
    assert_eq!(ct, "image/png");
    let res = app.client.get(&announced).send().await.unwrap();
    assert_eq!(res.headers()["cache-control"], "private, max-age=300");

    // Unsigned, tampered with, or signed for another file: refused before the store is read.
    problem(
        app.client.get(path).send().await.unwrap(),
        403,
        "invalid_asset_signature",
    )
    .await;
    let tampered = announced.replace("expires=", "expires=9");
    problem(
        app.client.get(&tampered).send().await.unwrap(),
        403,
        "invalid_asset_signature",
    )
    .await;
    let key = path.split_once("/assets/").unwrap().1;
    let links = app.pipeline.assets.as_ref().unwrap().links();
    let now = chrono::Utc::now().timestamp();
    // A link made two hours ago has run out.
    let stale = links.url(key, now - 7200);
    problem(
        app.client.get(&stale).send().await.unwrap(),
        403,
        "asset_link_expired",
    )
    .await;

    // Reading the generation mints a link valid from now, for the same bytes.
    let read = app.generation(id).await;
    let fresh = read["images"][0]["url"].as_str().unwrap();
    assert!(fresh.starts_with(path), "{fresh}");
    let expires = |url: &str| -> i64 {
        url.split("expires=")
            .nth(1)
            .unwrap()
            .split('&')
            .next()
            .unwrap()
            .parse()
            .unwrap()
    };
    assert!(expires(fresh) >= now + 600, "{fresh}");
    assert_eq!(fetch(&app, fresh).await.1, copy);
}
