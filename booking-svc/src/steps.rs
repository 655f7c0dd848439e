//! The saga timeline, booking-svc's half: every step of a booking's saga (its status
//! changes, the messages it sent and received, the payment deadline) recorded in
//! `saga_steps` in the same transaction as the step's effect, so the timeline never
//! shows a step that did not happen nor misses one that did. A transaction collects
//! its steps in a [`Steps`] and writes them with one multi-row INSERT before it
//! commits. Read back for the admin timeline and the buyer's status history.

use chrono::Utc;
use sea_orm::{
    ActiveValue::{NotSet, Set},
    ColumnTrait, ConnectionTrait, DbErr, EntityTrait, QueryFilter, QueryOrder,
};
use uuid::Uuid;

use crate::domain::{
    BookingId, BookingStatus, Money, PaymentMethod, SagaStep, StatusChange, StepService,
};
use crate::entity::saga_steps;
use crate::error::BookingError;

/// A booking's status changed (`from_status` empty: it was created).
pub const STATUS: &str = "status";
/// A message went into the outbox.
pub const MESSAGE_SENT: &str = "message_sent";
/// A message was claimed in the inbox (duplicates are not recorded: they have no
/// effect).
pub const MESSAGE_RECEIVED: &str = "message_received";
/// The sweeper found the booking past its payment deadline.
pub const DEADLINE: &str = "deadline";
/// A refund was asked for.
pub const REFUND: &str = "refund";

/// The current OpenTelemetry trace id (lowercase hex), empty when the step runs
/// outside any trace (e.g. the sweeper, or with tracing off).
pub fn current_trace_id() -> String {
    let id = marquee_infra::telemetry::current_trace_id();
    if id.bytes().all(|b| b == b'0') {
        String::new()
    } else {
        id
    }
}

/// The steps one transaction records for one booking, written together by
/// [`Steps::write`] inside that transaction.
#[derive(Debug)]
pub struct Steps {
    booking: Uuid,
    trace_id: String,
    rows: Vec<saga_steps::ActiveModel>,
}

impl Steps {
    pub fn new(booking: BookingId) -> Self {
        Self {
            booking: booking.0,
            trace_id: current_trace_id(),
            rows: Vec::with_capacity(3),
        }
    }

    fn push(&mut self, kind: &str) -> &mut saga_steps::ActiveModel {
        self.rows.push(saga_steps::ActiveModel {
            id: NotSet,
            booking_id: Set(self.booking),
            // The time each step was recorded (not the transaction's start), so the
            // steps of one transaction keep their order.
            at: Set(Utc::now()),
            kind: Set(kind.to_owned()),
            from_status: Set(None),
            to_status: Set(None),
            reason: Set(String::new()),
            message_type: Set(None),
            message_id: Set(None),
            operation: Set(None),
            attempt: Set(0),
            outcome: Set(String::new()),
            http_status: Set(None),
            trace_id: Set(self.trace_id.clone()),
            detail: Set(String::new()),
        });
        let last = self.rows.len() - 1;
        &mut self.rows[last]
    }

    /// The booking was created (checkout), awaiting its payment of `total` by `method`.
    pub fn created(&mut self, method: PaymentMethod, total: &Money) {
        let row = self.push(STATUS);
        row.to_status = Set(Some(BookingStatus::PendingPayment.as_str().to_owned()));
        row.outcome = Set("created".to_owned());
        row.detail = Set(format!(
            "{} {} {}",
            method.as_str(),
            total.amount_minor,
            total.currency.as_str()
        ));
    }

    /// The booking moved from `from` (`None`: it was created) to `to`.
    pub fn status(&mut self, from: Option<BookingStatus>, to: BookingStatus, reason: &str) {
        let row = self.push(STATUS);
        row.from_status = Set(from.map(|s| s.as_str().to_owned()));
        row.to_status = Set(Some(to.as_str().to_owned()));
        row.reason = Set(reason.to_owned());
    }

    /// `kind` went into the outbox as message `id`.
    pub fn sent(&mut self, kind: &str, id: Uuid) {
        let row = self.push(MESSAGE_SENT);
        row.message_type = Set(Some(kind.to_owned()));
        row.message_id = Set(Some(id));
    }

    /// Message `id` of `kind` was claimed; `outcome` says what it did.
    pub fn received(&mut self, kind: &str, id: Uuid, outcome: &str) {
        let row = self.push(MESSAGE_RECEIVED);
        row.message_type = Set(Some(kind.to_owned()));
        row.message_id = Set(Some(id));
        row.outcome = Set(outcome.to_owned());
    }

    /// Any other step: `kind` with its outcome and a short detail.
    pub fn note(&mut self, kind: &str, outcome: &str, detail: &str) {
        let row = self.push(kind);
        row.outcome = Set(outcome.to_owned());
        row.detail = Set(detail.to_owned());
    }

    /// Writes the steps, one INSERT for all of them, inside the caller's transaction.
    pub async fn write<C: ConnectionTrait>(self, db: &C) -> Result<(), DbErr> {
        if self.rows.is_empty() {
            return Ok(());
        }
        saga_steps::Entity::insert_many(self.rows)
            .exec_without_returning(db)
            .await?;
        Ok(())
    }
}

/// Every step booking-svc recorded for `booking`, oldest first.
pub async fn read<C: ConnectionTrait>(
    db: &C,
    booking: BookingId,
) -> Result<Vec<SagaStep>, BookingError> {
    let rows = saga_steps::Entity::find()
        .filter(saga_steps::Column::BookingId.eq(booking.0))
        .order_by_asc(saga_steps::Column::At)
        .order_by_asc(saga_steps::Column::Id)
        .all(db)
        .await?;
    Ok(rows
        .into_iter()
        .map(|row| SagaStep {
            at: row.at,
            service: StepService::Booking,
            kind: row.kind,
            attempt: row.attempt,
            outcome: row.outcome,
            detail: row.detail,
            message_type: row.message_type.unwrap_or_default(),
            message_id: row.message_id,
            trace_id: row.trace_id,
            from_status: row.from_status.unwrap_or_default(),
            to_status: row.to_status.unwrap_or_default(),
            reason: row.reason,
            operation: row.operation.unwrap_or_default(),
            http_status: row.http_status,
        })
        .collect())
}

/// The booking's status changes, oldest first: what its buyer may see of the saga.
pub async fn history<C: ConnectionTrait>(
    db: &C,
    booking: BookingId,
) -> Result<Vec<StatusChange>, BookingError> {
    let rows: Vec<(Option<String>, String, chrono::DateTime<Utc>)> = {
        use sea_orm::QuerySelect as _;
        saga_steps::Entity::find()
            .select_only()
            .column(saga_steps::Column::ToStatus)
            .column(saga_steps::Column::Reason)
            .column(saga_steps::Column::At)
            .filter(saga_steps::Column::BookingId.eq(booking.0))
            .filter(saga_steps::Column::Kind.eq(STATUS))
            .order_by_asc(saga_steps::Column::At)
            .order_by_asc(saga_steps::Column::Id)
            .into_tuple()
            .all(db)
            .await?
    };
    rows.into_iter()
        .filter_map(|(to, reason, at)| to.map(|to| (to, reason, at)))
        .map(|(to, reason, at)| {
            Ok(StatusChange {
                status: to.parse()?,
                reason,
                at,
            })
        })
        .collect()
}
