//! The dead-letter migration, listed by the migrator of every service that keeps the
//! dead letters of its queues (booking-svc, pay-svc), after infra's outbox/inbox.

use sea_orm_migration::prelude::*;

/// Creates `dead_letters`.
pub struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m20261201_000100_dead_letters"
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
                CREATE TABLE IF NOT EXISTS dead_letters (
                    id                     UUID CONSTRAINT dead_letters_pkey PRIMARY KEY,
                    queue                  TEXT NOT NULL,
                    message_id             UUID NOT NULL,
                    kind                   TEXT NOT NULL,
                    exchange               TEXT NOT NULL,
                    routing_key            TEXT NOT NULL,
                    saga_id                UUID,
                    version                INT NOT NULL DEFAULT 1,
                    occurred_at            TIMESTAMPTZ,
                    trace_context          JSONB NOT NULL DEFAULT '{}',
                    payload                BYTEA NOT NULL,
                    booking_id             TEXT,
                    reason                 TEXT NOT NULL,
                    first_error            TEXT NOT NULL,
                    last_error             TEXT NOT NULL,
                    deliveries             BIGINT NOT NULL DEFAULT 0,
                    times_dead_lettered    BIGINT NOT NULL DEFAULT 1,
                    state                  TEXT NOT NULL
                        CONSTRAINT dead_letters_state_check CHECK (state IN ('PENDING', 'REDRIVEN')),
                    first_dead_lettered_at TIMESTAMPTZ NOT NULL DEFAULT now(),
                    last_dead_lettered_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
                    redriven_at            TIMESTAMPTZ,
                    CONSTRAINT dead_letters_queue_message_id_key UNIQUE (queue, message_id)
                );
                CREATE INDEX IF NOT EXISTS dead_letters_listing_idx
                    ON dead_letters (first_dead_lettered_at DESC, id DESC);
                "#,
            )
            .await?;
        Ok(())
    }
}
