//! Tenants.
use sqlx::{FromRow, PgExecutor};
use uuid::Uuid;

use crate::domain::{ids, tenant::TenantName};

#[derive(Debug, Clone, FromRow)]
pub struct Tenant {
    pub id: Uuid,
    pub name: String,
    pub created_at: chrono::DateTime<chrono::Utc>,
}

/// Inserts a tenant; `None` when the name is taken.
pub async fn create(
    db: impl PgExecutor<'_>,
    name: &TenantName,
) -> Result<Option<Tenant>, sqlx::Error> {
    sqlx::query_as(
        "INSERT INTO tenants (id, name) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING
         RETURNING id, name, created_at",
    )
    .bind(ids::new_uuid())
    .bind(name.as_str())
    .fetch_optional(db)
    .await
}

pub async fn find_by_name(
    db: impl PgExecutor<'_>,
    name: &str,
) -> Result<Option<Tenant>, sqlx::Error> {
    sqlx::query_as("SELECT id, name, created_at FROM tenants WHERE name = $1")
        .bind(name)
        .fetch_optional(db)
        .await
}

/// Returns the tenant, creating it if needed (for `dev`).
pub async fn ensure(db: &sqlx::PgPool, name: &TenantName) -> Result<Tenant, sqlx::Error> {
    if let Some(t) = create(db, name).await? {
        return Ok(t);
    }
    find_by_name(db, name.as_str())
        .await?
        .ok_or(sqlx::Error::RowNotFound)
}
