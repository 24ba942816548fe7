//! Building and running the application: the HTTP server on a bound listener (tests bind port
//! 0 and read the real port back) plus, later, the background workers; and a clean stop.
use std::{net::TcpListener, sync::Arc, time::Duration};

use actix_web::{dev::ServerHandle, middleware::from_fn, web, App, HttpServer};
use anyhow::Context;
use sqlx::PgPool;

use crate::{api, config::Settings, metrics::Metrics, telemetry};

/// Shared by every handler.
pub struct AppState {
    pub pool: PgPool,
    pub settings: Arc<Settings>,
}

pub struct Application {
    port: u16,
    server: actix_web::dev::Server,
    handle: ServerHandle,
}

impl Application {
    /// Binds the listener and builds the server; nothing runs until `run_until_stopped`.
    pub fn build(settings: Settings, pool: PgPool, metrics: Metrics) -> anyhow::Result<Application> {
        let addr = std::net::SocketAddr::new(settings.bind, settings.port);
        let listener = TcpListener::bind(addr).map_err(|e| match e.kind() {
            std::io::ErrorKind::AddrInUse => anyhow::anyhow!(
                "cannot listen on {addr}: the port is already in use (set PORT or --port to another one)"
            ),
            _ => anyhow::anyhow!("cannot listen on {addr}: {e}"),
        })?;
        let port = listener.local_addr()?.port();
        let drain = settings.shutdown_drain;
        let state = web::Data::new(AppState {
            pool,
            settings: Arc::new(settings),
        });
        let metrics = web::Data::new(metrics);
        let server = HttpServer::new(move || {
            App::new()
                .app_data(state.clone())
                .app_data(metrics.clone())
                .wrap(from_fn(telemetry::request_context))
                .configure(api::configure)
                .default_service(web::to(api::not_found))
        })
        .disable_signals()
        .shutdown_timeout(drain.as_secs().max(1))
        .listen(listener)
        .context("starting the HTTP server")?
        .run();
        let handle = server.handle();
        Ok(Application { port, server, handle })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// A handle that stops the server gracefully (in-flight requests finish).
    pub fn handle(&self) -> ServerHandle {
        self.handle.clone()
    }

    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        self.server.await
    }
}

/// Resolves when SIGTERM or SIGINT arrives.
pub async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("installing a SIGTERM handler");
        tokio::select! {
            _ = ctrl_c => {},
            _ = term.recv() => {},
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}

/// Runs the app until a signal, then stops it gracefully within the drain time.
pub async fn serve_until_signal(app: Application, drain: Duration) -> anyhow::Result<()> {
    let handle = app.handle();
    let server = tokio::spawn(app.run_until_stopped());
    shutdown_signal().await;
    tracing::info!(drain_secs = drain.as_secs(), "shutting down: no new connections, draining in-flight work");
    handle.stop(true).await;
    server.await.context("server task")?.context("server")?;
    Ok(())
}
