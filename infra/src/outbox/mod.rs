//! Transactional outbox and inbox.
//!
//! A service writes the messages it wants sent in the same transaction as the state
//! change that causes them ([`enqueue`]); the [`Relay`] publishes unsent rows with
//! publisher confirms and marks them sent. A consumer claims each message id in its
//! inbox ([`claim`]) in the same transaction as its effect, so a redelivery has none.

pub mod entity;
pub mod migration;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use sea_orm::sea_query::{Expr, Func, InsertStatement, LockBehavior, LockType};
use sea_orm::{
    ActiveValue::{NotSet, Set},
    ColumnTrait, ConnectionTrait, DatabaseConnection, DbErr, EntityTrait, QueryFilter, QueryOrder,
    QuerySelect, QueryTrait, TransactionTrait, TryInsertResult,
};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;
use uuid::Uuid;

use self::entity::{message, received};
use crate::bus::{Bus, Envelope};
use crate::telemetry;

/// A message to send, before it has an id.
#[derive(Debug, Clone)]
pub struct NewMessage {
    pub kind: &'static str,
    pub saga_id: Uuid,
    pub version: i32,
    pub payload: Vec<u8>,
}

/// Adds `message` to the outbox inside the caller's transaction, with the current
/// span's trace context. Returns its message id.
pub async fn enqueue<C: ConnectionTrait>(tx: &C, message: NewMessage) -> Result<Uuid, DbErr> {
    let id = Uuid::now_v7();
    message::Entity::insert(row(id, message))
        .exec_without_returning(tx)
        .await?;
    Ok(id)
}

/// [`enqueue`]'s INSERT, to run inside the caller's transaction as part of a larger
/// statement (`db::in_one_statement`), and the message id it gives.
pub fn enqueue_statement(message: NewMessage) -> (Uuid, InsertStatement) {
    let id = Uuid::now_v7();
    (id, message::Entity::insert(row(id, message)).into_query())
}

/// The outbox row of `message` under `id`, with the current span's trace context.
fn row(id: Uuid, message: NewMessage) -> message::ActiveModel {
    let trace = serde_json::to_value(telemetry::current_context_map()).unwrap_or_default();
    message::ActiveModel {
        seq: NotSet,
        message_id: Set(id),
        kind: Set(message.kind.to_owned()),
        saga_id: Set(message.saga_id),
        version: Set(message.version),
        payload: Set(message.payload),
        trace_context: Set(trace),
        occurred_at: NotSet,
        sent_at: NotSet,
    }
}

/// Records that `consumer` handled `message_id`, inside the caller's transaction.
/// `false` means it already had: skip the effect and ack.
pub async fn claim<C: ConnectionTrait>(
    tx: &C,
    consumer: &str,
    message_id: Uuid,
) -> Result<bool, DbErr> {
    let done = received::Entity::insert(received::ActiveModel {
        consumer: Set(consumer.to_owned()),
        message_id: Set(message_id),
        received_at: NotSet,
    })
    .on_conflict_do_nothing()
    .exec_without_returning(tx)
    .await?;
    Ok(matches!(done, TryInsertResult::Inserted(1)))
}

/// `OUTBOX_PUBLISH_COPIES`: how many times the relay publishes each outbox row, each
/// copy with the same message id (default 1). A chaos-testing setting: with 3, every
/// consumer sees every message three times and must act once (the inbox).
pub fn publish_copies(env: &mut crate::config::Settings) -> u32 {
    let copies: u32 = env.or("OUTBOX_PUBLISH_COPIES", 1);
    if copies == 0 {
        env.record(crate::config::ConfigError::Invalid {
            name: "OUTBOX_PUBLISH_COPIES".to_owned(),
            value: copies.to_string(),
            reason: "at least 1".to_owned(),
        });
    }
    copies.max(1)
}

