//! Ticket transfers' payouts (issue 14): a ledger entry of kind TRANSFER_PAYOUT credits
//! the previous owner what the recipient paid, at most once per payout (the
//! recipient's booking, `booking_id`).

use sea_orm_migration::prelude::*;

pub struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m20261202_000001_transfer_payouts"
    }
}

/// The schema change, every name explicit.
const UP: &str = r#"
ALTER TABLE ledger_entries DROP CONSTRAINT ledger_entries_kind_check;
ALTER TABLE ledger_entries ADD CONSTRAINT ledger_entries_kind_check
    CHECK (kind IN ('WELCOME_CREDIT', 'PAYMENT', 'REFUND', 'TRANSFER_PAYOUT'));
CREATE UNIQUE INDEX ledger_entries_one_payout_key ON ledger_entries (booking_id)
    WHERE kind = 'TRANSFER_PAYOUT';
"#;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        // DDL is kept as SQL: the constraint and index names are explicit and
        // reviewable here.
        manager.get_connection().execute_unprepared(UP).await?;
        Ok(())
    }
}
