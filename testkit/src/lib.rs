//! What the end-to-end tests and benchmarks of every crate share: where the real local
//! PostgreSQL, Redis and RabbitMQ are, running a service in process, JSON replies, and
//! removing a test's Redis keys, asking a gRPC server for its health and its services,
//! two-factor codes (`totp`). Nothing here stands in for our infrastructure.

pub mod adopt;
pub mod grpc;
pub mod migrate;
pub mod proxy;
pub mod psp;
pub mod redis_cluster;
pub mod totp;

use marquee_infra::config::{env_or, env_string};
use serde_json::Value;

/// PostgreSQL without a database name (`TEST_PG_URL`); tests add a fresh one each.
pub fn pg_base() -> String {
    env_string("TEST_PG_URL", "postgres://postgres@127.0.0.1:5432")
}

pub fn redis_url() -> String {
    env_string("REDIS_URL", "redis://127.0.0.1:6379")
}

/// `host:port` of [`redis_url`], for a proxy in front of it.
pub fn redis_addr() -> String {
    let url = redis_url();
    let rest = url.split_once("://").map_or(url.as_str(), |(_, rest)| rest);
    let rest = rest.rsplit_once('@').map_or(rest, |(_, host)| host);
    rest.split('/')
        .next()
        .unwrap_or("127.0.0.1:6379")
        .to_owned()
}

pub fn amqp_url() -> String {
    env_string("AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/%2f")
}

/// A benchmark parameter: `name` as a number, or `default`; a bad value stops the run.
pub fn env_num(name: &str, default: u64) -> u64 {
    env_or(name, default).unwrap_or_else(|e| panic!("{e}"))
}

/// A JSON response.
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: u16,
    pub body: Value,
}

impl Reply {
    /// The string at `pointer` (JSON pointer), or "".
    pub fn str(&self, pointer: &str) -> String {
        self.body
            .pointer(pointer)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned()
    }
}

/// Runs one service of a test system until it stops; a failure fails the test.
pub fn serve(
    tasks: &mut Vec<tokio::task::JoinHandle<()>>,
    name: &'static str,
    run: impl std::future::Future<Output = anyhow::Result<()>> + Send + 'static,
) {
    tasks.push(tokio::spawn(async move {
        if let Err(error) = run.await {
            panic!("{name} failed: {error:#}");
        }
    }));
}

/// Deletes every Redis key under `prefix` from the local Redis.
pub async fn delete_redis_keys(prefix: &str) -> redis::RedisResult<()> {
    delete_keys_on(&redis_url(), prefix, false).await
}

/// Deletes every Redis key under `prefix` from `target` (every node of a cluster).
pub async fn delete_redis_keys_in(
    target: &marquee_infra::redis_conn::RedisTarget,
    prefix: &str,
) -> redis::RedisResult<()> {
    use marquee_infra::redis_conn::RedisTarget;
    match target {
        RedisTarget::Single(url) => delete_keys_on(url, prefix, false).await,
        RedisTarget::Cluster(urls) => {
            for url in urls {
                delete_keys_on(url, prefix, true).await?;
            }
            Ok(())
        }
    }
}

/// Deletes the keys under `prefix` that the server at `url` holds; on a cluster node
/// one key per command (one command's keys must share a slot).
async fn delete_keys_on(url: &str, prefix: &str, cluster: bool) -> redis::RedisResult<()> {
    let client = redis::Client::open(url)?;
    let mut conn = client.get_multiplexed_async_connection().await?;
    let mut cursor: u64 = 0;
    loop {
        let (next, keys): (u64, Vec<String>) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg(format!("{prefix}*"))
            .arg("COUNT")
            .arg(1000)
            .query_async(&mut conn)
            .await?;
        if cluster {
            let mut pipe = redis::pipe();
            for key in &keys {
                pipe.cmd("UNLINK").arg(key).ignore();
            }
            let () = pipe.query_async(&mut conn).await?;
        } else if !keys.is_empty() {
            let () = redis::cmd("UNLINK")
                .arg(&keys)
                .query_async(&mut conn)
                .await?;
        }
        if next == 0 {
            return Ok(());
        }
        cursor = next;
    }
}

/// A value percent-encoded for a URL's query string.
pub fn encode_query(value: &str) -> String {
    percent_encoding::utf8_percent_encode(value, percent_encoding::NON_ALPHANUMERIC).to_string()
}

/// The machine a benchmark ran on, as it reports it.
#[derive(Debug, Clone)]
pub struct Machine {
    pub cpus: usize,
    /// `model name` from /proc/cpuinfo.
    pub model: String,
    /// `MemTotal` from /proc/meminfo, e.g. "23.5 GiB".
    pub memory: String,
}

impl Machine {
    pub fn read() -> Self {
        let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let model = cpuinfo
            .lines()
            .find(|l| l.starts_with("model name"))
            .and_then(|l| l.split_once(':'))
            .map_or_else(|| "unknown".to_owned(), |(_, v)| v.trim().to_owned());
        let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
        let memory = meminfo
            .lines()
            .find(|l| l.starts_with("MemTotal:"))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|kb| kb.parse::<f64>().ok())
            .map_or_else(
                || "unknown".to_owned(),
                |kb| format!("{:.1} GiB", kb / 1024.0 / 1024.0),
            );
        Self {
            cpus,
            model,
            memory,
        }
    }
}
