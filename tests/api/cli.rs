//! The binary as an operator meets it: configuration errors, operator commands, exit codes.
use std::process::{Command, Output};

use crate::helpers::{fresh_database, spawn_app};

fn fluxgate(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_fluxgate"));
    cmd.env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .args(args);
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().expect("run fluxgate")
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn serve_without_required_settings_exits_naming_each_and_never_panics() {
    let out = fluxgate(&["serve"], &[]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    for name in ["DATABASE_URL", "FAL_KEY", "FLUXGATE_PUBLIC_URL"] {
        assert!(err.contains(name), "{err}");
    }
    assert!(
        !err.contains("panicked") && !err.contains("RUST_BACKTRACE"),
        "{err}"
    );

    let out = fluxgate(
        &["serve"],
        &[
            ("DATABASE_URL", "postgres://u:pw@127.0.0.1:1/x"),
            ("FLUXGATE_PUBLIC_URL", "https://gw.example.com"),
        ],
    );
    let err = stderr(&out);
    assert!(
        err.contains("FAL_KEY is required") && !err.contains("DATABASE_URL"),
        "{err}"
    );
}

#[test]
fn malformed_environment_values_are_named_and_secrets_not_echoed() {
    let out = fluxgate(
        &["serve"],
        &[
            ("DATABASE_URL", "mysql://root:hunter2@db/x"),
            ("FAL_KEY", "sekrit-without-colon"),
            ("FLUXGATE_PUBLIC_URL", "not a url"),
            ("PORT", "99999"),
            ("FLUXGATE_ALLOW_HTTP_TARGETS", "maybe"),
        ],
    );
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    for name in [
        "DATABASE_URL",
        "FAL_KEY",
        "FLUXGATE_PUBLIC_URL",
        "PORT",
        "FLUXGATE_ALLOW_HTTP_TARGETS",
    ] {
        assert!(err.contains(name), "{name} in {err}");
    }
    assert!(!err.contains("hunter2") && !err.contains("sekrit"), "{err}");
}

#[test]
fn an_unreachable_database_is_a_clear_error() {
    let out = fluxgate(
        &["migrate"],
        &[("DATABASE_URL", "postgres://u:hunter2@127.0.0.1:1/x")],
    );
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(
        err.contains("cannot reach the database given by DATABASE_URL"),
        "{err}"
    );
    assert!(!err.contains("hunter2"), "{err}");
    let out = fluxgate(&["migrate"], &[]);
    assert!(stderr(&out).contains("DATABASE_URL is required"));
}

#[tokio::test]
async fn tenants_and_keys_are_managed_from_the_cli_and_keys_are_stored_only_as_hashes() {
    let (pool, url) = fresh_database().await;
    let env = [("DATABASE_URL", url.as_str())];
    let out = fluxgate(&["tenants", "create", "acme", "--json"], &env);
    assert!(out.status.success(), "{}", stderr(&out));
    let tenant: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(tenant["name"], "acme");

    let again = fluxgate(&["tenants", "create", "acme"], &env);
    assert_eq!(again.status.code(), Some(1));
    assert!(stderr(&again).contains("already exists"));
    let bad = fluxgate(&["tenants", "create", "Not A Slug"], &env);
    assert!(stderr(&bad).contains("invalid tenant name"));

    let out = fluxgate(&["keys", "create", "--tenant", "acme", "--json"], &env);
    assert!(out.status.success(), "{}", stderr(&out));
    let created: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let key = created["key"].as_str().unwrap().to_owned();
    let id = created["id"].as_str().unwrap().to_owned();
    assert!(key.starts_with("fg_") && id.starts_with("key_"));

    // Only the hash is stored: the secret text appears nowhere in the table.
    let dump: String = sqlx::query_scalar("SELECT string_agg(t::text, ' ') FROM api_keys t")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert!(!dump.contains(&key[16..]), "{dump}");

    let listed = fluxgate(&["keys", "list", "--tenant", "acme", "--json"], &env);
    let listed: serde_json::Value = serde_json::from_slice(&listed.stdout).unwrap();
    assert_eq!(listed["keys"][0]["id"], id.as_str());
    assert!(!listed.to_string().contains(&key[16..]));

    let out = fluxgate(&["keys", "revoke", &id, "--json"], &env);
    assert!(out.status.success(), "{}", stderr(&out));
    let revoked: bool = sqlx::query_scalar("SELECT revoked_at IS NOT NULL FROM api_keys")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert!(revoked);

    let out = fluxgate(&["keys", "revoke", "gen_0123"], &env);
    assert!(stderr(&out).contains("is not a key id"));
    let out = fluxgate(&["keys", "create", "--tenant", "nobody"], &env);
    assert!(stderr(&out).contains("no tenant named"));
}

#[tokio::test]
async fn serve_on_a_port_in_use_says_so() {
    let app = spawn_app().await;
    let busy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = busy.local_addr().unwrap().port().to_string();
    let out = fluxgate(
        &["serve"],
        &[
            ("DATABASE_URL", app.db_url.as_str()),
            ("FAL_KEY", "id:secret"),
            ("FLUXGATE_PUBLIC_URL", "https://gw.example.com"),
            ("FLUXGATE_BIND", "127.0.0.1"),
            ("PORT", port.as_str()),
        ],
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("already in use"), "{}", stderr(&out));
}

#[tokio::test]
async fn secrets_reencrypt_needs_a_key_and_reports_what_it_resealed() {
    let (_pool, url) = fresh_database().await;
    let out = fluxgate(&["secrets", "reencrypt"], &[("DATABASE_URL", &url)]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("FLUXGATE_ENCRYPTION_KEY is not set"),
        "{}",
        stderr(&out)
    );
    let out = fluxgate(
        &["secrets", "reencrypt"],
        &[
            ("DATABASE_URL", &url),
            ("FLUXGATE_ENCRYPTION_KEY", "c2hvcnQ="),
        ],
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(!stderr(&out).contains("c2hvcnQ"), "{}", stderr(&out));
    let key = "AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE=";
    let out = fluxgate(
        &["secrets", "reencrypt", "--json"],
        &[("DATABASE_URL", &url), ("FLUXGATE_ENCRYPTION_KEY", key)],
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["subscriptions_resealed"], 0, "{report}");
}

#[test]
fn serve_refuses_an_http_fal_unless_told_it_is_a_local_simulator() {
    let env = [
        ("DATABASE_URL", "postgres://u:pw@127.0.0.1:1/x"),
        ("FAL_KEY", "id:secret"),
        ("FLUXGATE_PUBLIC_URL", "https://gw.example.com"),
        ("FLUXGATE_FAL_QUEUE_URL", "http://queue.example.com"),
        ("FLUXGATE_FAL_JWKS_URL", "http://keys.example.com/jwks.json"),
    ];
    let out = fluxgate(&["serve"], &env);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        err.contains("FLUXGATE_FAL_QUEUE_URL must be https")
            && err.contains("FLUXGATE_FAL_JWKS_URL must be https"),
        "{err}"
    );
    let mut allowed = env.to_vec();
    allowed.push(("FLUXGATE_ALLOW_INSECURE_FAL", "true"));
    let err = stderr(&fluxgate(&["serve"], &allowed));
    assert!(!err.contains("must be https"), "{err}");
}
