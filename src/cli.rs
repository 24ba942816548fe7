//! The command line: `serve`, `dev`, `migrate`, the operator commands, and `fal-sim`.
use crate::domain::ids::ApiKeyId;
use clap::{Args, Parser, Subcommand};
use secrecy::ExposeSecret;
use serde_json::json;

use crate::{
    config::{Mode, RawSettings, Settings},
    domain::{api_key::NewApiKey, scope::Scopes, tenant::TenantName},
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
    Dev(crate::tools::dev::DevArgs),
    /// Apply database migrations and exit.
    Migrate(DbArgs),
    /// Manage tenants.
    #[command(subcommand)]
    Tenants(TenantsCommand),
    /// Manage API keys.
    #[command(subcommand)]
    Keys(KeysCommand),
    /// Secrets at rest.
    #[command(subcommand)]
    Secrets(SecretsCommand),
    /// Run the fal simulator as a standalone server.
    FalSim(crate::tools::simulator::SimArgs),
    /// The reproducible benchmark: own Postgres, simulator, receivers; prints figures vs. this machine.
    Bench(crate::tools::bench::BenchArgs),
}

#[derive(Args, Debug)]
pub struct ServeArgs {
    #[command(flatten)]
    pub settings: RawSettings,
}

#[derive(Args)]
pub struct DbArgs {
    /// Postgres connection string.
    #[arg(long, env = "DATABASE_URL", hide_env_values = true)]
    pub database_url: Option<String>,
    /// Print one JSON object on stdout.
    #[arg(long)]
    pub json: bool,
}

/// Without the database URL, which may hold a password.
impl std::fmt::Debug for DbArgs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DbArgs")
            .field("json", &self.json)
            .finish_non_exhaustive()
    }
}

#[derive(Subcommand, Debug)]
pub enum TenantsCommand {
    /// Create a tenant.
    Create {
        name: String,
        #[command(flatten)]
        db: DbArgs,
    },
    /// Set a tenant's budgets and rate limits (or, with --end-user, one end user's).
    /// Each value is a number, or `none` to remove the limit.
    SetLimits {
        name: String,
        /// Daily spend cap in USD (e.g. 25 or 12.50).
        #[arg(long, allow_hyphen_values = true)]
        daily_budget_usd: Option<String>,
        /// Generation requests per minute.
        #[arg(long, allow_hyphen_values = true)]
        requests_per_minute: Option<String>,
        /// Default daily cap for each end user, in USD.
        #[arg(long, allow_hyphen_values = true)]
        end_user_daily_budget_usd: Option<String>,
        /// Default requests per minute for each end user.
        #[arg(long, allow_hyphen_values = true)]
        end_user_requests_per_minute: Option<String>,
        /// Apply --daily-budget-usd / --requests-per-minute to this end user only.
        #[arg(long)]
        end_user: Option<String>,
        #[command(flatten)]
        db: DbArgs,
    },
    /// Set what a tenant lets browsers do: the web origins that may call the API (CORS), and
    /// whether every request must run fal's safety checker.
    Update {
        name: String,
        /// Comma-separated origins (`https://app.example.com,http://localhost:5173`); an empty
        /// string allows none.
        #[arg(long)]
        allowed_origins: Option<String>,
        /// Refuse any request of this tenant that turns the safety checker off
        /// (`--require-safety-checker=false` lifts it).
        #[arg(long, num_args = 0..=1, default_missing_value = "true", require_equals = true)]
        require_safety_checker: Option<bool>,
        #[command(flatten)]
        db: DbArgs,
    },
    /// Show a tenant's limits and today's spend.
    Show {
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
        /// What the key may do, comma-separated: generations:write, generations:read,
        /// events:read, subscriptions:manage, admin. All of them when left out.
        #[arg(long, value_parser = parse_scopes)]
        scopes: Option<Scopes>,
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

#[derive(Subcommand, Debug)]
pub enum SecretsCommand {
    /// Seal every stored signing secret with the first key of FLUXGATE_ENCRYPTION_KEY: after
    /// setting a key for the first time, or after putting a new key first to rotate.
    Reencrypt(ReencryptArgs),
}

#[derive(Args)]
pub struct ReencryptArgs {
    /// Base64 AES-256 keys, comma-separated: the first seals, all open.
    #[arg(long, env = "FLUXGATE_ENCRYPTION_KEY", hide_env_values = true)]
    pub encryption_key: Option<String>,
    #[command(flatten)]
    pub db: DbArgs,
}

fn parse_scopes(list: &str) -> Result<Scopes, String> {
    Scopes::parse_list(list)
}

/// Without the keys.
impl std::fmt::Debug for ReencryptArgs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReencryptArgs").finish_non_exhaustive()
    }
}

