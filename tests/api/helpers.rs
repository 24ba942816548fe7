//! The test harness: one throwaway Postgres per test process (or the server in DATABASE_URL), a
//! fresh migrated database per test cloned from a template, and `spawn_app()` running the real
//! application on a random loopback port with the real route table.
use std::sync::{
    atomic::{AtomicU32, Ordering},
    OnceLock,
};

use std::time::Duration;

use ed25519_dalek::SigningKey;
use fluxgate::domain::ids::{GenerationId, TenantId};
use fluxgate::fal::signature::sign_hex;
use fluxgate::{
    config::Settings,
    domain::{api_key::NewApiKey, tenant::TenantName},
    metrics::Metrics,
    pipeline::Pipeline,
    startup::{Application, Workers},
    storage,
    tools::devdb::{DevDb, DevDbOptions},
    tools::simulator::{SimConfig, SimHandle},
};
use secrecy::ExposeSecret;
use sqlx::{Connection, PgConnection, PgPool};
use uuid::Uuid;

const TEMPLATE: &str = "fluxgate_test_template";

struct Cluster {
    admin_url: String,
    url_for: Box<dyn Fn(&str) -> String + Send + Sync>,
    _devdb: Option<DevDb>,
}

/// The process-wide Postgres: DATABASE_URL if set, otherwise our own throwaway cluster.
fn cluster() -> &'static Cluster {
    static CLUSTER: OnceLock<Cluster> = OnceLock::new();
    CLUSTER.get_or_init(
        || match std::env::var("DATABASE_URL").ok().filter(|u| !u.is_empty()) {
            Some(url) => {
                let base = url::Url::parse(&url).expect("DATABASE_URL is a URL");
                Cluster {
                    admin_url: url.clone(),
                    url_for: Box::new(move |db| {
                        let mut u = base.clone();
                        u.set_path(db);
                        u.to_string()
                    }),
                    _devdb: None,
                }
            }
            None => {
                // Started on its own thread: DevDb blocks while it waits for readiness.
                let db = std::thread::spawn(|| {
                    DevDb::start(DevDbOptions {
                        data_dir: None,
                        durable: false,
                        install_if_missing: true,
                        port: None,
                    })
                })
                .join()
                .expect("devdb thread")
                .unwrap_or_else(|e| {
                    panic!("could not start a throwaway Postgres for the tests: {e}")
                });
                let admin_url = db.url();
                let for_db = db.url_for("__DB__");
                Cluster {
                    admin_url,
                    url_for: Box::new(move |name| for_db.replace("__DB__", name)),
                    _devdb: Some(db),
                }
            }
        },
    )
}

/// A fresh, migrated database for one test.
pub async fn fresh_database() -> (PgPool, String) {
    static TEMPLATE_READY: tokio::sync::OnceCell<()> = tokio::sync::OnceCell::const_new();
    static CREATE: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let cluster = cluster();
    TEMPLATE_READY
        .get_or_init(|| async {
            let mut admin = PgConnection::connect(&cluster.admin_url)
                .await
                .expect("admin connection");
            sqlx::query(&format!("DROP DATABASE IF EXISTS {TEMPLATE} WITH (FORCE)"))
                .execute(&mut admin)
                .await
                .unwrap();
            sqlx::query(&format!("CREATE DATABASE {TEMPLATE}"))
                .execute(&mut admin)
                .await
                .unwrap();
            let mut conn = PgConnection::connect(&(cluster.url_for)(TEMPLATE))
                .await
                .unwrap();
            storage::MIGRATOR
                .run(&mut conn)
                .await
                .expect("migrations apply");
            conn.close().await.unwrap();
        })
        .await;
    let name = format!(
        "fgtest_{}_{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::SeqCst)
    );
    {
        let _guard = CREATE.lock().await;
        let mut admin = PgConnection::connect(&cluster.admin_url)
            .await
            .expect("admin connection");
        sqlx::query(&format!("CREATE DATABASE {name} TEMPLATE {TEMPLATE}"))
            .execute(&mut admin)
            .await
            .unwrap();
        admin.close().await.unwrap();
    }
    let url = (cluster.url_for)(&name);
    let pool = storage::connect(&url, 8).await.expect("test pool");
    (pool, url)
}

