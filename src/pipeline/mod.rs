//! The generation pipeline: the outbox worker that submits to fal, the callback processor that
//! turns fal's results into state changes and events in one transaction, and the reconciler
//! that recovers results whose callbacks never came.
use crate::domain::ids::GenerationId;
pub mod accept;
pub mod batches;
pub mod callback_urls;
pub mod callbacks;
pub mod cancel;
pub mod complete;
pub mod copier;
pub mod ingest;
pub mod reconciler;
pub mod submitted;
pub mod submitter;

use std::sync::Arc;

use sqlx::PgPool;
use tokio::sync::Notify;

use self::callback_urls::CallbackUrls;
use crate::{
    assets::Assets, config::Settings, delivery::handoff::Handoff, fal::client::FalClient,
    metrics::Metrics,
};

/// Channel woken when a generation is accepted (payload: nothing; workers re-read the outbox).
pub const SUBMIT_CHANNEL: &str = "fluxgate_submit";

/// What every pipeline stage needs.
#[derive(Clone)]
pub struct Pipeline {
    pub pool: PgPool,
    pub fal: FalClient,
    pub settings: Arc<Settings>,
    pub metrics: Metrics,
    /// Woken by `NOTIFY fluxgate_submit` (via the process's listener) and by local inserts.
    pub submit_wake: Arc<Notify>,
    /// Woken when this instance queues a result for the copier.
    pub copy_wake: Arc<Notify>,
    /// Woken by `NOTIFY fluxgate_batches`: a batch member finished (`batches::run`).
    pub batch_wake: Arc<Notify>,
    /// What this instance last wrote of the generations it sent to fal (for their callbacks).
    pub submitted: submitted::Submitted,
    /// The `fal_webhook` URLs handed to fal, and the check of callbacks against them.
    pub callbacks: Arc<CallbackUrls>,
    /// This instance's delivery loop, for the deliveries of the `generation.queued` events the
    /// submitter writes (`None`: leave them to the loops' claims).
    pub handoff: Option<Handoff>,
    /// Where results' images are copied before they are announced (`None`: not copied).
    pub assets: Option<Arc<Assets>>,
}

/// Everything a pipeline is made of.
pub struct Parts {
    pub pool: PgPool,
    pub settings: Arc<Settings>,
    pub metrics: Metrics,
    /// The client for fal's queue API.
    pub http: reqwest::Client,
    pub callbacks: Arc<CallbackUrls>,
    pub handoff: Option<Handoff>,
    pub assets: Option<Arc<Assets>>,
}

impl Pipeline {
    pub fn new(parts: Parts) -> Pipeline {
        let settings = parts.settings;
        let fal = FalClient::new(
            parts.http,
            settings.fal.queue_url.clone(),
            settings
                .fal
                .key
                .clone()
                .unwrap_or_else(|| secrecy::SecretString::from("")),
            settings.fal.timeout,
        );
        Pipeline {
            pool: parts.pool,
            fal,
            settings,
            metrics: parts.metrics,
            submit_wake: Arc::new(Notify::new()),
            copy_wake: Arc::new(Notify::new()),
            batch_wake: Arc::new(Notify::new()),
            submitted: submitted::Submitted::default(),
            callbacks: parts.callbacks,
            handoff: parts.handoff,
            assets: parts.assets,
        }
    }

    /// The base of every URL fal and subscribers reach this deployment by: FLUXGATE_PUBLIC_URL,
    /// or this instance's own address.
    pub fn public_base(settings: &Settings, port: u16) -> String {
        match &settings.server.public_url {
            Some(u) => u.as_str().trim_end_matches('/').to_owned(),
            None => format!("http://127.0.0.1:{port}"),
        }
    }

    /// The generation's `fal_webhook` URL: `{public}/hooks/fal/{gen_…}?token=…`. The id in the
    /// path lets a callback that races ahead of the stored submit answer still find its
    /// generation; the token proves the URL is one fluxgate handed out (`callback_urls`).
    pub fn webhook_url(&self, generation_id: GenerationId, input: &serde_json::Value) -> String {
        self.callbacks
            .url(generation_id, callback_urls::expects_inline(input))
    }
}
