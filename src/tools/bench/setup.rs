//! Running a whole bench: the durable throwaway Postgres (or DATABASE_URL), one fresh migrated
//! database per scenario, the machine's description, idle memory, the scenarios in order
//! (baseline first, so every figure gets its ratio), and the rendered report.
use std::time::Duration;

use anyhow::Context;
use serde_json::{json, Value};
use sqlx::{Connection, PgConnection};

use super::{
    baseline, deliver, env, ingest, pipeline,
    report::{self, Baseline, Basis, ScenarioResult},
    sse, BenchArgs, Scenario, Sizes,
};
use crate::{
    storage,
    tools::devdb::{DevDb, DevDbOptions},
};

pub struct Rendered {
    pub table: String,
    pub json: Value,
    pub all_ok: bool,
}

/// Where the scenario databases are created.
struct Server {
    admin_url: String,
    url_for: Box<dyn Fn(&str) -> String + Send + Sync>,
    _devdb: Option<DevDb>,
    description: String,
    /// The preloaded database every scenario's is copied from (`--preload`).
    template: Option<String>,
}

/// How a preloaded template is copied: by its files where the server can (Postgres 15 and later
/// otherwise copy a database block by block through the WAL). At 1 M preloaded rows each copy
/// wrote about 600 MB of WAL and set off checkpoints that ran on into the scenario measured
/// next, 45 s of flushing under the pipeline's second run; a file copy checkpoints before and
/// after and writes almost none.
async fn file_copy(admin: &mut PgConnection) -> &'static str {
    let version: i32 = sqlx::query_scalar("SELECT current_setting('server_version_num')::int")
        .fetch_one(admin)
        .await
        .unwrap_or(0);
    if version >= 150_000 {
        " STRATEGY FILE_COPY"
    } else {
        ""
    }
}

impl Server {
    async fn start(database_url: Option<&str>) -> anyhow::Result<Server> {
        if let Some(url) = database_url.filter(|u| !u.trim().is_empty()) {
            let base = url::Url::parse(url).context("DATABASE_URL is not a URL")?;
            return Ok(Server {
                admin_url: url.to_owned(),
                url_for: Box::new(move |db| {
                    let mut u = base.clone();
                    u.set_path(db);
                    u.to_string()
                }),
                _devdb: None,
                description: "DATABASE_URL".into(),
                template: None,
            });
        }
        // Durable like production: fsync and synchronous_commit on.
        let db = DevDb::start_async(DevDbOptions {
            data_dir: None,
            durable: true,
            install_if_missing: true,
            port: None,
        })
        .await?;
        let description = format!("throwaway, durable, data in {}", db.data_dir().display());
        let for_db = db.url_for("__DB__");
        Ok(Server {
            admin_url: db.url(),
            url_for: Box::new(move |name| for_db.replace("__DB__", name)),
            _devdb: Some(db),
            description,
            template: None,
        })
    }

    /// A new, migrated database for one scenario. The earlier scenarios' databases go first,
    /// and a checkpoint writes out what they left dirty: otherwise their writes are flushed
    /// during the next scenario's measurement and show up in its tail latencies. A preloaded
    /// template is copied by its files (see `file_copy`), which checkpoints again after it.
    async fn fresh(&self, name: &str) -> anyhow::Result<String> {
        self.create(name, self.template.as_deref()).await
    }

    /// A new, migrated database without the preloaded history, for the scenarios that measure
    /// the machine or the idle process rather than the tables (`baseline`, `idle`). At 10 M
    /// rows each copy of the template is 12 GB written and flushed, and the template with one
    /// copy already fills the page cache of this 23 GB machine: copies no figure needs are not
    /// made.
    async fn fresh_without_history(&self, name: &str) -> anyhow::Result<String> {
        self.create(name, None).await
    }