pub struct TestApp {
    pub address: String,
    pub pool: PgPool,
    pub db_url: String,
    pub client: reqwest::Client,
    pub api_key: String,
    pub tenant_id: TenantId,
    pub sim: SimHandle,
    pub pipeline: Pipeline,
    /// The callback route's slots (`FLUXGATE_CALLBACK_CONCURRENCY`).
    pub callback_slots: std::sync::Arc<tokio::sync::Semaphore>,
    pub handle: actix_web::dev::ServerHandle,
    pub server: tokio::task::JoinHandle<std::io::Result<()>>,
}

/// The simulator's fixed signing seed, so tests can sign callbacks fal-style themselves.
pub const SIM_SEED: [u8; 32] = [7; 32];
pub const SIM_KEY: &str = "test-key-id:test-key-secret";

pub struct TestOptions {
    pub settings: Settings,
    pub workers: Workers,
    pub sim: SimConfig,
}

impl Default for TestOptions {
    fn default() -> Self {
        TestOptions {
            settings: test_settings(),
            workers: Workers::ALL,
            sim: SimConfig {
                api_key: Some(secrecy::SecretString::from(SIM_KEY)),
                signing_seed: Some(SIM_SEED),
                queue_delay: Duration::from_millis(5),
                run_delay: Duration::from_millis(10),
                webhook_retry_schedule: vec![Duration::from_millis(50), Duration::from_millis(100)],
                ..Default::default()
            },
        }
    }
}

