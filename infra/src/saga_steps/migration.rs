//! The saga-timeline migration, listed by the migrator of every service that records
//! its half of a booking's saga (booking-svc, pay-svc), after its own tables and
//! infra's outbox/inbox, before infra's dead letters.
//!
//! `saga_steps`: one row per step (a status change, a message sent or received, and
//! each service's own: the payment deadline; a wallet debit or credit, a PSP call and
//! what came of it), each written in the same transaction as the effect it describes,
//! read oldest first per booking (`saga_steps_booking_id_at_idx`). No foreign key: a
//! step costs one INSERT on the checkout's, the saga handler's and the wallet's hot
//! paths, bookings are never deleted, and in pay-svc a step may precede its payment
//! row (a malformed request is recorded, never paid).

use sea_orm_migration::prelude::*;

/// Creates `saga_steps`.
pub struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m20261201_000005_saga_steps"
    }
}

/// The schema change, every name explicit.
const UP: &str = r#"
CREATE TABLE saga_steps (
    id           BIGINT GENERATED ALWAYS AS IDENTITY CONSTRAINT saga_steps_pkey PRIMARY KEY,
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
CREATE INDEX saga_steps_booking_id_at_idx ON saga_steps (booking_id, at, id);
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
