//! Databases from before sea-orm: sqlx migrated them (`_sqlx_migrations`, the tables
//! with Postgres-generated constraint names) and the old infra created the outbox.
//! The migrator adopts them: the schema ends up identical to a new database's, every
//! explicit constraint and index name exists, the data survives, and the accounts are
//! announced exactly once.

use futures::FutureExt as _;
use marquee_infra::db;
use marquee_testkit::adopt::{SQLX_ERA_OUTBOX, SQLX_MIGRATIONS_TABLE, schema};
use sea_orm::{ConnectionTrait, DatabaseConnection, DbBackend, Statement};
use sea_orm_migration::MigratorTrait;
use uuid::Uuid;

use booking_svc::entity::{accounts, booking_seats, bookings};
use booking_svc::migration::Migrator;

/// sqlx's `0001_init.sql`, as it was.
const OLD_INIT: &str = r#"
CREATE TABLE accounts (
    id            UUID PRIMARY KEY,
    email         TEXT NOT NULL,
    password_hash TEXT NOT NULL,
    display_name  TEXT NOT NULL,
    role          TEXT NOT NULL CHECK (role IN ('BUYER', 'SELLER', 'ADMIN')),
    created_at    TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX accounts_email ON accounts (lower(email));

CREATE TABLE events (
    id                  UUID PRIMARY KEY,
    seller_id           UUID NOT NULL REFERENCES accounts (id),
    title               TEXT NOT NULL,
    category            TEXT NOT NULL,
    description         TEXT NOT NULL,
    venue               TEXT NOT NULL,
    starts_at           TIMESTAMPTZ NOT NULL,
    sale_starts_at      TIMESTAMPTZ NOT NULL,
    sale_ends_at        TIMESTAMPTZ NOT NULL,
    max_seats_per_buyer INT NOT NULL CHECK (max_seats_per_buyer > 0),
    currency            TEXT NOT NULL,
    created_at          TIMESTAMPTZ NOT NULL DEFAULT now(),
    CHECK (sale_starts_at < sale_ends_at)
);
CREATE INDEX events_starts_at ON events (starts_at, id);

CREATE TABLE sections (
    id          UUID PRIMARY KEY,
    event_id    UUID NOT NULL REFERENCES events (id),
    name        TEXT NOT NULL,
    price_minor BIGINT NOT NULL CHECK (price_minor >= 0),
    position    INT NOT NULL,
    UNIQUE (event_id, name)
);

CREATE TABLE seats (
    id         UUID PRIMARY KEY,
    event_id   UUID NOT NULL REFERENCES events (id),
    section_id UUID NOT NULL REFERENCES sections (id),
    row_label  TEXT NOT NULL,
    number     TEXT NOT NULL,
    x          DOUBLE PRECISION NOT NULL,
    y          DOUBLE PRECISION NOT NULL,
    position   INT NOT NULL,
    UNIQUE (section_id, row_label, number)
);
CREATE INDEX seats_event ON seats (event_id, position);

CREATE TABLE bookings (
    id              UUID PRIMARY KEY,
    event_id        UUID NOT NULL REFERENCES events (id),
    buyer_id        UUID NOT NULL REFERENCES accounts (id),
    hold_id         UUID NOT NULL UNIQUE,
    status          TEXT NOT NULL CHECK (status IN ('PENDING_PAYMENT', 'CONFIRMED', 'CANCELLING', 'CANCELLED')),
    total_minor     BIGINT NOT NULL CHECK (total_minor >= 0),
    currency        TEXT NOT NULL,
    payment_method  TEXT NOT NULL,
    idempotency_key TEXT NOT NULL,
    cancel_reason   TEXT NOT NULL DEFAULT '',
    created_at      TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at      TIMESTAMPTZ NOT NULL DEFAULT now(),
    UNIQUE (buyer_id, idempotency_key)
);
CREATE INDEX bookings_buyer ON bookings (buyer_id, created_at DESC);

CREATE TABLE booking_seats (
    booking_id  UUID NOT NULL REFERENCES bookings (id),
    seat_id     UUID NOT NULL REFERENCES seats (id),
    event_id    UUID NOT NULL REFERENCES events (id),
    price_minor BIGINT NOT NULL,
    active      BOOLEAN NOT NULL DEFAULT true,
    PRIMARY KEY (booking_id, seat_id)
);
CREATE UNIQUE INDEX booking_seats_one_active ON booking_seats (seat_id) WHERE active;
CREATE INDEX booking_seats_event ON booking_seats (event_id) WHERE active;
"#;

/// sqlx's `0002_account_opened_backfill.sql`, as it was.
const OLD_BACKFILL: &str = r#"
DO $$
BEGIN
    IF to_regclass('outbox') IS NOT NULL THEN
        INSERT INTO outbox (message_id, kind, saga_id, version, payload)
        SELECT gen_random_uuid(), 'account.opened', id, 1,
               '\x0a24'::bytea || convert_to(id::text, 'UTF8')
        FROM accounts;
    END IF;
END
$$;
"#;

async fn count(db: &DatabaseConnection, sql: &str) -> i64 {
    db.query_one_raw(Statement::from_string(DbBackend::Postgres, sql))
        .await
        .expect("count")
        .expect("a row")
        .try_get_by_index::<i64>(0)
        .expect("a count")
}

/// A fresh database, dropped after `test` (also when it failed).
async fn with_database<F, Fut>(name: &str, test: F)
where
    F: FnOnce(DatabaseConnection) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let url = format!(
        "{}/test_{name}_{}",
        marquee_testkit::pg_base(),
        Uuid::new_v4().simple()
    );
    let db = db::connect(&url, 2).await.expect("create the database");
    let outcome = std::panic::AssertUnwindSafe(test(db.clone()))
        .catch_unwind()
        .await;
    let _ = db.close().await;
    let _ = db::drop_database(&url).await;
    if let Err(panic) = outcome {
        std::panic::resume_unwind(panic);
    }
}

