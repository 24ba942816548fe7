//! The image copier tried as an attacker would: results replayed to made-up generations, image
//! URLs that point inward, redirects, hosts that are not fal's, more images than were asked for,
//! and bodies larger than their generation can need.
use std::sync::{
    atomic::{AtomicUsize, Ordering},
    Arc,
};

use base64::Engine;
use ed25519_dalek::SigningKey;
use fluxgate::{config::HostList, pipeline::copier, startup::Workers};
use serde_json::{json, Value};
use tokio::io::AsyncWriteExt;

use crate::helpers::{
    post_fal_callback, problem, spawn_app_with, test_settings, TestApp, TestOptions, SIM_SEED,
};

fn with_store(dir: &tempfile::TempDir) -> TestOptions {
    let mut settings = test_settings();
    settings.storage.images = Some(format!("file://{}", dir.path().display()));
    TestOptions {
        settings,
        workers: Workers::NONE,
        ..Default::default()
    }
}

fn result(request_id: &str, urls: &[String]) -> Value {
    let images: Vec<Value> = urls
        .iter()
        .map(|u| json!({"url": u, "width": 512, "height": 512, "content_type": "image/png"}))
        .collect();
    json!({"request_id": request_id, "status": "OK", "payload": {
        "images": images, "seed": 1, "has_nsfw_concepts": [false], "timings": {}, "prompt": "a"}})
}

fn png_data_uri(tag: &str) -> String {
    format!(
        "data:image/png;base64,{}",
        base64::engine::general_purpose::STANDARD.encode(format!("\u{89}PNG {tag}"))
    )
}

async fn post(app: &TestApp, id: &str, body: &Value) -> reqwest::Response {
    post_fal_callback(app, id, body, &SigningKey::from_bytes(&SIM_SEED), None).await
}

/// fal's callback, taken for copying, then one pass of the copier stage.
async fn post_and_copy(app: &TestApp, id: &str, body: &Value) {
    let res = post(app, id, body).await;
    assert_eq!(res.status(), 200);
    assert_eq!(res.json::<Value>().await.unwrap()["outcome"], "copying");
    copier::copy_once(&app.pipeline).await.unwrap();
}

fn files_under(dir: &std::path::Path) -> Vec<String> {
    walk(dir)
        .into_iter()
        .map(|p| p.strip_prefix(dir).unwrap().display().to_string())
        .collect()
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.is_dir() {
            out.extend(walk(&path));
        } else {
            out.push(path);
        }
    }
    out
}

/// A TCP listener that counts the connections it is offered and answers each with `answer`.
async fn counting_listener(answer: String) -> (u16, Arc<AtomicUsize>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let seen = Arc::new(AtomicUsize::new(0));
    let counter = seen.clone();
    tokio::spawn(async move {
        while let Ok((mut conn, _)) = listener.accept().await {
            counter.fetch_add(1, Ordering::SeqCst);
            let answer = answer.clone();
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                let _ = tokio::io::AsyncReadExt::read(&mut conn, &mut buf).await;
                let _ = conn.write_all(answer.as_bytes()).await;
            });
        }
    });
    (port, seen)
}

#[tokio::test]
async fn results_replayed_to_made_up_generations_write_no_files() {
    let dir = tempfile::tempdir().unwrap();
    let app = spawn_app_with(with_store(&dir)).await;
    let body = result("req-1", &[png_data_uri("a")]);
    for _ in 0..5 {
        let made_up = fluxgate::domain::ids::GenerationId::new().to_string();
        // Without the token fal was given, 401; with a (leaked) token of an id that was never a
        // generation, 404: in neither case is an image written.
        let res = app
            .client
            .post(app.url(&format!("/hooks/fal/{made_up}")))
            .json(&body)
            .send()
            .await
            .unwrap();
        problem(res, 401, "invalid_callback_token").await;
        problem(post(&app, &made_up, &body).await, 404, "not_found").await;
    }
    assert!(
        files_under(dir.path()).is_empty(),
        "{:?}",
        files_under(dir.path())
    );

    // A generation that finished: a second fal run's result is recorded, and copies nothing.
    let g = app.generate(json!({"prompt": "a"})).await;
    let id = g["id"].as_str().unwrap();
    post_and_copy(&app, id, &body).await;
    assert_eq!(files_under(dir.path()).len(), 1);
    let again = result("req-2", &[png_data_uri("b")]);
    let res = post(&app, id, &again).await;
    assert_eq!(
        res.json::<Value>().await.unwrap()["outcome"],
        "recorded_only"
    );
    assert_eq!(files_under(dir.path()).len(), 1);
}

#[tokio::test]
async fn image_urls_that_point_inward_are_never_fetched_nor_named_back() {
    let dir = tempfile::tempdir().unwrap();
    let (port, seen) =
        counting_listener("HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n".into()).await;
    let mut opts = with_store(&dir);
    // As `serve` is by default: https only, no address exempt from the guard, any host name.
    opts.settings.delivery.allow_http_targets = false;
    opts.settings.delivery.allowed_target_cidrs = Vec::new();
    opts.settings.storage.image_hosts = HostList::Any;
    let app = spawn_app_with(opts).await;
    let g = app.generate(json!({"prompt": "a", "num_images": 4})).await;
    let id = g["id"].as_str().unwrap();
    let urls = [
        format!("http://127.0.0.1:{port}/plain.png"),
        format!("https://127.0.0.1:{port}/loopback.png"),
        format!("https://localhost:{port}/named.png"),
        "https://169.254.169.254/latest/meta-data/".to_owned(),
    ];
    post_and_copy(&app, id, &result("req-1", &urls)).await;
    let done = app.generation(id).await;
    assert_eq!(done["status"], "completed");
    for image in done["images"].as_array().unwrap() {
        let why = image["copy_error"].as_str().expect("each image refused");
        for leak in ["127.0.0.1", "localhost", "169.254", &port.to_string()] {
            assert!(!why.contains(leak), "{why}");
        }
    }
    assert_eq!(
        seen.load(Ordering::SeqCst),
        0,
        "no connection was attempted"
    );
}

