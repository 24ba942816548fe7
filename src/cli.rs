//! The command line: `serve`, `dev`, `migrate`, the operator commands, and `fal-sim`.
use clap::{Args, Parser, Subcommand};
use secrecy::ExposeSecret;
use serde_json::json;

use crate::{
    config::{Mode, RawSettings, Settings},
    domain::{api_key::NewApiKey, ids, tenant::TenantName},
    metrics::Metrics,
    startup, storage, telemetry,
};

#[derive(Parser, Debug)]
#[command(
    name = "fluxgate",
    version,
    about = "A gateway to fal.ai's FLUX.2 models: queue + signed webhooks in, durable fan-out out."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Production: the HTTP API and every background worker.
    Serve(ServeArgs),
    /// Everything on embedded defaults: its own Postgres, the fal simulator, a dev tenant and key.
    Dev(crate::dev::DevArgs),
    /// Apply database migrations and exit.
    Migrate(DbArgs),
    /// Manage tenants.
    #[command(subcommand)]
    Tenants(TenantsCommand),
    /// Manage API keys.
    #[command(subcommand)]
    Keys(KeysCommand),
    /// Run the fal simulator as a standalone server.
    FalSim(crate::simulator::SimArgs),
    /// The reproducible benchmark: own Postgres, simulator, receivers; prints figures vs. this machine.
    Bench(crate::bench::BenchArgs),
}

#[derive(Args, Debug)]
pub struct ServeArgs {
    #[command(flatten)]
    pub settings: RawSettings,
}

#[derive(Args, Debug)]
pub struct DbArgs {
    /// Postgres connection string.
    #[arg(long, env = "DATABASE_URL", hide_env_values = true)]
    pub database_url: Option<String>,
    /// Print one JSON object on stdout.
    #[arg(long)]
    pub json: bool,
}

#[derive(Subcommand, Debug)]
pub enum TenantsCommand {
    /// Create a tenant.
    Create {
        name: String,
        #[command(flatten)]
        db: DbArgs,
    },
}

#[derive(Subcommand, Debug)]
pub enum KeysCommand {
    /// Create an API key for a tenant; the key is printed once and never again.
    Create {
        #[arg(long)]
        tenant: String,
        /// A note to recognise the key by.
        #[arg(long)]
        label: Option<String>,
        #[command(flatten)]
        db: DbArgs,
    },
    /// Revoke an API key by its id (`key_…`).
    Revoke {
        id: String,
        #[command(flatten)]
        db: DbArgs,
    },
    /// List a tenant's keys (never the secrets).
    List {
        #[arg(long)]
        tenant: String,
        #[command(flatten)]
        db: DbArgs,
    },
}

