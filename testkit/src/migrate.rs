//! What every service with a database must do in its `migrate` mode, run against its
//! real binary: the Job's `migrate` creates and migrates a fresh database and a second
//! run applies nothing; a replica with `MIGRATE_ON_START=false` serves from a migrated
//! database and refuses one that is not; an unknown argument prints the usage. Each
//! service's `tests/migrate.rs` runs these with its own [`Binary`].

use std::process::Stdio;
use std::time::Duration;

use futures::FutureExt as _;
use marquee_infra::bus::{Bus, BusConfig};
use sea_orm::{ConnectionTrait, DbBackend, Statement};
use tokio::process::Command;
use uuid::Uuid;

use crate::{amqp_url, delete_redis_keys, pg_base, redis_url};

/// Far longer than migrating or refusing takes.
const BOUND: Duration = Duration::from_secs(60);

/// A service binary with a database.
#[derive(Debug, Clone, Copy)]
pub struct Binary {
    /// e.g. `booking-svc`.
    pub name: &'static str,
    /// `env!("CARGO_BIN_EXE_<name>")`.
    pub path: &'static str,
    /// Its variables' prefix, e.g. `BOOKING` (`BOOKING_DATABASE_URL`, ...).
    pub env_prefix: &'static str,
    /// How many migrations its migrator lists (`Migrator::migrations().len()`).
    pub migrations: fn() -> usize,
    /// The queues it declares, removed after the test.
    pub queues: &'static [&'static str],
}

/// One test's names: database, Redis prefix, bus prefix.
struct Names {
    binary: Binary,
    database_url: String,
    redis_prefix: String,
    bus_prefix: String,
}

impl Names {
    fn new(binary: Binary) -> Self {
        let id = Uuid::new_v4().simple().to_string();
        let service = binary.env_prefix.to_ascii_lowercase();
        Self {
            binary,
            database_url: format!("{}/test_migrate_{service}_{id}", pg_base()),
            redis_prefix: format!("test:{id}:"),
            bus_prefix: format!("test.{id}."),
        }
    }

    fn var(&self, suffix: &str) -> String {
        format!("{}_{suffix}", self.binary.env_prefix)
    }

    /// The binary with this test's environment (development mode, no metrics port).
    fn command(&self, args: &[&str]) -> Command {
        let mut command = Command::new(self.binary.path);
        command
            .args(args)
            .env("MARQUEE_DEV", "1")
            .env("RUST_LOG", "info")
            .env(self.var("DATABASE_URL"), &self.database_url)
            .env(self.var("GRPC_ADDR"), "127.0.0.1:0")
            .env(self.var("METRICS_ADDR"), "off")
            .env("REDIS_URL", redis_url())
            .env("REDIS_PREFIX", &self.redis_prefix)
            .env("AMQP_URL", amqp_url())
            .env("BUS_PREFIX", &self.bus_prefix)
            .env("ARGON2_MEMORY_KIB", "1024")
            .env_remove("MIGRATE_ON_START")
            .stdin(Stdio::null())
            .kill_on_drop(true);
        command
    }

    /// `<binary> migrate` as the migration Job runs it: its database URL and the log
    /// filter alone, outside development mode and without `JWT_SECRET` (nor any of the
    /// Redis or bus settings [`Names::command`] sets), since migrating reads nothing else.
    fn migrate_command(&self) -> Command {
        let mut command = Command::new(self.binary.path);
        command
            .arg("migrate")
            .env("RUST_LOG", "info")
            .env(self.var("DATABASE_URL"), &self.database_url)
            .env_remove("MARQUEE_DEV")
            .env_remove("JWT_SECRET")
            .env_remove("JWT_PREVIOUS_SECRETS")
            .env_remove("MARQUEE_CONFIG_FILE")
            .stdin(Stdio::null())
            .kill_on_drop(true);
        command
    }

    /// Runs `test`, then removes this test's database and names, also when it failed.
    async fn guarded(&self, test: impl std::future::Future<Output = ()>) {
        let outcome = std::panic::AssertUnwindSafe(test).catch_unwind().await;
        self.cleanup().await;
        if let Err(panic) = outcome {
            std::panic::resume_unwind(panic);
        }
    }

    async fn cleanup(&self) {
        let _ = marquee_infra::db::drop_database(&self.database_url).await;
        let _ = delete_redis_keys(&self.redis_prefix).await;
        if let Ok(bus) = Bus::connect(
            BusConfig::new(amqp_url(), self.bus_prefix.clone()),
            Duration::from_secs(5),
        )
        .await
        {
            let _ = bus.delete_topology(self.binary.queues).await;
            bus.shutdown();
        }
    }

    /// Runs the binary to its end (failing the test if it is still running after
    /// [`BOUND`]): exit code and everything it wrote to stdout and stderr.
    async fn run(&self, mut command: Command) -> (Option<i32>, String) {
        let name = self.binary.name;
        let output = tokio::time::timeout(BOUND, command.output())
            .await
            .unwrap_or_else(|_| panic!("{name} still running after {BOUND:?}"))
            .unwrap_or_else(|e| panic!("{name} binary runs: {e}"));
        let mut text = String::from_utf8_lossy(&output.stdout).into_owned();
        text.push_str(&String::from_utf8_lossy(&output.stderr));
        (output.status.code(), text)
    }
}