pub async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Serve(args) => serve(args).await,
        Command::Dev(args) => crate::tools::dev::run(args).await,
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
            let id = tenant.id.to_string();
            output(
                db.json,
                json!({"id": id, "name": tenant.name}),
                format!("created tenant {} ({id})", tenant.name),
            );
            Ok(())
        }
        Command::Tenants(TenantsCommand::SetLimits {
            name,
            daily_budget_usd,
            requests_per_minute,
            end_user_daily_budget_usd,
            end_user_requests_per_minute,
            end_user,
            db,
        }) => {
            use crate::storage::tenants::Change;
            let budget = parse_change(
                daily_budget_usd.as_deref(),
                "--daily-budget-usd",
                crate::domain::money::parse_usd,
            )?;
            let rpm = parse_change(
                requests_per_minute.as_deref(),
                "--requests-per-minute",
                parse_rpm,
            )?;
            let eu_budget = parse_change(
                end_user_daily_budget_usd.as_deref(),
                "--end-user-daily-budget-usd",
                crate::domain::money::parse_usd,
            )?;
            let eu_rpm = parse_change(
                end_user_requests_per_minute.as_deref(),
                "--end-user-requests-per-minute",
                parse_rpm,
            )?;
            if [
                budget == Change::Keep,
                rpm == Change::Keep,
                eu_budget == Change::Keep,
                eu_rpm == Change::Keep,
            ]
            .iter()
            .all(|k| *k)
            {
                anyhow::bail!("nothing to set: give at least one of --daily-budget-usd, --requests-per-minute, --end-user-daily-budget-usd, --end-user-requests-per-minute");
            }
            let pool = connect(&db).await?;
            let t = find_tenant(&pool, &name).await?;
            match end_user {
                Some(user) => {
                    let user = crate::domain::generation::parse_end_user(&user)
                        .map_err(|e| anyhow::anyhow!("--end-user {e}"))?;
                    if eu_budget != Change::Keep || eu_rpm != Change::Keep {
                        anyhow::bail!("with --end-user, use --daily-budget-usd and --requests-per-minute (the end-user defaults are the tenant's)");
                    }
                    let l = storage::tenants::set_end_user_limits(&pool, t.id, &user, budget, rpm)
                        .await?;
                    output(
                        db.json,
                        json!({"tenant": t.name, "end_user": l}),
                        format!(
                            "limits of end user {:?} of {}: {}",
                            user,
                            t.name,
                            describe_limits(l.daily_budget_micros, l.requests_per_minute)
                        ),
                    );
                }
                None => {
                    let l =
                        storage::tenants::set_limits(&pool, t.id, budget, rpm, eu_budget, eu_rpm)
                            .await?;
                    output(
                        db.json,
                        json!({"tenant": t.name, "limits": l}),
                        format!(
                            "limits of {}: {}; each end user: {}",
                            t.name,
                            describe_limits(l.daily_budget_micros, l.requests_per_minute),
                            describe_limits(
                                l.end_user_daily_budget_micros,
                                l.end_user_requests_per_minute
                            )
                        ),
                    );
                }
            }
            Ok(())
        }
        Command::Tenants(TenantsCommand::Update {
            name,
            allowed_origins,
            require_safety_checker,
            db,
        }) => {
            let origins = allowed_origins
                .as_deref()
                .map(|list| {
                    list.split(',')
                        .map(str::trim)
                        .filter(|o| !o.is_empty())
                        .map(crate::domain::origin::parse)
                        .collect::<Result<Vec<_>, _>>()
                })
                .transpose()
                .map_err(|e| anyhow::anyhow!("--allowed-origins: {e}"))?;
            if origins.is_none() && require_safety_checker.is_none() {
                anyhow::bail!(
                    "nothing to set: give --allowed-origins and/or --require-safety-checker"
                );
            }
            let pool = connect(&db).await?;
            let t = find_tenant(&pool, &name).await?;
            let p = storage::tenants::update_browser_policy(
                &pool,
                t.id,
                origins.as_deref(),
                require_safety_checker,
            )
            .await?;
            output(
                db.json,
                json!({"tenant": t.name, "browser": p}),
                format!("{}: {}", t.name, describe_browser_policy(&p)),
            );
            Ok(())
        }
        Command::Tenants(TenantsCommand::Show { name, db }) => {
            let pool = connect(&db).await?;
            let t = find_tenant(&pool, &name).await?;
            let limits = storage::tenants::limits(&pool, t.id).await?;
            let end_users = storage::tenants::end_user_limits(&pool, t.id).await?;
            let (reserved, spent) =
                crate::governance::budgets::usage_today(&pool, t.id, "").await?;
            let keys = storage::keys::list_for_tenant(&pool, t.id).await?;
            let browser = storage::tenants::browser_policy(&pool, t.id).await?;
            let active = keys.iter().filter(|k| k.revoked_at.is_none()).count();
            let id = t.id.to_string();
            let mut text = format!(
                "{} ({id})\n  limits:          {}\n  each end user:   {}\n  today (UTC):     ${} spent, ${} reserved\n  API keys:        {active} active, {} revoked",
                t.name,
                describe_limits(limits.daily_budget_micros, limits.requests_per_minute),
                describe_limits(limits.end_user_daily_budget_micros, limits.end_user_requests_per_minute),
                crate::domain::money::format_usd(spent),
                crate::domain::money::format_usd(reserved),
                keys.len() - active,
            );
            text.push_str(&format!(
                "\n  browsers:        {}",
                describe_browser_policy(&browser)
            ));
            for e in &end_users {
                text.push_str(&format!(
                    "\n  end user {:?}: {}",
                    e.end_user,
                    describe_limits(e.daily_budget_micros, e.requests_per_minute)
                ));
            }
            output(
                db.json,
                json!({"id": id, "name": t.name, "limits": limits, "end_users": end_users, "today": {"spent_micros": spent, "reserved_micros": reserved}, "keys": {"active": active, "revoked": keys.len() - active}, "browser": browser}),
                text,
            );
            Ok(())
        }
        Command::Keys(KeysCommand::Create {
            tenant,
            label,
            scopes,
            db,
        }) => {
            let pool = connect(&db).await?;
            let t = storage::tenants::find_by_name(&pool, &tenant)
                .await?
                .ok_or_else(|| anyhow::anyhow!("no tenant named {tenant:?} (create it with `fluxgate tenants create {tenant}`)"))?;
            let key = NewApiKey::generate();
            let scopes = scopes.unwrap_or_else(Scopes::all);
            let row = storage::keys::create(&pool, t.id, &key, label.as_deref(), scopes).await?;
            let id = row.id.to_string();
            let secret = key.secret.expose_secret();
            output(
                db.json,
                json!({"id": id, "tenant": t.name, "key": secret, "scopes": scopes.names()}),
                format!(
                    "created key {id} for tenant {} ({})\n\n  {secret}\n\nstore it now: it is shown only once",
                    t.name,
                    scopes.names().join(", ")
                ),
            );
            Ok(())
        }
        Command::Keys(KeysCommand::Revoke { id, db }) => {
            let key: ApiKeyId = id.parse().map_err(|_| {
                anyhow::anyhow!("{id:?} is not a key id (they look like key_<32 hex>)")
            })?;
            let pool = connect(&db).await?;
            let row = storage::keys::revoke(&pool, key)
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
                        "id": k.id.to_string(),
                        "prefix": format!("fg_{}_", k.lookup),
                        "label": k.label,
                        "created_at": k.created_at.to_rfc3339(),
                        "revoked_at": k.revoked_at.map(|t| t.to_rfc3339()),
                        "scopes": k.scopes,
                    })
                })
                .collect();
            let text = rows
                .iter()
                .map(|r| {
                    format!(
                        "{}  {}…  {}  {}  {}",
                        r["id"].as_str().unwrap_or(""),
                        r["prefix"].as_str().unwrap_or(""),
                        r["created_at"].as_str().unwrap_or(""),
                        r["revoked_at"]
                            .as_str()
                            .map(|t| format!("revoked {t}"))
                            .unwrap_or_else(|| "active".into()),
                        r["scopes"]
                            .as_array()
                            .map(|s| s
                                .iter()
                                .filter_map(|v| v.as_str())
                                .collect::<Vec<_>>()
                                .join(","))
                            .unwrap_or_default()
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
        Command::Secrets(SecretsCommand::Reencrypt(ReencryptArgs { encryption_key, db })) => {
            let keyring = match encryption_key.as_deref().map(str::trim) {
                None | Some("") => crate::secrets::Keyring::default(),
                Some(v) => crate::secrets::Keyring::parse(v).map_err(|why| {
                    anyhow::anyhow!("FLUXGATE_ENCRYPTION_KEY {why} (value not shown)")
                })?,
            };
            let pool = connect(&db).await?;
            let report = crate::secrets::reencrypt::run(&pool, &keyring).await?;
            let text = format!(
                "sealed with key {}: {} subscriptions, {} tenants, {} server secrets resealed{}",
                keyring.primary_id().unwrap_or("-"),
                report.subscriptions_resealed,
                report.tenants_resealed,
                report.server_secrets_resealed,
                if report.skipped_changed > 0 {
                    format!(
                        "; {} changed while this ran: run it again",
                        report.skipped_changed
                    )
                } else {
                    String::new()
                }
            );
            output(db.json, serde_json::to_value(&report)?, text);
            Ok(())
        }
        Command::FalSim(args) => crate::tools::simulator::run_standalone(args).await,
        Command::Bench(args) => crate::tools::bench::run(args).await,
    }
}

async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let settings = Settings::from_raw(&args.settings, Mode::Serve)?;
    telemetry::init(settings.server.log_format);
    let url = settings
        .storage
        .database_url
        .as_ref()
        .expect("required in serve mode")
        .expose_secret()
        .to_owned();
    let pool = storage::connect(&url, settings.storage.db_pool_size)
        .await
        .map_err(storage::connect_error)?;
    storage::MIGRATOR.run(&pool).await?;
    warn_about_exposure(&settings);
    let drain = settings.server.shutdown_drain;
    let app = startup::Application::build(settings, pool, Metrics::new()).await?;
    tracing::info!(port = app.port(), "fluxgate serving");
    startup::serve_until_signal(app, drain).await
}

