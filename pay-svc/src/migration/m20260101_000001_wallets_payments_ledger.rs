//! The baseline: `wallets`, `payments` and `ledger_entries`, every constraint and index
//! named explicitly. A database migrated by sqlx before sea-orm (it has
//! `_sqlx_migrations` and the tables already) is adopted instead: the constraints and
//! indexes whose Postgres-generated or old names differ are renamed, and
//! `_sqlx_migrations` is dropped.

use sea_orm::{DbBackend, FromQueryResult, Statement};
use sea_orm_migration::prelude::*;

/// Creates the wallet, payment and ledger tables, or adopts them from sqlx.
pub struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m20260101_000001_wallets_payments_ledger"
    }
}

/// The schema. DDL is kept as SQL: the constraint names are explicit and reviewable
/// here.
const CREATE: &str = r#"
-- One wallet per account. The balance never goes negative.
CREATE TABLE wallets (
    account_id    UUID CONSTRAINT wallets_pkey PRIMARY KEY,
    currency      TEXT NOT NULL CONSTRAINT wallets_currency_check CHECK (currency ~ '^[A-Z]{3}$'),
    balance_minor BIGINT NOT NULL CONSTRAINT wallets_balance_minor_check CHECK (balance_minor >= 0),
    created_at    TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at    TIMESTAMPTZ NOT NULL DEFAULT now()
);

-- One payment per booking. The idempotency key (the booking id) is written before
-- the charge; a PENDING row is only ever visible while its charge is in flight.
CREATE TABLE payments (
    payment_id      UUID CONSTRAINT payments_pkey PRIMARY KEY,
    booking_id      UUID NOT NULL CONSTRAINT payments_booking_id_key UNIQUE,
    account_id      UUID NOT NULL,
    status          TEXT NOT NULL CONSTRAINT payments_status_check
                        CHECK (status IN ('PENDING', 'CAPTURED', 'FAILED', 'REFUNDED')),
    amount_minor    BIGINT NOT NULL,
    currency        TEXT NOT NULL,
    method          TEXT NOT NULL,
    failure_reason  TEXT,
    idempotency_key TEXT NOT NULL CONSTRAINT payments_idempotency_key_key UNIQUE,
    created_at      TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at      TIMESTAMPTZ NOT NULL DEFAULT now(),
    refunded_at     TIMESTAMPTZ,
    CONSTRAINT payments_failure_reason_iff_failed_check
        CHECK ((status = 'FAILED') = (failure_reason IS NOT NULL))
);

CREATE INDEX payments_account_id_created_at_idx ON payments (account_id, created_at DESC);

-- Every balance change, append-only.
CREATE TABLE ledger_entries (
    seq                 BIGSERIAL CONSTRAINT ledger_entries_pkey PRIMARY KEY,
    entry_id            UUID NOT NULL CONSTRAINT ledger_entries_entry_id_key UNIQUE,
    account_id          UUID NOT NULL CONSTRAINT ledger_entries_account_id_fkey
                            REFERENCES wallets (account_id),
    kind                TEXT NOT NULL CONSTRAINT ledger_entries_kind_check
                            CHECK (kind IN ('WELCOME_CREDIT', 'PAYMENT', 'REFUND')),
    amount_minor        BIGINT NOT NULL,
    currency            TEXT NOT NULL,
    balance_after_minor BIGINT NOT NULL CONSTRAINT ledger_entries_balance_after_minor_check
                            CHECK (balance_after_minor >= 0),
    booking_id          UUID,
    payment_id          UUID CONSTRAINT ledger_entries_payment_id_fkey
                            REFERENCES payments (payment_id),
    created_at          TIMESTAMPTZ NOT NULL DEFAULT now()
);

CREATE INDEX ledger_entries_account_id_seq_idx ON ledger_entries (account_id, seq DESC);
-- At most one welcome credit per account, one debit and one refund per payment.
CREATE UNIQUE INDEX ledger_entries_one_welcome_credit_per_account_key
    ON ledger_entries (account_id) WHERE kind = 'WELCOME_CREDIT';
CREATE UNIQUE INDEX ledger_entries_one_kind_per_payment_key
    ON ledger_entries (payment_id, kind) WHERE payment_id IS NOT NULL;
"#;

