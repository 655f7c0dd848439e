//! `pay-svc migrate`, the binary a Kubernetes Job runs once per deploy, and
//! `MIGRATE_ON_START=false` replicas: the checks every service with a database passes
//! (`marquee_testkit::migrate`), against the real PostgreSQL and RabbitMQ. And a
//! database migrated by sqlx before sea-orm: adopted with its data, its constraints and
//! indexes renamed to the explicit names, and then identical to a fresh one.

use std::collections::BTreeSet;

use marquee_infra::db;
use marquee_testkit::adopt::{SQLX_ERA_OUTBOX, SQLX_MIGRATIONS_TABLE, schema};
use marquee_testkit::migrate::{self, Binary};
use marquee_testkit::pg_base;
use pay_svc::Migrator;
use pay_svc::migration::m20260101_000001_wallets_payments_ledger::NAMES;
use sea_orm::{ConnectionTrait, DatabaseConnection};
use sea_orm_migration::MigratorTrait;
use sqlx::PgPool;
use uuid::Uuid;

fn migrations() -> usize {
    Migrator::migrations().len()
}

const PAY: Binary = Binary {
    name: "pay-svc",
    path: env!("CARGO_BIN_EXE_pay-svc"),
    env_prefix: "PAY",
    migrations,
    queues: &[pay_svc::saga::QUEUE],
};

#[tokio::test]
async fn migrate_twice_is_a_no_op_and_a_replica_that_does_not_migrate_serves() {
    migrate::migrate_twice_is_a_no_op_and_a_replica_that_does_not_migrate_serves(PAY).await;
}

#[tokio::test]
async fn a_replica_that_does_not_migrate_refuses_an_unmigrated_database() {
    migrate::a_replica_that_does_not_migrate_refuses_an_unmigrated_database(PAY).await;
}

#[tokio::test]
async fn an_unknown_argument_prints_the_usage_and_exits_2() {
    migrate::an_unknown_argument_prints_the_usage_and_exits_2(PAY).await;
}

/// What sqlx applied before sea-orm: `pay-svc/migrations/20260101000001_wallets_payments_ledger.sql`.
const SQLX_PAY_SCHEMA: &str = r#"
CREATE TABLE wallets (
    account_id    UUID PRIMARY KEY,
    currency      TEXT NOT NULL CHECK (currency ~ '^[A-Z]{3}$'),
    balance_minor BIGINT NOT NULL CHECK (balance_minor >= 0),
    created_at    TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at    TIMESTAMPTZ NOT NULL DEFAULT now()
);

CREATE TABLE payments (
    payment_id      UUID PRIMARY KEY,
    booking_id      UUID NOT NULL UNIQUE,
    account_id      UUID NOT NULL,
    status          TEXT NOT NULL CHECK (status IN ('PENDING', 'CAPTURED', 'FAILED', 'REFUNDED')),
    amount_minor    BIGINT NOT NULL,
    currency        TEXT NOT NULL,
    method          TEXT NOT NULL,
    failure_reason  TEXT,
    idempotency_key TEXT NOT NULL UNIQUE,
    created_at      TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at      TIMESTAMPTZ NOT NULL DEFAULT now(),
    refunded_at     TIMESTAMPTZ,
    CHECK ((status = 'FAILED') = (failure_reason IS NOT NULL))
);

CREATE INDEX payments_account ON payments (account_id, created_at DESC);

CREATE TABLE ledger_entries (
    seq                 BIGSERIAL PRIMARY KEY,
    entry_id            UUID NOT NULL UNIQUE,
    account_id          UUID NOT NULL REFERENCES wallets (account_id),
    kind                TEXT NOT NULL CHECK (kind IN ('WELCOME_CREDIT', 'PAYMENT', 'REFUND')),
    amount_minor        BIGINT NOT NULL,
    currency            TEXT NOT NULL,
    balance_after_minor BIGINT NOT NULL CHECK (balance_after_minor >= 0),
    booking_id          UUID,
    payment_id          UUID REFERENCES payments (payment_id),
    created_at          TIMESTAMPTZ NOT NULL DEFAULT now()
);

