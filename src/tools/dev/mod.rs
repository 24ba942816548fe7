//! `fluxgate dev`: the whole gateway on embedded defaults for a newcomer — its own Postgres (when
//! DATABASE_URL is unset), the fal simulator in-process (when FAL_KEY is unset), a dev tenant
//! with a fresh key, a demo subscriber, copy-paste curl lines, and a clean stop on Ctrl-C.
mod subscriber;

use std::{path::PathBuf, time::Duration};

use anyhow::Context;
use secrecy::{ExposeSecret, SecretString};

use crate::{
    config::{Mode, RawSettings, Settings, DEFAULT_IMAGE_HOSTS},
    domain::{api_key::NewApiKey, tenant::TenantName},
    metrics::Metrics,
    startup, storage, telemetry,
    tools::devdb::{DevDb, DevDbError, DevDbOptions},
    tools::simulator,
};

const DEMO_DESCRIPTION: &str = "fluxgate dev demo subscriber";

/// The fal key the in-process simulator expects (it is not a secret: nothing real is behind it).
const SIMULATOR_KEY: &str = "dev-simulator:not-a-real-key";

#[derive(clap::Args, Debug)]
pub struct DevArgs {
    #[command(flatten)]
    pub settings: RawSettings,
    /// Where `dev` keeps its Postgres data, logs and image copies.
    #[arg(long, env = "FLUXGATE_DEV_DIR", default_value = ".fluxgate")]
    pub dir: PathBuf,
}

pub async fn run(args: DevArgs) -> anyhow::Result<()> {
    // The settings as given are checked first: a mistyped flag is named before anything starts.
    let given = Settings::from_raw(&args.settings, Mode::Dev)?;
    telemetry::init(given.server.log_format);
    std::fs::create_dir_all(&args.dir)
        .with_context(|| format!("creating {}", args.dir.display()))?;
    let mut raw = args.settings.clone();
    // `dev` keeps image copies beside its database unless told otherwise (`off` turns them off).
    raw.storage
        .get_or_insert_with(|| args.dir.join("assets").to_string_lossy().into_owned());
    // Signing secrets are sealed in dev as in production, with a key kept beside the data.
    if raw.encryption_key.is_none() {
        raw.encryption_key = Some(dev_key(&args.dir)?);
    }
    // Local receivers (the demo subscriber, yours on localhost) are fine in dev.
    raw.allowed_target_cidrs
        .get_or_insert_with(|| "127.0.0.0/8,::1/128".to_owned());

    let devdb = match &raw.database_url {
        Some(_) => None,
        None => {
            let data_dir = args.dir.join("pgdata");
            eprintln!("starting a local Postgres in {} …", data_dir.display());
            let db = match start_devdb(data_dir).await {
                // Root with a checkout the unprivileged database user cannot enter (e.g. under
                // a 0700 /root): keep the data where it can, tied to this checkout.
                Err(DevDbError::Unreachable { .. }) => {
                    let fallback = reachable_data_dir(&args.dir)?;
                    eprintln!(
                        "  {} is not reachable by the database user; using {} instead",
                        args.dir.display(),
                        fallback.display()
                    );
                    start_devdb(fallback).await?
                }
                other => other?,
            };
            Some(db)
        }
    };
    let result = run_with_db(raw, devdb.as_ref()).await;
    if let Some(db) = devdb {
        eprintln!("stopping the local Postgres …");
        tokio::task::spawn_blocking(move || db.stop()).await??;
    }
    result
}

/// The key in `{dir}/encryption.key` (made, readable by this user only, on the first run): the
/// dev database and its key live and die together.
fn dev_key(dir: &std::path::Path) -> anyhow::Result<String> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let path = dir.join("encryption.key");
    let key = match std::fs::read_to_string(&path) {
        Ok(k) => k,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let key = crate::secrets::Keyring::generate_key();
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&path)
                .with_context(|| format!("creating {}", path.display()))?;
            f.write_all(key.expose_secret().as_bytes())?;
            key.expose_secret().to_owned()
        }
        Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
    };
    Ok(key.trim().to_owned())
}

