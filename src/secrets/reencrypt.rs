//! `fluxgate secrets reencrypt`: every stored secret sealed with the first key of
//! `FLUXGATE_ENCRYPTION_KEY`. Rows in plaintext (stored before a key was set) and rows sealed
//! with an older key are rewritten; rows already sealed with the first key are left alone. Each
//! row is rewritten only if it still holds what was read, so a rotation running meanwhile is
//! never undone; safe to run while fluxgate serves, and again at any time.
use crate::domain::ids::SubscriptionId;
use serde::Serialize;

use super::{Keyring, Owner};
use crate::storage;

/// Rows a page of subscriptions holds.
const PAGE: i64 = 500;

/// What a run did, by table.
#[derive(Debug, Default, Serialize)]
pub struct Report {
    pub subscriptions_resealed: u64,
    pub tenants_resealed: u64,
    pub server_secrets_resealed: u64,
    /// Rows whose values changed while this ran (rotated meanwhile): run again to reseal them.
    pub skipped_changed: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum ReencryptError {
    #[error("FLUXGATE_ENCRYPTION_KEY is not set: there is no key to encrypt with")]
    NoKey,
    #[error("{what} cannot be opened: {why} (is every key it was sealed with still in FLUXGATE_ENCRYPTION_KEY?)")]
    Open { what: String, why: super::OpenError },
    #[error(transparent)]
    Db(#[from] sqlx::Error),
}

pub async fn run(pool: &sqlx::PgPool, keyring: &Keyring) -> Result<Report, ReencryptError> {
    if !keyring.is_enabled() {
        return Err(ReencryptError::NoKey);
    }
    let mut report = Report::default();
    let reseal = |stored: &str, owner: Owner, what: &dyn Fn() -> String| {
        keyring
            .reseal(stored, owner)
            .map_err(|why| ReencryptError::Open { what: what(), why })
    };
    let mut after = SubscriptionId::from_uuid(uuid::Uuid::nil());
    loop {
        let page = storage::subscriptions::secrets_page(pool, after, PAGE).await?;
        let Some(last) = page.last() else { break };
        after = last.0;
        for (id, secret, previous) in &page {
            let owner = Owner::Subscription(*id);
            let name = || format!("subscription {id}");
            let new_secret = reseal(secret.as_str(), owner, &name)?;
            let new_previous = match previous {
                Some(p) => reseal(p.as_str(), owner, &name)?,
                None => None,
            };
            if new_secret.is_none() && new_previous.is_none() {
                continue;
            }
            let new = (
                new_secret.as_deref().unwrap_or(secret.as_str()),
                new_previous
                    .as_deref()
                    .or(previous.as_ref().map(|p| p.as_str())),
            );
            if storage::subscriptions::replace_secrets(pool, *id, (secret, previous.as_ref()), new)
                .await?
            {
                report.subscriptions_resealed += 1;
            } else {
                report.skipped_changed += 1;
            }
        }
    }
    for (id, stored) in storage::tenants::webhook_secrets(pool).await? {
        let name = || format!("tenant {id}");
        if let Some(new) = reseal(&stored, Owner::Tenant(id), &name)? {
            if storage::tenants::replace_webhook_secret(pool, id, &stored, &new).await? {
                report.tenants_resealed += 1;
            } else {
                report.skipped_changed += 1;
            }
        }
    }
    for (name, stored) in storage::server_secrets::all(pool).await? {
        let owner = match name.as_str() {
            storage::server_secrets::CALLBACK_TOKEN_KEY => {
                Owner::Server(storage::server_secrets::CALLBACK_TOKEN_KEY)
            }
            _ => continue,
        };
        let what = || format!("server secret {name}");
        if let Some(new) = reseal(&stored, owner, &what)? {
            if storage::server_secrets::replace(pool, &name, &stored, &new).await? {
                report.server_secrets_resealed += 1;
            } else {
                report.skipped_changed += 1;
            }
        }
    }
    Ok(report)
}
