//! Building and running the application: the HTTP server on a bound listener (tests bind port
//! 0 and read the real port back), the background workers (submission, reconciler) and the one
//! LISTEN connection that wakes them; and a graceful stop that drains and releases leases.
use std::{net::TcpListener, sync::Arc, time::Duration};

use actix_web::{dev::ServerHandle, middleware::from_fn, web, App, HttpServer};
use anyhow::Context;

use crate::assets::{Assets, Fetcher, Links, Store};
use secrecy::ExposeSecret;
use sqlx::{postgres::PgListener, PgPool};
use tokio_util::{sync::CancellationToken, task::TaskTracker};

use crate::{
    api::{self, state::AppState},
    config::Settings,
    delivery::{
        client::{SafeClient, Timeouts},
        handoff::{self, Inbox},
        worker::Deliverer,
    },
    domain::browser_token::TokenSigner,
    fal::verify::{FalVerifier, SystemClock},
    live::{self, Hub},
    metrics::Metrics,
    ops,
    pipeline::{
        self,
        callback_urls::CallbackUrls,
        ingest::{self, Ingest},
        Pipeline,
    },
    storage, telemetry,
};

/// `application_name` of the workers' pool sessions (ingest writers, delivery loop, submitter,
/// live hub, reconciler).
pub const WORKERS_APPLICATION_NAME: &str = "fluxgate-workers";

/// Which background workers run in this process (tests drive them step by step instead).
#[derive(Debug, Clone, Copy)]
pub struct Workers {
    pub submitter: bool,
    /// The reconciler (lost callbacks, held cancels) and the batch closer.
    pub reconciler: bool,
    pub deliverer: bool,
    /// The copier stage (`pipeline::copier`; idle without a store).
    pub copier: bool,
    /// The alert monitor and the Postgres-derived `/metrics` gauges (`ops`).
    pub monitor: bool,
}

impl Workers {
    pub const ALL: Workers = Workers {
        submitter: true,
        reconciler: true,
        deliverer: true,
        copier: true,
        monitor: true,
    };
    pub const NONE: Workers = Workers {
        submitter: false,
        reconciler: false,
        deliverer: false,
        copier: false,
        monitor: false,
    };
}

pub struct Application {
    port: u16,
    server: actix_web::dev::Server,
    handle: ServerHandle,
    state: web::Data<AppState>,
    deliverer: Deliverer,
    /// Deliveries leased by this instance's callbacks, for its delivery loop.
    handoff: Inbox,
    ingest: ingest::Writers,
    workers: Workers,
}

impl Application {
    /// Binds the listener and builds the server; nothing runs until `run_until_stopped`.
    pub async fn build(
        settings: Settings,
        pool: PgPool,
        metrics: Metrics,
    ) -> anyhow::Result<Application> {
        Self::build_with(settings, pool, metrics, Workers::ALL).await
    }

