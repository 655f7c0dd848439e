//! The outbox/inbox migration, listed by every service's migrator after the tables
//! whose changes it announces.

use sea_orm_migration::prelude::*;

/// Creates `outbox` and `inbox`. `IF NOT EXISTS` everywhere: databases from before
/// sea-orm-migration already have both tables under the same names.
pub struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m20260101_000002_outbox_inbox"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        // DDL is kept as SQL: the constraint names are explicit and reviewable here.
        manager
            .get_connection()
            .execute_unprepared(
                r#"
                CREATE TABLE IF NOT EXISTS outbox (
                    seq           BIGSERIAL CONSTRAINT outbox_pkey PRIMARY KEY,
                    message_id    UUID NOT NULL CONSTRAINT outbox_message_id_key UNIQUE,
                    kind          TEXT NOT NULL,
                    saga_id       UUID NOT NULL,
                    version       INT NOT NULL,
                    payload       BYTEA NOT NULL,
                    trace_context JSONB NOT NULL DEFAULT '{}',
                    occurred_at   TIMESTAMPTZ NOT NULL DEFAULT now(),
                    sent_at       TIMESTAMPTZ
                );
                DROP INDEX IF EXISTS outbox_unsent;
                CREATE INDEX IF NOT EXISTS outbox_unsent_idx ON outbox (seq) WHERE sent_at IS NULL;
                CREATE TABLE IF NOT EXISTS inbox (
                    consumer    TEXT NOT NULL,
                    message_id  UUID NOT NULL,
                    received_at TIMESTAMPTZ NOT NULL DEFAULT now(),
                    CONSTRAINT inbox_pkey PRIMARY KEY (consumer, message_id)
                );
                "#,
            )
            .await?;
        Ok(())
    }
}
