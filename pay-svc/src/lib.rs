//! pay-svc: money. It owns the wallet ledger and the payments of the booking saga:
//! it consumes PaymentRequested / RefundRequested from the bus, charges or refunds the
//! buyer's wallet in one transaction with its inbox claim and outbox reply, charges and
//! refunds cards through the payment provider (recorded first, then driven by the
//! resolver, never charged twice), and serves the read-only `WalletService` over gRPC.

pub mod app;
pub mod config;
pub mod domain;
pub mod entity;
pub mod error;
pub mod grpc;
pub mod migration;
pub mod psp;
pub mod resolver;
pub mod saga;
pub mod steps;
pub mod store;

pub use app::{Application, migrate};
pub use config::{PayConfig, PspConfig, migrate_config};
pub use error::PayError;
pub use marquee_infra::db::MigrateConfig;
pub use migration::Migrator;