    async fn create(&self, name: &str, template: Option<&str>) -> anyhow::Result<String> {
        self.drop_all().await;
        let name = format!("fluxgate_bench_{name}_{}", std::process::id());
        let mut admin = PgConnection::connect(&self.admin_url).await?;
        // Needs superuser or pg_checkpoint; without them, the run goes on as before.
        let _ = sqlx::query("CHECKPOINT").execute(&mut admin).await;
        sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
            .execute(&mut admin)
            .await?;
        let template = match template {
            None => String::new(),
            Some(t) => format!(" TEMPLATE {t}{}", file_copy(&mut admin).await),
        };
        sqlx::query(&format!("CREATE DATABASE {name}{template}"))
            .execute(&mut admin)
            .await?;
        let url = (self.url_for)(&name);
        let mut conn = PgConnection::connect(&url).await?;
        storage::MIGRATOR.run(&mut conn).await?;
        conn.close().await?;
        admin.close().await?;
        Ok(url)
    }

    /// Makes the template every scenario's database is copied from: migrated, with `rows` of
    /// history (`preload.rs`).
    async fn preload(&mut self, rows: u64) -> anyhow::Result<Duration> {
        let started = std::time::Instant::now();
        let name = format!("fluxgate_tmpl_{}", std::process::id());
        let mut admin = PgConnection::connect(&self.admin_url).await?;
        sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
            .execute(&mut admin)
            .await?;
        sqlx::query(&format!("CREATE DATABASE {name}"))
            .execute(&mut admin)
            .await?;
        let url = (self.url_for)(&name);
        let mut conn = PgConnection::connect(&url).await?;
        storage::MIGRATOR.run(&mut conn).await?;
        conn.close().await?;
        super::preload::fill(&url, rows).await?;
        let _ = sqlx::query("CHECKPOINT").execute(&mut admin).await;
        admin.close().await?;
        self.template = Some(name);
        Ok(started.elapsed())
    }

    async fn drop_template(&self) {
        let (Some(name), Ok(mut admin)) =
            (&self.template, PgConnection::connect(&self.admin_url).await)
        else {
            return;
        };
        let _ = sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
            .execute(&mut admin)
            .await;
    }

    async fn drop_all(&self) {
        let Ok(mut admin) = PgConnection::connect(&self.admin_url).await else {
            return;
        };
        let names: Vec<String> = sqlx::query_scalar(
            "SELECT datname FROM pg_database WHERE datname LIKE 'fluxgate\\_bench\\_%' AND datname LIKE '%\\_' || $1",
        )
        .bind(std::process::id().to_string())
        .fetch_all(&mut admin)
        .await
        .unwrap_or_default();
        for name in names {
            let _ = sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                .execute(&mut admin)
                .await;
        }
    }
}

pub fn init_logs(info: bool) {
    use tracing_subscriber::{fmt, EnvFilter};
    if info {
        let filter = EnvFilter::new("info,sqlx=warn,actix_server=warn,reqwest=warn,hyper=warn");
        let _ = fmt()
            .json()
            .with_env_filter(filter)
            .with_writer(std::io::sink)
            .try_init();
    } else {
        let _ = fmt()
            .with_env_filter(EnvFilter::new(
                "warn,sqlx=error,sqlx_core=error,actix_server=error",
            ))
            .with_writer(std::io::stderr)
            .try_init();
    }
}