/// Settings that are fine for a laptop and dangerous on the internet, said loudly once at start.
fn warn_about_exposure(settings: &Settings) {
    if !settings.storage.keyring.is_enabled() {
        tracing::warn!("FLUXGATE_ENCRYPTION_KEY is not set: subscription and tenant signing secrets are stored in plaintext, so a database dump holds every receiver's key. Set it (openssl rand -base64 32), then run `fluxgate secrets reencrypt`");
    }
    if settings.delivery.allow_http_targets {
        tracing::warn!("FLUXGATE_ALLOW_HTTP_TARGETS=true: webhooks and image downloads may use plain http, readable and alterable on the way");
    }
    let loopback = |c: &crate::config::Cidr| match c.addr {
        std::net::IpAddr::V4(a) => a.is_loopback() && c.prefix >= 8,
        std::net::IpAddr::V6(a) => a.is_loopback() && c.prefix == 128,
    };
    let wide: Vec<String> = settings
        .delivery
        .allowed_target_cidrs
        .iter()
        .filter(|c| !loopback(c))
        .map(|c| format!("{}/{}", c.addr, c.prefix))
        .collect();
    if !wide.is_empty() {
        tracing::warn!(cidrs = %wide.join(","), "FLUXGATE_ALLOWED_TARGET_CIDRS exempts more than loopback from the SSRF guard: anyone who can create a subscription can make fluxgate call those networks");
    }
}