/// Constraints whose name in a database from before sea-orm (Postgres-generated)
/// differs from the explicit one: table, old name, new name. The other constraints'
/// generated names (`wallets_pkey`, `payments_booking_id_key`,
/// `ledger_entries_account_id_fkey`, ...) already are the explicit ones.
const RENAMED_CONSTRAINTS: &[(&str, &str, &str)] = &[(
    "payments",
    "payments_check",
    "payments_failure_reason_iff_failed_check",
)];

/// Indexes created by name in the old SQL whose name differs from the explicit one:
/// old name, new name.
const RENAMED_INDEXES: &[(&str, &str)] = &[
    ("payments_account", "payments_account_id_created_at_idx"),
    (
        "ledger_entries_account",
        "ledger_entries_account_id_seq_idx",
    ),
    (
        "ledger_entries_one_welcome",
        "ledger_entries_one_welcome_credit_per_account_key",
    ),
    (
        "ledger_entries_one_per_payment",
        "ledger_entries_one_kind_per_payment_key",
    ),
];

/// Every constraint and index name [`CREATE`] gives; an adopted database must have
/// them all.
pub const NAMES: &[&str] = &[
    "wallets_pkey",
    "wallets_currency_check",
    "wallets_balance_minor_check",
    "payments_pkey",
    "payments_booking_id_key",
    "payments_status_check",
    "payments_idempotency_key_key",
    "payments_failure_reason_iff_failed_check",
    "payments_account_id_created_at_idx",
    "ledger_entries_pkey",
    "ledger_entries_entry_id_key",
    "ledger_entries_account_id_fkey",
    "ledger_entries_kind_check",
    "ledger_entries_balance_after_minor_check",
    "ledger_entries_payment_id_fkey",
    "ledger_entries_account_id_seq_idx",
    "ledger_entries_one_welcome_credit_per_account_key",
    "ledger_entries_one_kind_per_payment_key",
];

/// A row of the adoption check: a name the database lacks.
#[derive(Debug, sea_orm::FromQueryResult)]
struct MissingName {
    name: String,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let db = manager.get_connection();
        let from_sqlx = manager.has_table("_sqlx_migrations").await?;
        if from_sqlx && manager.has_table("wallets").await? {
            db.execute_unprepared(&adoption_sql()).await?;
            let missing = missing_names(db).await?;
            if !missing.is_empty() {
                return Err(DbErr::Migration(format!(
                    "the payment tables migrated by sqlx lack {}; they cannot be adopted",
                    missing.join(", ")
                )));
            }
            tracing::info!(
                renamed_constraints = RENAMED_CONSTRAINTS.len(),
                renamed_indexes = RENAMED_INDEXES.len(),
                "payment tables from sqlx adopted"
            );
        } else {
            db.execute_unprepared(CREATE).await?;
        }
        if from_sqlx {
            // sqlx's bookkeeping: seaql_migrations records the schema from now on.
            db.execute_unprepared("DROP TABLE _sqlx_migrations").await?;
        }
        Ok(())
    }
}

/// The renames, each guarded so that a name already explicit is left alone.
fn adoption_sql() -> String {
    let mut sql = String::new();
    for (table, old, new) in RENAMED_CONSTRAINTS {
        sql.push_str(&format!(
            "DO $$ BEGIN
                 IF EXISTS (SELECT 1 FROM pg_constraint
                            WHERE conrelid = '{table}'::regclass AND conname = '{old}') THEN
                     ALTER TABLE {table} RENAME CONSTRAINT {old} TO {new};
                 END IF;
             END $$;\n"
        ));
    }
    for (old, new) in RENAMED_INDEXES {
        sql.push_str(&format!("ALTER INDEX IF EXISTS {old} RENAME TO {new};\n"));
    }
    sql
}

/// The names of [`NAMES`] that are neither a constraint nor an index of the database.
async fn missing_names(db: &impl ConnectionTrait) -> Result<Vec<String>, DbErr> {
    let listed = NAMES
        .iter()
        .map(|name| format!("('{name}')"))
        .collect::<Vec<_>>()
        .join(", ");
    // Catalog lookup over a constant list: the query builder has no VALUES list.
    let rows = db
        .query_all_raw(Statement::from_string(
            DbBackend::Postgres,
            format!(
                "SELECT expected.name FROM (VALUES {listed}) AS expected (name)
                 WHERE NOT EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conname = expected.name)
                   AND NOT EXISTS (SELECT 1 FROM pg_class i
                                   WHERE i.relname = expected.name AND i.relkind = 'i')",
            ),
        ))
        .await?;
    rows.iter()
        .map(|row| MissingName::from_query_result(row, "").map(|missing| missing.name))
        .collect()
}
