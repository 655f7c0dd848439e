//! PostgreSQL plumbing through sea-orm: create the service's database if it is missing,
//! connect a pool, migrate a service's schema (its sea-orm-migration [`MigratorTrait`],
//! which includes the outbox/inbox migration from [`crate::outbox::migration`]) or
//! check that it is current, and classify database errors by SQLSTATE and by the
//! explicit constraint names the migrations give.

use std::collections::HashSet;
use std::time::Duration;

use anyhow::Context as _;
use sea_orm::sea_query::{
    Alias, CommonTableExpression, PostgresQueryBuilder, SelectStatement, SubQueryStatement,
    WithClause,
};
use sea_orm::{
    ConnectOptions, ConnectionTrait, Database, DatabaseConnection, DbBackend, DbErr, EntityTrait,
    QueryOrder, RuntimeErr, Statement, TransactionTrait,
};
use sea_orm_migration::{MigratorTrait, seaql_migrations};

/// Creates the database named in `url` if it does not exist (connecting to the
/// server's `postgres` database to do so), then returns a pool of `max_connections`.
pub async fn connect(url: &str, max_connections: u32) -> anyhow::Result<DatabaseConnection> {
    ensure_database(url).await?;
    open(url, max_connections).await
}

/// A pool of `max_connections` on the database named in `url`, which must exist.
pub async fn open(url: &str, max_connections: u32) -> anyhow::Result<DatabaseConnection> {
    let mut options = ConnectOptions::new(url);
    options
        .max_connections(max_connections)
        .acquire_timeout(Duration::from_secs(10))
        // A broken connection fails its query and is replaced; pinging the server on
        // every acquire would add a round trip to each transaction.
        .test_before_acquire(false)
        // Statements are not logged or put in spans: the request spans say what ran.
        .sqlx_logging(false)
        .record_stmt_in_spans(false);
    Database::connect(options)
        .await
        .with_context(|| format!("connecting to {}", redacted(url)))
}

/// `url` with its password replaced, for messages.
fn redacted(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut parsed) => {
            if parsed.password().is_some() {
                let _ = parsed.set_password(Some("***"));
            }
            parsed.to_string()
        }
        Err(_) => "<unparsable database url>".to_owned(),
    }
}

/// The database a URL names and the URL of the same server's `postgres` database.
fn split_database(url: &str) -> anyhow::Result<Option<(String, String)>> {
    let mut parsed = url::Url::parse(url).context("DATABASE_URL is not a URL")?;
    let name = parsed.path().trim_start_matches('/').to_owned();
    if name.is_empty() {
        return Ok(None);
    }
    parsed.set_path("/postgres");
    Ok(Some((name, parsed.to_string())))
}

fn quoted(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

async fn ensure_database(url: &str) -> anyhow::Result<()> {
    let Some((name, admin_url)) = split_database(url)? else {
        return Ok(());
    };
    let admin = open(&admin_url, 1).await?;
    let exists = admin
        .query_one_raw(Statement::from_sql_and_values(
            DbBackend::Postgres,
            "SELECT 1 AS found FROM pg_database WHERE datname = $1",
            [name.clone().into()],
        ))
        .await?
        .is_some();
    if !exists {
        // DDL with an identifier: the query builder has no CREATE DATABASE.
        if let Err(error) = admin
            .execute_unprepared(&format!("CREATE DATABASE {}", quoted(&name)))
            .await
        {
            // Another process may have created it between the check and now.
            let raced = sqlstate(&error).is_some_and(|c| c == "42P04" || c == "23505");
            if !raced {
                return Err(error.into());
            }
        }
    }
    admin.close().await?;
    Ok(())
}

/// The connection a service starts with. With `migrate_on_start` (`MIGRATE_ON_START`,
/// the default) the database is created if missing and migrated ([`migrate`]); without
/// it nothing is created or migrated, and start-up fails unless the schema is current
/// ([`check_schema`]): a separate `<service> migrate` run (a Kubernetes Job) owns that.
pub async fn prepare<M: MigratorTrait>(
    service: &str,
    url: &str,
    max_connections: u32,
    migrate_on_start: bool,
) -> anyhow::Result<DatabaseConnection> {
    if migrate_on_start {
        let db = connect(url, max_connections).await?;
        migrate::<M>(&db).await?;
        return Ok(db);
    }
    let db = open(url, max_connections).await.with_context(|| {
        format!(
            "MIGRATE_ON_START is false, so {service} does not create its database; \
             run `{service} migrate` first"
        )
    })?;
    check_schema::<M>(service, &db).await?;
    Ok(db)
}

/// What a service's `migrate` mode reads: its database URL alone (no token key, Redis
/// or bus), so a migration Job is given nothing else.
#[derive(Clone)]
pub struct MigrateConfig {
    /// The database; created if missing.
    pub database_url: String,
}

impl std::fmt::Debug for MigrateConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The URL may hold the database password.
        f.debug_struct("MigrateConfig").finish_non_exhaustive()
    }
}

