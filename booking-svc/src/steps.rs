//! The saga timeline, booking-svc's half: every step of a booking's saga (its status
//! changes, the messages it sent and received, the payment deadline) recorded in
//! `saga_steps` in the same transaction as the step's effect, through infra's
//! [`Steps`] (`marquee_infra::saga_steps`), which writes a transaction's steps with
//! one multi-row INSERT before it commits. Here: booking-svc's own kinds and the
//! reads for the admin timeline and the buyer's status history.

use chrono::Utc;
use marquee_infra::saga_steps::entity as saga_steps;
pub use marquee_infra::saga_steps::{REFUND, STATUS, Steps};
use sea_orm::{
    ActiveValue::Set, ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder,
};

use crate::domain::{
    BookingId, BookingStatus, Money, PaymentMethod, SagaStep, StatusChange, StepService,
};
use crate::error::BookingError;

/// The sweeper found the booking past its payment deadline.
pub const DEADLINE: &str = "deadline";

/// A transfer's steps on the recipient's booking: the offer accepted, the transfer
/// completed.
pub const TRANSFER: &str = "transfer";

/// The steps only booking-svc records.
pub trait BookingSteps {
    /// The booking was created (checkout), awaiting its payment of `total` by `method`.
    fn created(&mut self, method: PaymentMethod, total: &Money);
}

impl BookingSteps for Steps {
    fn created(&mut self, method: PaymentMethod, total: &Money) {
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
}

/// Every step booking-svc recorded for `booking`, oldest first.
pub async fn read<C: ConnectionTrait>(
    db: &C,
    booking: BookingId,
) -> Result<Vec<SagaStep>, BookingError> {
    let rows = marquee_infra::saga_steps::read(db, booking.0).await?;
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
