//! Dead letters, visible and redrivable.
//!
//! A message that exhausts its queue's delivery limit, or that a handler refuses for
//! good, lands in `<queue>.dlq` ([`crate::bus`]). The keeper ([`DeadLetters::keep`])
//! consumes every dead-letter queue of the queues its service's bus consumes and stores
//! each message in the service's `dead_letters` table (one row per queue and message
//! id), acking only after the row committed: storing is idempotent, and a message
//! dead-lettered again after a redrive turns its row back to `PENDING` and counts it.
//! The error stored is the handler's last error when it failed in this process
//! ([`crate::bus::Failure`]), else the broker's reason (`delivery_limit`, `rejected`).
//!
//! A redrive ([`DeadLetters::redrive`]) is one transaction: the selected `PENDING`
//! rows become `REDRIVEN` and each gets an outbox row with the message's original id,
//! type (its routing key), saga id, version, body, occurrence time and trace context,
//! which the outbox relay publishes with confirms. A letter already `REDRIVEN` is
//! reported as such and publishes nothing; were a message published twice anyway,
//! its consumers' inbox (claimed in the transaction of the handler's effect, so a
//! failed handling claims nothing) gives it one effect.
//!
//! Metric: `dead_letters_stored{service,state}` (rows per state, refreshed on a timer
//! and after each change).

pub mod entity;
pub mod grpc;
pub mod migration;

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use prost::Message as _;
use sea_orm::sea_query::{Expr, Func, OnConflict};
use sea_orm::{
    ActiveModelTrait,
    ActiveValue::{NotSet, Set},
    ColumnTrait, Condition, ConnectionTrait, DatabaseConnection, DbErr, EntityTrait,
    IntoActiveModel, QueryFilter, QueryOrder, QuerySelect, TransactionTrait, TryInsertResult,
};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use self::entity as letter;
use crate::bus::{Bus, BusError, DeadLetter, DeadLetterHandler, HandleError};
use crate::outbox::{Relay, entity::message};

/// A dead letter's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// Waiting for an operator.
    Pending,
    /// Re-published; dead-lettered again, it is `Pending` again.
    Redriven,
}

impl State {
    pub fn as_str(self) -> &'static str {
        match self {
            State::Pending => "PENDING",
            State::Redriven => "REDRIVEN",
        }
    }

    /// The state a stored row is in; a value the check constraint would refuse reads
    /// as pending.
    pub fn of(row: &letter::Model) -> Self {
        if row.state == State::Redriven.as_str() {
            State::Redriven
        } else {
            State::Pending
        }
    }
}

/// Where a page of dead letters starts: after this letter, in listing order
/// (first dead-lettered, newest first; then id, descending).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cursor {
    pub at: DateTime<Utc>,
    pub id: Uuid,
}

impl Cursor {
    pub fn of(row: &letter::Model) -> Self {
        Self {
            at: row.first_dead_lettered_at,
            id: row.id,
        }
    }

    /// The page token: `<microseconds since the epoch>:<id>`.
    pub fn encode(&self) -> String {
        format!("{}:{}", self.at.timestamp_micros(), self.id)
    }

    pub fn parse(token: &str) -> Option<Self> {
        let (micros, id) = token.split_once(':')?;
        Some(Self {
            at: DateTime::from_timestamp_micros(micros.parse().ok()?)?,
            id: id.parse().ok()?,
        })
    }
}

/// Which dead letters to list.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    /// Only those from this queue (full name).
    pub queue: Option<String>,
    pub state: Option<State>,
    /// Only those after this one.
    pub after: Option<Cursor>,
    /// At most this many.
    pub limit: u64,
}

/// What a redrive did with each selected id.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RedriveReport {
    /// Re-published now (their outbox rows committed).
    pub redriven: Vec<Uuid>,
    /// Redriven before and not dead-lettered since: nothing published.
    pub already_redriven: Vec<Uuid>,
    /// Not a dead letter of this service.
    pub not_found: Vec<Uuid>,
}

/// What storing one dead letter did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Recorded {
    /// A new letter.
    New,
    /// A redriven letter, dead-lettered again: pending again.
    Again,
    /// Already stored (a redelivery of the dead-letter queue): nothing changed.
    Duplicate,
}

/// A service's dead letters: the keeper, the listing and the redrive. Cheap to clone.
#[derive(Clone)]
pub struct DeadLetters {
    service: &'static str,
    db: DatabaseConnection,
    relay: Relay,
    /// Woken after a change, so the gauge follows at once.
    changed: Arc<Notify>,
}

impl std::fmt::Debug for DeadLetters {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeadLetters")
            .field("service", &self.service)
            .finish_non_exhaustive()
    }
}

impl DeadLetters {
    /// `service` names the keeper in the listing and in metrics; `relay` publishes
    /// redriven letters from `db`'s outbox.
    pub fn new(service: &'static str, db: DatabaseConnection, relay: Relay) -> Self {
        Self {
            service,
            db,
            relay,
            changed: Arc::new(Notify::new()),
        }
    }

