//! Accepting a generation (or an edit): the product's core, apart from HTTP. A validated
//! request is vetted (its `webhook_url`, `sync_mode`), given its seed (`seed_from`), admitted by
//! the rate limits, answered from the seed cache if it can be, else reserved against the budgets
//! and stored as the outbox row in one transaction whose NOTIFY wakes the submitters. Nothing is
//! stored before every check has passed; a refusal says which rule refused, and the handler
//! chooses its status.
use crate::wire::GenerationObject;
use sqlx::{PgConnection, PgPool};

use super::{Pipeline, SUBMIT_CHANNEL};
use crate::{
    delivery::ssrf,
    domain::{
        event_type::EventType,
        generation::{Endpoint, GenerationRequest, SeedSource},
        ids::GenerationId,
        ids::TenantId,
        money::usd,
        states::GenerationStatus,
        FieldError,
    },
    governance::{budgets, cache, rate_limit},
    storage::{
        self,
        generations::{Bookkeeping, Generation},
    },
};

/// What accepting a request did.
#[derive(Debug)]
pub struct Accepted {
    pub generation: Generation,
    /// Stored as a copy of an earlier result with the same seed and input: complete already.
    pub from_cache: bool,
    /// The caller's rate window after this request (`None`: no rate limit applies).
    pub window: Option<rate_limit::Window>,
}

/// A request's row as `Pipeline::store` wrote it.
pub(super) struct Stored {
    pub generation: Generation,
    /// A completed copy of a cached result (nothing to submit).
    pub from_cache: bool,
}

/// Why a request was not accepted.
#[derive(Debug, thiserror::Error)]
pub enum Refusal {
    #[error("invalid request")]
    Invalid(Vec<FieldError>),
    #[error("seed_from: no generation {0}")]
    NoSeedSource(GenerationId),
    #[error("seed_from: generation {of} has no seed yet (it is {status})")]
    SeedUnavailable {
        of: GenerationId,
        status: GenerationStatus,
    },
    #[error("rate limited")]
    RateLimited(rate_limit::Limited),
    #[error("budget exhausted")]
    BudgetExhausted(budgets::Exhausted),
    /// A batch does not fit a cap whole: by how much it would pass it.
    #[error("the batch does not fit its budget")]
    BatchOverBudget {
        exhausted: budgets::Exhausted,
        lacks_micros: i64,
    },
    #[error(transparent)]
    Storage(#[from] sqlx::Error),
}

impl Pipeline {
    /// Accepts `request` for `tenant`; see the module's opening. On the caller's pool (the
    /// API's): a request never waits behind the workers' connections.
    pub async fn accept(
        &self,
        db: &PgPool,
        tenant: TenantId,
        request: GenerationRequest,
    ) -> Result<Accepted, Refusal> {
        self.vet(&request).await?;
        let seed = match &request.seed_from {
            Some(source) => Some(seed_of(db, tenant, source).await?),
            None => request.input.seed.map(|s| s as i64),
        };
        let end_user = request.end_user.as_deref();
        let limits = budgets::limits_for(db, tenant, end_user).await?;
        let window = rate_limit::admit(db, tenant, end_user, &limits)
            .await?
            .map_err(Refusal::RateLimited)?;
        let mut tx = db.begin().await?;
        let stored = self
            .store(&mut tx, tenant, &request, seed, &limits)
            .await?
            .map_err(Refusal::BudgetExhausted)?;
        if !stored.from_cache {
            storage::events::notify(&mut *tx, SUBMIT_CHANNEL, "").await?;
        }
        tx.commit().await?;
        if !stored.from_cache {
            // Wake this instance's submitter without waiting for the NOTIFY round trip.
            self.submit_wake.notify_one();
        }
        Ok(Accepted {
            generation: stored.generation,
            from_cache: stored.from_cache,
            window,
        })
    }

    /// One request's row, in the caller's transaction, once every check has passed: a
    /// completed copy of a cached result when the seed cache holds one, else its budget
    /// reservation and its outbox row. The inner error is the cap that refused the reservation.
    pub(super) async fn store(
        &self,
        tx: &mut PgConnection,
        tenant: TenantId,
        request: &GenerationRequest,
        seed: Option<i64>,
        limits: &budgets::Limits,
    ) -> Result<Result<Stored, budgets::Exhausted>, sqlx::Error> {
        let input = storage::generations::stored_input(request, seed);
        let cache_key = request
            .cache
            .then(|| cache::key(request.model.id, &input))
            .flatten();
        if let Some(key) = cache_key.as_deref() {
            if let Some(hit) = self
                .answer_from_cache(tx, tenant, request, &input, key)
                .await?
            {
                self.metrics.cache_hits.inc();
                return Ok(Ok(Stored {
                    generation: hit,
                    from_cache: true,
                }));
            }
        }
        let estimate = request.estimated_cost_micros();
        let end_user = request.end_user.as_deref();
        let budget_day = match budgets::reserve(tx, tenant, end_user, limits, estimate).await? {
            Ok(day) => day,
            Err(exhausted) => return Ok(Err(exhausted)),
        };
        let book = Bookkeeping {
            cache_key: cache_key.as_deref(),
            budget_day,
            reserved_micros: if budget_day.is_some() { estimate } else { 0 },
        };
        let generation =
            storage::generations::insert(&mut *tx, tenant, request, &input, seed, book).await?;
        tracing::info!(generation = %generation.public_id(), model = %generation.model, cost_micros = generation.estimated_cost_micros, "generation accepted");
        Ok(Ok(Stored {
            generation,
            from_cache: false,
        }))
    }

