//! The saga timeline, pay-svc's half: every step of a booking's payment (the request
//! received, the wallet debited or credited, each PSP call and what came of it, a
//! status change, the reply sent) recorded in `payment_steps` in the same transaction
//! as the step's effect. A transaction collects its steps in a [`Steps`] and writes
//! them with one multi-row INSERT before it commits (on the wallet's hot path, one
//! statement more). Read back by `PaymentAdminService.ListPaymentSteps` for
//! booking-svc's admin timeline.

use chrono::Utc;
use sea_orm::{
    ActiveValue::{NotSet, Set},
    ColumnTrait, ConnectionTrait, DbErr, EntityTrait, QueryFilter, QueryOrder,
};
use uuid::Uuid;

use crate::domain::PaymentStatus;
use crate::entity::payment_steps;
use crate::psp::{Answer, CallError, PspStatus};

/// A payment's status changed (`from_status` empty: it was recorded).
pub const STATUS: &str = "status";
pub const MESSAGE_SENT: &str = "message_sent";
/// A message was claimed in the inbox (duplicates are not recorded: no effect).
pub const MESSAGE_RECEIVED: &str = "message_received";
/// The wallet was debited or credited, or could not be.
pub const WALLET: &str = "wallet";
/// A call to the payment provider (`operation` confirm, inquiry or cancel).
pub const PSP_CALL: &str = "psp_call";
/// A refund was asked for (what pay-svc made of it).
pub const REFUND: &str = "refund";

/// The PSP operations as the timeline names them.
pub const CONFIRM: &str = "confirm";
pub const INQUIRY: &str = "inquiry";
pub const CANCEL: &str = "cancel";

/// The current OpenTelemetry trace id (lowercase hex), empty outside any trace.
pub fn current_trace_id() -> String {
    let id = marquee_infra::telemetry::current_trace_id();
    if id.bytes().all(|b| b == b'0') {
        String::new()
    } else {
        id
    }
}

/// The steps one transaction records for one booking's payment, written together by
/// [`Steps::write`] inside that transaction.
#[derive(Debug)]
pub struct Steps {
    booking: Uuid,
    trace_id: String,
    rows: Vec<payment_steps::ActiveModel>,
}

impl Steps {
    pub fn new(booking: Uuid) -> Self {
        Self {
            booking,
            trace_id: current_trace_id(),
            rows: Vec::with_capacity(4),
        }
    }

    fn push(&mut self, kind: &str) -> &mut payment_steps::ActiveModel {
        self.rows.push(payment_steps::ActiveModel {
            id: NotSet,
            booking_id: Set(self.booking),
            // When the step was recorded, not the transaction's start: the steps of
            // one transaction keep their order.
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

    /// Message `id` of `kind` was claimed. Its outcome is known once it was handled:
    /// [`Steps::outcome`] sets it.
    pub fn received(&mut self, kind: &str, id: Uuid) {
        let row = self.push(MESSAGE_RECEIVED);
        row.message_type = Set(Some(kind.to_owned()));
        row.message_id = Set(Some(id));
    }

    /// Sets the outcome of the first step (the message received).
    pub fn outcome(&mut self, outcome: &str) {
        if let Some(first) = self.rows.first_mut() {
            first.outcome = Set(outcome.to_owned());
        }
    }

    /// `kind` went into the outbox as message `id`.
    pub fn sent(&mut self, kind: &str, id: Uuid) {
        let row = self.push(MESSAGE_SENT);
        row.message_type = Set(Some(kind.to_owned()));
        row.message_id = Set(Some(id));
    }

    /// The payment moved from `from` (`None`: recorded now) to `to`.
    pub fn status(&mut self, from: Option<PaymentStatus>, to: PaymentStatus, reason: &str) {
        let row = self.push(STATUS);
        row.from_status = Set(from.map(|s| s.as_str().to_owned()));
        row.to_status = Set(Some(to.as_str().to_owned()));
        row.reason = Set(reason.to_owned());
    }

    /// Any other step: `kind` with its outcome and a short detail.
    pub fn note(&mut self, kind: &str, outcome: &str, detail: &str) {
        let row = self.push(kind);
        row.outcome = Set(outcome.to_owned());
        row.detail = Set(detail.to_owned());
    }

    /// A PSP call, the `attempt`-th of its kind for this payment, and its answer.
    pub fn psp(&mut self, operation: &str, attempt: i32, answer: &Result<Answer, CallError>) {
        let (outcome, http_status, detail) = psp_outcome(answer);
        let row = self.push(PSP_CALL);
        row.operation = Set(Some(operation.to_owned()));
        row.attempt = Set(attempt);
        row.outcome = Set(outcome.to_owned());
        row.http_status = Set(http_status);
        row.detail = Set(detail);
    }

    /// Writes the steps, one INSERT for all of them, inside the caller's transaction.
    pub async fn write<C: ConnectionTrait>(self, db: &C) -> Result<(), DbErr> {
        if self.rows.is_empty() {
            return Ok(());
        }
        payment_steps::Entity::insert_many(self.rows)
            .exec_without_returning(db)
            .await?;
        Ok(())
    }
}

/// What a PSP answer says, for the timeline: (outcome, HTTP status, detail).
/// "captured", "aborted", "canceled", "in_progress": the payment object's status;
/// "refused": a 4xx; "unknown": no decision (5xx, timeout, dropped connection);
/// "not_sent": the PSP was never reached.
fn psp_outcome(answer: &Result<Answer, CallError>) -> (&'static str, Option<i32>, String) {
    match answer {
        Ok(Answer::Payment(payment)) => {
            let outcome = match payment.status {
                PspStatus::Done => "captured",
                PspStatus::Aborted => "aborted",
                PspStatus::Canceled => "canceled",
                PspStatus::InProgress => "in_progress",
                PspStatus::Unknown => "unknown",
            };
            let detail = payment
                .failure
                .as_ref()
                .map_or_else(String::new, |failure| failure.code.clone());
            (outcome, Some(200), detail)
        }
        Ok(Answer::Refused { status, code, .. }) => {
            ("refused", Some(i32::from(*status)), code.clone())
        }
        Ok(Answer::ServerError { status, code }) => {
            ("unknown", Some(i32::from(*status)), code.clone())
        }
        Err(error @ CallError::Unknown(_)) => ("unknown", None, error.to_string()),
        Err(error @ CallError::NotSent(_)) => ("not_sent", None, error.to_string()),
    }
}

/// Every step pay-svc recorded for `booking`'s payment, oldest first.
pub async fn read<C: ConnectionTrait>(
    db: &C,
    booking: Uuid,
) -> Result<Vec<payment_steps::Model>, DbErr> {
    payment_steps::Entity::find()
        .filter(payment_steps::Column::BookingId.eq(booking))
        .order_by_asc(payment_steps::Column::At)
        .order_by_asc(payment_steps::Column::Id)
        .all(db)
        .await
}
