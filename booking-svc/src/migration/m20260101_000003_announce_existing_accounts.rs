//! pay-svc opens a wallet only when it consumes `account.opened` (sign-up writes it in
//! the same transaction as the account). Accounts created before that have none yet:
//! each is announced once through the outbox, which the relay publishes. pay-svc's
//! wallet opening is idempotent, so accounts that already have a wallet get nothing
//! more. On a new database there are no accounts, so there is nothing to do; on one
//! adopted from before sea-orm whose `0002_account_opened_backfill` already ran, the
//! baseline says so and nothing is announced again.

use sea_orm_migration::prelude::*;
use sea_orm_migration::sea_orm::{DbBackend, Statement};

use super::m20260101_000001_accounts_catalog_bookings::ACCOUNTS_ANNOUNCED;

pub struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m20260101_000003_announce_existing_accounts"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        // INSERT .. SELECT over every account with a payload built in SQL: the payload
        // is `marquee.saga.v1.AccountOpened { account_id = 1 }` encoded by hand: tag 0x0a
        // (field 1, length-delimited), length 0x24 (36), the UUID's text.
        manager
            .get_connection()
            .execute_raw(Statement::from_sql_and_values(
                DbBackend::Postgres,
                r#"
                INSERT INTO outbox (message_id, kind, saga_id, version, payload)
                SELECT gen_random_uuid(), 'account.opened', id, 1,
                       '\x0a24'::bytea || convert_to(id::text, 'UTF8')
                FROM accounts
                WHERE current_setting($1, true) IS DISTINCT FROM 'on'
                "#,
                [ACCOUNTS_ANNOUNCED.into()],
            ))
            .await?;
        Ok(())
    }
}