pub async fn run_all(args: &BenchArgs, sizes: &Sizes) -> anyhow::Result<Rendered> {
    let rss_start = env::rss_mib().unwrap_or(0.0);
    let mut server = Server::start(args.database_url.as_deref()).await?;
    let mut machine = describe(&server).await?;
    if sizes.preload > 0 {
        let took = server.preload(sizes.preload).await?;
        machine["preload"] = json!(format!(
            "{} events, deliveries and attempts; {} generations and fal callbacks (written in {:.0} s, untimed)",
            sizes.preload,
            (sizes.preload / 4).max(1),
            took.as_secs_f64()
        ));
    }
    let want = |s: Scenario| args.scenario == s || args.scenario == Scenario::All;
    let mut results: Vec<ScenarioResult> = Vec::new();
    if want(Scenario::All) || want(Scenario::Sse) {
        results.push(idle(&server, rss_start).await?);
    }
    // The baseline always runs: it is what every other figure is divided by.
    let (b, base): (ScenarioResult, Baseline) =
        baseline::run(&server.fresh_without_history("baseline").await?, sizes).await?;
    results.push(b);
    if want(Scenario::Ingest) {
        env::release_freed_memory();
        results.push(ingest::run(&server.fresh("ingest").await?, sizes).await?);
    }
    if want(Scenario::Deliver) {
        results.push(deliver::run(&server.fresh("deliver").await?, sizes).await?);
    }
    if want(Scenario::Pipeline) {
        let db = server.fresh("pipeline").await?;
        results.push(pipeline::run(&db, sizes, pipeline::Copies::Off).await?);
    }
    // `sse` and `ingest` report the whole process's RSS: each starts with what the scenarios
    // before it left in the allocator handed back.
    if want(Scenario::Sse) {
        env::release_freed_memory();
        let exe = std::env::current_exe().context("locating this executable")?;
        let db = server.fresh("sse").await?;
        results.push(sse::run(&db, sizes, &sse::ClientsIn::Child(exe)).await?);
    }
    if want(Scenario::Copies) {
        let db = server.fresh("copies").await?;
        results.push(pipeline::run(&db, sizes, pipeline::Copies::ToDirectory).await?);
    }
    server.drop_all().await;
    server.drop_template().await;
    report::apply_ratios(&mut results, &base);
    let mut rows: Vec<(String, String)> = machine
        .as_object()
        .map(|m| m.iter().map(|(k, v)| (k.clone(), plain(v))).collect())
        .unwrap_or_default();
    rows.push((
        "baseline".into(),
        format!(
            "{:.0} req/s closed loop; p50 {:.2} ms / p99 {:.2} ms at {}/s",
            base.requests_per_sec, base.latency.p50, base.latency.p99, sizes.rate
        ),
    ));
    // Other work on the machine shares the cores: say how busy it was, before and after.
    let load_end = loadavg();
    rows.push(("loadavg at end".into(), load_end.clone()));
    machine["loadavg_end"] = json!(load_end);
    let all_ok = results.iter().all(ScenarioResult::all_checks_pass);
    Ok(Rendered {
        table: report::render_table(&rows, &results),
        json: json!({"machine": machine, "baseline": base, "sizes": format!("{sizes:?}"),
                     "scenarios": results, "all_checks_passed": all_ok}),
        all_ok,
    })
}

/// Idle memory: this process with fluxgate and the simulator started and doing nothing.
async fn idle(server: &Server, rss_start: f64) -> anyhow::Result<ScenarioResult> {
    let mut r = ScenarioResult::new("idle");
    let sim = env::start_sim().await?;
    let app = env::Fluxgate::start(
        &server.fresh_without_history("idle").await?,
        &sim,
        crate::startup::Workers::ALL,
    )
    .await?;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let rss = env::rss_mib().unwrap_or(0.0);
    r.figure(
        "RSS, fluxgate idle (+ simulator, bench driver)",
        rss,
        "MiB",
        Basis::None,
        Some(("≤ 40 MiB", rss <= 40.0)),
    );
    r.note = format!("the bench process alone was {rss_start:.1} MiB before anything started");
    app.stop().await;
    sim.stop().await;
    Ok(r)
}

async fn describe(server: &Server) -> anyhow::Result<Value> {
    let mut conn = PgConnection::connect(&server.admin_url).await?;
    let (version, sb, sc, fsync, maxc, fpw, wsm): (
        String,
        String,
        String,
        String,
        String,
        String,
        String,
    ) = sqlx::query_as(
        "SELECT current_setting('server_version'), current_setting('shared_buffers'),
                    current_setting('synchronous_commit'), current_setting('fsync'),
                    current_setting('max_connections'), current_setting('full_page_writes'),
                    current_setting('wal_sync_method')",
    )
    .fetch_one(&mut conn)
    .await?;
    conn.close().await?;
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let pool = crate::config::Settings::for_dev().storage.db_pool_size;
    Ok(json!({
        "cores": cores,
        "postgres": format!("{version} ({})", server.description),
        "shared_buffers": sb, "synchronous_commit": sc, "fsync": fsync,
        "full_page_writes": fpw, "wal_sync_method": wsm, "max_connections": maxc,
        "fluxgate_pool": format!("{pool} handler connections + {} for workers", (pool / 2).max(4)),
        "load_generator": "raw HTTP/1.1 keep-alive on tokio, in-process (shares the cores)",
        "loadavg at start": loadavg(),
    }))
}

/// The 1, 5 and 15 minute load averages.
fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

fn plain(v: &Value) -> String {
    v.as_str().map_or_else(|| v.to_string(), str::to_owned)
}