pub async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Serve(args) => serve(args).await,
        Command::Dev(args) => crate::dev::run(args).await,
        Command::Migrate(db) => {
            let pool = connect(&db).await?;
            storage::MIGRATOR.run(&pool).await?;
            output(
                db.json,
                json!({"migrated": true}),
                "migrations applied".into(),
            );
            Ok(())
        }
        Command::Tenants(TenantsCommand::Create { name, db }) => {
            let name = TenantName::parse(&name).map_err(anyhow::Error::msg)?;
            let pool = connect(&db).await?;
            let tenant = storage::tenants::create(&pool, &name)
                .await?
                .ok_or_else(|| {
                    anyhow::anyhow!("a tenant named {:?} already exists", name.as_str())
                })?;
            let id = ids::encode(ids::Kind::Tenant, tenant.id);
            output(
                db.json,
                json!({"id": id, "name": tenant.name}),
                format!("created tenant {} ({id})", tenant.name),
            );
            Ok(())
        }
        Command::Keys(KeysCommand::Create { tenant, label, db }) => {
            let pool = connect(&db).await?;
            let t = storage::tenants::find_by_name(&pool, &tenant)
                .await?
                .ok_or_else(|| anyhow::anyhow!("no tenant named {tenant:?} (create it with `fluxgate tenants create {tenant}`)"))?;
            let key = NewApiKey::generate();
            let row = storage::keys::create(&pool, t.id, &key, label.as_deref()).await?;
            let id = ids::encode(ids::Kind::Key, row.id);
            let secret = key.secret.expose_secret();
            output(
                db.json,
                json!({"id": id, "tenant": t.name, "key": secret}),
                format!("created key {id} for tenant {}\n\n  {secret}\n\nstore it now: it is shown only once", t.name),
            );
            Ok(())
        }
        Command::Keys(KeysCommand::Revoke { id, db }) => {
            let uuid = ids::decode(ids::Kind::Key, &id).ok_or_else(|| {
                anyhow::anyhow!("{id:?} is not a key id (they look like key_<32 hex>)")
            })?;
            let pool = connect(&db).await?;
            let row = storage::keys::revoke(&pool, uuid)
                .await?
                .ok_or_else(|| anyhow::anyhow!("no key {id}"))?;
            let at = row.revoked_at.map(|t| t.to_rfc3339()).unwrap_or_default();
            output(
                db.json,
                json!({"id": id, "revoked_at": at}),
                format!("revoked key {id} at {at}"),
            );
            Ok(())
        }
        Command::Keys(KeysCommand::List { tenant, db }) => {
            let pool = connect(&db).await?;
            let t = storage::tenants::find_by_name(&pool, &tenant)
                .await?
                .ok_or_else(|| anyhow::anyhow!("no tenant named {tenant:?}"))?;
            let keys = storage::keys::list_for_tenant(&pool, t.id).await?;
            let rows: Vec<_> = keys
                .iter()
                .map(|k| {
                    json!({
                        "id": ids::encode(ids::Kind::Key, k.id),
                        "prefix": format!("fg_{}_", k.lookup),
                        "label": k.label,
                        "created_at": k.created_at.to_rfc3339(),
                        "revoked_at": k.revoked_at.map(|t| t.to_rfc3339()),
                    })
                })
                .collect();
            let text = rows
                .iter()
                .map(|r| {
                    format!(
                        "{}  {}…  {}  {}",
                        r["id"].as_str().unwrap_or(""),
                        r["prefix"].as_str().unwrap_or(""),
                        r["created_at"].as_str().unwrap_or(""),
                        r["revoked_at"]
                            .as_str()
                            .map(|t| format!("revoked {t}"))
                            .unwrap_or_else(|| "active".into())
                    )
                })
                .collect::<Vec<_>>()
                .join("\n");
            output(
                db.json,
                json!({"tenant": t.name, "keys": rows}),
                if text.is_empty() {
                    "no keys".into()
                } else {
                    text
                },
            );
            Ok(())
        }
        Command::FalSim(args) => crate::simulator::run_standalone(args).await,
        Command::Bench(args) => crate::bench::run(args).await,
    }
}

async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let settings = Settings::from_raw(&args.settings, Mode::Serve)?;
    telemetry::init(settings.log_format);
    let url = settings
        .database_url
        .as_ref()
        .expect("required in serve mode")
        .expose_secret()
        .to_owned();
    let pool = storage::connect(&url, settings.db_pool_size)
        .await
        .map_err(db_error)?;
    storage::MIGRATOR.run(&pool).await?;
    let drain = settings.shutdown_drain;
    let app = startup::Application::build(settings, pool, Metrics::new())?;
    tracing::info!(port = app.port(), "fluxgate serving");
    startup::serve_until_signal(app, drain).await
}

async fn connect(db: &DbArgs) -> anyhow::Result<sqlx::PgPool> {
    let url = db
        .database_url
        .as_deref()
        .filter(|u| !u.trim().is_empty())
        .ok_or_else(|| {
            anyhow::anyhow!("DATABASE_URL is required but not set (or pass --database-url)")
        })?;
    storage::connect(url, 2).await.map_err(db_error)
}

/// Database errors worded for an operator, without echoing the URL (it may hold a password).
pub fn db_error(e: sqlx::Error) -> anyhow::Error {
    match e {
        sqlx::Error::Configuration(c) => {
            anyhow::anyhow!("DATABASE_URL is not a usable Postgres URL: {c}")
        }
        sqlx::Error::Io(io) => {
            anyhow::anyhow!("cannot reach the database given by DATABASE_URL: {io}")
        }
        sqlx::Error::PoolTimedOut => {
            anyhow::anyhow!("timed out connecting to the database given by DATABASE_URL")
        }
        sqlx::Error::Database(d) => {
            anyhow::anyhow!("the database refused the connection: {}", d.message())
        }
        other => anyhow::anyhow!("database error: {other}"),
    }
}

fn output(json_mode: bool, value: serde_json::Value, text: String) {
    if json_mode {
        println!("{value}");
    } else {
        println!("{text}");
    }
}
