//! The baseline: accounts, events, sections, seats, bookings and booking_seats, every
//! constraint and index named explicitly. A database from before sea-orm (it has the
//! old migrations table `_sqlx_migrations` and the tables) is adopted instead: the constraints
//! and indexes whose Postgres-generated or old names differ are renamed, and
//! `_sqlx_migrations` is dropped.

use sea_orm_migration::prelude::*;
use sea_orm_migration::sea_orm::{DbBackend, Statement};

/// The transaction-local setting by which an adoption tells
/// [`super::m20260101_000003_announce_existing_accounts`] that the old migration
/// `0002_account_opened_backfill` already announced the existing accounts.
pub(crate) const ACCOUNTS_ANNOUNCED: &str = "marquee.booking_accounts_announced";

pub struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m20260101_000001_accounts_catalog_bookings"
    }
}

/// The schema, every name explicit.
const CREATE: &str = r#"
CREATE TABLE accounts (
    id            UUID NOT NULL,
    email         TEXT NOT NULL,
    password_hash TEXT NOT NULL,
    display_name  TEXT NOT NULL,
    role          TEXT NOT NULL,
    created_at    TIMESTAMPTZ NOT NULL DEFAULT now(),
    CONSTRAINT accounts_pkey PRIMARY KEY (id),
    CONSTRAINT accounts_role_check CHECK (role IN ('BUYER', 'SELLER', 'ADMIN'))
);
CREATE UNIQUE INDEX accounts_lower_email_key ON accounts (lower(email));

CREATE TABLE events (
    id                  UUID NOT NULL,
    seller_id           UUID NOT NULL,
    title               TEXT NOT NULL,
    category            TEXT NOT NULL,
    description         TEXT NOT NULL,
    venue               TEXT NOT NULL,
    starts_at           TIMESTAMPTZ NOT NULL,
    sale_starts_at      TIMESTAMPTZ NOT NULL,
    sale_ends_at        TIMESTAMPTZ NOT NULL,
    max_seats_per_buyer INT NOT NULL,
    currency            TEXT NOT NULL,
    created_at          TIMESTAMPTZ NOT NULL DEFAULT now(),
    CONSTRAINT events_pkey PRIMARY KEY (id),
    CONSTRAINT events_seller_id_fkey FOREIGN KEY (seller_id) REFERENCES accounts (id),
    CONSTRAINT events_max_seats_per_buyer_check CHECK (max_seats_per_buyer > 0),
    CONSTRAINT events_sale_window_check CHECK (sale_starts_at < sale_ends_at)
);
CREATE INDEX events_starts_at_id_idx ON events (starts_at, id);

CREATE TABLE sections (
    id          UUID NOT NULL,
    event_id    UUID NOT NULL,
    name        TEXT NOT NULL,
    price_minor BIGINT NOT NULL,
    position    INT NOT NULL,
    CONSTRAINT sections_pkey PRIMARY KEY (id),
    CONSTRAINT sections_event_id_fkey FOREIGN KEY (event_id) REFERENCES events (id),
    CONSTRAINT sections_price_minor_check CHECK (price_minor >= 0),
    CONSTRAINT sections_event_id_name_key UNIQUE (event_id, name)
);

CREATE TABLE seats (
    id         UUID NOT NULL,
    event_id   UUID NOT NULL,
    section_id UUID NOT NULL,
    row_label  TEXT NOT NULL,
    number     TEXT NOT NULL,
    x          DOUBLE PRECISION NOT NULL,
    y          DOUBLE PRECISION NOT NULL,
    position   INT NOT NULL,
    CONSTRAINT seats_pkey PRIMARY KEY (id),
    CONSTRAINT seats_event_id_fkey FOREIGN KEY (event_id) REFERENCES events (id),
    CONSTRAINT seats_section_id_fkey FOREIGN KEY (section_id) REFERENCES sections (id),
    CONSTRAINT seats_section_id_row_label_number_key UNIQUE (section_id, row_label, number)
);
CREATE INDEX seats_event_id_position_idx ON seats (event_id, position);

