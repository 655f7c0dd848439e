//! One Redis connection type for a single Redis (with replicas and failover behind one
//! address) and for Redis Cluster, so the services' stores are written once.
//!
//! `REDIS_URL` names the server; with `REDIS_CLUSTER=true` it is a comma-separated list
//! of seed nodes of a Redis Cluster instead. On a cluster every command and script is
//! routed by its first key's hash slot, so a script's keys must share a hash tag (the
//! stores say which). Both kinds reconnect by themselves.

use std::time::Duration;

use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use redis::cluster::ClusterClient;
use redis::cluster_async::ClusterConnection;
use redis::{Cmd, Pipeline, RedisFuture, Value};

/// Where Redis is: one server, or the seed nodes of a Redis Cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RedisTarget {
    Single(String),
    Cluster(Vec<String>),
}

impl RedisTarget {
    /// `url` as `REDIS_URL` gives it: one URL, or (with `cluster`) a comma-separated list.
    pub fn parse(url: &str, cluster: bool) -> Result<Self, String> {
        let urls: Vec<String> = url
            .split(',')
            .map(str::trim)
            .filter(|u| !u.is_empty())
            .map(str::to_owned)
            .collect();
        for url in &urls {
            redis::Client::open(url.as_str()).map_err(|e| format!("{url:?}: {e}"))?;
        }
        match (cluster, urls.as_slice()) {
            (_, []) => Err("no Redis URL".to_owned()),
            (false, [one]) => Ok(Self::Single(one.clone())),
            (false, _) => Err(
                "several URLs are only meaningful for a Redis Cluster (REDIS_CLUSTER=true)"
                    .to_owned(),
            ),
            (true, _) => Ok(Self::Cluster(urls)),
        }
    }

    /// Whether this is a Redis Cluster.
    pub fn is_cluster(&self) -> bool {
        matches!(self, Self::Cluster(_))
    }
}

/// How long a caller waits for Redis before the call fails.
#[derive(Debug, Clone, Copy)]
pub struct RedisTimeouts {
    /// Per command (`REDIS_RESPONSE_TIMEOUT_MS`, 2 s by default).
    pub response: Duration,
    /// Per connection attempt (`REDIS_CONNECT_TIMEOUT_MS`, 1 s by default).
    pub connect: Duration,
}

impl Default for RedisTimeouts {
    fn default() -> Self {
        Self {
            response: Duration::from_secs(2),
            connect: Duration::from_secs(1),
        }
    }
}

/// A supervised connection to a single Redis or to a Redis Cluster; cheap to clone (the
/// clones share one multiplexed connection per node).
#[derive(Clone)]
pub enum RedisConn {
    Single(ConnectionManager),
    Cluster(ClusterConnection),
}

impl std::fmt::Debug for RedisConn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Single(_) => "RedisConn::Single",
            Self::Cluster(_) => "RedisConn::Cluster",
        })
    }
}

/// Opens a connection to `target` with `timeouts`; it reconnects by itself (and, on a
/// cluster, follows slot moves and failovers).
pub async fn connect(
    target: &RedisTarget,
    timeouts: RedisTimeouts,
) -> redis::RedisResult<RedisConn> {
    match target {
        RedisTarget::Single(url) => {
            let client = redis::Client::open(url.as_str())?;
            let config = ConnectionManagerConfig::new()
                .set_response_timeout(Some(timeouts.response))
                .set_connection_timeout(Some(timeouts.connect))
                .set_number_of_retries(2)
                .set_max_delay(Duration::from_secs(1));
            Ok(RedisConn::Single(
                client.get_connection_manager_with_config(config).await?,
            ))
        }
        RedisTarget::Cluster(urls) => {
            let client = ClusterClient::builder(urls.iter().map(String::as_str))
                .connection_timeout(timeouts.connect)
                .response_timeout(timeouts.response)
                .retries(2)
                .build()?;
            Ok(RedisConn::Cluster(client.get_async_connection().await?))
        }
    }
}

impl ConnectionLike for RedisConn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Self::Single(c) => c.req_packed_command(cmd),
            Self::Cluster(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        cmd: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Self::Single(c) => c.req_packed_commands(cmd, offset, count),
            Self::Cluster(c) => c.req_packed_commands(cmd, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Self::Single(c) => c.get_db(),
            Self::Cluster(c) => c.get_db(),
        }
    }
}

/// `{tag}`: the hash tag that puts every key containing it in the same cluster slot.
/// Keys of one script must all carry the same tag; a prefix must not contain braces.
pub fn hash_tag(tag: &str) -> String {
    format!("{{{tag}}}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_target_is_one_url_or_a_cluster_of_seeds() {
        assert_eq!(
            RedisTarget::parse("redis://127.0.0.1:6379", false),
            Ok(RedisTarget::Single("redis://127.0.0.1:6379".into()))
        );
        assert_eq!(
            RedisTarget::parse("redis://a:7000, redis://b:7001", true),
            Ok(RedisTarget::Cluster(vec![
                "redis://a:7000".into(),
                "redis://b:7001".into()
            ]))
        );
        assert!(RedisTarget::parse("redis://a:7000,redis://b:7001", false).is_err());
        assert!(RedisTarget::parse(" , ", true).is_err());
        assert!(RedisTarget::parse("http://nope", false).is_err());
    }
}