/// The migrations recorded as applied in the database at `database_url`.
async fn applied_migrations(database_url: &str) -> i64 {
    let db = marquee_infra::db::open(database_url, 1)
        .await
        .expect("connect to the migrated database");
    let applied = marquee_infra::db::applied_names(&db)
        .await
        .expect("read seaql_migrations")
        .len();
    let _ = db.close().await;
    i64::try_from(applied).unwrap_or(i64::MAX)
}

/// Whether `sql` (one boolean column named `answer`, `$1` bound to `value`) is true on
/// the database at `url`.
async fn ask(url: &str, sql: &str, value: &str) -> bool {
    let db = marquee_infra::db::open(url, 1)
        .await
        .expect("connect to the database");
    let row = db
        .query_one_raw(Statement::from_sql_and_values(
            DbBackend::Postgres,
            sql,
            [value.into()],
        ))
        .await
        .expect("query")
        .expect("one row");
    let answer: bool = row.try_get("", "answer").expect("a boolean answer");
    let _ = db.close().await;
    answer
}

async fn table_exists(database_url: &str, table: &str) -> bool {
    ask(
        database_url,
        "SELECT to_regclass($1) IS NOT NULL AS answer",
        table,
    )
    .await
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

/// The Job's `migrate` twice (the second applies nothing), given its database URL alone,
/// then a replica that does not migrate serves from that database.
pub async fn migrate_twice_is_a_no_op_and_a_replica_that_does_not_migrate_serves(binary: Binary) {
    let names = Names::new(binary);
    names
        .guarded(async {
            let migrations = (binary.migrations)() as i64;

            // The Job's first run: creates the database and applies everything.
            let (code, first) = names.run(names.migrate_command()).await;
            assert_eq!(code, Some(0), "first migrate failed: {first}");
            let applied = applied_migrations(&names.database_url).await;
            assert_eq!(applied, migrations, "first migrate applied: {first}");
            assert!(
                table_exists(&names.database_url, "outbox").await
                    && table_exists(&names.database_url, "inbox").await,
                "migrate made no outbox/inbox tables: {first}"
            );
            assert!(
                first.contains("migration applied"),
                "the first run does not log what it applied: {first}"
            );

            // The second run: nothing to do, and it says so.
            let (code, second) = names.run(names.migrate_command()).await;
            assert_eq!(code, Some(0), "second migrate failed: {second}");
            assert_eq!(
                applied_migrations(&names.database_url).await,
                applied,
                "the second migrate changed seaql_migrations: {second}"
            );
            assert!(
                second.contains("nothing to apply") && !second.contains("migration applied"),
                "the second run does not say it had nothing to apply: {second}"
            );

            // A replica that does not migrate comes up against the migrated database.
            let port = free_port();
            let log = std::env::temp_dir().join(format!("{}.log", names.bus_prefix));
            let mut command = names.command(&[]);
            command
                .env("MIGRATE_ON_START", "false")
                .env(names.var("GRPC_ADDR"), format!("127.0.0.1:{port}"))
                .stdout(std::fs::File::create(&log).expect("log file"))
                .stderr(Stdio::null());
            let mut replica = command.spawn().expect("the binary runs");
            let health = crate::grpc::await_health(
                &format!("http://127.0.0.1:{port}"),
                "",
                "SERVING",
                Duration::from_secs(30),
            )
            .await;
            let exited = replica.try_wait().ok().flatten();
            let _ = replica.kill().await;
            let output = std::fs::read_to_string(&log).unwrap_or_default();
            let _ = std::fs::remove_file(&log);
            let rows_after = applied_migrations(&names.database_url).await;

            assert!(
                health.is_ok(),
                "the replica with MIGRATE_ON_START=false never served \
         (health {health:?}, exit {exited:?}): {output}"
            );
            assert_eq!(rows_after, applied, "the replica migrated: {output}");
        })
        .await;
}

/// A replica with `MIGRATE_ON_START=false` refuses a database nobody migrated, and says
/// to run `<name> migrate`.
pub async fn a_replica_that_does_not_migrate_refuses_an_unmigrated_database(binary: Binary) {
    let names = Names::new(binary);
    names
        .guarded(async {
            // A database that exists but was never migrated.
            marquee_infra::db::connect(&names.database_url, 1)
                .await
                .expect("create an empty database")
                .close()
                .await
                .expect("close");

            let mut command = names.command(&[]);
            command.env("MIGRATE_ON_START", "false");
            let (code, output) = names.run(command).await;
            let migrated = table_exists(&names.database_url, "seaql_migrations").await;

            assert!(
                code.is_some_and(|c| c != 0),
                "{} did not fail on an unmigrated database (exit {code:?}): {output}",
                binary.name
            );
            assert!(
                output.contains(&format!("{} migrate", binary.name)),
                "the refusal does not say to run `{} migrate`: {output}",
                binary.name
            );
            assert!(!migrated, "MIGRATE_ON_START=false still migrated: {output}");
        })
        .await;
}

/// An unknown argument: the usage, exit code 2, and the database untouched.
pub async fn an_unknown_argument_prints_the_usage_and_exits_2(binary: Binary) {
    let names = Names::new(binary);
    names
        .guarded(async {
            let (code, output) = names.run(names.command(&["migrtae"])).await;
            let name = names.database_url.rsplit('/').next().unwrap_or_default();
            let created = ask(
                &format!("{}/postgres", pg_base()),
                "SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1) AS answer",
                name,
            )
            .await;

            assert_eq!(code, Some(2), "exit code for an unknown argument: {output}");
            assert!(
                output.contains("usage") && output.contains("migrate"),
                "no usage message: {output}"
            );
            assert!(!created, "an unknown argument still touched the database");
        })
        .await;
}