/// Ids of what [`build_old`] stored.
struct OldData {
    buyer: Uuid,
    seat: Uuid,
    event: Uuid,
}

/// A database as the sqlx-era booking-svc left it: the migrations in `applied`
/// (1 = init, 2 = backfill), the outbox, and an account, an event with a seat and a
/// confirmed booking of it. With the backfill applied the accounts were announced
/// (once each); without it, not.
async fn build_old(db: &DatabaseConnection, applied: &[i64]) -> OldData {
    db.execute_unprepared(SQLX_MIGRATIONS_TABLE)
        .await
        .expect("_sqlx_migrations");
    db.execute_unprepared(OLD_INIT).await.expect("0001_init");
    for version in applied {
        db.execute_raw(Statement::from_sql_and_values(
            DbBackend::Postgres,
            "INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time)
             VALUES ($1, 'old', true, '\\x00'::bytea, 1)",
            [(*version).into()],
        ))
        .await
        .expect("record the migration");
    }
    db.execute_unprepared(SQLX_ERA_OUTBOX)
        .await
        .expect("old outbox");
    let (buyer, event, section, seat, booking) = (
        Uuid::new_v4(),
        Uuid::new_v4(),
        Uuid::new_v4(),
        Uuid::new_v4(),
        Uuid::new_v4(),
    );
    db.execute_raw(Statement::from_sql_and_values(
        DbBackend::Postgres,
        "INSERT INTO accounts (id, email, password_hash, display_name, role)
         VALUES ($1, 'Old.Buyer@example.com', 'hash', 'Old Account', 'SELLER');
         ",
        [buyer.into()],
    ))
    .await
    .expect("account");
    db.execute_raw(Statement::from_sql_and_values(
        DbBackend::Postgres,
        "INSERT INTO events (id, seller_id, title, category, description, venue, starts_at,
                             sale_starts_at, sale_ends_at, max_seats_per_buyer, currency)
         VALUES ($1, $2, 'Old show', 'concert', '', 'Hall', now() + interval '2 days',
                 now() - interval '1 day', now() + interval '1 day', 4, 'KRW')",
        [event.into(), buyer.into()],
    ))
    .await
    .expect("event");
    db.execute_raw(Statement::from_sql_and_values(
        DbBackend::Postgres,
        "INSERT INTO sections (id, event_id, name, price_minor, position)
         VALUES ($1, $2, 'R', 30000, 0)",
        [section.into(), event.into()],
    ))
    .await
    .expect("section");
    db.execute_raw(Statement::from_sql_and_values(
        DbBackend::Postgres,
        "INSERT INTO seats (id, event_id, section_id, row_label, number, x, y, position)
         VALUES ($1, $2, $3, 'A', '1', 0, 0, 0)",
        [seat.into(), event.into(), section.into()],
    ))
    .await
    .expect("seat");
    db.execute_raw(Statement::from_sql_and_values(
        DbBackend::Postgres,
        "INSERT INTO bookings (id, event_id, buyer_id, hold_id, status, total_minor, currency,
                               payment_method, idempotency_key)
         VALUES ($1, $2, $3, $4, 'CONFIRMED', 30000, 'KRW', 'WALLET', 'key-1')",
        [
            booking.into(),
            event.into(),
            buyer.into(),
            Uuid::new_v4().into(),
        ],
    ))
    .await
    .expect("booking");
    db.execute_raw(Statement::from_sql_and_values(
        DbBackend::Postgres,
        "INSERT INTO booking_seats (booking_id, seat_id, event_id, price_minor)
         VALUES ($1, $2, $3, 30000)",
        [booking.into(), seat.into(), event.into()],
    ))
    .await
    .expect("booking seat");
    if applied.contains(&2) {
        // What the backfill did for the accounts that existed when it ran.
        db.execute_unprepared(OLD_BACKFILL)
            .await
            .expect("0002_backfill");
    }
    OldData { buyer, seat, event }
}