CREATE TABLE bookings (
    id              UUID NOT NULL,
    event_id        UUID NOT NULL,
    buyer_id        UUID NOT NULL,
    hold_id         UUID NOT NULL,
    status          TEXT NOT NULL,
    total_minor     BIGINT NOT NULL,
    currency        TEXT NOT NULL,
    payment_method  TEXT NOT NULL,
    idempotency_key TEXT NOT NULL,
    cancel_reason   TEXT NOT NULL DEFAULT '',
    created_at      TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at      TIMESTAMPTZ NOT NULL DEFAULT now(),
    CONSTRAINT bookings_pkey PRIMARY KEY (id),
    CONSTRAINT bookings_event_id_fkey FOREIGN KEY (event_id) REFERENCES events (id),
    CONSTRAINT bookings_buyer_id_fkey FOREIGN KEY (buyer_id) REFERENCES accounts (id),
    CONSTRAINT bookings_hold_id_key UNIQUE (hold_id),
    CONSTRAINT bookings_status_check
        CHECK (status IN ('PENDING_PAYMENT', 'CONFIRMED', 'CANCELLING', 'CANCELLED')),
    CONSTRAINT bookings_total_minor_check CHECK (total_minor >= 0),
    CONSTRAINT bookings_buyer_id_idempotency_key_key UNIQUE (buyer_id, idempotency_key)
);
CREATE INDEX bookings_buyer_id_created_at_idx ON bookings (buyer_id, created_at DESC);

-- One row per seat of a booking. `active` is true while the booking holds or owns the
-- seat (PENDING_PAYMENT, CONFIRMED, CANCELLING); the partial unique index makes a second
-- active booking of a seat impossible, whatever Redis says.
CREATE TABLE booking_seats (
    booking_id  UUID NOT NULL,
    seat_id     UUID NOT NULL,
    event_id    UUID NOT NULL,
    price_minor BIGINT NOT NULL,
    active      BOOLEAN NOT NULL DEFAULT true,
    CONSTRAINT booking_seats_pkey PRIMARY KEY (booking_id, seat_id),
    CONSTRAINT booking_seats_booking_id_fkey FOREIGN KEY (booking_id) REFERENCES bookings (id),
    CONSTRAINT booking_seats_seat_id_fkey FOREIGN KEY (seat_id) REFERENCES seats (id),
    CONSTRAINT booking_seats_event_id_fkey FOREIGN KEY (event_id) REFERENCES events (id)
);
CREATE UNIQUE INDEX booking_seats_seat_id_active_key ON booking_seats (seat_id) WHERE active;
CREATE INDEX booking_seats_event_id_active_idx ON booking_seats (event_id) WHERE active;
"#;

/// The constraints whose names the old `0001_init.sql` left to Postgres and that
/// differ from [`CREATE`]'s: (table, old name, new name). Every other constraint was
/// generated with the name [`CREATE`] gives it.
const RENAMED_CONSTRAINTS: &[(&str, &str, &str)] =
    &[("events", "events_check", "events_sale_window_check")];

/// The indexes `0001_init.sql` named differently: (old name, new name).
const RENAMED_INDEXES: &[(&str, &str)] = &[
    ("accounts_email", "accounts_lower_email_key"),
    ("events_starts_at", "events_starts_at_id_idx"),
    ("seats_event", "seats_event_id_position_idx"),
    ("bookings_buyer", "bookings_buyer_id_created_at_idx"),
    (
        "booking_seats_one_active",
        "booking_seats_seat_id_active_key",
    ),
    ("booking_seats_event", "booking_seats_event_id_active_idx"),
];

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let db = manager.get_connection();
        let before_sea_orm = manager.has_table("_sqlx_migrations").await?;
        if before_sea_orm && manager.has_table("accounts").await? {
            adopt(manager).await?;
        } else {
            // DDL is kept as SQL: the constraint names are explicit and reviewable here.
            db.execute_unprepared(CREATE).await?;
        }
        if before_sea_orm {
            db.execute_unprepared("DROP TABLE _sqlx_migrations").await?;
        }
        Ok(())
    }
}

