//! What every handler shares: the pools, the settings, the pipeline's parts the API uses, the
//! verifier of fal's callbacks, the live hub and the callback ingest. Built by `startup`, read
//! by handlers through `web::Data<AppState>`; living here, the handlers need nothing of startup.
use std::sync::Arc;

use sqlx::PgPool;

use crate::{
    config::Settings,
    fal::verify::FalVerifier,
    live::Hub,
    pipeline::{ingest::Ingest, Pipeline},
};

/// Shared by every handler.
pub struct AppState {
    pub pool: PgPool,
    pub settings: Arc<Settings>,
    pub pipeline: Pipeline,
    pub verifier: FalVerifier,
    /// Wakes this instance's delivery worker (NOTIFY does too, for every instance).
    pub deliveries_wake: Arc<tokio::sync::Notify>,
    pub live: Hub,
    /// fal callbacks, written in batches (group commit).
    pub ingest: Ingest,
    /// Callbacks being read and processed now: full, the next is answered 503 at once.
    pub callback_slots: Arc<tokio::sync::Semaphore>,
    /// Mints and checks browser tokens (`POST /v1/tokens`).
    pub tokens: crate::domain::browser_token::TokenSigner,
}

impl AppState {
    /// The subscription use cases, on the handlers' pool.
    pub fn subscriptions(&self) -> crate::subscriptions::Subscriptions<'_> {
        crate::subscriptions::Subscriptions {
            db: &self.pool,
            keyring: &self.settings.storage.keyring,
            cap: self.settings.server.max_subscriptions_per_tenant,
            wake: &self.deliveries_wake,
        }
    }
}
