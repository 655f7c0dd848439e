//! The seat relay: publishes the stream of seat changes that the hold scripts append to
//! (`p changes`, see [`crate::holds`]) as `seats.changed` notifications.
//!
//! A change and its stream entry are written by one Lua script, so a change is never
//! lost between Redis and the bus: not when its caller's reply times out, not when
//! booking-svc crashes right after the script. Every replica reads the stream through one
//! consumer group, so each entry is published by one replica; an entry is acknowledged
//! only after the broker confirmed its message, and the entries of a replica that died
//! before acknowledging are claimed by another after [`CLAIM_IDLE`]. A change may thus be
//! published twice (realtime-svc drops a version it already has), never zero times.

use backon::{BackoffBuilder, ExponentialBuilder};
use std::time::{Duration, Instant};

use chrono::{TimeZone, Utc};
use marquee_infra::bus::Bus;
use marquee_proto::kinds::SEATS_CHANGED;
use redis::AsyncCommands;
use redis::aio::ConnectionManager;
use redis::streams::{
    StreamAutoClaimOptions, StreamAutoClaimReply, StreamId, StreamReadOptions, StreamReadReply,
};
use tokio_util::sync::CancellationToken;

use crate::domain::{EventId, SeatChange, SeatId, SeatsChanged};
use crate::holds::{RedisTimeouts, connect};
use crate::wire;

/// The consumer group every replica's relay reads the stream in.
pub const GROUP: &str = "seat-relay";
/// Most stream entries in one `seats.changed` message.
const BATCH: usize = 2_000;
/// How long one read waits for new entries.
const BLOCK: Duration = Duration::from_millis(1_000);
/// Entries unacknowledged this long (their replica died) are taken over.
pub const CLAIM_IDLE: Duration = Duration::from_secs(5);
/// Waits after consecutive failed reads or publishes: exponential from 100 ms to 5 s,
/// with jitter, starting over after a success.
fn retry_backoff() -> backon::ExponentialBackoff {
    ExponentialBuilder::new()
        .with_min_delay(Duration::from_millis(100))
        .with_max_delay(Duration::from_secs(5))
        .with_jitter()
        .without_max_times()
        .build()
}

/// One stream entry as a change; `None` (and a warning) if it is malformed.
fn parse(entry: &StreamId) -> Option<SeatsChanged> {
    let field = |name: &str| entry.get::<String>(name);
    let parsed = (|| {
        // The entry id is `<ms>-<seq>` of Redis' clock when the change was made.
        let ms: i64 = entry.id.split('-').next()?.parse().ok()?;
        Some(SeatsChanged {
            event: EventId(field("e")?.parse().ok()?),
            version: field("v")?.parse().ok()?,
            change: SeatChange::parse(&field("k")?)?,
            seats: field("s")?
                .split(',')
                .map(|s| s.parse().map(SeatId))
                .collect::<Result<_, _>>()
                .ok()?,
            changed_at: Utc.timestamp_millis_opt(ms).single()?,
        })
    })();
    if parsed.is_none() {
        tracing::warn!(entry_id = %entry.id, "malformed seat change in the stream; skipped");
    }
    parsed
}

/// Starts the relay of this replica; it stops on `shutdown`.
pub async fn spawn(
    redis_url: &str,
    timeouts: RedisTimeouts,
    stream: String,
    bus: Bus,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    // A connection of its own: a blocking read would hold up every command behind it.
    let redis = connect(
        redis_url,
        RedisTimeouts {
            response: timeouts.response + BLOCK,
            ..timeouts
        },
    )
    .await?;
    let relay = Relay {
        redis,
        stream,
        consumer: format!("booking-svc-{}", uuid::Uuid::new_v4().simple()),
        bus,
    };
    relay.ensure_group().await?;
    tokio::spawn(relay.run(shutdown));
    Ok(())
}

struct Relay {
    redis: ConnectionManager,
    stream: String,
    consumer: String,
    bus: Bus,
}

