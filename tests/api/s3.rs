//! Image copies in a real S3-protocol server: moto's standalone server (`moto[server]` from
//! PyPI, which `.ci/run` installs), started here on a loopback port. fluxgate talks to it
//! exactly as to AWS, R2 or MinIO: `FLUXGATE_STORAGE=s3://bucket/prefix` with an endpoint,
//! keys and a region in the AWS variables' names.
use std::time::Duration;

use base64::Engine;
use ed25519_dalek::SigningKey;
use fluxgate::{ops::retention::Sweeper, pipeline::copier, startup::Workers};
use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, BufReader};

use crate::helpers::{
    fresh_database, in_ci, post_fal_callback, problem, spawn_app_with, start_app, test_settings,
    TestApp, TestOptions, SIM_SEED,
};

const BUCKET: &str = "fluxgate-images";

/// A moto server of its own, stopped when dropped.
struct Moto {
    url: String,
    _child: tokio::process::Child,
}

impl Moto {
    /// Starts one and waits for it to say it listens; `None` (the test skips, loudly) when
    /// `moto_server` is not installed, unless in CI, where that fails the test.
    async fn start() -> Option<Moto> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let spawned = tokio::process::Command::new("moto_server")
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn();
        let mut child = match spawned {
            Ok(child) => child,
            Err(e) => {
                let message = format!(
                    "moto_server cannot run ({e}); install it with `pip install 'moto[server]'`"
                );
                assert!(!in_ci(), "CI must run the S3 tests: {message}");
                eprintln!("SKIPPED S3 test: {message}");
                return None;
            }
        };
        let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
        while let Some(line) = lines.next_line().await.unwrap() {
            if line.contains("Running on") {
                break;
            }
        }
        // Keep reading its log, or a full pipe would stall it.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        let moto = Moto {
            url: format!("http://127.0.0.1:{port}"),
            _child: child,
        };
        moto.bucket("PUT").await;
        Some(moto)
    }

    /// Creates (`PUT`) or removes (`DELETE`) the bucket.
    async fn bucket(&self, method: &str) {
        let res = reqwest::Client::new()
            .request(method.parse().unwrap(), format!("{}/{BUCKET}", self.url))
            .send()
            .await
            .unwrap();
        assert!(
            res.status().is_success(),
            "{method} bucket: {}",
            res.status()
        );
    }

    /// An object as S3 answers an authenticated GET of it.
    async fn object(&self, key: &str) -> object_store::GetResult {
        use object_store::ObjectStore;
        let s3 = object_store::aws::AmazonS3Builder::new()
            .with_endpoint(&self.url)
            .with_bucket_name(BUCKET)
            .with_region("us-east-1")
            .with_access_key_id("test")
            .with_secret_access_key("test")
            .with_allow_http(true)
            .build()
            .unwrap();
        s3.get(&object_store::path::Path::from(key)).await.unwrap()
    }

    fn options(&self) -> Vec<(String, secrecy::SecretString)> {
        [
            ("aws_endpoint", self.url.as_str()),
            ("aws_access_key_id", "test"),
            ("aws_secret_access_key", "test"),
            ("aws_region", "us-east-1"),
            ("aws_allow_http", "true"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), secrecy::SecretString::from(v.to_owned())))
        .collect()
    }

    fn settings(&self, bucket: &str) -> fluxgate::config::Settings {
        let mut settings = test_settings();
        settings.storage.images = Some(format!("s3://{bucket}/images"));
        settings.storage.store_options = self.options();
        settings
    }
}

async fn bytes(app: &TestApp, url: &str) -> Vec<u8> {
    let res = app.client.get(url).send().await.unwrap();
    assert_eq!(res.status(), 200, "{url}");
    res.bytes().await.unwrap().to_vec()
}