impl MigrateConfig {
    /// The database URL from `var` (default `default`) in `env`; a bad setting is
    /// recorded there, for [`Settings::finish`](crate::config::Settings::finish).
    pub fn from_settings(env: &mut crate::config::Settings, var: &str, default: &str) -> Self {
        Self {
            database_url: env.string(var, default),
        }
    }
}

/// What [`migrate`] did.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Migrated {
    /// The names of the migrations this run applied, in order.
    pub applied: Vec<String>,
}

impl Migrated {
    pub fn is_empty(&self) -> bool {
        self.applied.is_empty()
    }
}

/// A transaction-scoped advisory lock key that serialises migrations of one database.
const MIGRATION_LOCK: i64 = 727_274;

/// Runs every pending migration of `M` in one transaction that first takes an advisory
/// lock, so replicas migrating at once queue up and a failure applies nothing; logs
/// what ran ("nothing to apply" when nothing did).
pub async fn migrate<M: MigratorTrait>(db: &DatabaseConnection) -> anyhow::Result<Migrated> {
    let tx = db.begin().await?;
    // Advisory locks have no query-builder form.
    tx.execute_raw(Statement::from_sql_and_values(
        DbBackend::Postgres,
        "SELECT pg_advisory_xact_lock($1)",
        [MIGRATION_LOCK.into()],
    ))
    .await?;
    let before = applied_names(&tx).await?;
    M::up(&tx, None)
        .await
        .context("running the database migrations")?;
    let after = applied_names(&tx).await?;
    tx.commit().await?;
    let applied: Vec<String> = M::migrations()
        .iter()
        .map(|m| m.name().to_owned())
        .filter(|name| after.contains(name) && !before.contains(name))
        .collect();
    for name in &applied {
        tracing::info!(migration = %name, "migration applied");
    }
    if applied.is_empty() {
        tracing::info!(
            migrations = after.len(),
            "schema is current, nothing to apply"
        );
    }
    Ok(Migrated { applied })
}

/// Why a database's schema is not the one this binary needs.
#[derive(Debug, thiserror::Error)]
pub enum SchemaError {
    #[error("the database has no migrations table: run `{service} migrate` first")]
    NotMigrated { service: String },
    #[error(
        "the database schema is not current: migrations {pending} are not applied; run `{service} migrate` first"
    )]
    Pending { service: String, pending: String },
}

/// Checks, without changing anything, that every migration of `M` is applied.
/// Migrations the database has but this binary does not know (a newer version applied
/// them) are allowed, so old replicas keep running while a deploy rolls out.
pub async fn check_schema<M: MigratorTrait>(
    service: &str,
    db: &DatabaseConnection,
) -> Result<(), SchemaError> {
    let service = service.to_owned();
    let applied = applied_names(db)
        .await
        .map_err(|_| SchemaError::NotMigrated {
            service: service.clone(),
        })?;
    if applied.is_empty() {
        return Err(SchemaError::NotMigrated { service });
    }
    let known: Vec<String> = M::migrations()
        .iter()
        .map(|m| m.name().to_owned())
        .collect();
    let pending: Vec<&str> = known
        .iter()
        .filter(|name| !applied.contains(*name))
        .map(String::as_str)
        .collect();
    if !pending.is_empty() {
        return Err(SchemaError::Pending {
            service,
            pending: pending.join(", "),
        });
    }
    let unknown = applied.iter().filter(|name| !known.contains(name)).count();
    if unknown > 0 {
        tracing::warn!(
            unknown,
            "the database has migrations this binary does not know (a newer version applied them)"
        );
    }
    Ok(())
}

