//! PostgreSQL plumbing: create the service's database if it is missing, connect a pool,
//! migrate a service's schema (its sqlx migrations and the outbox/inbox tables) or check
//! that it is current.

use std::collections::HashMap;
use std::str::FromStr;
use std::time::Duration;

use anyhow::Context as _;
use sqlx::migrate::Migrator;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{ConnectOptions, Connection, PgPool};

/// Creates the database named in `url` if it does not exist (connecting to the
/// server's `postgres` database to do so), then returns a pool of `max_connections`.
pub async fn connect(url: &str, max_connections: u32) -> anyhow::Result<PgPool> {
    let options = PgConnectOptions::from_str(url)?;
    ensure_database(&options).await?;
    open_with(options, max_connections).await
}

/// A pool of `max_connections` on the database named in `url`, which must exist.
pub async fn open(url: &str, max_connections: u32) -> anyhow::Result<PgPool> {
    open_with(PgConnectOptions::from_str(url)?, max_connections).await
}

async fn open_with(options: PgConnectOptions, max_connections: u32) -> anyhow::Result<PgPool> {
    let pool = PgPoolOptions::new()
        .max_connections(max_connections)
        .acquire_timeout(Duration::from_secs(10))
        // A broken connection fails its query and is replaced; pinging the server on
        // every acquire would add a round trip to each transaction.
        .test_before_acquire(false)
        .connect_with(options.log_statements(tracing::log::LevelFilter::Trace))
        .await?;
    Ok(pool)
}

async fn ensure_database(options: &PgConnectOptions) -> anyhow::Result<()> {
    let Some(name) = options.get_database().map(str::to_owned) else {
        return Ok(());
    };
    let mut admin = options.clone().database("postgres").connect().await?;
    let exists: bool =
        sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)")
            .bind(&name)
            .fetch_one(&mut admin)
            .await?;
    if !exists {
        let quoted = format!("\"{}\"", name.replace('"', "\"\""));
        if let Err(error) = sqlx::query(&format!("CREATE DATABASE {quoted}"))
            .execute(&mut admin)
            .await
        {
            // Another process may have created it between the check and now.
            let raced = error
                .as_database_error()
                .and_then(|e| e.code())
                .is_some_and(|c| c == "42P04" || c == "23505");
            if !raced {
                return Err(error.into());
            }
        }
    }
    admin.close().await?;
    Ok(())
}

/// The pool a service starts with. With `migrate_on_start` (`MIGRATE_ON_START`, the
/// default) the database is created if missing and migrated ([`migrate`]); without it
/// nothing is created or migrated, and start-up fails unless the schema is current
/// ([`check_schema`]): a separate `<service> migrate` run (a Kubernetes Job) owns that.
pub async fn prepare(
    service: &str,
    url: &str,
    max_connections: u32,
    migrator: &Migrator,
    migrate_on_start: bool,
) -> anyhow::Result<PgPool> {
    if migrate_on_start {
        let pool = connect(url, max_connections).await?;
        migrate(&pool, migrator).await?;
        return Ok(pool);
    }
    let pool = open(url, max_connections).await.with_context(|| {
        format!(
            "MIGRATE_ON_START is false, so {service} does not create its database; \
             run `{service} migrate` first"
        )
    })?;
    check_schema(service, &pool, migrator).await?;
    Ok(pool)
}

/// What [`migrate`] did.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Migrated {
    /// The sqlx migrations this run applied: (version, description), in order.
    pub applied: Vec<(i64, String)>,
    /// Whether this run created the `outbox` and `inbox` tables.
    pub outbox_created: bool,
}

impl Migrated {
    pub fn is_empty(&self) -> bool {
        self.applied.is_empty() && !self.outbox_created
    }
}

/// Runs every pending migration of `migrator`, then the outbox/inbox DDL
/// ([`crate::outbox::migrate`]), and logs what ran ("nothing to apply" when nothing
/// did). Safe to run concurrently (sqlx and the outbox DDL each take an advisory lock).
pub async fn migrate(pool: &PgPool, migrator: &Migrator) -> anyhow::Result<Migrated> {
    let before = applied_versions(pool).await?;
    let outbox_existed = outbox_tables_exist(pool).await?;
    migrator
        .run(pool)
        .await
        .context("running the database migrations")?;
    crate::outbox::migrate(pool)
        .await
        .context("creating the outbox and inbox tables")?;
    let after = applied_versions(pool).await?;
    let applied: Vec<(i64, String)> = migrator
        .iter()
        .filter(|m| !m.migration_type.is_down_migration())
        .filter(|m| after.contains_key(&m.version) && !before.contains_key(&m.version))
        .map(|m| (m.version, m.description.to_string()))
        .collect();
    for (version, description) in &applied {
        tracing::info!(version, description = %description, "migration applied");
    }
    let migrated = Migrated {
        applied,
        outbox_created: !outbox_existed,
    };
    if migrated.outbox_created {
        tracing::info!("migration applied: outbox and inbox tables created");
    }
    if migrated.is_empty() {
        tracing::info!(
            migrations = after.len(),
            "schema is current, nothing to apply"
        );
    }
    Ok(migrated)
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
    #[error(
        "migration {version} failed part-way or was changed after it was applied; repair the database, then run `{service} migrate`"
    )]
    Broken { service: String, version: i64 },
    #[error("the database has no outbox/inbox tables: run `{service} migrate` first")]
    NoOutbox { service: String },
}