impl TestApp {
    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.address, path)
    }

    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.client
            .get(self.url(path))
            .bearer_auth(&self.api_key)
            .send()
            .await
            .expect("request")
    }

    pub async fn post(&self, path: &str, body: &serde_json::Value) -> reqwest::Response {
        self.client
            .post(self.url(path))
            .bearer_auth(&self.api_key)
            .json(body)
            .send()
            .await
            .expect("request")
    }

    /// POSTs a generation and returns the 202 body.
    pub async fn generate(&self, body: serde_json::Value) -> serde_json::Value {
        let res = self.post("/v1/generations", &body).await;
        assert_eq!(res.status(), 202, "{:?}", res.text().await);
        res.json().await.unwrap()
    }

    pub async fn generation(&self, id: &str) -> serde_json::Value {
        let res = self.get(&format!("/v1/generations/{id}")).await;
        assert_eq!(res.status(), 200);
        res.json().await.unwrap()
    }

    /// Waits (bounded) until the generation reaches a terminal state and returns it.
    pub async fn wait_terminal(&self, id: &str) -> serde_json::Value {
        self.wait_status(id, &["completed", "failed", "cancelled"])
            .await
    }

    /// Waits (bounded) until the generation is in one of `states` and returns it.
    pub async fn wait_status(&self, id: &str, states: &[&str]) -> serde_json::Value {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        loop {
            let g = self.generation(id).await;
            if states.contains(&g["status"].as_str().unwrap_or("")) {
                return g;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{id} never became {states:?}: {g}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Waits (bounded) until the simulator has completed `n` requests.
    pub async fn wait_sim_completed(&self, n: u64) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        while self.sim.stats().completed < n {
            assert!(
                tokio::time::Instant::now() < deadline,
                "fal completed {} of {n}",
                self.sim.stats().completed
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Event types of a generation, in order.
    pub async fn event_types(&self, id: &str) -> Vec<String> {
        let uuid = id.parse::<fluxgate::domain::ids::GenerationId>().unwrap();
        sqlx::query_scalar("SELECT type FROM events WHERE generation_id = $1 ORDER BY seq")
            .bind(uuid)
            .fetch_all(&self.pool)
            .await
            .unwrap()
    }

    /// `/metrics` as Prometheus text.
    pub async fn metrics_text(&self) -> String {
        let res = self.client.get(self.url("/metrics")).send().await.unwrap();
        res.text().await.unwrap()
    }

    /// The value of one series of `/metrics` (`name{labels}` as exposed), 0 when absent.
    pub async fn metric(&self, series: &str) -> f64 {
        self.metrics_text()
            .await
            .lines()
            .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
            .unwrap_or(0.0)
    }

    /// Runs the `fluxgate` CLI against this app's database, as an operator would.
    pub fn cli(&self, args: &[&str]) -> std::process::Output {
        std::process::Command::new(env!("CARGO_BIN_EXE_fluxgate"))
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("DATABASE_URL", &self.db_url)
            .args(args)
            .output()
            .expect("run fluxgate")
    }

    /// Runs a CLI command that must succeed, with `--json`, and returns what it printed.
    pub fn cli_json(&self, args: &[&str]) -> serde_json::Value {
        let out = self.cli(&[args, &["--json"]].concat());
        assert!(
            out.status.success(),
            "fluxgate {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).expect("JSON output")
    }

    /// Creates another tenant with a key; returns (tenant id, key).
    pub async fn new_tenant(&self, name: &str) -> (TenantId, String) {
        tenant_with_key(&self.pool, name).await
    }

    /// Stops the server and its workers (drain), as SIGTERM would. Returns what a restart on
    /// the same address needs (the address is in the callback URLs fal was given).
    pub async fn stop(self) -> (String, SimHandle, u16) {
        let port = self.address.rsplit(':').next().unwrap().parse().unwrap();
        self.handle.stop(true).await;
        let _ = self.server.await;
        // Its connections belonged to the stopped server's runtimes, like a dead process's.
        self.pool.close().await;
        (self.db_url, self.sim, port)
    }
}

/// A new tenant `name` with a key holding every scope: (tenant id, key).
pub async fn tenant_with_key(pool: &PgPool, name: &str) -> (TenantId, String) {
    let tenant = storage::tenants::create(pool, &TenantName::parse(name).unwrap())
        .await
        .unwrap()
        .unwrap();
    let key = NewApiKey::generate();
    storage::keys::create(
        pool,
        tenant.id,
        &key,
        None,
        fluxgate::domain::scope::Scopes::all(),
    )
    .await
    .unwrap();
    (tenant.id, key.secret.expose_secret().to_owned())
}

pub fn test_settings() -> Settings {
    let mut s = Settings::for_dev();
    s.server.bind = [127, 0, 0, 1].into();
    s.server.port = 0;
    s.fal.retry_base = Duration::from_millis(10);
    s.server.shutdown_drain = Duration::from_secs(5);
    // Receivers live on loopback; retries are shrunk to milliseconds.
    s.delivery.allowed_target_cidrs = vec![fluxgate::config::Cidr::parse("127.0.0.0/8").unwrap()];
    s.delivery.allow_http_targets = true;
    // The simulator's images are served on loopback.
    s.storage.image_hosts = fluxgate::config::HostList::parse("127.0.0.1,fal.media").unwrap();
    s.delivery.retry_schedule = fluxgate::delivery::retry::RetrySchedule::parse("100ms,200ms,2s")
        .unwrap()
        .with_min_after_throttle(Duration::from_millis(100));
    s
}

pub async fn spawn_app() -> TestApp {
    spawn_app_with(TestOptions::default()).await
}

pub async fn spawn_app_with(opts: TestOptions) -> TestApp {
    let (pool, db_url) = fresh_database().await;
    let sim = fluxgate::tools::simulator::start(opts.sim)
        .await
        .expect("simulator starts");
    start_app(pool, db_url, sim, opts.settings, opts.workers).await
}

/// Starts the application on an existing database and simulator (restarts use this).
pub async fn start_app(
    pool: PgPool,
    db_url: String,
    sim: SimHandle,
    mut settings: Settings,
    workers: Workers,
) -> TestApp {
    settings.fal.queue_url = sim.base_url().parse().unwrap();
    settings.fal.jwks_url = sim.jwks_url().parse().unwrap();
    settings.fal.key = Some(secrecy::SecretString::from(SIM_KEY));
    let app = Application::build_with(settings, pool.clone(), Metrics::new(), workers)
        .await
        .expect("app builds");
    let address = format!("http://127.0.0.1:{}", app.port());
    let pipeline = app.pipeline();
    let callback_slots = app.callback_slots();
    let handle = app.handle();
    let server = tokio::spawn(app.run_until_stopped());
    let mut test = TestApp {
        address,
        pool,
        db_url,
        client: reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap(),
        api_key: String::new(),
        tenant_id: TenantId::from_uuid(Uuid::nil()),
        sim,
        pipeline,
        callback_slots,
        handle,
        server,
    };
    let existing: Option<TenantId> =
        sqlx::query_scalar("SELECT id FROM tenants WHERE name = 'acme'")
            .fetch_optional(&test.pool)
            .await
            .unwrap();
    let (tenant_id, api_key) = match existing {
        None => test.new_tenant("acme").await,
        Some(id) => {
            let key = NewApiKey::generate();
            storage::keys::create(
                &test.pool,
                id,
                &key,
                None,
                fluxgate::domain::scope::Scopes::all(),
            )
            .await
            .unwrap();
            (id, key.secret.expose_secret().to_owned())
        }
    };
    test.tenant_id = tenant_id;
    test.api_key = api_key;
    test
}

/// Asserts a problem+json response and returns its body.
pub async fn problem(res: reqwest::Response, status: u16, code: &str) -> serde_json::Value {
    assert_eq!(res.status().as_u16(), status, "status");
    let ct = res
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    assert_eq!(ct, "application/problem+json", "content-type");
    let body: serde_json::Value = res.json().await.expect("problem body is JSON");
    assert_eq!(body["code"], code, "code in {body}");
    assert_eq!(body["status"], status, "status member in {body}");
    assert!(
        body["title"].is_string() && body["detail"].is_string() && body["type"].is_string(),
        "{body}"
    );
    body
}

/// The callback URL path fluxgate gave fal for `gen_id` (with its token), or would give.
pub async fn callback_path(app: &TestApp, gen_id: &str) -> String {
    let id: GenerationId = gen_id
        .parse()
        .unwrap_or(GenerationId::from_uuid(Uuid::nil()));
    let input: Option<sqlx::types::Json<serde_json::Value>> =
        sqlx::query_scalar("SELECT input FROM generations WHERE id = $1")
            .bind(id)
            .fetch_optional(&app.pool)
            .await
            .unwrap();
    let inline = input.is_some_and(|i| fluxgate::pipeline::callback_urls::expects_inline(&i.0));
    let path = app.pipeline.callbacks.path(id, inline);
    // Keep the id as the test wrote it (a malformed one stays malformed).
    path.replacen(&id.to_string(), gen_id, 1)
}

/// POSTs `body` to fal's callback route for `gen_id` (its URL with its token), signed fal-style
/// with `key`; `tamper: Some("body")` flips a bit of the body after signing.
pub async fn post_fal_callback(
    app: &TestApp,
    gen_id: &str,
    body: &serde_json::Value,
    key: &SigningKey,
    tamper: Option<&str>,
) -> reqwest::Response {
    let raw = serde_json::to_vec(body).unwrap();
    let ts = chrono::Utc::now().timestamp().to_string();
    let rid = body["request_id"].as_str().unwrap();
    let sig = sign_hex(key, rid, "user-1", &ts, &raw);
    let mut send_raw = raw.clone();
    if tamper == Some("body") {
        send_raw[5] ^= 1;
    }
    app.client
        .post(app.url(&callback_path(app, gen_id).await))
        .header("x-fal-webhook-request-id", rid)
        .header("x-fal-webhook-user-id", "user-1")
        .header("x-fal-webhook-timestamp", ts)
        .header("x-fal-webhook-signature", sig)
        .body(send_raw)
        .send()
        .await
        .unwrap()
}

/// Whether this run is CI's (`CI` set): there, a test whose outside tool is missing fails
/// rather than skips.
pub fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "0" && v != "false")
}
