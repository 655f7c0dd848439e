//! booking-svc: the saga owner. Accounts, the catalog, seat holds in Redis, bookings in
//! Postgres, and booking-svc's half of the payment saga over RabbitMQ.

pub mod accounts;
pub mod auction;
pub mod best;
pub mod bookings;
pub mod catalog;
pub mod changes;
pub mod domain;
pub mod entity;
pub mod error;
pub mod grpc;
pub mod grpc_auction;
pub mod grpc_queue;
pub mod grpc_transfer;
pub mod holds;
pub mod migration;
pub mod queue;
pub mod seat_relay;
pub mod startup;
pub mod steps;
pub mod two_factor;
pub mod wire;

pub use marquee_infra::db::MigrateConfig;
pub use startup::{Application, BookingConfig, migrate_config};

/// `booking-svc migrate`: creates the database if it is missing and applies every
/// pending migration of [`migration::Migrator`], including the outbox/inbox tables;
/// logs what ran. What the Kubernetes Job runs once per deploy, before replicas with
/// `MIGRATE_ON_START=false`. It reads [`MigrateConfig`] alone, not the whole
/// [`BookingConfig`].
pub async fn migrate(config: &MigrateConfig) -> anyhow::Result<marquee_infra::db::Migrated> {
    use anyhow::Context as _;
    let db = marquee_infra::db::connect(&config.database_url, 2)
        .await
        .context("booking-svc migrate: cannot create or connect to the booking database")?;
    let migrated = marquee_infra::db::migrate::<migration::Migrator>(&db).await;
    db.close().await?;
    migrated
}

/// `booking-svc grant-admin <email>`: makes an existing account an ADMIN, the only
/// way one is made (sign-up refuses the role). Idempotent. The account logs in again
/// to get a token with the role. Reads [`MigrateConfig`] alone (the database URL).
pub async fn grant_admin(config: &MigrateConfig, email: &str) -> anyhow::Result<()> {
    use anyhow::Context as _;
    // `open`, not `connect`: the database must exist already (it holds the account).
    let db = marquee_infra::db::open(&config.database_url, 1)
        .await
        .context("booking-svc grant-admin: cannot connect to the booking database")?;
    let granted = accounts::grant_admin(&db, email).await;
    db.close().await?;
    match granted {
        Ok(_) => Ok(()),
        Err(error::BookingError::NotFound(_)) => {
            anyhow::bail!("booking-svc grant-admin: no account with email {email:?}")
        }
        Err(error) => Err(anyhow::anyhow!("booking-svc grant-admin: {error}")),
    }
}
