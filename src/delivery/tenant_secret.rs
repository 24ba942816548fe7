//! A tenant's webhook secret, which signs deliveries to its generations' own `webhook_url`s:
//! made on first use, stored sealed (`crate::secrets`), never changed once made.
use crate::domain::ids::TenantId;
use sqlx::PgPool;

use super::signing::SigningSecret;
use crate::{
    secrets::{Keyring, OpenError, Owner},
    storage,
};

#[derive(Debug, thiserror::Error)]
pub enum TenantSecretError {
    #[error(transparent)]
    Db(#[from] sqlx::Error),
    #[error("the tenant's webhook secret cannot be read: {0}")]
    Sealed(#[from] OpenError),
    #[error("the tenant's stored webhook secret is not a whsec_ secret")]
    Malformed,
}

impl From<TenantSecretError> for crate::error::ApiError {
    fn from(e: TenantSecretError) -> Self {
        match e {
            TenantSecretError::Db(e) => e.into(),
            other => {
                tracing::error!(error = %other, "a stored webhook secret cannot be opened");
                crate::error::ApiError::internal("the webhook secret cannot be read")
            }
        }
    }
}

pub async fn tenant_webhook_secret(
    pool: &PgPool,
    keyring: &Keyring,
    tenant_id: TenantId,
) -> Result<SigningSecret, TenantSecretError> {
    let owner = Owner::Tenant(tenant_id);
    let fresh = SigningSecret::generate();
    let stored =
        storage::tenants::webhook_secret(pool, tenant_id, &keyring.seal(fresh.as_str(), owner))
            .await?;
    let opened = keyring.open(&stored, owner)?;
    use secrecy::ExposeSecret;
    SigningSecret::parse(opened.expose_secret()).map_err(|_| TenantSecretError::Malformed)
}