/// The names of the applied migrations (none when there is no migrations table).
pub async fn applied_names<C: ConnectionTrait>(db: &C) -> Result<HashSet<String>, DbErr> {
    let exists = db
        .query_one_raw(Statement::from_string(
            DbBackend::Postgres,
            "SELECT 1 AS found WHERE to_regclass('seaql_migrations') IS NOT NULL",
        ))
        .await?
        .is_some();
    if !exists {
        return Ok(HashSet::new());
    }
    let rows = seaql_migrations::Entity::find()
        .order_by_asc(seaql_migrations::Column::Version)
        .all(db)
        .await?;
    Ok(rows.into_iter().map(|row| row.version).collect())
}

/// Drops a database (tests use it to clean up after themselves).
pub async fn drop_database(url: &str) -> anyhow::Result<()> {
    let Some((name, admin_url)) = split_database(url)? else {
        return Ok(());
    };
    let admin = open(&admin_url, 1).await?;
    // DDL with an identifier: the query builder has no DROP DATABASE.
    admin
        .execute_unprepared(&format!(
            "DROP DATABASE IF EXISTS {} WITH (FORCE)",
            quoted(&name)
        ))
        .await?;
    admin.close().await?;
    Ok(())
}

/// The database's own report of a failed statement: SQLSTATE and, for constraint
/// violations, the constraint's name (which the migrations always give explicitly).
fn database_error(error: &DbErr) -> Option<(Option<String>, Option<String>)> {
    match error {
        DbErr::Exec(RuntimeErr::SqlxError(e))
        | DbErr::Query(RuntimeErr::SqlxError(e))
        | DbErr::Conn(RuntimeErr::SqlxError(e)) => e.as_database_error().map(|d| {
            (
                d.code().map(|c| c.into_owned()),
                d.constraint().map(str::to_owned),
            )
        }),
        _ => None,
    }
}

/// The SQLSTATE of `error`, when the database reported one.
pub fn sqlstate(error: &DbErr) -> Option<String> {
    database_error(error).and_then(|(code, _)| code)
}

/// The name of the constraint `error` violated, when it is a constraint violation.
pub fn violated_constraint(error: &DbErr) -> Option<String> {
    database_error(error).and_then(|(_, constraint)| constraint)
}

/// Whether `error` is a unique-constraint violation (SQLSTATE 23505).
pub fn is_unique_violation(error: &DbErr) -> bool {
    sqlstate(error).is_some_and(|c| c == "23505")
}

/// Whether `error` says the connection or the server failed rather than the statement
/// (nothing the database reported about the statement itself): worth a retry.
pub fn is_transient(error: &DbErr) -> bool {
    match error {
        DbErr::ConnectionAcquire(_) | DbErr::Conn(_) => true,
        DbErr::Exec(_) | DbErr::Query(_) => match sqlstate(error) {
            // Class 08 (connection), 40 (serialization, deadlock), 53 (resources),
            // 57P (operator intervention: shutdown, restart).
            Some(code) => {
                code.starts_with("08")
                    || code.starts_with("40")
                    || code.starts_with("53")
                    || code.starts_with("57P")
            }
            None => true,
        },
        _ => false,
    }
}

/// Several writes (INSERTs, UPDATEs) as one statement, so one round trip: each becomes a
/// data-modifying CTE named `w0`, `w1`, … in order, and `answer`, a SELECT that may read
/// what their RETURNING clauses give under those names, is what the statement answers.
/// They apply together or not at all, like any statement. (A CTE's rows are not visible
/// to its siblings' reads, but foreign keys between them are checked at the statement's
/// end, so a row and the rows that reference it can go in one statement.)
pub fn in_one_statement(parts: Vec<SubQueryStatement>, answer: SelectStatement) -> Statement {
    let mut with = WithClause::new();
    for (i, part) in parts.into_iter().enumerate() {
        with.cte(
            CommonTableExpression::new()
                .query(part)
                .table_name(Alias::new(format!("w{i}")))
                .to_owned(),
        );
    }
    let (sql, values) = answer.with(with).build(PostgresQueryBuilder);
    Statement::from_sql_and_values(DbBackend::Postgres, sql, values)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_admin_url_keeps_everything_but_the_database() {
        let (name, admin) =
            split_database("postgres://u:p@127.0.0.1:5432/marquee_booking?sslmode=disable")
                .unwrap()
                .unwrap();
        assert_eq!(name, "marquee_booking");
        assert_eq!(
            admin,
            "postgres://u:p@127.0.0.1:5432/postgres?sslmode=disable"
        );
        assert!(
            split_database("postgres://127.0.0.1:5432")
                .unwrap()
                .is_none()
        );
        assert_eq!(
            redacted("postgres://u:secret@h/db"),
            "postgres://u:***@h/db"
        );
    }
}
