//! PostgreSQL plumbing: create the service's database if it is missing, connect a pool.

use std::str::FromStr;
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{ConnectOptions, Connection, PgPool};

/// Creates the database named in `url` if it does not exist (connecting to the
/// server's `postgres` database to do so), then returns a pool of `max_connections`.
pub async fn connect(url: &str, max_connections: u32) -> anyhow::Result<PgPool> {
    let options = PgConnectOptions::from_str(url)?;
    ensure_database(&options).await?;
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