    pub fn service(&self) -> &'static str {
        self.service
    }

    /// Keeps the dead letters of every queue `bus` consumes (call it after the
    /// service's `consume` calls) until the bus shuts down, and refreshes the
    /// `dead_letters_stored` gauge every `bus`'s dead-letter check until `shutdown`.
    pub async fn keep(&self, bus: &Bus, shutdown: CancellationToken) -> Result<(), BusError> {
        for queue in bus.dead_letter_queues() {
            let this = self.clone();
            let handler: DeadLetterHandler = Arc::new(move |dead| {
                let this = this.clone();
                Box::pin(async move {
                    this.record(dead)
                        .await
                        .map(|_| ())
                        .map_err(|e| HandleError::Transient(e.into()))
                })
            });
            bus.keep_dead_letters(&queue, handler).await?;
        }
        tokio::spawn(self.clone().watch(bus.config().dead_letter_check, shutdown));
        Ok(())
    }

    async fn watch(self, every: Duration, shutdown: CancellationToken) {
        loop {
            if let Err(error) = self.record_gauge().await {
                tracing::warn!(service = self.service, %error, "counting dead letters failed");
            }
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = self.changed.notified() => {}
                () = tokio::time::sleep(every) => {}
            }
        }
    }

    async fn record_gauge(&self) -> Result<(), DbErr> {
        let counts: Vec<(String, i64)> = letter::Entity::find()
            .select_only()
            .column(letter::Column::State)
            .column_as(Expr::from(Func::count(Expr::col(letter::Column::Id))), "n")
            .group_by(letter::Column::State)
            .into_tuple()
            .all(&self.db)
            .await?;
        for state in [State::Pending, State::Redriven] {
            let n = counts
                .iter()
                .find(|(s, _)| s == state.as_str())
                .map_or(0, |(_, n)| *n);
            // Dead letters this service keeps, by state (PENDING waits for an operator).
            metrics::gauge!("dead_letters_stored", "service" => self.service, "state" => state.as_str())
                .set(n as f64);
        }
        Ok(())
    }

    /// Stores one dead letter, in one transaction: a new row, a redriven row made
    /// pending again, or nothing for one already pending (a redelivery).
    pub async fn record(&self, dead: DeadLetter) -> Result<Recorded, DbErr> {
        let error = match &dead.failure {
            Some(failure) => failure.error.clone(),
            None => format!("dead-lettered by the broker: {}", dead.reason),
        };
        let deliveries = dead
            .failure
            .as_ref()
            .map(|f| f.attempts)
            .max(dead.delivery_count)
            .unwrap_or(0);
        let now = Utc::now();
        let tx = self.db.begin().await?;
        let existing = letter::Entity::find()
            .filter(letter::Column::Queue.eq(dead.queue.as_str()))
            .filter(letter::Column::MessageId.eq(dead.message_id))
            .lock_exclusive()
            .one(&tx)
            .await?;
        let recorded = match existing {
            None => {
                let inserted = letter::Entity::insert(new_row(&dead, &error, deliveries, now))
                    .on_conflict_do_nothing()
                    .exec_without_returning(&tx)
                    .await?;
                if matches!(inserted, TryInsertResult::Inserted(1)) {
                    Recorded::New
                } else {
                    Recorded::Duplicate
                }
            }
            Some(row) if State::of(&row) == State::Redriven => {
                let times = row.times_dead_lettered + 1;
                let previous = row.deliveries;
                let mut row = row.into_active_model();
                row.state = Set(State::Pending.as_str().to_owned());
                row.times_dead_lettered = Set(times);
                row.deliveries = Set(previous + deliveries);
                row.reason = Set(dead.reason.clone());
                row.last_error = Set(error.clone());
                row.last_dead_lettered_at = Set(now);
                row.update(&tx).await?;
                Recorded::Again
            }
            Some(_) => Recorded::Duplicate,
        };
        tx.commit().await?;
        if recorded != Recorded::Duplicate {
            self.changed.notify_one();
            tracing::warn!(
                service = self.service,
                queue = %dead.queue,
                message_id = %dead.message_id,
                kind = %dead.kind,
                reason = %dead.reason,
                %error,
                again = recorded == Recorded::Again,
                "dead letter stored"
            );
        }
        Ok(recorded)
    }

    /// One page of dead letters, in listing order.
    pub async fn list(&self, filter: &Filter) -> Result<Vec<letter::Model>, DbErr> {
        let mut query = letter::Entity::find();
        if let Some(queue) = &filter.queue {
            query = query.filter(letter::Column::Queue.eq(queue.as_str()));
        }
        if let Some(state) = filter.state {
            query = query.filter(letter::Column::State.eq(state.as_str()));
        }
        if let Some(after) = filter.after {
            query = query.filter(
                Condition::any()
                    .add(letter::Column::FirstDeadLetteredAt.lt(after.at))
                    .add(
                        Condition::all()
                            .add(letter::Column::FirstDeadLetteredAt.eq(after.at))
                            .add(letter::Column::Id.lt(after.id)),
                    ),
            );
        }
        query
            .order_by_desc(letter::Column::FirstDeadLetteredAt)
            .order_by_desc(letter::Column::Id)
            .limit(filter.limit)
            .all(&self.db)
            .await
    }

    /// Redrives the selected letters of this service, in one transaction (see the
    /// module documentation); wakes the relay after it committed.
    pub async fn redrive(&self, ids: &[Uuid]) -> Result<RedriveReport, DbErr> {
        let tx = self.db.begin().await?;
        let rows = letter::Entity::find()
            .filter(letter::Column::Id.is_in(ids.iter().copied()))
            .lock_exclusive()
            .all(&tx)
            .await?;
        let now = Utc::now();
        let mut redriven = Vec::new();
        let mut already = Vec::new();
        for row in rows {
            if State::of(&row) == State::Redriven {
                already.push(row.id);
                continue;
            }
            republish(&tx, &row).await?;
            redriven.push(row.id);
            let mut row = row.into_active_model();
            row.state = Set(State::Redriven.as_str().to_owned());
            row.redriven_at = Set(Some(now));
            row.update(&tx).await?;
        }
        tx.commit().await?;
        if !redriven.is_empty() {
            self.relay.notify();
            self.changed.notify_one();
        }
        tracing::info!(
            service = self.service,
            redriven = redriven.len(),
            already_redriven = already.len(),
            "dead letters redriven"
        );
        let mut report = RedriveReport::default();
        for id in ids {
            if redriven.contains(id) {
                report.redriven.push(*id);
            } else if already.contains(id) {
                report.already_redriven.push(*id);
            } else {
                report.not_found.push(*id);
            }
        }
        Ok(report)
    }
}