    pub async fn build_with(
        settings: Settings,
        pool: PgPool,
        metrics: Metrics,
        workers: Workers,
    ) -> anyhow::Result<Application> {
        let addr = std::net::SocketAddr::new(settings.server.bind, settings.server.port);
        let listener = TcpListener::bind(addr).map_err(|e| match e.kind() {
            std::io::ErrorKind::AddrInUse => anyhow::anyhow!(
                "cannot listen on {addr}: the port is already in use (set PORT or --port to another one)"
            ),
            _ => anyhow::anyhow!("cannot listen on {addr}: {e}"),
        })?;
        let port = listener.local_addr()?.port();
        let drain = settings.server.shutdown_drain;
        let settings = Arc::new(settings);
        // fal's own endpoints (queue, JWKS): fixed by configuration, not by callers.
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(Duration::from_secs(10))
            .user_agent(concat!("fluxgate/", env!("CARGO_PKG_VERSION")))
            .build()
            .context("building the HTTP client")?;
        let verifier = FalVerifier::new(
            settings.fal.jwks_url.clone(),
            http.clone(),
            Arc::new(SystemClock),
        );
        // Background work gets its own pool. A connection is bound to the runtime that opened
        // it, and actix runs handlers on per-thread runtimes that end when the server stops:
        // connections opened by handlers must never serve the workers that drain after it.
        // Named, so operators can tell the workers' sessions from the handlers' in
        // `pg_stat_activity` (unless the URL names them already).
        let worker_options = (*pool.connect_options()).clone();
        let worker_options = match worker_options.get_application_name() {
            Some(_) => worker_options,
            None => worker_options.application_name(WORKERS_APPLICATION_NAME),
        };
        let worker_pool = storage::pool_options((settings.storage.db_pool_size / 2).max(4))
            .connect_lazy_with(worker_options);
        let live = Hub::new(
            worker_pool.clone(),
            live::STREAM_BUFFER,
            settings.server.max_streams_per_tenant,
            metrics.registry(),
        );
        let public_base = Pipeline::public_base(&settings, port);
        let callbacks = CallbackUrls::load(
            &pool,
            &settings.storage.keyring,
            &public_base,
            settings.fal.legacy_callback_grace,
        )
        .await
        .context("loading the callback-token key")?;
        let tokens = TokenSigner::new(callbacks.derive("browser tokens"));
        let policy = settings.target_policy();
        let assets = match settings.storage.images.as_deref() {
            None | Some("off") => None,
            Some(spec) => {
                let images = SafeClient::new(
                    policy.clone(),
                    Timeouts {
                        attempt: crate::assets::COPY_TIMEOUT,
                        connect: Duration::from_secs(5),
                    },
                )
                .context("building the image client")?;
                let fetcher = Fetcher::new(
                    images,
                    settings.storage.image_hosts.clone(),
                    settings.storage.image_download_concurrency,
                );
                let options = settings
                    .storage
                    .store_options
                    .iter()
                    .map(|(k, v)| (k.as_str(), v.expose_secret().to_owned()));
                let store = Store::open(spec, options).map_err(anyhow::Error::msg)?;
                // A store that cannot take a copy would fail every result: refuse to start.
                store.check().await.map_err(anyhow::Error::msg)?;
                let links = match &settings.storage.asset_base_url {
                    Some(base) => Links::new(base.as_str(), None),
                    None => Links::new(
                        &format!("{public_base}/assets"),
                        settings
                            .storage
                            .asset_url_ttl
                            .map(|ttl| (callbacks.derive("asset links"), ttl)),
                    ),
                };
                Some(Arc::new(Assets::new(store, links, fetcher)))
            }
        };
        let deliveries_wake = Arc::new(tokio::sync::Notify::new());
        let timeouts = Timeouts {
            attempt: settings.delivery.timeout,
            connect: settings.delivery.timeout.min(Duration::from_secs(5)),
        };
        let client = SafeClient::new(policy, timeouts).context("building the webhook client")?;
        let deliverer = Deliverer::new(
            worker_pool.clone(),
            client,
            settings.delivery_options(),
            metrics.clone(),
            deliveries_wake.clone(),
        );
        let (handoff, handoff_inbox) = handoff::channel(
            settings.delivery.concurrency,
            settings.delivery.lease,
            deliveries_wake.clone(),
        );
        let pipeline = Pipeline::new(pipeline::Parts {
            pool: worker_pool,
            settings: settings.clone(),
            metrics: metrics.clone(),
            http,
            callbacks: Arc::new(callbacks),
            handoff: Some(handoff.clone()),
            assets,
        });
        let (ingest, ingest_writers) =
            Ingest::new(pipeline.pool.clone(), handoff, pipeline.submitted.clone());
        let callback_slots = Arc::new(tokio::sync::Semaphore::new(
            settings.fal.callback_concurrency,
        ));
        let state = web::Data::new(AppState {
            pool,
            settings,
            pipeline,
            verifier,
            deliveries_wake,
            live,
            ingest,
            callback_slots,
            tokens,
        });
        let metrics = web::Data::new(metrics);
        let app_state = state.clone();
        let server = HttpServer::new(move || {
            App::new()
                .app_data(app_state.clone())
                .app_data(metrics.clone())
                .wrap(from_fn(telemetry::request_context))
                .configure(api::configure)
                .default_service(web::to(api::not_found))
        })
        .disable_signals()
        // SSE frames are small writes that must leave at once: with Nagle a frame waits for
        // the client's (delayed, up to 40 ms) ACK of the previous one when a stream is behind.
        .tcp_nodelay(true)
        .shutdown_timeout(drain.as_secs().max(1))
        .listen(listener)
        .context("starting the HTTP server")?
        .run();
        let handle = server.handle();
        Ok(Application {
            port,
            server,
            handle,
            state,
            deliverer,
            handoff: handoff_inbox,
            ingest: ingest_writers,
            workers,
        })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// A handle that stops the server gracefully (in-flight requests finish).
    pub fn handle(&self) -> ServerHandle {
        self.handle.clone()
    }

    pub fn pipeline(&self) -> Pipeline {
        self.state.pipeline.clone()
    }

    /// The slots of the callback route (tests watch them fill).
    pub fn callback_slots(&self) -> Arc<tokio::sync::Semaphore> {
        self.state.callback_slots.clone()
    }

    /// The live-event hub (closing it ends every SSE stream of this instance).
    pub fn live(&self) -> Hub {
        self.state.live.clone()
    }

    /// Serves until the server is stopped, then stops the workers: they finish in-flight work
    /// within the drain time and release the leases of what remains.
    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        let stop = CancellationToken::new();
        let tracker = TaskTracker::new();
        let p = self.state.pipeline.clone();
        let live = self.state.live.clone();
        tracker.spawn(listen(
            p.clone(),
            self.state.deliveries_wake.clone(),
            live.clone(),
            stop.clone(),
        ));
        tracker.spawn(live.run(stop.clone()));
        // Part of serving, not a background worker: callbacks wait on it.
        tracker.spawn(self.ingest.run(stop.clone()));
        let verifier = self.state.verifier.clone();
        tracker.spawn(async move {
            if let Err(e) = verifier.prefetch().await {
                tracing::warn!(error = %e, "could not fetch fal's JWKS yet; will retry on the first callback");
            }
        });
        if self.workers.submitter {
            tracker.spawn(pipeline::submitter::run(p.clone(), stop.clone()));
        }
        if self.workers.copier {
            tracker.spawn(pipeline::copier::run(
                p.clone(),
                self.state.ingest.clone(),
                stop.clone(),
            ));
        }
        if self.workers.reconciler {
            tracker.spawn(pipeline::reconciler::run(p.clone(), stop.clone()));
            tracker.spawn(pipeline::batches::run(p.clone(), stop.clone()));
        }
        // Without a delivery loop here, the inbox is dropped and callbacks lease nothing.
        if self.workers.deliverer {
            tracker.spawn(self.deliverer.clone().run(stop.clone(), self.handoff));
        }
        if self.workers.monitor {
            tracker.spawn(ops::alerts::run(
                p.pool.clone(),
                p.settings.clone(),
                stop.clone(),
            ));
            tracker.spawn(ops::retention::run(
                p.pool.clone(),
                p.settings.clone(),
                p.assets.clone(),
                stop.clone(),
            ));
            tracker.spawn(ops::queue_metrics::run(
                p.pool.clone(),
                p.metrics.clone(),
                p.settings.server.metrics_refresh,
                stop.clone(),
            ));
        }
        tracker.close();
        let served = self.server.await;
        stop.cancel();
        tracker.wait().await;
        served
    }
}