#[tokio::test]
async fn copies_go_to_s3_and_every_instance_serves_them_byte_identical() {
    let Some(moto) = Moto::start().await else {
        return;
    };
    let mut settings = moto.settings(BUCKET);
    settings.storage.asset_url_ttl = Some(Duration::from_secs(600));
    let a = spawn_app_with(TestOptions {
        settings: settings.clone(),
        workers: Workers::ALL,
        ..Default::default()
    })
    .await;
    let sim_b = fluxgate::tools::simulator::start(TestOptions::default().sim)
        .await
        .unwrap();
    let b = start_app(
        a.pool.clone(),
        a.db_url.clone(),
        sim_b,
        settings.clone(),
        Workers::NONE,
    )
    .await;

    let g = a
        .generate(json!({"prompt": "a harbour", "num_images": 2}))
        .await;
    let id = g["id"].as_str().unwrap();
    let done = a.wait_terminal(id).await;
    assert_eq!(done["status"], "completed", "{done}");
    for (i, image) in done["images"].as_array().unwrap().iter().enumerate() {
        let url = image["url"].as_str().unwrap();
        let source = bytes(&a, image["source_url"].as_str().unwrap()).await;
        assert!(
            source.starts_with(b"\x89PNG\r\n\x1a\n"),
            "fal's image is a real PNG"
        );
        // Served by the instance that copied it, and by the other one, from S3.
        assert_eq!(bytes(&a, url).await, source);
        let from_b = url.replacen(&a.address, &b.address, 1);
        assert_eq!(
            bytes(&b, &from_b).await,
            source,
            "image {i} from the other instance"
        );
        // In the bucket under the prefix, with its type and cache policy.
        let key = url
            .split("/assets/")
            .nth(1)
            .unwrap()
            .split('?')
            .next()
            .unwrap();
        let object = moto.object(&format!("images/{key}")).await;
        let attribute = |a| object.attributes.get(&a).map(|v| v.to_string());
        use object_store::Attribute;
        assert_eq!(
            attribute(Attribute::ContentType).as_deref(),
            Some("image/png")
        );
        assert_eq!(
            attribute(Attribute::CacheControl).as_deref(),
            Some("public, max-age=31536000, immutable")
        );
        assert_eq!(object.bytes().await.unwrap().to_vec(), source);
        // A link either instance made expires for both: one minted two hours ago is refused.
        let stale = b
            .pipeline
            .assets
            .as_ref()
            .unwrap()
            .links()
            .url(key, chrono::Utc::now().timestamp() - 7200);
        problem(
            a.client.get(&stale).send().await.unwrap(),
            403,
            "asset_link_expired",
        )
        .await;
    }

    // Image retention deletes the copies from the bucket; their links then answer 404.
    settings.storage.image_retention = Some(Duration::ZERO);
    let swept = Sweeper::default()
        .sweep(
            &a.pool,
            &settings,
            a.pipeline.assets.as_deref(),
            Duration::ZERO,
        )
        .await
        .unwrap();
    assert_eq!(swept.image_folders, 1, "{swept:?}");
    let url = done["images"][0]["url"].as_str().unwrap();
    let fresh = a.generation(id).await["images"][0]["url"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(
        a.client.get(&fresh).send().await.unwrap().status(),
        404,
        "{url}"
    );
}

#[tokio::test]
async fn a_bucket_that_refuses_writes_for_a_while_loses_no_result() {
    let Some(moto) = Moto::start().await else {
        return;
    };
    let app = spawn_app_with(TestOptions {
        settings: moto.settings(BUCKET),
        workers: Workers::NONE,
        ..Default::default()
    })
    .await;
    // The bucket goes away after the startup check: every write fails.
    moto.bucket("DELETE").await;
    let g = app.generate(json!({"prompt": "a"})).await;
    let id = g["id"].as_str().unwrap();
    let png = b"\x89PNG\r\n\x1a\nwaited for S3".to_vec();
    let data = format!(
        "data:image/png;base64,{}",
        base64::engine::general_purpose::STANDARD.encode(&png)
    );
    let result = json!({"request_id": "req-s3", "status": "OK", "payload": {
        "images": [{"url": data, "width": 512, "height": 512, "content_type": "image/png"}],
        "seed": 5, "has_nsfw_concepts": [false], "timings": {}, "prompt": "a"}});
    let res = post_fal_callback(&app, id, &result, &SigningKey::from_bytes(&SIM_SEED), None).await;
    assert_eq!(res.json::<Value>().await.unwrap()["outcome"], "copying");
    copier::copy_once(&app.pipeline).await.unwrap();
    let queued: (i32, String) = sqlx::query_as("SELECT attempts, last_error FROM image_copies")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(queued.0, 1);
    assert!(queued.1.contains("could not be written"), "{queued:?}");
    assert_ne!(app.generation(id).await["status"], "completed");

    // The bucket is back: the next try copies and announces.
    moto.bucket("PUT").await;
    sqlx::query("UPDATE image_copies SET due_at = now()")
        .execute(&app.pool)
        .await
        .unwrap();
    copier::copy_once(&app.pipeline).await.unwrap();
    let done = app.generation(id).await;
    assert_eq!(done["status"], "completed", "{done}");
    assert_eq!(
        bytes(&app, done["images"][0]["url"].as_str().unwrap()).await,
        png
    );
    let announced: i64 =
        sqlx::query_scalar("SELECT count(*) FROM events WHERE type = 'generation.completed'")
            .fetch_one(&app.pool)
            .await
            .unwrap();
    assert_eq!(announced, 1);
}

#[tokio::test]
async fn serve_refuses_to_start_on_a_store_it_cannot_write() {
    let Some(moto) = Moto::start().await else {
        return;
    };
    let (pool, _) = fresh_database().await;
    let settings = moto.settings("no-such-bucket");
    let err = fluxgate::startup::Application::build_with(
        settings,
        pool,
        fluxgate::metrics::Metrics::new(),
        Workers::NONE,
    )
    .await
    .err()
    .expect("refused");
    let err = format!("{err:#}");
    assert!(
        err.contains("s3://no-such-bucket/images is not usable")
            && err.contains("writing a test object"),
        "{err}"
    );
    assert!(
        !err.contains("secret_access_key") && !err.contains("test:test"),
        "{err}"
    );
}
