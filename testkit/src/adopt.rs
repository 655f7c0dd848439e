//! What the adoption tests of booking-svc and pay-svc share: the DDL the sqlx era left
//! in every service database (infra's outbox/inbox and sqlx's bookkeeping table), and
//! a database's schema as comparable text, so an adopted database can be compared with
//! a freshly migrated one.

use std::collections::BTreeSet;

use sea_orm::{DatabaseConnection, DbBackend, FromQueryResult, Statement};

/// The outbox and inbox as the sqlx-era infra created them after a service's migrations.
pub const SQLX_ERA_OUTBOX: &str = r#"
CREATE TABLE IF NOT EXISTS outbox (
    seq           BIGSERIAL PRIMARY KEY,
    message_id    UUID NOT NULL UNIQUE,
    kind          TEXT NOT NULL,
    saga_id       UUID NOT NULL,
    version       INT NOT NULL,
    payload       BYTEA NOT NULL,
    trace_context JSONB NOT NULL DEFAULT '{}',
    occurred_at   TIMESTAMPTZ NOT NULL DEFAULT now(),
    sent_at       TIMESTAMPTZ
);
CREATE INDEX IF NOT EXISTS outbox_unsent ON outbox (seq) WHERE sent_at IS NULL;
CREATE TABLE IF NOT EXISTS inbox (
    consumer    TEXT NOT NULL,
    message_id  UUID NOT NULL,
    received_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (consumer, message_id)
);
"#;

/// sqlx's migrations table, as sqlx creates it.
pub const SQLX_MIGRATIONS_TABLE: &str = r#"
CREATE TABLE _sqlx_migrations (
    version        BIGINT PRIMARY KEY,
    description    TEXT NOT NULL,
    installed_on   TIMESTAMPTZ NOT NULL DEFAULT now(),
    success        BOOLEAN NOT NULL,
    checksum       BYTEA NOT NULL,
    execution_time BIGINT NOT NULL
);
"#;

#[derive(Debug, FromQueryResult)]
struct SchemaItem {
    kind: String,
    owner: String,
    name: String,
    definition: String,
}

/// Every constraint, index and column of the public schema (the migration tables'
/// aside), one line each: `<kind> <table>.<name> <definition>`.
pub async fn schema(db: &DatabaseConnection) -> BTreeSet<String> {
    SchemaItem::find_by_statement(Statement::from_string(
        DbBackend::Postgres,
        "SELECT 'constraint' AS kind, conrelid::regclass::text AS owner, conname::text AS name,
                pg_get_constraintdef(oid) AS definition
         FROM pg_constraint WHERE connamespace = 'public'::regnamespace
         UNION ALL
         SELECT 'index', tablename::text, indexname::text, indexdef
         FROM pg_indexes WHERE schemaname = 'public'
         UNION ALL
         SELECT 'column', table_name::text, column_name::text,
                concat_ws(' ', data_type, is_nullable, column_default, ordinal_position)
         FROM information_schema.columns WHERE table_schema = 'public'",
    ))
    .all(db)
    .await
    .expect("read the schema")
    .into_iter()
    .filter(|item| !item.owner.contains("migrations"))
    .map(|item| {
        format!(
            "{} {}.{} {}",
            item.kind, item.owner, item.name, item.definition
        )
    })
    .collect()
}
