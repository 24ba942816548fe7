//! The generation pipeline: the outbox worker that submits to fal, the callback processor that
//! turns fal's results into state changes and events in one transaction, and the reconciler
//! that recovers results whose callbacks never came.
pub mod callbacks;
pub mod ingest;
pub mod reconciler;
pub mod submitted;
pub mod submitter;

use std::sync::Arc;

use sqlx::PgPool;
use tokio::sync::Notify;

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
    /// What this instance last wrote of the generations it sent to fal (for their callbacks).
    pub submitted: submitted::Submitted,
    /// Base of the callback URLs: FLUXGATE_PUBLIC_URL, or this instance's own address.
    pub public_base: String,
    /// This instance's delivery loop, for the deliveries of the `generation.queued` events the
    /// submitter writes (`None`: leave them to the loops' claims).
    pub handoff: Option<Handoff>,
    /// Where results' images are copied before they are recorded (`None`: not copied).
    pub assets: Option<Arc<Assets>>,
}

impl Pipeline {
    pub fn new(
        pool: PgPool,
        settings: Arc<Settings>,
        metrics: Metrics,
        http: reqwest::Client,
        port: u16,
    ) -> Pipeline {
        let fal = FalClient::new(
            http,
            settings.fal_queue_url.clone(),
            settings
                .fal_key
                .clone()
                .unwrap_or_else(|| secrecy::SecretString::from("")),
            settings.fal_timeout,
        );
        let public_base = match &settings.public_url {
            Some(u) => u.as_str().trim_end_matches('/').to_owned(),
            None => format!("http://127.0.0.1:{port}"),
        };
        Pipeline {
            public_base,
            pool,
            fal,
            settings,
            metrics,
            submit_wake: Arc::new(Notify::new()),
            submitted: submitted::Submitted::default(),
            handoff: None,
            assets: None,
        }
    }

    /// `{public}/hooks/fal/{gen_…}`: the generation id in the URL lets a callback that races
    /// ahead of the stored submit answer still find its generation.
    pub fn webhook_url(&self, generation_id: uuid::Uuid) -> String {
        format!(
            "{}/hooks/fal/{}",
            self.public_base,
            crate::domain::ids::encode(crate::domain::ids::Kind::Generation, generation_id)
        )
    }
}