/// Publishes outbox rows. Wake it with [`Relay::notify`] after committing new rows;
/// it also polls, so rows written by another replica or before a crash go out too.
#[derive(Clone)]
pub struct Relay {
    notify: Arc<Notify>,
}

impl std::fmt::Debug for Relay {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Relay").finish_non_exhaustive()
    }
}

const BATCH: u64 = 256;
/// How often the relay prunes, and how long rows are kept: sent outbox rows for a day
/// (for inspection), inbox entries for a week (far longer than any redelivery).
const PRUNE_EVERY: Duration = Duration::from_secs(600);
const KEEP_SENT: chrono::TimeDelta = chrono::TimeDelta::days(1);
const KEEP_INBOX: chrono::TimeDelta = chrono::TimeDelta::days(7);
/// How often the relay measures its backlog (`outbox_backlog`,
/// `outbox_oldest_unsent_age_seconds`): on a timer, not per batch.
const BACKLOG_EVERY: Duration = Duration::from_secs(5);

impl Relay {
    /// Starts relaying `pool`'s outbox to `bus` until `shutdown`. `service` labels the
    /// relay's backlog gauges (services that share a process, as in tests, keep theirs
    /// apart).
    pub fn spawn(
        service: &'static str,
        pool: DatabaseConnection,
        bus: Bus,
        poll: Duration,
        shutdown: CancellationToken,
    ) -> Self {
        let notify = Arc::new(Notify::new());
        let relay = Self {
            notify: notify.clone(),
        };
        tokio::spawn(async move {
            let mut last_prune = tokio::time::Instant::now();
            let mut last_backlog: Option<tokio::time::Instant> = None;
            loop {
                if last_backlog.is_none_or(|at| at.elapsed() >= BACKLOG_EVERY) {
                    last_backlog = Some(tokio::time::Instant::now());
                    if let Err(error) = record_backlog(service, &pool).await {
                        tracing::warn!(%error, "outbox backlog query failed");
                    }
                }
                if last_prune.elapsed() >= PRUNE_EVERY {
                    last_prune = tokio::time::Instant::now();
                    if let Err(error) = prune(&pool).await {
                        tracing::warn!(%error, "outbox prune failed");
                    }
                }
                let sent = match relay_batch(&pool, &bus).await {
                    Ok(sent) => sent,
                    Err(error) => {
                        tracing::warn!(%error, "outbox relay failed; retrying");
                        0
                    }
                };
                if sent as u64 == BATCH {
                    continue;
                }
                tokio::select! {
                    () = shutdown.cancelled() => return,
                    () = notify.notified() => {}
                    () = tokio::time::sleep(poll) => {}
                }
            }
        });
        relay
    }

    /// Wakes the relay: new rows were committed.
    pub fn notify(&self) {
        self.notify.notify_one();
    }
}

/// The unsent outbox rows: how many, and when the oldest occurred. One query, on the
/// partial index `outbox_unsent_idx`.
pub async fn backlog<C: ConnectionTrait>(db: &C) -> Result<(i64, Option<DateTime<Utc>>), DbErr> {
    let row: Option<(i64, Option<DateTime<Utc>>)> = message::Entity::find()
        .select_only()
        .column_as(
            Expr::from(Func::count(Expr::col(message::Column::Seq))),
            "backlog",
        )
        .column_as(
            Expr::from(Func::min(Expr::col(message::Column::OccurredAt))),
            "oldest",
        )
        .filter(message::Column::SentAt.is_null())
        .into_tuple()
        .one(db)
        .await?;
    Ok(row.unwrap_or((0, None)))
}

async fn record_backlog(service: &'static str, pool: &DatabaseConnection) -> Result<(), DbErr> {
    let (unsent, oldest) = backlog(pool).await?;
    let age = oldest.map_or(0.0, |at| {
        (Utc::now() - at).num_milliseconds().max(0) as f64 / 1000.0
    });
    // Outbox rows not yet published (including those a relay is publishing now).
    metrics::gauge!("outbox_backlog", "service" => service).set(unsent as f64);
    // How long the oldest unpublished row has waited; 0 when none is waiting.
    metrics::gauge!("outbox_oldest_unsent_age_seconds", "service" => service).set(age);
    Ok(())
}

