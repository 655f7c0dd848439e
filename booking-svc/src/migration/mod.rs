//! booking-svc's schema as sea-orm-migration migrations, applied in order by
//! `marquee_infra::db::migrate` (the `migrate` mode, or start-up with
//! `MIGRATE_ON_START`). Every constraint and index has an explicit name; error
//! classification relies on them (see [`crate::entity`]).

use sea_orm_migration::prelude::*;

pub mod m20260101_000001_accounts_catalog_bookings;
pub mod m20260101_000003_announce_existing_accounts;
pub mod m20260301_000004_card_payments_and_deadline;
pub mod m20261201_000005_waiting_rooms;
pub mod m20261202_000006_two_factor;
pub mod m20261202_000007_transfers;
pub mod m20261202_000008_auctions;

/// Every migration of the booking database, oldest first: accounts, the catalog and
/// bookings; then the outbox/inbox tables; then the announcement of the accounts that
/// existed before sign-up wrote `account.opened` (it needs the outbox); then the payment
/// method check (card payments) and the index the payment deadline's sweep reads;
/// then infra's saga timeline (`saga_steps`); then infra's `dead_letters`; then the
/// waiting rooms; then two-factor sign-in (TOTP authenticators, recovery codes); then
/// ticket transfers; then the auctions.
pub struct Migrator;

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(m20260101_000001_accounts_catalog_bookings::Migration),
            Box::new(marquee_infra::outbox::migration::Migration),
            Box::new(m20260101_000003_announce_existing_accounts::Migration),
            Box::new(m20260301_000004_card_payments_and_deadline::Migration),
            Box::new(marquee_infra::saga_steps::migration::Migration),
            Box::new(marquee_infra::dead_letters::migration::Migration),
            Box::new(m20261201_000005_waiting_rooms::Migration),
            Box::new(m20261202_000006_two_factor::Migration),
            Box::new(m20261202_000007_transfers::Migration),
            Box::new(m20261202_000008_auctions::Migration),
        ]
    }
}