const ANNOUNCEMENTS: &str = "SELECT count(*) FROM outbox WHERE kind = 'account.opened'";

#[tokio::test]
async fn a_database_sqlx_migrated_is_adopted_with_explicit_names_and_its_data() {
    with_database("booking_fresh", |fresh| async move {
        db::migrate::<Migrator>(&fresh)
            .await
            .expect("migrate a new database");
        let expected = schema(&fresh).await;
        assert!(expected.len() > 50, "too small a schema: {expected:?}");

        with_database("booking_adopt", |old| async move {
            let data = build_old(&old, &[1, 2]).await;
            assert_eq!(count(&old, ANNOUNCEMENTS).await, 1);

            let migrated = db::migrate::<Migrator>(&old).await.expect("adopt");
            let all: Vec<String> = Migrator::migrations()
                .iter()
                .map(|m| m.name().to_owned())
                .collect();
            assert_eq!(migrated.applied, all);

            // The same schema as a new database: columns, constraints, indexes, names.
            assert_eq!(schema(&old).await, expected);
            // Each line is `<kind> <table>.<name> <definition>`.
            let names: Vec<&str> = expected
                .iter()
                .filter_map(|item| item.split_whitespace().nth(1)?.split_once('.'))
                .map(|(_, name)| name)
                .collect();
            for name in [
                "accounts_lower_email_key",
                "events_sale_window_check",
                "events_starts_at_id_idx",
                "seats_event_id_position_idx",
                "bookings_buyer_id_created_at_idx",
                "booking_seats_seat_id_active_key",
                "booking_seats_event_id_active_idx",
                "outbox_unsent_idx",
            ] {
                assert!(names.contains(&name), "{name} is missing");
            }
            for old_name in ["accounts_email", "events_check", "booking_seats_one_active"] {
                assert!(!names.contains(&old_name), "{old_name} is left");
            }
            assert_eq!(
                count(
                    &old,
                    "SELECT count(*) FROM pg_class WHERE relname = '_sqlx_migrations'"
                )
                .await,
                0,
                "_sqlx_migrations is left"
            );

            // The data survived, and the accounts the backfill announced are not again.
            assert_eq!(count(&old, "SELECT count(*) FROM accounts").await, 1);
            assert_eq!(
                count(
                    &old,
                    "SELECT count(*) FROM bookings WHERE status = 'CONFIRMED'"
                )
                .await,
                1
            );
            assert_eq!(
                count(&old, "SELECT count(*) FROM booking_seats WHERE active").await,
                1
            );
            assert_eq!(count(&old, ANNOUNCEMENTS).await, 1);

            // Violations name the explicit constraints errors are classified by.
            let same_email = old
                .execute_raw(Statement::from_sql_and_values(
                    DbBackend::Postgres,
                    "INSERT INTO accounts (id, email, password_hash, display_name, role)
                     VALUES ($1, 'old.buyer@EXAMPLE.com', 'hash', 'Again', 'BUYER')",
                    [Uuid::new_v4().into()],
                ))
                .await
                .expect_err("the email is taken, whatever its case");
            assert_eq!(
                db::violated_constraint(&same_email).as_deref(),
                Some(accounts::EMAIL_KEY)
            );
            let same_key = old
                .execute_raw(Statement::from_sql_and_values(
                    DbBackend::Postgres,
                    "INSERT INTO bookings (id, event_id, buyer_id, hold_id, status, total_minor,
                                           currency, payment_method, idempotency_key)
                     VALUES ($1, $2, $3, $4, 'PENDING_PAYMENT', 0, 'KRW', 'WALLET', 'key-1')",
                    [
                        Uuid::new_v4().into(),
                        data.event.into(),
                        data.buyer.into(),
                        Uuid::new_v4().into(),
                    ],
                ))
                .await
                .expect_err("the idempotency key is taken");
            assert_eq!(
                db::violated_constraint(&same_key).as_deref(),
                Some(bookings::IDEMPOTENCY_KEY)
            );
            let second = Uuid::new_v4();
            old.execute_raw(Statement::from_sql_and_values(
                DbBackend::Postgres,
                "INSERT INTO bookings (id, event_id, buyer_id, hold_id, status, total_minor,
                                       currency, payment_method, idempotency_key)
                 VALUES ($1, $2, $3, $4, 'PENDING_PAYMENT', 0, 'KRW', 'WALLET', 'key-2')",
                [
                    second.into(),
                    data.event.into(),
                    data.buyer.into(),
                    Uuid::new_v4().into(),
                ],
            ))
            .await
            .expect("a second booking");
            let seat_taken = old
                .execute_raw(Statement::from_sql_and_values(
                    DbBackend::Postgres,
                    "INSERT INTO booking_seats (booking_id, seat_id, event_id, price_minor)
                     VALUES ($1, $2, $3, 0)",
                    [second.into(), data.seat.into(), data.event.into()],
                ))
                .await
                .expect_err("the seat is actively booked");
            assert_eq!(
                db::violated_constraint(&seat_taken).as_deref(),
                Some(booking_seats::ONE_ACTIVE_SEAT_KEY)
            );

            // Adopted once: a second run applies nothing.
            let again = db::migrate::<Migrator>(&old).await.expect("migrate again");
            assert!(again.is_empty(), "applied again: {:?}", again.applied);
        })
        .await;
    })
    .await;
}

#[tokio::test]
async fn a_database_from_before_the_backfill_announces_its_accounts_once() {
    with_database("booking_adopt_nobackfill", |old| async move {
        build_old(&old, &[1]).await;
        assert_eq!(count(&old, ANNOUNCEMENTS).await, 0);

        db::migrate::<Migrator>(&old).await.expect("adopt");
        assert_eq!(count(&old, ANNOUNCEMENTS).await, 1);
        assert_eq!(count(&old, "SELECT count(*) FROM accounts").await, 1);

        let again = db::migrate::<Migrator>(&old).await.expect("migrate again");
        assert!(again.is_empty());
        assert_eq!(count(&old, ANNOUNCEMENTS).await, 1);
    })
    .await;
}

#[tokio::test]
async fn a_new_database_announces_nothing() {
    with_database("booking_new", |new| async move {
        let migrated = db::migrate::<Migrator>(&new).await.expect("migrate");
        assert_eq!(migrated.applied.len(), Migrator::migrations().len());
        assert_eq!(count(&new, ANNOUNCEMENTS).await, 0);
    })
    .await;
}
