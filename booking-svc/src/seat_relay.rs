//! The seat relay: publishes the streams of seat changes that the hold scripts append to
//! (one per partition, `pt changes`, see [`crate::holds`]) as `seats.changed`
//! notifications.
//!
//! A change and its stream entry are written by one Lua script, so a change is never
//! lost between Redis and the bus: not when its caller's reply times out, not when
//! booking-svc crashes right after the script. Every replica reads the streams through
//! one consumer group each, so each entry is published by one replica; an entry is
//! acknowledged only after the broker confirmed its message, and the entries of a
//! replica that died before acknowledging are claimed by another after [`CLAIM_IDLE`].
//! A change may thus be published twice (realtime-svc drops a version it already has),
//! never zero times.
//!
//! The streams are read without blocking (on a Redis Cluster one read cannot span
//! partitions, and a blocking read per partition would take a connection each): a
//! replica reads a partition as soon as one of its own scripts marked it (see
//! [`Dirty`]), and every partition each [`POLL`], which picks up what a replica that
//! died wrote but never read.

use backon::{BackoffBuilder, ExponentialBuilder};
use std::time::{Duration, Instant};

use chrono::{TimeZone, Utc};
use marquee_infra::bus::Bus;
use marquee_proto::kinds::SEATS_CHANGED;
use std::sync::Arc;

use futures::future::join_all;
use marquee_infra::redis_conn::RedisConn;
use redis::AsyncCommands;
use redis::streams::{
    StreamAutoClaimOptions, StreamAutoClaimReply, StreamId, StreamReadOptions, StreamReadReply,
};
use tokio_util::sync::CancellationToken;

use crate::domain::{EventId, SeatChange, SeatId, SeatsChanged};
use crate::holds::{Dirty, HoldStore, Partition};
use crate::wire;

/// The consumer group every replica's relay reads the stream in.
pub const GROUP: &str = "seat-relay";
/// Most entries read from one partition's stream at a time (and about the most in one
/// `seats.changed` message).
const BATCH: usize = 2_000;
/// How often every partition is read, whether or not this replica marked it.
pub const POLL: Duration = Duration::from_millis(500);
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

/// Starts the relay of this replica over `holds`' streams; it stops on `shutdown`.
pub async fn spawn(holds: &HoldStore, bus: Bus, shutdown: CancellationToken) -> anyhow::Result<()> {
    let relay = Relay {
        redis: holds.connection(),
        streams: Partition::all()
            .map(|partition| holds.stream_key(partition))
            .collect(),
        dirty: holds.dirty(),
        consumer: format!("booking-svc-{}", uuid::Uuid::new_v4().simple()),
        bus,
    };
    for stream in &relay.streams {
        relay.ensure_group(stream).await?;
    }
    tokio::spawn(relay.run(shutdown));
    Ok(())
}

/// Partitions as a bit mask (bit `n` is partition `{hn}`).
const ALL: u64 = u64::MAX >> (64 - crate::holds::PARTITIONS as u32);

struct Relay {
    redis: RedisConn,
    /// Every partition's stream, in partition order: bit `n` of a mask is `streams[n]`.
    streams: Vec<String>,
    dirty: Arc<Dirty>,
    consumer: String,
    bus: Bus,
}

/// What reading one partition's stream gave.
struct Read {
    index: usize,
    entries: redis::RedisResult<Vec<StreamId>>,
}

impl Relay {
    async fn ensure_group(&self, stream: &str) -> redis::RedisResult<()> {
        let created: redis::RedisResult<()> = self
            .redis
            .clone()
            .xgroup_create_mkstream(stream, GROUP, "0")
            .await;
        match created {
            Err(error) if error.code() == Some("BUSYGROUP") => Ok(()),
            other => other,
        }
    }