CREATE INDEX ledger_entries_account ON ledger_entries (account_id, seq DESC);
CREATE UNIQUE INDEX ledger_entries_one_welcome ON ledger_entries (account_id) WHERE kind = 'WELCOME_CREDIT';
CREATE UNIQUE INDEX ledger_entries_one_per_payment ON ledger_entries (payment_id, kind) WHERE payment_id IS NOT NULL;
"#;

/// sqlx's bookkeeping row for the one pay-svc migration it applied.
const SQLX_BOOKKEEPING_ROW: &str = "INSERT INTO _sqlx_migrations
    (version, description, success, checksum, execution_time)
    VALUES (20260101000001, 'wallets payments ledger', TRUE, '\\x00', 1)";

/// The Postgres-generated or old names the adoption replaces.
const OLD_NAMES: &[&str] = &[
    "payments_check",
    "payments_account",
    "ledger_entries_account",
    "ledger_entries_one_welcome",
    "ledger_entries_one_per_payment",
    "outbox_unsent",
];

/// Runs `test` on a database of its own (created empty), then drops it, also when the
/// test failed.
async fn with_database<F, Fut>(test: F)
where
    F: FnOnce(String) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let url = format!("{}/pay_adopt_{}", pg_base(), Uuid::new_v4().simple());
    let outcome = tokio::spawn(test(url.clone())).await;
    db::drop_database(&url).await.expect("drop test database");
    if let Err(error) = outcome {
        std::panic::resume_unwind(error.into_panic());
    }
}

/// Names of constraints and indexes in the database.
async fn names(pool: &PgPool) -> BTreeSet<String> {
    let names: Vec<String> = sqlx::query_scalar(
        "SELECT conname::text FROM pg_constraint WHERE connamespace = 'public'::regnamespace
         UNION SELECT indexname::text FROM pg_indexes WHERE schemaname = 'public'",
    )
    .fetch_all(pool)
    .await
    .expect("names");
    names.into_iter().collect()
}

async fn exists(pool: &PgPool, table: &str) -> bool {
    sqlx::query_scalar("SELECT to_regclass($1) IS NOT NULL")
        .bind(table)
        .fetch_one(pool)
        .await
        .expect("to_regclass")
}

/// A fresh database migrated by sea-orm: its schema, for comparison.
async fn fresh_schema() -> BTreeSet<String> {
    let url = format!("{}/pay_fresh_{}", pg_base(), Uuid::new_v4().simple());
    let fresh: DatabaseConnection = db::connect(&url, 1).await.expect("fresh database");
    db::migrate::<Migrator>(&fresh)
        .await
        .expect("migrate fresh");
    let schema = schema(&fresh).await;
    fresh.close().await.expect("close");
    db::drop_database(&url).await.expect("drop fresh database");
    schema
}