    /// The checks that need this deployment, after the request's own validation: a store for
    /// inline images, and a `webhook_url` that resolves only to addresses we may call.
    pub(super) async fn vet(&self, request: &GenerationRequest) -> Result<(), Refusal> {
        // Inline images become files only with a store; without one, subscribers would be
        // sent every image's bytes in every event.
        if request.input.sync_mode && self.assets.is_none() {
            return Err(Refusal::Invalid(vec![FieldError::new(
                "sync_mode",
                "returns images inline, and this server keeps no image store (FLUXGATE_STORAGE) to turn them into URLs; leave sync_mode out, or configure a store",
            )]));
        }
        if let Some(url) = &request.webhook_url {
            ssrf::vet(&self.settings.target_policy(), url)
                .await
                .map_err(|msg| Refusal::Invalid(vec![FieldError::new("webhook_url", msg)]))?;
        }
        Ok(())
    }

    /// A completed copy of the cached result, with its `generation.completed` event, if the
    /// cache holds one for `key`.
    pub(super) async fn answer_from_cache(
        &self,
        tx: &mut PgConnection,
        tenant: TenantId,
        request: &GenerationRequest,
        input: &serde_json::Value,
        key: &str,
    ) -> Result<Option<Generation>, sqlx::Error> {
        let ttl = self.settings.storage.cache_ttl.as_secs_f64();
        let Some(source) = storage::generations::cached_source(&mut *tx, tenant, key, ttl).await?
        else {
            return Ok(None);
        };
        let hit =
            storage::generations::insert_cached(&mut *tx, tenant, request, input, &source).await?;
        storage::events::append(
            tx,
            hit.tenant_id,
            EventType::GenerationCompleted,
            Some(hit.id),
            GenerationObject::of(&hit).value(),
        )
        .await?;
        tracing::info!(generation = %hit.public_id(), source = %source.public_id(), "answered from the seed cache");
        Ok(Some(hit))
    }
}

/// The seed of an earlier generation of this tenant: variations in a consistent style.
/// The seed of `source`. One the caller may not see answers as one that does not exist.
pub(super) async fn seed_of(
    db: &PgPool,
    tenant: TenantId,
    source: &SeedSource,
) -> Result<i64, Refusal> {
    let id = source.id;
    match storage::generations::seed_of(db, tenant, id, source.owner.as_deref()).await? {
        None => Err(Refusal::NoSeedSource(id)),
        Some((_, Some(seed))) => Ok(seed),
        Some((status, None)) => Err(Refusal::SeedUnavailable { of: id, status }),
    }
}

/// The price of a request body, nothing stored or sent: `POST /v1/estimates`. Its fields are
/// declared in the order the API has always sent them (alphabetical).
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct Estimate {
    pub estimated_cost_micros: i64,
    #[schema(value_type = f64)]
    pub estimated_cost_usd: serde_json::Value,
    /// The input as it would be sent: defaults filled in, a preset resolved to pixels.
    #[schema(value_type = Object)]
    pub input: crate::fal::models::NormalizedInput,
    pub megapixels: u64,
    pub model: &'static str,
    pub note: Option<&'static str>,
    pub object: &'static str,
    #[schema(value_type = f64)]
    pub price_per_megapixel_usd: serde_json::Value,
}

/// Prices a body of either kind (`image_urls` makes it an edit). A `seed_from` is ignored: the
/// price does not depend on the seed.
pub fn estimate(
    mut object: serde_json::Map<String, serde_json::Value>,
) -> Result<Estimate, Vec<FieldError>> {
    let endpoint = if object.contains_key("image_urls") {
        Endpoint::Edit
    } else {
        Endpoint::TextToImage
    };
    object.remove("seed_from");
    let request = GenerationRequest::parse(object, endpoint, true)?;
    let micros = request.estimated_cost_micros();
    Ok(Estimate {
        estimated_cost_micros: micros,
        estimated_cost_usd: usd(micros),
        megapixels: request.input.megapixels_billed(),
        model: request.model.id,
        note: (endpoint == Endpoint::Edit)
            .then_some("fal may bill large input images at up to 4 MP each"),
        object: "estimate",
        price_per_megapixel_usd: usd(request.model.price_per_mp_micro_usd as i64),
        input: request.input,
    })
}
