//! The sandbox's schema as sea-orm-migration migrations, applied in order by
//! `marquee_infra::db::migrate` on every start. Every constraint has an explicit name;
//! the one-charge-per-order conflict is classified by `psp_payments_order_id_key`.

use sea_orm_migration::prelude::*;

pub mod m20260601_000001_psp_ledger;

/// Every migration of the sandbox's database, oldest first.
pub struct Migrator;

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![Box::new(m20260601_000001_psp_ledger::Migration)]
    }
}