/// Adopts a database from before sea-orm: renames what `0001_init.sql` named differently
/// (each rename guarded, so a rerun or a half-renamed database is fine), checks that
/// every name [`CREATE`] gives now exists, and tells the announcement migration whether
/// the old backfill already ran.
async fn adopt(manager: &SchemaManager<'_>) -> Result<(), DbErr> {
    let db = manager.get_connection();
    for (table, old, new) in RENAMED_CONSTRAINTS {
        // PL/pgSQL: ALTER TABLE .. RENAME CONSTRAINT has no IF EXISTS.
        db.execute_unprepared(&format!(
            "DO $$ BEGIN
                 IF EXISTS (SELECT 1 FROM pg_constraint
                            WHERE conrelid = '{table}'::regclass AND conname = '{old}') THEN
                     ALTER TABLE {table} RENAME CONSTRAINT {old} TO {new};
                 END IF;
             END $$"
        ))
        .await?;
    }
    for (old, new) in RENAMED_INDEXES {
        db.execute_unprepared(&format!("ALTER INDEX IF EXISTS {old} RENAME TO {new}"))
            .await?;
    }
    let missing = missing_names(db).await?;
    if !missing.is_empty() {
        return Err(DbErr::Migration(format!(
            "adopting the booking database from before sea-orm: expected constraints or indexes \
             are missing: {}",
            missing.join(", ")
        )));
    }
    // A catalog query: `_sqlx_migrations` has no entity (it is dropped right after).
    let backfilled = db
        .query_one_raw(Statement::from_string(
            DbBackend::Postgres,
            "SELECT 1 AS found FROM _sqlx_migrations WHERE version = 2 AND success",
        ))
        .await?
        .is_some();
    if backfilled {
        // set_config has no query-builder form; transaction-local, so it only reaches
        // the announcement migration when both run in one transaction (as
        // `marquee_infra::db::migrate` runs them). Elsewhere the accounts are announced
        // again, which pay-svc ignores.
        db.execute_raw(Statement::from_sql_and_values(
            DbBackend::Postgres,
            "SELECT set_config($1, 'on', true)",
            [ACCOUNTS_ANNOUNCED.into()],
        ))
        .await?;
    }
    Ok(())
}

/// Every constraint and index name [`CREATE`] gives.
pub(crate) const NAMES: &[&str] = &[
    "accounts_pkey",
    "accounts_role_check",
    "accounts_lower_email_key",
    "events_pkey",
    "events_seller_id_fkey",
    "events_max_seats_per_buyer_check",
    "events_sale_window_check",
    "events_starts_at_id_idx",
    "sections_pkey",
    "sections_event_id_fkey",
    "sections_price_minor_check",
    "sections_event_id_name_key",
    "seats_pkey",
    "seats_event_id_fkey",
    "seats_section_id_fkey",
    "seats_section_id_row_label_number_key",
    "seats_event_id_position_idx",
    "bookings_pkey",
    "bookings_event_id_fkey",
    "bookings_buyer_id_fkey",
    "bookings_hold_id_key",
    "bookings_status_check",
    "bookings_total_minor_check",
    "bookings_buyer_id_idempotency_key_key",
    "bookings_buyer_id_created_at_idx",
    "booking_seats_pkey",
    "booking_seats_booking_id_fkey",
    "booking_seats_seat_id_fkey",
    "booking_seats_event_id_fkey",
    "booking_seats_seat_id_active_key",
    "booking_seats_event_id_active_idx",
];

/// The names of [`NAMES`] that are neither a constraint nor an index of the schema.
async fn missing_names(db: &SchemaManagerConnection<'_>) -> Result<Vec<String>, DbErr> {
    // A catalog query over an array parameter: pg_catalog has no entities.
    let rows = db
        .query_all_raw(Statement::from_sql_and_values(
            DbBackend::Postgres,
            "SELECT name FROM unnest($1::text[]) AS expected(name)
             WHERE NOT EXISTS (SELECT 1 FROM pg_constraint c
                               WHERE c.conname = expected.name
                                 AND c.connamespace = current_schema()::regnamespace)
               AND to_regclass(expected.name) IS NULL",
            [NAMES
                .iter()
                .map(|name| (*name).to_owned())
                .collect::<Vec<String>>()
                .into()],
        ))
        .await?;
    rows.iter()
        .map(|row| row.try_get::<String>("", "name"))
        .collect()
}