    async fn run(self, shutdown: CancellationToken) {
        // Partitions whose pending entries (read by this consumer, not acknowledged) are
        // to be read again: all of them at the start, then those whose read or publish
        // failed (a read whose reply was lost still delivered its entries).
        let mut backlog = ALL;
        // Partitions to read again at once (their last read was a full batch).
        let mut again = 0;
        let mut last_claim = Instant::now();
        let mut last_poll = Instant::now();
        let mut delays = retry_backoff();
        loop {
            if shutdown.is_cancelled() {
                return;
            }
            if last_claim.elapsed() >= CLAIM_IDLE {
                last_claim = Instant::now();
                backlog |= self.claim_abandoned().await;
            }
            let mut mask = self.dirty.take() | backlog | again;
            if last_poll.elapsed() >= POLL {
                last_poll = Instant::now();
                mask = ALL;
            }
            if mask == 0 {
                tokio::select! {
                    () = self.dirty.wait() => {}
                    () = tokio::time::sleep(POLL.saturating_sub(last_poll.elapsed())) => {}
                    () = shutdown.cancelled() => return,
                }
                continue;
            }
            let reads = tokio::select! {
                reads = self.read_all(mask, backlog) => reads,
                () = shutdown.cancelled() => return,
            };
            again = 0;
            let mut failed = false;
            let mut batch: Vec<(usize, Vec<StreamId>)> = Vec::new();
            for Read { index, entries } in reads {
                let bit = 1u64 << index;
                match entries {
                    Ok(entries) => {
                        if entries.is_empty() {
                            backlog &= !bit;
                        } else {
                            if entries.len() >= BATCH {
                                again |= bit;
                            }
                            batch.push((index, entries));
                        }
                    }
                    Err(error) => {
                        failed = true;
                        backlog |= bit;
                        if error.code() == Some("NOGROUP") {
                            // Redis lost the stream with its data: start it again.
                            if let Err(error) = self.ensure_group(&self.streams[index]).await {
                                tracing::warn!(%error, "seat relay could not recreate its group");
                            }
                        } else {
                            tracing::warn!(%error, "seat relay read failed");
                        }
                    }
                }
            }
            if !batch.is_empty() {
                match self.publish(&batch).await {
                    Ok(()) => {}
                    Err(error) => {
                        let changes: usize = batch.iter().map(|(_, e)| e.len()).sum();
                        tracing::warn!(%error, changes, "seat relay publish failed; retrying");
                        failed = true;
                        for (index, _) in &batch {
                            backlog |= 1u64 << index;
                        }
                    }
                }
            }
            if failed {
                tokio::time::sleep(delays.next().unwrap_or(POLL)).await;
            } else {
                delays = retry_backoff();
            }
        }
    }

    /// Reads the partitions in `mask` at once: their pending entries if in `backlog`,
    /// else new ones.
    async fn read_all(&self, mask: u64, backlog: u64) -> Vec<Read> {
        let options = StreamReadOptions::default()
            .group(GROUP, &self.consumer)
            .count(BATCH);
        join_all(
            self.streams
                .iter()
                .enumerate()
                .filter(|(index, _)| mask & (1u64 << index) != 0)
                .map(|(index, stream)| {
                    let from = if backlog & (1u64 << index) != 0 {
                        "0"
                    } else {
                        ">"
                    };
                    let (options, mut redis) = (&options, self.redis.clone());
                    async move {
                        let reply: redis::RedisResult<Option<StreamReadReply>> =
                            redis.xread_options(&[stream], &[from], options).await;
                        Read {
                            index,
                            entries: reply.map(|r| {
                                r.map(|r| r.keys.into_iter().flat_map(|k| k.ids).collect())
                                    .unwrap_or_default()
                            }),
                        }
                    }
                }),
        )
        .await
    }

    /// Publishes the entries of `batch` (by partition) as one message and acknowledges
    /// them once it is confirmed.
    async fn publish(&self, batch: &[(usize, Vec<StreamId>)]) -> anyhow::Result<()> {
        let changes: Vec<SeatsChanged> = batch
            .iter()
            .flat_map(|(_, entries)| entries.iter().filter_map(parse))
            .collect();
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
        for (index, entries) in batch {
            let ids: Vec<&str> = entries.iter().map(|e| e.id.as_str()).collect();
            let _: usize = self
                .redis
                .clone()
                .xack(&self.streams[*index], GROUP, &ids)
                .await?;
        }
        Ok(())
    }

    /// Takes over entries another replica read but never acknowledged. Returns the
    /// partitions where there were any.
    async fn claim_abandoned(&self) -> u64 {
        let claims = join_all(self.streams.iter().enumerate().map(|(index, stream)| {
            let mut redis = self.redis.clone();
            async move {
                let reply: redis::RedisResult<StreamAutoClaimReply> = redis
                    .xautoclaim_options(
                        stream,
                        GROUP,
                        &self.consumer,
                        u64::try_from(CLAIM_IDLE.as_millis()).unwrap_or(5_000),
                        "0-0",
                        StreamAutoClaimOptions::default().count(BATCH),
                    )
                    .await;
                (index, reply)
            }
        }))
        .await;
        let mut claimed = 0;
        for (index, reply) in claims {
            match reply {
                Ok(reply) if !reply.claimed.is_empty() => claimed |= 1u64 << index,
                Ok(_) => {}
                Err(error) => {
                    tracing::warn!(%error, "seat relay could not claim abandoned changes")
                }
            }
        }
        claimed
    }
}
