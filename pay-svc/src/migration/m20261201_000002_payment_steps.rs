//! The saga timeline, pay-svc's half: `payment_steps`, one row per step of a
//! booking's payment (a message received or sent, a wallet debit or credit, each PSP
//! call and what came of it, a status change), each written in the same transaction
//! as the effect it describes, read oldest first per booking
//! (`payment_steps_booking_id_at_idx`) for booking-svc's admin timeline. No foreign
//! key: a step costs one INSERT in the wallet's hot transaction, and a step may
//! precede its payment row (a malformed request is recorded, never paid).

use sea_orm_migration::prelude::*;

pub struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m20261201_000002_payment_steps"
    }
}

/// The schema change, every name explicit.
const UP: &str = r#"
CREATE TABLE payment_steps (
    id           BIGINT GENERATED ALWAYS AS IDENTITY CONSTRAINT payment_steps_pkey PRIMARY KEY,
    booking_id   UUID NOT NULL,
    at           TIMESTAMPTZ NOT NULL DEFAULT clock_timestamp(),
    kind         TEXT NOT NULL,
    from_status  TEXT,
    to_status    TEXT,
    reason       TEXT NOT NULL DEFAULT '',
    message_type TEXT,
    message_id   UUID,
    operation    TEXT,
    attempt      INT NOT NULL DEFAULT 0,
    outcome      TEXT NOT NULL DEFAULT '',
    http_status  INT,
    trace_id     TEXT NOT NULL DEFAULT '',
    detail       TEXT NOT NULL DEFAULT ''
);
CREATE INDEX payment_steps_booking_id_at_idx ON payment_steps (booking_id, at, id);
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