impl Relay {
    async fn ensure_group(&self) -> redis::RedisResult<()> {
        let created: redis::RedisResult<()> = self
            .redis
            .clone()
            .xgroup_create_mkstream(&self.stream, GROUP, "0")
            .await;
        match created {
            Err(error) if error.code() == Some("BUSYGROUP") => Ok(()),
            other => other,
        }
    }

    async fn run(self, shutdown: CancellationToken) {
        // This replica's unacknowledged entries come first, then new ones.
        let mut backlog = true;
        let mut last_claim = Instant::now();
        let mut delays = retry_backoff();
        loop {
            if shutdown.is_cancelled() {
                return;
            }
            if last_claim.elapsed() >= CLAIM_IDLE {
                last_claim = Instant::now();
                match self.claim_abandoned().await {
                    Ok(true) => backlog = true,
                    Ok(false) => {}
                    Err(error) => {
                        tracing::warn!(%error, "seat relay could not claim abandoned changes")
                    }
                }
            }
            let mut options = StreamReadOptions::default()
                .group(GROUP, &self.consumer)
                .count(BATCH);
            if !backlog {
                options = options.block(usize::try_from(BLOCK.as_millis()).unwrap_or(1_000));
            }
            let from = if backlog { "0" } else { ">" };
            let read = tokio::select! {
                read = self.read(from, &options) => read,
                () = shutdown.cancelled() => return,
            };
            let entries = match read {
                Ok(entries) => entries,
                Err(error) => {
                    if error.code() == Some("NOGROUP") {
                        // Redis lost the stream with its data: start it again.
                        if let Err(error) = self.ensure_group().await {
                            tracing::warn!(%error, "seat relay could not recreate its group");
                        }
                    } else {
                        tracing::warn!(%error, "seat relay read failed");
                    }
                    // A read whose reply was lost still delivered its entries to this
                    // consumer: read them again from the pending list.
                    backlog = true;
                    tokio::time::sleep(delays.next().unwrap_or(BLOCK)).await;
                    continue;
                }
            };
            if entries.is_empty() {
                backlog = false;
                delays = retry_backoff();
                continue;
            }
            match self.publish(&entries).await {
                Ok(()) => delays = retry_backoff(),
                Err(error) => {
                    tracing::warn!(%error, changes = entries.len(), "seat relay publish failed; retrying");
                    backlog = true;
                    tokio::time::sleep(delays.next().unwrap_or(BLOCK)).await;
                }
            }
        }
    }

    async fn read(
        &self,
        from: &str,
        options: &StreamReadOptions,
    ) -> redis::RedisResult<Vec<StreamId>> {
        let reply: Option<StreamReadReply> = self
            .redis
            .clone()
            .xread_options(&[&self.stream], &[from], options)
            .await?;
        Ok(reply
            .map(|r| r.keys.into_iter().flat_map(|k| k.ids).collect())
            .unwrap_or_default())
    }

    /// Publishes `entries` as one message and acknowledges them once it is confirmed.
    async fn publish(&self, entries: &[StreamId]) -> anyhow::Result<()> {
        let changes: Vec<SeatsChanged> = entries.iter().filter_map(parse).collect();
        if !changes.is_empty() {
            let count = changes.len();
            self.bus
                .broadcast(&wire::bus::notification(
                    SEATS_CHANGED,
                    wire::bus::seat_changes(&changes),
                ))
                .await?;
            metrics::counter!("seat_changes_published_total").increment(count as u64);
        }
        let ids: Vec<&str> = entries.iter().map(|e| e.id.as_str()).collect();
        let _: usize = self.redis.clone().xack(&self.stream, GROUP, &ids).await?;
        Ok(())
    }

    /// Takes over entries another replica read but never acknowledged. Returns whether
    /// there were any.
    async fn claim_abandoned(&self) -> redis::RedisResult<bool> {
        let reply: StreamAutoClaimReply = self
            .redis
            .clone()
            .xautoclaim_options(
                &self.stream,
                GROUP,
                &self.consumer,
                u64::try_from(CLAIM_IDLE.as_millis()).unwrap_or(5_000),
                "0-0",
                StreamAutoClaimOptions::default().count(BATCH),
            )
            .await?;
        Ok(!reply.claimed.is_empty())
    }
}