async fn connect(db: &DbArgs) -> anyhow::Result<sqlx::PgPool> {
    let url = db
        .database_url
        .as_deref()
        .filter(|u| !u.trim().is_empty())
        .ok_or_else(|| {
            anyhow::anyhow!("DATABASE_URL is required but not set (or pass --database-url)")
        })?;
    storage::connect(url, 2)
        .await
        .map_err(storage::connect_error)
}

async fn find_tenant(pool: &sqlx::PgPool, name: &str) -> anyhow::Result<storage::tenants::Tenant> {
    storage::tenants::find_by_name(pool, name)
        .await?
        .ok_or_else(|| {
            anyhow::anyhow!(
                "no tenant named {name:?} (create it with `fluxgate tenants create {name}`)"
            )
        })
}

fn parse_rpm(v: &str) -> Result<i32, String> {
    match v.trim().parse::<i64>() {
        Ok(n) if (1..=1_000_000).contains(&n) => Ok(n as i32),
        Ok(n) if n <= 0 => Err(format!(
            "{n} is not a positive number of requests per minute (use `none` to remove the limit)"
        )),
        Ok(n) => Err(format!(
            "{n} requests per minute is more than the maximum of 1000000"
        )),
        Err(_) => Err(format!(
            "{v:?} is not a whole number of requests per minute"
        )),
    }
}