fn new_row(
    dead: &DeadLetter,
    error: &str,
    deliveries: i64,
    now: DateTime<Utc>,
) -> letter::ActiveModel {
    let envelope = dead.envelope.as_ref();
    letter::ActiveModel {
        id: Set(Uuid::now_v7()),
        queue: Set(dead.queue.clone()),
        message_id: Set(dead.message_id),
        kind: Set(dead.kind.clone()),
        exchange: Set(dead.exchange.clone()),
        routing_key: Set(dead.routing_key.clone()),
        saga_id: Set(envelope.map(|e| e.saga_id)),
        version: Set(envelope.map_or(1, |e| e.version)),
        occurred_at: Set(envelope.map(|e| e.occurred_at)),
        trace_context: Set(envelope
            .and_then(|e| serde_json::to_value(&e.trace_context).ok())
            .unwrap_or_else(|| serde_json::json!({}))),
        payload: Set(dead.payload.clone()),
        booking_id: Set(booking_id(&dead.kind, &dead.payload)),
        reason: Set(dead.reason.clone()),
        first_error: Set(error.to_owned()),
        last_error: Set(error.to_owned()),
        deliveries: Set(deliveries),
        times_dead_lettered: Set(1),
        state: Set(State::Pending.as_str().to_owned()),
        first_dead_lettered_at: Set(now),
        last_dead_lettered_at: Set(now),
        redriven_at: NotSet,
    }
}

/// Writes the letter's message back into the outbox, as it was first published. The
/// outbox may hold the id already (a message this service published to itself): its
/// row is then marked unsent again.
async fn republish<C: ConnectionTrait>(tx: &C, row: &letter::Model) -> Result<(), DbErr> {
    message::Entity::insert(message::ActiveModel {
        seq: NotSet,
        message_id: Set(row.message_id),
        kind: Set(row.kind.clone()),
        saga_id: Set(row.saga_id.unwrap_or_else(Uuid::nil)),
        version: Set(row.version),
        payload: Set(row.payload.clone()),
        trace_context: Set(row.trace_context.clone()),
        occurred_at: Set(row.occurred_at.unwrap_or_else(Utc::now)),
        sent_at: Set(None),
    })
    .on_conflict(
        OnConflict::column(message::Column::MessageId)
            .update_column(message::Column::SentAt)
            .to_owned(),
    )
    .exec_without_returning(tx)
    .await?;
    Ok(())
}

/// The booking a saga message names, if it is one.
pub fn booking_id(kind: &str, payload: &[u8]) -> Option<String> {
    use marquee_proto::kinds;
    use marquee_proto::saga;
    let id = match kind {
        kinds::PAYMENT_REQUESTED => saga::PaymentRequested::decode(payload).ok()?.booking_id,
        kinds::PAYMENT_SUCCEEDED => saga::PaymentSucceeded::decode(payload).ok()?.booking_id,
        kinds::PAYMENT_FAILED => saga::PaymentFailed::decode(payload).ok()?.booking_id,
        kinds::REFUND_REQUESTED => saga::RefundRequested::decode(payload).ok()?.booking_id,
        kinds::REFUND_COMPLETED => saga::RefundCompleted::decode(payload).ok()?.booking_id,
        _ => return None,
    };
    (!id.is_empty()).then_some(id)
}
