//! The waiting rooms (issue 11): one row per event that has one, with how it admits
//! buyers. The queue itself (tickets, places, admissions) lives in Redis; this row is
//! what every replica reads to know which events need an admission.

use sea_orm_migration::prelude::*;

pub struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m20261201_000005_waiting_rooms"
    }
}

/// The schema change, every name explicit.
const UP: &str = r#"
CREATE TABLE waiting_rooms (
    event_id uuid NOT NULL,
    opens_at timestamptz NOT NULL,
    admit_per_second integer NOT NULL,
    max_shoppers integer NOT NULL,
    admission_seconds integer NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT waiting_rooms_pkey PRIMARY KEY (event_id),
    CONSTRAINT waiting_rooms_event_id_fkey FOREIGN KEY (event_id) REFERENCES events (id),
    CONSTRAINT waiting_rooms_pace_check CHECK (
        admit_per_second >= 0 AND max_shoppers >= 0
        AND (admit_per_second > 0 OR max_shoppers > 0)),
    CONSTRAINT waiting_rooms_admission_seconds_check CHECK (admission_seconds > 0)
);
"#;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        // DDL is kept as SQL: the constraint names are explicit and reviewable here.
        manager.get_connection().execute_unprepared(UP).await?;
        Ok(())
    }
}