#[tokio::test]
async fn a_database_migrated_by_sqlx_is_adopted_with_its_data_and_explicit_names() {
    with_database(|url| async move {
        let old: DatabaseConnection = db::connect(&url, 2).await.expect("create database");
        old.execute_unprepared(SQLX_PAY_SCHEMA)
            .await
            .expect("the sqlx-era schema");
        for ddl in [SQLX_ERA_OUTBOX, SQLX_MIGRATIONS_TABLE, SQLX_BOOKKEEPING_ROW] {
            old.execute_unprepared(ddl)
                .await
                .expect("the sqlx-era outbox and bookkeeping");
        }
        let pool = old.get_postgres_connection_pool().clone();
        let (account, booking, payment) = (Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4());
        sqlx::query(
            "INSERT INTO wallets (account_id, currency, balance_minor) VALUES ($1, 'KRW', 70000)",
        )
        .bind(account)
        .execute(&pool)
        .await
        .expect("wallet");
        sqlx::query(
            "INSERT INTO payments (payment_id, booking_id, account_id, status, amount_minor,
                                   currency, method, idempotency_key)
             VALUES ($1, $2, $3, 'CAPTURED', 30000, 'KRW', 'WALLET', $2::text)",
        )
        .bind(payment)
        .bind(booking)
        .bind(account)
        .execute(&pool)
        .await
        .expect("payment");
        sqlx::query(
            "INSERT INTO ledger_entries (entry_id, account_id, kind, amount_minor, currency,
                                         balance_after_minor, booking_id, payment_id)
             VALUES ($1, $3, 'WELCOME_CREDIT', 100000, 'KRW', 100000, NULL, NULL),
                    ($2, $3, 'PAYMENT', -30000, 'KRW', 70000, $4, $5)",
        )
        .bind(Uuid::now_v7())
        .bind(Uuid::now_v7())
        .bind(account)
        .bind(booking)
        .bind(payment)
        .execute(&pool)
        .await
        .expect("ledger entries");
        sqlx::query(
            "INSERT INTO outbox (message_id, kind, saga_id, version, payload)
             VALUES ($1, 'payment.succeeded', $2, 1, '\\x01')",
        )
        .bind(Uuid::now_v7())
        .bind(booking)
        .execute(&pool)
        .await
        .expect("unsent outbox row");
        let before = names(&pool).await;
        for name in OLD_NAMES {
            assert!(before.contains(*name), "the sqlx-era schema has no {name}");
        }

        let migrated = db::migrate::<Migrator>(&old).await.expect("adopt");
        assert_eq!(
            migrated.applied,
            Migrator::migrations()
                .iter()
                .map(|m| m.name().to_owned())
                .collect::<Vec<_>>(),
            "both migrations are recorded as applied"
        );

        // The explicit names, and none of the old ones.
        let after = names(&pool).await;
        for name in NAMES {
            assert!(after.contains(*name), "{name} missing after adoption");
        }
        for name in OLD_NAMES {
            assert!(!after.contains(*name), "{name} survived the adoption");
        }
        assert!(!exists(&pool, "_sqlx_migrations").await);
        let recorded: i64 = sqlx::query_scalar("SELECT count(*) FROM seaql_migrations")
            .fetch_one(&pool)
            .await
            .expect("seaql_migrations");
        assert_eq!(recorded, migrations() as i64);

        // Identical to a database sea-orm migrated from scratch.
        assert_eq!(schema(&old).await, fresh_schema().await);

        // The data survived.
        let balance: i64 =
            sqlx::query_scalar("SELECT balance_minor FROM wallets WHERE account_id = $1")
                .bind(account)
                .fetch_one(&pool)
                .await
                .expect("wallet survived");
        assert_eq!(balance, 70_000);
        let status: String =
            sqlx::query_scalar("SELECT status FROM payments WHERE booking_id = $1")
                .bind(booking)
                .fetch_one(&pool)
                .await
                .expect("payment survived");
        assert_eq!(status, "CAPTURED");
        let entries: i64 =
            sqlx::query_scalar("SELECT count(*) FROM ledger_entries WHERE account_id = $1")
                .bind(account)
                .fetch_one(&pool)
                .await
                .expect("ledger survived");
        assert_eq!(entries, 2);
        let unsent: i64 = sqlx::query_scalar("SELECT count(*) FROM outbox WHERE sent_at IS NULL")
            .fetch_one(&pool)
            .await
            .expect("outbox survived");
        assert_eq!(unsent, 1);

        // Violations now name the explicit constraints.
        let second_welcome = old
            .execute_unprepared(&format!(
                "INSERT INTO ledger_entries (entry_id, account_id, kind, amount_minor, currency,
                                             balance_after_minor)
                 VALUES ('{}', '{account}', 'WELCOME_CREDIT', 1, 'KRW', 1)",
                Uuid::now_v7()
            ))
            .await
            .expect_err("a second welcome credit");
        assert_eq!(
            db::violated_constraint(&second_welcome).as_deref(),
            Some("ledger_entries_one_welcome_credit_per_account_key")
        );
        let failed_without_reason = old
            .execute_unprepared(&format!(
                "UPDATE payments SET status = 'FAILED' WHERE payment_id = '{payment}'"
            ))
            .await
            .expect_err("FAILED without a reason");
        assert_eq!(
            db::violated_constraint(&failed_without_reason).as_deref(),
            Some("payments_failure_reason_iff_failed_check")
        );

        // Adopted once: migrating again does nothing.
        let again = db::migrate::<Migrator>(&old).await.expect("migrate again");
        assert!(again.is_empty(), "applied again: {:?}", again.applied);
        old.close().await.expect("close");
    })
    .await;
}