/// Completes `dev`'s settings with what it started (its Postgres, the fal simulator), then
/// validates them through the same code as `serve`'s.
async fn run_with_db(mut raw: RawSettings, devdb: Option<&DevDb>) -> anyhow::Result<()> {
    if let Some(db) = devdb {
        ensure_database(&db.url(), "fluxgate").await?;
        raw.database_url = Some(db.url_for("fluxgate"));
    }
    let sim = match raw.fal_key {
        Some(_) => None,
        None => {
            let sim = simulator::start(simulator::SimConfig {
                api_key: Some(SecretString::from(SIMULATOR_KEY)),
                queue_delay: Duration::from_millis(300),
                run_delay: Duration::from_millis(1200),
                ..Default::default()
            })
            .await
            .context("starting the fal simulator")?;
            raw.fal_key = Some(SIMULATOR_KEY.to_owned());
            raw.fal_queue_url = Some(sim.base_url().to_owned());
            raw.fal_jwks_url = Some(sim.jwks_url());
            // The simulator serves its images on loopback.
            let hosts = raw.image_hosts.as_deref().unwrap_or(DEFAULT_IMAGE_HOSTS);
            if hosts.trim() != "*" {
                raw.image_hosts = Some(format!("{hosts},127.0.0.1"));
            }
            Some(sim)
        }
    };
    let settings = Settings::from_raw(&raw, Mode::Dev)?;
    let url = settings
        .storage
        .database_url
        .as_ref()
        .expect("dev has a database")
        .expose_secret()
        .to_owned();
    let pool = storage::connect(&url, settings.storage.db_pool_size)
        .await
        .map_err(storage::connect_error)?;
    storage::MIGRATOR
        .run(&pool)
        .await
        .context("applying migrations")?;

    let tenant = storage::tenants::ensure(&pool, &TenantName::parse("dev").expect("valid")).await?;
    let key = NewApiKey::generate();
    storage::keys::create(
        &pool,
        tenant.id,
        &key,
        Some("dev"),
        crate::domain::scope::Scopes::all(),
    )
    .await?;
    let demo = subscriber::DemoSubscriber::start().await?;
    // Replace the previous run's demo subscription (its port is gone) with one for this run.
    sqlx::query("UPDATE subscriptions SET deleted_at = now(), status = 'disabled' WHERE tenant_id = $1 AND description = $2 AND deleted_at IS NULL")
        .bind(tenant.id)
        .bind(DEMO_DESCRIPTION)
        .execute(&pool)
        .await?;
    let secret = crate::delivery::signing::SigningSecret::generate();
    let id = crate::domain::ids::SubscriptionId::new();
    let sealed = settings
        .storage
        .keyring
        .seal(secret.as_str(), crate::secrets::Owner::Subscription(id));
    storage::subscriptions::insert(
        &pool,
        tenant.id,
        storage::subscriptions::NewSubscription {
            id,
            target_url: &demo.url,
            event_types: &["*".to_owned()],
            filter: None,
            description: Some(DEMO_DESCRIPTION),
            headers: &serde_json::json!({}),
            secret: &sealed,
            max_in_flight: 8,
            rate_limit_per_sec: None,
        },
    )
    .await?;
    demo.set_secret(secret);

    let app = startup::Application::build(settings.clone(), pool, Metrics::new()).await?;
    let data_dir = devdb.map(|d| d.data_dir().display().to_string());
    print_banner(
        &settings,
        app.port(),
        key.secret.expose_secret(),
        &url,
        data_dir.as_deref(),
        sim.as_ref(),
        &demo.url,
    );
    let served = startup::serve_until_signal(app, settings.server.shutdown_drain).await;
    demo.stop().await;
    if let Some(sim) = sim {
        sim.stop().await;
    }
    served
}