#[tokio::test]
async fn only_allowed_hosts_are_fetched_and_redirects_are_not_followed() {
    let dir = tempfile::tempdir().unwrap();
    let (target, followed) =
        counting_listener("HTTP/1.1 200 OK\r\ncontent-length: 3\r\n\r\nPNG".into()).await;
    let (port, _) = counting_listener(format!(
        "HTTP/1.1 302 Found\r\nlocation: http://127.0.0.1:{target}/x.png\r\ncontent-length: 0\r\n\r\n"
    ))
    .await;
    let mut opts = with_store(&dir);
    opts.settings.storage.image_hosts = HostList::parse("127.0.0.1").unwrap();
    let app = spawn_app_with(opts).await;
    let g = app.generate(json!({"prompt": "a", "num_images": 2})).await;
    let id = g["id"].as_str().unwrap();
    let urls = [
        format!("http://127.0.0.1:{port}/moved.png"),
        format!("http://localhost:{target}/not-listed.png"),
    ];
    post_and_copy(&app, id, &result("req-1", &urls)).await;
    let done = app.generation(id).await;
    let errors: Vec<&str> = done["images"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["copy_error"].as_str().unwrap())
        .collect();
    assert!(errors[0].contains("HTTP 302"), "{errors:?}");
    assert!(errors[1].contains("FLUXGATE_IMAGE_HOSTS"), "{errors:?}");
    assert_eq!(
        followed.load(Ordering::SeqCst),
        0,
        "neither the redirect nor the unlisted host"
    );
}

#[tokio::test]
async fn a_failed_copy_names_no_address_and_extra_images_are_dropped_unfetched() {
    let dir = tempfile::tempdir().unwrap();
    let app = spawn_app_with(with_store(&dir)).await;
    let g = app.generate(json!({"prompt": "a"})).await;
    let id = g["id"].as_str().unwrap();
    // Nothing listens on port 1: the try fails, and is remembered without the address.
    let unreachable = result("req-1", &["http://127.0.0.1:1/x.png".to_owned()]);
    post_and_copy(&app, id, &unreachable).await;
    let why: String = sqlx::query_scalar("SELECT last_error FROM image_copies")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert!(
        why.contains("image 0") && !why.contains("127.0.0.1"),
        "{why}"
    );
    assert_ne!(app.generation(id).await["status"], "completed");
    // Past its deadline, the result is announced with fal's URL and why it was not copied.
    sqlx::query("UPDATE image_copies SET due_at = now(), give_up_at = now()")
        .execute(&app.pool)
        .await
        .unwrap();
    copier::copy_once(&app.pipeline).await.unwrap();
    let done = app.generation(id).await;
    assert_eq!(done["status"], "completed", "{done}");
    assert_eq!(done["images"][0]["url"], "http://127.0.0.1:1/x.png");
    let why = done["images"][0]["copy_error"].as_str().unwrap();
    assert!(
        why.starts_with("not copied before the deadline: image 0"),
        "{why}"
    );

    // One image was asked for: fal's answer with three keeps one.
    let g = app.generate(json!({"prompt": "a"})).await;
    let id = g["id"].as_str().unwrap();
    let three = [png_data_uri("1"), png_data_uri("2"), png_data_uri("3")];
    post_and_copy(&app, id, &result("req-2", &three)).await;
    let done = app.generation(id).await;
    assert_eq!(done["images"].as_array().unwrap().len(), 1, "{done}");
    assert_eq!(files_under(dir.path()).len(), 1);
}

#[tokio::test]
async fn only_a_generation_with_inline_images_may_send_a_large_callback() {
    let dir = tempfile::tempdir().unwrap();
    let mut opts = with_store(&dir);
    opts.settings.fal.max_callback_bytes = 4096;
    let app = spawn_app_with(opts).await;
    let big = result(
        "req-1",
        &[format!("{}{}", png_data_uri("x"), "A".repeat(8000))],
    );
    let plain = app.generate(json!({"prompt": "a"})).await;
    let res = post(&app, plain["id"].as_str().unwrap(), &big).await;
    problem(res, 413, "payload_too_large").await;
    let inline = app
        .generate(json!({"prompt": "a", "sync_mode": true}))
        .await;
    let res = post(&app, inline["id"].as_str().unwrap(), &big).await;
    assert_eq!(res.status(), 200, "{:?}", res.text().await);
}

#[tokio::test]
async fn sync_mode_needs_a_store() {
    let app = spawn_app_with(TestOptions {
        workers: Workers::NONE,
        ..Default::default()
    })
    .await;
    let res = app
        .post(
            "/v1/generations",
            &json!({"prompt": "a", "sync_mode": true}),
        )
        .await;
    let p = problem(res, 422, "validation_failed").await;
    assert_eq!(p["errors"][0]["field"], "sync_mode", "{p}");
}
