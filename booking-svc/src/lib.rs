//! booking-svc: the saga owner. Accounts, the catalog, seat holds in Redis, bookings in
//! Postgres, and booking-svc's half of the payment saga over RabbitMQ.

pub mod accounts;
pub mod bookings;
pub mod catalog;
pub mod changes;
pub mod domain;
pub mod entity;
pub mod error;
pub mod grpc;
pub mod holds;
pub mod migration;
pub mod seat_relay;
pub mod startup;
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