/// Deletes sent outbox rows and inbox entries past their keeping time.
pub async fn prune<C: ConnectionTrait>(db: &C) -> Result<(u64, u64), DbErr> {
    let now = Utc::now();
    let sent = message::Entity::delete_many()
        .filter(message::Column::SentAt.lt(now - KEEP_SENT))
        .exec(db)
        .await?
        .rows_affected;
    let seen = received::Entity::delete_many()
        .filter(received::Column::ReceivedAt.lt(now - KEEP_INBOX))
        .exec(db)
        .await?
        .rows_affected;
    if sent + seen > 0 {
        tracing::info!(
            outbox_rows = sent,
            inbox_rows = seen,
            "outbox and inbox pruned"
        );
    }
    Ok((sent, seen))
}

async fn relay_batch(pool: &DatabaseConnection, bus: &Bus) -> anyhow::Result<usize> {
    let tx = pool.begin().await?;
    let rows = message::Entity::find()
        .filter(message::Column::SentAt.is_null())
        .order_by_asc(message::Column::Seq)
        .limit(BATCH)
        // Replicas relay disjoint batches: a row another relay holds is skipped.
        .lock_with_behavior(LockType::Update, LockBehavior::SkipLocked)
        .all(&tx)
        .await?;
    if rows.is_empty() {
        return Ok(0);
    }
    let copies = bus.config().outbox_publish_copies.max(1);
    let mut envelopes = Vec::with_capacity(rows.len());
    for row in rows {
        let trace_context: HashMap<String, String> =
            serde_json::from_value(row.trace_context).unwrap_or_default();
        envelopes.push((
            row.seq,
            Envelope {
                message_id: row.message_id,
                kind: row.kind,
                saga_id: row.saga_id,
                version: row.version,
                occurred_at: row.occurred_at,
                trace_context,
                payload: row.payload,
            },
        ));
    }
    let results = futures::future::join_all(envelopes.into_iter().map(|(seq, mut envelope)| {
        let span = tracing::info_span!(
            "amqp.publish",
            otel.name = %format!("publish {}", envelope.kind),
            otel.kind = "producer",
            messaging.system = "rabbitmq",
            messaging.message.id = %envelope.message_id,
        );
        telemetry::set_parent(&span, telemetry::context_from_map(&envelope.trace_context));
        // The consumer becomes a child of this publish span.
        let context = span.in_scope(telemetry::current_context_map);
        if !context.is_empty() {
            envelope.trace_context = context;
        }
        async move {
            // Chaos testing publishes every row several times, each copy under the
            // same message id (`OUTBOX_PUBLISH_COPIES`); normally once.
            let mut result = Ok(());
            for _ in 0..copies {
                result = bus.publish(&envelope).await;
                if result.is_err() {
                    break;
                }
            }
            (seq, envelope.occurred_at, result)
        }
        .instrument(span)
    }))
    .await;
    let mut sent = Vec::with_capacity(results.len());
    for (seq, occurred_at, result) in results {
        match result {
            Ok(()) => {
                let lag = (Utc::now() - occurred_at).num_milliseconds().max(0) as f64 / 1000.0;
                metrics::histogram!("outbox_publish_lag_seconds").record(lag);
                sent.push(seq);
            }
            Err(error) => tracing::warn!(seq, %error, "outbox publish failed"),
        }
    }
    if !sent.is_empty() {
        message::Entity::update_many()
            .col_expr(message::Column::SentAt, Expr::current_timestamp())
            .filter(message::Column::Seq.is_in(sent.iter().copied()))
            .exec(&tx)
            .await?;
    }
    tx.commit().await?;
    metrics::counter!("outbox_published_total").increment(sent.len() as u64);
    Ok(sent.len())
}
