//! Card payments and the payment deadline: `bookings.payment_method` gets a check
//! constraint naming the methods (`WALLET`, and now `CARD`; until now any text was
//! accepted and only `WALLET` was ever written, so existing rows pass it), and the
//! sweeper's search for bookings past their payment deadline (`status =
//! 'PENDING_PAYMENT'`, oldest `created_at` first) gets an index.

use sea_orm_migration::prelude::*;

pub struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m20260301_000004_card_payments_and_deadline"
    }
}

/// The schema change, every name explicit.
const UP: &str = r#"
ALTER TABLE bookings ADD CONSTRAINT bookings_payment_method_check
    CHECK (payment_method IN ('WALLET', 'CARD'));
CREATE INDEX bookings_status_created_at_idx ON bookings (status, created_at);
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