/// Checks, without changing anything, that every migration of `migrator` is applied
/// (with the same checksum) and the outbox/inbox tables exist. Migrations the database
/// has but this binary does not know (a newer version migrated it) are allowed, so old
/// replicas keep running while a deploy rolls out.
pub async fn check_schema(
    service: &str,
    pool: &PgPool,
    migrator: &Migrator,
) -> Result<(), SchemaError> {
    let service = service.to_owned();
    let has_table: bool = sqlx::query_scalar("SELECT to_regclass('_sqlx_migrations') IS NOT NULL")
        .fetch_one(pool)
        .await
        .map_err(|_| SchemaError::NotMigrated {
            service: service.clone(),
        })?;
    if !has_table {
        return Err(SchemaError::NotMigrated { service });
    }
    let rows: Vec<(i64, Vec<u8>, bool)> =
        sqlx::query_as("SELECT version, checksum, success FROM _sqlx_migrations")
            .fetch_all(pool)
            .await
            .map_err(|_| SchemaError::NotMigrated {
                service: service.clone(),
            })?;
    if let Some((version, _, _)) = rows.iter().find(|(_, _, success)| !success) {
        return Err(SchemaError::Broken {
            service,
            version: *version,
        });
    }
    let applied: HashMap<i64, Vec<u8>> = rows.into_iter().map(|(v, c, _)| (v, c)).collect();
    let mut pending = Vec::new();
    for migration in migrator
        .iter()
        .filter(|m| !m.migration_type.is_down_migration())
    {
        match applied.get(&migration.version) {
            None => pending.push(format!("{} ({})", migration.version, migration.description)),
            Some(checksum) if checksum.as_slice() != &*migration.checksum => {
                return Err(SchemaError::Broken {
                    service,
                    version: migration.version,
                });
            }
            Some(_) => {}
        }
    }
    if !pending.is_empty() {
        return Err(SchemaError::Pending {
            service,
            pending: pending.join(", "),
        });
    }
    let unknown = applied
        .keys()
        .filter(|v| !migrator.version_exists(**v))
        .count();
    if unknown > 0 {
        tracing::warn!(
            unknown,
            "the database has migrations this binary does not know (a newer version applied them)"
        );
    }
    if !outbox_tables_exist(pool).await.unwrap_or(false) {
        return Err(SchemaError::NoOutbox { service });
    }
    Ok(())
}

/// The applied sqlx migrations by version (none when there is no migrations table).
async fn applied_versions(pool: &PgPool) -> anyhow::Result<HashMap<i64, bool>> {
    let has_table: bool = sqlx::query_scalar("SELECT to_regclass('_sqlx_migrations') IS NOT NULL")
        .fetch_one(pool)
        .await?;
    if !has_table {
        return Ok(HashMap::new());
    }
    let rows: Vec<(i64, bool)> = sqlx::query_as("SELECT version, success FROM _sqlx_migrations")
        .fetch_all(pool)
        .await?;
    Ok(rows.into_iter().collect())
}

async fn outbox_tables_exist(pool: &PgPool) -> Result<bool, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT to_regclass('outbox') IS NOT NULL AND to_regclass('inbox') IS NOT NULL",
    )
    .fetch_one(pool)
    .await
}

/// Drops a database (tests use it to clean up after themselves).
pub async fn drop_database(url: &str) -> anyhow::Result<()> {
    let options = PgConnectOptions::from_str(url)?;
    let Some(name) = options.get_database().map(str::to_owned) else {
        return Ok(());
    };
    let mut admin = options.database("postgres").connect().await?;
    let quoted = format!("\"{}\"", name.replace('"', "\"\""));
    sqlx::query(&format!("DROP DATABASE IF EXISTS {quoted} WITH (FORCE)"))
        .execute(&mut admin)
        .await?;
    Ok(())
}

/// Whether `error` is a unique-constraint violation (SQLSTATE 23505).
pub fn is_unique_violation(error: &sqlx::Error) -> bool {
    error
        .as_database_error()
        .and_then(|e| e.code())
        .is_some_and(|c| c == "23505")
}
