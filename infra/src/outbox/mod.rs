//! Transactional outbox and inbox.
//!
//! A service writes the messages it wants sent in the same transaction as the state
//! change that causes them ([`enqueue`]); the [`Relay`] publishes unsent rows with
//! publisher confirms and marks them sent. A consumer claims each message id in its
//! inbox ([`claim`]) in the same transaction as its effect, so a redelivery has none.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::{PgConnection, PgPool, Row};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;
use uuid::Uuid;

use crate::bus::{Bus, Envelope};
use crate::telemetry;

/// Creates the `outbox` and `inbox` tables if missing. Safe to run concurrently.
pub async fn migrate(pool: &PgPool) -> Result<(), sqlx::Error> {
    let mut tx = pool.begin().await?;
    sqlx::query("SELECT pg_advisory_xact_lock(727274)")
        .execute(&mut *tx)
        .await?;
    sqlx::raw_sql(
        r#"
        CREATE TABLE IF NOT EXISTS outbox (
            seq           BIGSERIAL PRIMARY KEY,
            message_id    UUID NOT NULL UNIQUE,
            kind          TEXT NOT NULL,
            saga_id       UUID NOT NULL,
            version       INT NOT NULL,
            payload       BYTEA NOT NULL,
            trace_context JSONB NOT NULL DEFAULT '{}',
            occurred_at   TIMESTAMPTZ NOT NULL DEFAULT now(),
            sent_at       TIMESTAMPTZ
        );
        CREATE INDEX IF NOT EXISTS outbox_unsent ON outbox (seq) WHERE sent_at IS NULL;
        CREATE TABLE IF NOT EXISTS inbox (
            consumer    TEXT NOT NULL,
            message_id  UUID NOT NULL,
            received_at TIMESTAMPTZ NOT NULL DEFAULT now(),
            PRIMARY KEY (consumer, message_id)
        );
        "#,
    )
    .execute(&mut *tx)
    .await?;
    tx.commit().await
}

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
pub async fn enqueue(tx: &mut PgConnection, message: NewMessage) -> Result<Uuid, sqlx::Error> {
    let id = Uuid::now_v7();
    let trace = serde_json::to_value(telemetry::current_context_map()).unwrap_or_default();
    sqlx::query(
        "INSERT INTO outbox (message_id, kind, saga_id, version, payload, trace_context)
         VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(id)
    .bind(message.kind)
    .bind(message.saga_id)
    .bind(message.version)
    .bind(&message.payload)
    .bind(trace)
    .execute(tx)
    .await?;
    Ok(id)
}

/// Records that `consumer` handled `message_id`, inside the caller's transaction.
/// `false` means it already had: skip the effect and ack.
pub async fn claim(
    tx: &mut PgConnection,
    consumer: &str,
    message_id: Uuid,
) -> Result<bool, sqlx::Error> {
    let done = sqlx::query(
        "INSERT INTO inbox (consumer, message_id) VALUES ($1, $2) ON CONFLICT DO NOTHING",
    )
    .bind(consumer)
    .bind(message_id)
    .execute(tx)
    .await?;
    Ok(done.rows_affected() == 1)
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

const BATCH: i64 = 256;
/// How often the relay prunes, and how long rows are kept: sent outbox rows for a day
/// (for inspection), inbox entries for a week (far longer than any redelivery).
const PRUNE_EVERY: Duration = Duration::from_secs(600);
const KEEP_SENT: &str = "1 day";
const KEEP_INBOX: &str = "7 days";

impl Relay {
    /// Starts relaying `pool`'s outbox to `bus` until `shutdown`.
    pub fn spawn(pool: PgPool, bus: Bus, poll: Duration, shutdown: CancellationToken) -> Self {
        let notify = Arc::new(Notify::new());
        let relay = Self {
            notify: notify.clone(),
        };
        tokio::spawn(async move {
            let mut last_prune = tokio::time::Instant::now();
            loop {
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
                if sent as i64 == BATCH {
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

/// Deletes sent outbox rows and inbox entries past their keeping time.
pub async fn prune(pool: &PgPool) -> Result<(u64, u64), sqlx::Error> {
    let sent = sqlx::query(&format!(
        "DELETE FROM outbox WHERE sent_at < now() - interval '{KEEP_SENT}'"
    ))
    .execute(pool)
    .await?
    .rows_affected();
    let seen = sqlx::query(&format!(
        "DELETE FROM inbox WHERE received_at < now() - interval '{KEEP_INBOX}'"
    ))
    .execute(pool)
    .await?
    .rows_affected();
    if sent + seen > 0 {
        tracing::info!(
            outbox_rows = sent,
            inbox_rows = seen,
            "outbox and inbox pruned"
        );
    }
    Ok((sent, seen))
}

async fn relay_batch(pool: &PgPool, bus: &Bus) -> anyhow::Result<usize> {
    let mut tx = pool.begin().await?;
    let rows = sqlx::query(
        "SELECT seq, message_id, kind, saga_id, version, payload, trace_context, occurred_at
         FROM outbox WHERE sent_at IS NULL ORDER BY seq LIMIT $1 FOR UPDATE SKIP LOCKED",
    )
    .bind(BATCH)
    .fetch_all(&mut *tx)
    .await?;
    if rows.is_empty() {
        return Ok(0);
    }
    let mut envelopes = Vec::with_capacity(rows.len());
    for row in &rows {
        let trace: serde_json::Value = row.try_get("trace_context")?;
        let trace_context: HashMap<String, String> =
            serde_json::from_value(trace).unwrap_or_default();
        envelopes.push((
            row.try_get::<i64, _>("seq")?,
            Envelope {
                message_id: row.try_get("message_id")?,
                kind: row.try_get("kind")?,
                saga_id: row.try_get("saga_id")?,
                version: row.try_get("version")?,
                occurred_at: row.try_get::<DateTime<Utc>, _>("occurred_at")?,
                trace_context,
                payload: row.try_get("payload")?,
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
            let result = bus.publish(&envelope).await;
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
    sqlx::query("UPDATE outbox SET sent_at = now() WHERE seq = ANY($1)")
        .bind(&sent)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    metrics::counter!("outbox_published_total").increment(sent.len() as u64);
    Ok(sent.len())
}