fn parse_change<T>(
    v: Option<&str>,
    flag: &str,
    parse: impl Fn(&str) -> Result<T, String>,
) -> anyhow::Result<crate::storage::tenants::Change<T>> {
    use crate::storage::tenants::Change;
    match v.map(str::trim) {
        None => Ok(Change::Keep),
        Some("none") => Ok(Change::Clear),
        Some(v) => parse(v)
            .map(Change::Set)
            .map_err(|e| anyhow::anyhow!("{flag}: {e}")),
    }
}

fn describe_browser_policy(p: &storage::tenants::BrowserPolicy) -> String {
    let origins = if p.allowed_origins.is_empty() {
        "no origin may call the API from a browser".to_owned()
    } else {
        format!("origins {}", p.allowed_origins.join(", "))
    };
    let checker = if p.require_safety_checker {
        "safety checker required"
    } else {
        "safety checker as each request asks (always on for browser tokens)"
    };
    format!("{origins}; {checker}")
}

fn describe_limits(budget: Option<i64>, rpm: Option<i32>) -> String {
    let b = budget.map_or("no daily budget".to_owned(), |m| {
        format!("${}/day", crate::domain::money::format_usd(m))
    });
    let r = rpm.map_or("no rate limit".to_owned(), |n| format!("{n} requests/min"));
    format!("{b}, {r}")
}

/// Database errors worded for an operator, without echoing the URL (it may hold a password).
fn output(json_mode: bool, value: serde_json::Value, text: String) {
    if json_mode {
        println!("{value}");
    } else {
        println!("{text}");
    }
}