async fn start_devdb(data_dir: PathBuf) -> Result<DevDb, DevDbError> {
    tokio::task::spawn_blocking(move || DevDb::start(DevDbOptions::persistent(data_dir)))
        .await
        .map_err(|e| DevDbError::Io {
            what: "starting the local Postgres".into(),
            source: std::io::Error::other(e),
        })?
}

/// `/var/tmp/fluxgate-dev-<hash of the checkout's .fluxgate path>/pgdata`: stable per checkout.
fn reachable_data_dir(dir: &std::path::Path) -> anyhow::Result<PathBuf> {
    use sha2::{Digest, Sha256};
    let abs = std::fs::canonicalize(dir)?;
    let hash = hex::encode(&Sha256::digest(abs.to_string_lossy().as_bytes())[..6]);
    Ok(PathBuf::from(format!(
        "/var/tmp/fluxgate-dev-{hash}/pgdata"
    )))
}

/// `dev`'s cluster starts with only the `postgres` database; fluxgate gets its own.
async fn ensure_database(admin_url: &str, name: &str) -> anyhow::Result<()> {
    use sqlx::Connection;
    let mut conn = sqlx::PgConnection::connect(admin_url)
        .await
        .map_err(storage::connect_error)?;
    let exists: bool =
        sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)")
            .bind(name)
            .fetch_one(&mut conn)
            .await?;
    if !exists {
        sqlx::query(&format!("CREATE DATABASE \"{name}\""))
            .execute(&mut conn)
            .await?;
    }
    conn.close().await?;
    Ok(())
}

fn print_banner(
    settings: &Settings,
    port: u16,
    key: &str,
    db_url: &str,
    own_db: Option<&str>,
    sim: Option<&simulator::SimHandle>,
    demo_url: &str,
) {
    let base = format!("http://127.0.0.1:{port}");
    let db_line = match own_db {
        Some(dir) => format!(
            "{db_url}\n                    (its own Postgres, data in {dir}; export DATABASE_URL='{db_url}' for the operator commands)"
        ),
        None => "DATABASE_URL (yours)".to_owned(),
    };
    let images_line = match settings.storage.images.as_deref() {
        None | Some("off") => "not copied (FLUXGATE_STORAGE=off)".to_owned(),
        Some(dir) => format!("copied into {dir}, served at {base}/assets/…"),
    };
    let fal_line = match sim {
        Some(s) => format!("simulator at {} (JWKS {})", s.base_url(), s.jwks_url()),
        None => format!("{} (FAL_KEY set)", settings.fal.queue_url),
    };
    println!(
        r#"
fluxgate dev is running — Ctrl-C stops it (and its Postgres).

  API               {base}
  API key           {key}   (tenant "dev"; a new key each start)
  Postgres          {db_line}
  fal               {fal_line}
  demo subscriber   {demo_url}  (subscribed to every event)
  images            {images_line}

Open the console (the key stays in the page's fragment, never sent to the server):
  {base}/console#key={key}

Try it (the demo subscriber above prints each event, its signature checked):
  export FLUXGATE_KEY={key}
  curl -s {base}/v1/generations -H "Authorization: Bearer $FLUXGATE_KEY" \
    -H 'Content-Type: application/json' -d '{{"prompt": "a lighthouse at dawn", "image_size": "square_hd"}}'
  curl -s {base}/v1/generations -H "Authorization: Bearer $FLUXGATE_KEY"
  curl -s {base}/v1/events -H "Authorization: Bearer $FLUXGATE_KEY"
  curl -s {base}/openapi.json                                                   # the whole API
  curl -N {base}/v1/events/stream -H "Authorization: Bearer $FLUXGATE_KEY"      # live, Ctrl-C to leave
  curl -s {base}/v1/subscriptions -H "Authorization: Bearer $FLUXGATE_KEY" \
    -H 'Content-Type: application/json' -d '{{"target_url": "http://127.0.0.1:9999/hook", "event_types": ["generation.*"]}}'
  curl -s {base}/metrics | head
"#
    );
}
