//! Cost governance: money as integer micro-dollars, daily budgets reserved atomically at
//! submit, per-minute rate limits shared by every instance, Idempotency-Key replay, the seed
//! cache, and usage reports. All state lives in Postgres, so limits hold across instances.
pub mod budgets;
pub mod cache;
pub mod idempotency;
pub mod rate_limit;
pub mod standing;