/// The process's one LISTEN connection: wakes the submission worker on `fluxgate_submit`, and
/// the delivery worker and the live hub on `fluxgate_events`. When the connection drops and
/// comes back, everyone is woken to re-read state (notifications sent meanwhile are lost by
/// design).
async fn listen(
    p: Pipeline,
    deliveries: Arc<tokio::sync::Notify>,
    live: Hub,
    stop: CancellationToken,
) {
    loop {
        let mut listener = match PgListener::connect_with(&p.pool).await {
            Ok(l) => l,
            Err(e) => {
                tracing::warn!(error = %e, "LISTEN connection failed; retrying");
                tokio::select! { _ = stop.cancelled() => return, _ = tokio::time::sleep(Duration::from_secs(1)) => continue }
            }
        };
        if let Err(e) = listener
            .listen_all([
                pipeline::SUBMIT_CHANNEL,
                storage::events::CHANNEL,
                storage::batches::BATCH_CHANNEL,
            ])
            .await
        {
            tracing::warn!(error = %e, "LISTEN failed; retrying");
            continue;
        }
        p.submit_wake.notify_one();
        p.batch_wake.notify_one();
        deliveries.notify_one();
        live.resync();
        loop {
            let next =
                tokio::select! { _ = stop.cancelled() => return, n = listener.try_recv() => n };
            match next {
                Ok(Some(n)) if n.channel() == pipeline::SUBMIT_CHANNEL => {
                    p.submit_wake.notify_one()
                }
                Ok(Some(n)) if n.channel() == storage::batches::BATCH_CHANNEL => {
                    p.batch_wake.notify_one()
                }
                Ok(Some(n)) => {
                    if !n.payload().ends_with(storage::events::NO_CLAIMS) {
                        deliveries.notify_one();
                    }
                    live.committed(n.payload());
                }
                Ok(None) => {
                    tracing::warn!("LISTEN connection lost; reconnected, re-reading state");
                    storage::connections_lost();
                    p.submit_wake.notify_one();
                    p.batch_wake.notify_one();
                    deliveries.notify_one();
                    live.resync();
                }
                Err(e) => {
                    tracing::warn!(error = %e, "LISTEN connection failed");
                    storage::connections_lost();
                    break;
                }
            }
        }
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
    let live = app.live();
    let server = tokio::spawn(app.run_until_stopped());
    shutdown_signal().await;
    // Streams never end on their own; ending them lets the drain finish, and their clients
    // resume on another instance with Last-Event-ID.
    live.close();
    tracing::info!(
        drain_secs = drain.as_secs(),
        "shutting down: no new connections, draining in-flight work"
    );
    handle.stop(true).await;
    server.await.context("server task")?.context("server")?;
    tracing::info!("stopped cleanly");
    Ok(())
}
