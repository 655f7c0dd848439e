//! The harness's reads and writes of the services' databases, through sea-orm like
//! the services themselves: raw statements, each row decoded by position.

use anyhow::{Context as _, Result, anyhow};
use sea_orm::{
    ConnectionTrait as _, DatabaseConnection, DbBackend, Statement, TryGetableMany, Value,
};

/// One service's database (one connection: the harness reads, it does not load).
pub type Db = DatabaseConnection;

pub async fn open(url: &str) -> Result<Db> {
    marquee_infra::db::open(url, 1)
        .await
        .with_context(|| format!("connect to {url}"))
}

/// Every row of `sql`, decoded as `T` (a value or a tuple, in SELECT order).
pub async fn rows<T: TryGetableMany>(db: &Db, sql: &str, values: Vec<Value>) -> Result<Vec<T>> {
    let statement = Statement::from_sql_and_values(DbBackend::Postgres, sql, values);
    db.query_all_raw(statement)
        .await?
        .iter()
        .map(|row| T::try_get_many_by_index(row).map_err(|error| anyhow!("{sql}: {error:?}")))
        .collect()
}

/// The one row of `sql` (a count and the like).
pub async fn one<T: TryGetableMany>(db: &Db, sql: &str, values: Vec<Value>) -> Result<T> {
    rows(db, sql, values)
        .await?
        .into_iter()
        .next()
        .ok_or_else(|| anyhow!("{sql}: no row"))
}

/// Runs `sql` (several statements allowed) unprepared.
pub async fn execute(db: &Db, sql: &str) -> Result<()> {
    db.execute_unprepared(sql).await?;
    Ok(())
}
