//! pay-svc's schema as sea-orm-migration migrations, applied in order by
//! `marquee_infra::db::migrate` (the `migrate` mode, or start-up with
//! `MIGRATE_ON_START`). Every constraint and index has an explicit name; error
//! classification relies on them.

use sea_orm_migration::prelude::*;

pub mod m20260101_000001_wallets_payments_ledger;
pub mod m20260301_000001_card_payments;
pub mod m20261202_000001_transfer_payouts;

/// Every migration of the payment database, oldest first: the wallet, payment and
/// ledger tables, then the outbox/inbox tables the saga replies go through, then card
/// payments through the payment provider, then infra's saga timeline (`saga_steps`),
/// then infra's `dead_letters`, then transfer payouts.
pub struct Migrator;

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(m20260101_000001_wallets_payments_ledger::Migration),
            Box::new(marquee_infra::outbox::migration::Migration),
            Box::new(m20260301_000001_card_payments::Migration),
            Box::new(marquee_infra::saga_steps::migration::Migration),
            Box::new(marquee_infra::dead_letters::migration::Migration),
            Box::new(m20261202_000001_transfer_payouts::Migration),
        ]
    }
}
