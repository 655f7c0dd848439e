//! Popular events and keywords in Redis: one sorted set per kind and hour, a marker key
//! per user, item and hour so that a user counts once an hour, and a ranking that sums
//! the last 24 hourly buckets weighted by age (half-life [`HALF_LIFE_HOURS`]).
//!
//! Keys, under the configured prefix and the hash tag of their kind `{search:<kind>}`
//! (so each script's keys share one Redis Cluster slot): `rank:<hour>` (ZSET member →
//! count, kept 25 hours), `seen:<hour>:<user>:<member>` (kept 1 hour past its bucket)
//! and `scratch:<uuid>` (a ranking being summed). `hour` is hours since the Unix epoch.

use chrono::{DateTime, Utc};
use marquee_infra::redis_conn::{RedisConn, RedisTarget, RedisTimeouts};
use redis::Script;

use crate::error::SearchError;

/// Buckets that make up the window.
pub const WINDOW_HOURS: i64 = 24;
/// A count loses half its weight every this many hours.
pub const HALF_LIFE_HOURS: f64 = 6.0;
const BUCKET_TTL_SECS: i64 = (WINDOW_HOURS + 1) * 3600;
const SEEN_TTL_SECS: i64 = 2 * 3600;

/// Counts one (user, member) per hour: sets the marker, and only if it was new bumps
/// the bucket. Returns 1 when counted.
const RECORD: &str = r"
if redis.call('SET', KEYS[1], '1', 'NX', 'EX', ARGV[2]) then
  redis.call('ZINCRBY', KEYS[2], 1, ARGV[1])
  redis.call('EXPIRE', KEYS[2], ARGV[3])
  return 1
end
return 0
";

/// Sums the buckets KEYS[1..n-1] with weights ARGV[2..] into KEYS[n], reads the top
/// ARGV[1] and deletes the scratch key.
const TOP: &str = r"
local n = #KEYS - 1
local scratch = KEYS[#KEYS]
local args = {scratch, n}
for i = 1, n do args[#args + 1] = KEYS[i] end
args[#args + 1] = 'WEIGHTS'
for i = 1, n do args[#args + 1] = ARGV[i + 1] end
redis.call('ZUNIONSTORE', unpack(args))
local top = redis.call('ZREVRANGE', scratch, 0, tonumber(ARGV[1]) - 1, 'WITHSCORES')
redis.call('DEL', scratch)
return top
";

/// What is being ranked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Event ids, counted by views.
    Events,
    /// Normalized search queries that found something.
    Keywords,
}

impl Kind {
    fn as_str(self) -> &'static str {
        match self {
            Kind::Events => "events",
            Kind::Keywords => "keywords",
        }
    }
}

/// The ranking store. Cheap to clone.
#[derive(Clone)]
pub struct Rankings {
    redis: RedisConn,
    prefix: String,
    record: Script,
    top: Script,
}

impl std::fmt::Debug for Rankings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Rankings")
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

fn hour_of(at: DateTime<Utc>) -> i64 {
    at.timestamp().div_euclid(3600)
}

/// The weight of a count `age` hours old.
pub fn decay(age_hours: i64) -> f64 {
    0.5f64.powf(age_hours as f64 / HALF_LIFE_HOURS)
}

impl Rankings {
    /// Connects to `target` (one Redis or a Redis Cluster). `prefix` starts every key;
    /// it may not contain braces (they would change the keys' hash tags).
    pub async fn connect(target: &RedisTarget, prefix: &str) -> anyhow::Result<Self> {
        anyhow::ensure!(
            !prefix.contains(['{', '}']),
            "REDIS_PREFIX {prefix:?} may not contain braces"
        );
        let redis = marquee_infra::redis_conn::connect(target, RedisTimeouts::default()).await?;
        Ok(Self {
            redis,
            prefix: prefix.to_owned(),
            record: Script::new(RECORD),
            top: Script::new(TOP),
        })
    }

    /// `p{search:<kind>}`: the prefix and hash tag of `kind`'s keys.
    fn tagged(&self, kind: Kind) -> String {
        format!("{}{{search:{}}}", self.prefix, kind.as_str())
    }

    fn bucket(&self, kind: Kind, hour: i64) -> String {
        format!("{}rank:{hour}", self.tagged(kind))
    }

    /// Counts `member` for `user` in the hour of `at`, unless `user` was already
    /// counted for it that hour. Returns whether it counted.
    pub async fn record(
        &self,
        kind: Kind,
        user: &str,
        member: &str,
        at: DateTime<Utc>,
    ) -> Result<bool, SearchError> {
        let hour = hour_of(at);
        let seen = format!("{}seen:{hour}:{user}:{member}", self.tagged(kind));
        // The marker outlives its hour so a late duplicate cannot count twice.
        let seen_ttl = (hour + 1) * 3600 - at.timestamp() + SEEN_TTL_SECS;
        let counted: i64 = self
            .record
            .key(seen)
            .key(self.bucket(kind, hour))
            .arg(member)
            .arg(seen_ttl.max(1))
            .arg(BUCKET_TTL_SECS)
            .invoke_async(&mut self.redis.clone())
            .await?;
        Ok(counted == 1)
    }

    /// The top `limit` members over the 24 hours up to `now`, with decayed scores.
    pub async fn top(
        &self,
        kind: Kind,
        limit: usize,
        now: DateTime<Utc>,
    ) -> Result<Vec<(String, f64)>, SearchError> {
        let hour = hour_of(now);
        let mut invocation = self.top.prepare_invoke();
        invocation.arg(limit);
        for age in 0..WINDOW_HOURS {
            invocation.key(self.bucket(kind, hour - age));
        }
        for age in 0..WINDOW_HOURS {
            invocation.arg(decay(age));
        }
        invocation.key(format!(
            "{}scratch:{}",
            self.tagged(kind),
            uuid::Uuid::new_v4().simple()
        ));
        let flat: Vec<String> = invocation.invoke_async(&mut self.redis.clone()).await?;
        let mut out = Vec::with_capacity(flat.len() / 2);
        for pair in flat.chunks_exact(2) {
            let score: f64 = pair[1].parse().unwrap_or(0.0);
            out.push((pair[0].clone(), score));
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn older_counts_weigh_less() {
        assert!((decay(0) - 1.0).abs() < 1e-9);
        assert!((decay(6) - 0.5).abs() < 1e-9);
        assert!(decay(23) < decay(1));
    }
}
