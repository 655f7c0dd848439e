//! Bus messages ↔ domain types: the saga messages booking-svc sends and receives, and
//! the change notifications it publishes.

use chrono::{DateTime, Utc};
use marquee_infra::bus::Envelope;
use marquee_proto::booking as pb;
use marquee_proto::kinds::{PAYMENT_FAILED, PAYMENT_SUCCEEDED, PAYOUT_COMPLETED, REFUND_COMPLETED};
use marquee_proto::saga;
use prost::Message;
use uuid::Uuid;

use super::{event_pb, money, status_pb, timestamp};
use crate::catalog::EventInfo;
use crate::domain::{
    AccountId, BookingId, BookingMoved, Currency, Money, Payment, SeatChange, SeatsChanged,
};

/// `payment.requested`: charge `total` for `booking` to `buyer` as `payment` says; with
/// a card, its token travels in `card_token` (a PSP token, never a card number). The
/// outbox row is the only place booking-svc keeps the token.
pub fn payment_requested(
    booking: BookingId,
    buyer: AccountId,
    total: &Money,
    payment: &Payment,
) -> Vec<u8> {
    saga::PaymentRequested {
        booking_id: booking.to_string(),
        buyer_id: buyer.to_string(),
        amount: money(total),
        method: payment.method().as_str().to_owned(),
        card_token: payment
            .card_token()
            .map(|token| token.expose().to_owned())
            .unwrap_or_default(),
    }
    .encode_to_vec()
}

/// `refund.requested`: give `buyer` back what `booking` cost.
pub fn refund_requested(booking: BookingId, buyer: AccountId, reason: &str) -> Vec<u8> {
    saga::RefundRequested {
        booking_id: booking.to_string(),
        buyer_id: buyer.to_string(),
        reason: reason.to_owned(),
    }
    .encode_to_vec()
}

/// `payout.requested`: credit `amount` to `account`'s wallet for the transfer that
/// `payout` (the recipient's booking) completed.
pub fn payout_requested(
    payout: BookingId,
    account: AccountId,
    amount: &Money,
    reason: &str,
) -> Vec<u8> {
    saga::PayoutRequested {
        payout_id: payout.to_string(),
        account_id: account.to_string(),
        amount: money(amount),
        reason: reason.to_owned(),
    }
    .encode_to_vec()
}

/// `account.opened`: pay-svc opens the account's wallet.
pub fn account_opened(account: AccountId, opened_at: DateTime<Utc>) -> Vec<u8> {
    saga::AccountOpened {
        account_id: account.to_string(),
        opened_at: timestamp(opened_at),
    }
    .encode_to_vec()
}

/// A reply of pay-svc's half of the saga.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SagaReply {
    PaymentSucceeded,
    PaymentFailed {
        reason: String,
    },
    RefundCompleted,
    /// A transfer's payout was credited.
    PayoutCompleted {
        amount: Money,
    },
}

/// Why a saga reply could not be read: it will never be readable (dead-letter it).
#[derive(Debug, thiserror::Error)]
pub enum ReplyError {
    #[error("unexpected message type {0}")]
    UnknownKind(String),
    #[error("malformed {kind}: {source}")]
    Malformed {
        kind: String,
        source: prost::DecodeError,
    },
}

/// Reads the saga reply of type `kind`.
pub fn saga_reply(kind: &str, payload: &[u8]) -> Result<SagaReply, ReplyError> {
    let malformed = |source| ReplyError::Malformed {
        kind: kind.to_owned(),
        source,
    };
    match kind {
        PAYMENT_SUCCEEDED => saga::PaymentSucceeded::decode(payload)
            .map(|_| SagaReply::PaymentSucceeded)
            .map_err(malformed),
        PAYMENT_FAILED => saga::PaymentFailed::decode(payload)
            .map(|failed| SagaReply::PaymentFailed {
                reason: failed.reason,
            })
            .map_err(malformed),
        REFUND_COMPLETED => saga::RefundCompleted::decode(payload)
            .map(|_| SagaReply::RefundCompleted)
            .map_err(malformed),
        PAYOUT_COMPLETED => {
            let m = saga::PayoutCompleted::decode(payload).map_err(malformed)?;
            let amount = m.amount.unwrap_or_default();
            Ok(SagaReply::PayoutCompleted {
                amount: Money {
                    amount_minor: amount.amount_minor,
                    // Only for the timeline: a currency pay-svc wrote is shown as KRW
                    // when it cannot be read.
                    currency: Currency::parse("currency", &amount.currency)
                        .or_else(|_| Currency::parse("currency", "KRW"))
                        .map_err(|_| ReplyError::UnknownKind(kind.to_owned()))?,
                },
            })
        }
        other => Err(ReplyError::UnknownKind(other.to_owned())),
    }
}

fn booking_changed(moved: &BookingMoved) -> pb::BookingChanged {
    pb::BookingChanged {
        booking_id: moved.id.to_string(),
        buyer_id: moved.buyer.to_string(),
        event_id: moved.event.to_string(),
        status: status_pb(moved.status) as i32,
        cancel_reason: moved.cancel_reason.clone(),
        updated_at: timestamp(moved.updated_at),
    }
}

/// One `bookings.changed` notification for every transition in `moved`.
pub fn booking_changes(moved: &[BookingMoved]) -> Vec<u8> {
    pb::BookingChanges {
        changes: moved.iter().map(booking_changed).collect(),
    }
    .encode_to_vec()
}

/// `catalog.event_changed`: the event as CatalogService returns it.
pub fn event_changed(event: &EventInfo) -> Vec<u8> {
    pb::EventChanged {
        event: Some(event_pb(event)),
    }
    .encode_to_vec()
}

fn seats_changed(change: &SeatsChanged) -> pb::SeatsChanged {
    let (reason, status) = match change.change {
        SeatChange::Held => (pb::SeatChangeReason::SeatsHeld, pb::SeatStatus::Held),
        SeatChange::Released => (
            pb::SeatChangeReason::SeatsReleased,
            pb::SeatStatus::Available,
        ),
        SeatChange::Expired => (
            pb::SeatChangeReason::SeatsExpired,
            pb::SeatStatus::Available,
        ),
        SeatChange::Sold => (pb::SeatChangeReason::SeatsSold, pb::SeatStatus::Sold),
    };
    pb::SeatsChanged {
        event_id: change.event.to_string(),
        version: change.version,
        reason: reason as i32,
        status: status as i32,
        seat_ids: change.seats.iter().map(ToString::to_string).collect(),
        changed_at: timestamp(change.changed_at),
    }
}

/// One `seats.changed` notification for every change in `changes`.
pub fn seat_changes(changes: &[SeatsChanged]) -> Vec<u8> {
    pb::SeatChanges {
        changes: changes.iter().map(seats_changed).collect(),
    }
    .encode_to_vec()
}

/// A notification envelope (no saga: notifications are not saga messages).
pub fn notification(kind: &str, payload: Vec<u8>) -> Envelope {
    Envelope {
        message_id: Uuid::new_v4(),
        kind: kind.to_owned(),
        saga_id: Uuid::nil(),
        version: 1,
        occurred_at: Utc::now(),
        trace_context: Default::default(),
        payload,
    }
}

/// A `queue.advanced` notification's payload.
pub fn queue_advanced(
    event: crate::domain::EventId,
    opened: bool,
    admitted: i64,
    joined: i64,
    admit_rate: f64,
) -> Vec<u8> {
    pb::QueueAdvanced {
        event_id: event.to_string(),
        opened,
        admitted,
        joined,
        admit_rate,
        at: timestamp(Utc::now()),
    }
    .encode_to_vec()
}
