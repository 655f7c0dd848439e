//! Holds and bookings: the booking state machine and booking-svc's half of the
//! payment saga.
//!
//! PENDING_PAYMENT ─payment.succeeded→ CONFIRMED ─cancel→ CANCELLING ─refund.completed→ CANCELLED
//!        └──────payment.failed──────→ CANCELLED
//!
//! Postgres decides; Redis follows. After each committed transition the seats' Redis
//! marks are reconciled from the booking's state ([`reconcile`]), idempotently, so a
//! redelivered message or a retried step repairs whatever a crash left behind.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use marquee_infra::bus::{Envelope, HandleError};
use marquee_infra::outbox::{self, NewMessage, Relay};
use marquee_proto::saga;
use prost::Message;
use sqlx::{PgPool, Postgres, Transaction};
use uuid::Uuid;

use crate::catalog::{Catalog, EventInfo};
use crate::changes::{BookingMoved, ChangeFeed};
use crate::domain::{
    AccountId, BookingId, BookingStatus, EventId, HoldId, IdempotencyKey, Money, PaymentMethod,
    SeatId, SeatSelection,
};
use crate::error::BookingError;
use crate::holds::{Claim, HoldKeys, HoldRecord, HoldState, HoldStore, Refusal};
pub use marquee_proto::kinds::{
    PAYMENT_FAILED, PAYMENT_REQUESTED, PAYMENT_SUCCEEDED, REFUND_COMPLETED, REFUND_REQUESTED,
};

const CONSUMER: &str = "booking-svc";

/// What booking logic needs; cheap to clone.
#[derive(Clone, Debug)]
pub struct Bookings {
    pub pool: PgPool,
    pub holds: HoldStore,
    pub catalog: Catalog,
    pub relay: Relay,
    pub changes: ChangeFeed,
    pub hold_ttl: Duration,
}

#[derive(Debug, Clone)]
pub struct HoldGranted {
    pub hold_id: HoldId,
    pub event: EventId,
    pub seats: Vec<SeatId>,
    pub expires_at: DateTime<Utc>,
    pub total: Money,
}

#[derive(Debug, Clone)]
pub struct BookedSeat {
    pub seat: SeatId,
    pub section: String,
    pub row: String,
    pub number: String,
    pub price_minor: i64,
}

#[derive(Debug, Clone)]
pub struct Booking {
    pub id: BookingId,
    pub event: EventId,
    pub buyer: AccountId,
    pub hold: HoldId,
    pub status: BookingStatus,
    pub total: Money,
    pub method: PaymentMethod,
    pub cancel_reason: String,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub seats: Vec<BookedSeat>,
}

type BookingRow = (
    Uuid,
    Uuid,
    Uuid,
    Uuid,
    String,
    i64,
    String,
    String,
    String,
    DateTime<Utc>,
    DateTime<Utc>,
);

/// status, hold, buyer, event, seats.
type ReconcileRow = (String, Uuid, Uuid, Uuid, Vec<Uuid>);

const BOOKING_COLUMNS: &str = "id, event_id, buyer_id, hold_id, status, total_minor, currency, \
                               payment_method, cancel_reason, created_at, updated_at";

/// Each seat's price and their total; a seat outside the event is invalid input.
fn price(event: &EventInfo, seats: &[SeatId]) -> Result<(Vec<i64>, Money), BookingError> {
    let mut prices = Vec::with_capacity(seats.len());
    let mut amount = 0i64;
    for seat in seats {
        let info = event.seat(*seat).ok_or_else(|| {
            BookingError::invalid("seatIds", format!("seat {seat} is not part of this event"))
        })?;
        let price = event.section_of(info).price.amount_minor;
        amount = amount
            .checked_add(price)
            .ok_or_else(|| BookingError::invalid("seatIds", "total is too large"))?;
        prices.push(price);
    }
    let total = Money {
        amount_minor: amount,
        currency: event.details.currency.clone(),
    };
    Ok((prices, total))
}

impl Bookings {
    /// Holds `selection` of `event` for `buyer`: all seats or none.
    pub async fn hold(
        &self,
        buyer: AccountId,
        event: EventId,
        selection: SeatSelection,
    ) -> Result<HoldGranted, BookingError> {
        let info = self.catalog.event(&self.pool, event).await?;
        let now = Utc::now();
        if !info.on_sale(now) {
            return Err(BookingError::FailedPrecondition(format!(
                "this event is on sale from {} to {}",
                info.details.sale_starts_at.to_rfc3339(),
                info.details.sale_ends_at.to_rfc3339()
            )));
        }
        let limit = info.details.max_seats_per_buyer;
        if selection.len() > limit as usize {
            return Err(BookingError::invalid(
                "seatIds",
                format!("at most {limit} seats per hold for this event"),
            ));
        }
        let (_, total) = price(&info, selection.seats())?;
        let hold_id = HoldId::new();
        let ttl = chrono::Duration::from_std(self.hold_ttl).unwrap_or(chrono::Duration::minutes(5));
        let expires_at = now + ttl;
        let outcome = self
            .holds
            .hold(hold_id, buyer, event, selection.seats(), expires_at, limit)
            .await?;
        match outcome {
            Ok(()) => {
                metrics::counter!("holds_total", "outcome" => "granted").increment(1);
                tracing::debug!(hold_id = %hold_id, event_id = %event, seats = selection.len(), "seats held");
                Ok(HoldGranted {
                    hold_id,
                    event,
                    seats: selection.seats().to_vec(),
                    expires_at,
                    total,
                })
            }
            Err(Refusal::Taken(seats)) => {
                metrics::counter!("holds_total", "outcome" => "taken").increment(1);
                Err(BookingError::SeatsTaken(seats))
            }
            Err(Refusal::Limit { current }) => {
                metrics::counter!("holds_total", "outcome" => "limit").increment(1);
                Err(BookingError::SeatLimit { limit, current })
            }
        }
    }

    /// Releases the caller's hold; a hold being checked out can no longer be released.
    pub async fn release(&self, buyer: AccountId, hold: HoldId) -> Result<(), BookingError> {
        let record = self
            .holds
            .get(hold)
            .await?
            .filter(|r| r.buyer == buyer)
            .ok_or(BookingError::NotFound("hold"))?;
        if record.state == HoldState::CheckedOut || !self.holds.release_held(&record).await? {
            return Err(BookingError::FailedPrecondition(
                "this hold has been checked out; cancel the booking instead".into(),
            ));
        }
        tracing::debug!(hold_id = %hold, "hold released");
        Ok(())
    }

    /// Turns the caller's hold into a booking awaiting payment, writing the
    /// PaymentRequested message in the same transaction. Retrying with the same key
    /// returns the same booking.
    pub async fn checkout(
        &self,
        buyer: AccountId,
        hold: HoldId,
        method: PaymentMethod,
        key: IdempotencyKey,
    ) -> Result<Booking, BookingError> {
        // The first attempt finds its hold live and claims it; a retry finds the hold
        // claimed or gone and is answered from the booking its key made.
        let record = match self.holds.claim(hold, buyer).await? {
            Claim::Claimed(record) => record,
            Claim::Gone => return self.replay_by_key(buyer, hold, &key).await,
            Claim::AlreadyCheckedOut => return self.await_concurrent(buyer, hold, &key).await,
        };
        let info = self.catalog.event(&self.pool, record.event).await?;
        match self.insert_booking(&info, &record, method, &key).await {
            Ok(booking) => {
                self.relay.notify();
                self.changes.booking(BookingMoved {
                    id: booking.id,
                    buyer: booking.buyer,
                    event: booking.event,
                    status: booking.status,
                    cancel_reason: String::new(),
                    updated_at: booking.updated_at,
                });
                metrics::counter!("bookings_total", "status" => "PENDING_PAYMENT").increment(1);
                tracing::info!(booking_id = %booking.id, hold_id = %hold, total = booking.total.amount_minor, "booking created");
                Ok(booking)
            }
            Err(InsertError::SeatConflict) => {
                // Postgres knows these seats are taken even though Redis did not.
                let _ = self.holds.release_claimed(&record).await;
                Err(BookingError::SeatsTaken(record.seats.clone()))
            }
            Err(InsertError::KeyConflict) => {
                let _ = self.holds.unclaim(hold).await;
                match self.find_by_key(buyer, &key).await? {
                    Some(existing) => self.replay(existing, hold),
                    None => Err(BookingError::CheckoutInProgress),
                }
            }
            Err(InsertError::Other(e)) => {
                let _ = self.holds.unclaim(hold).await;
                Err(e)
            }
        }
    }

    async fn replay_by_key(
        &self,
        buyer: AccountId,
        hold: HoldId,
        key: &IdempotencyKey,
    ) -> Result<Booking, BookingError> {
        match self.find_by_key(buyer, key).await? {
            Some(existing) => self.replay(existing, hold),
            None => Err(BookingError::NotFound("hold")),
        }
    }

    fn replay(&self, existing: Booking, hold: HoldId) -> Result<Booking, BookingError> {
        if existing.hold == hold {
            Ok(existing)
        } else {
            Err(BookingError::AlreadyExists(
                "this idempotency key was already used for another hold",
            ))
        }
    }

    /// Another request is checking this hold out: wait briefly for its booking.
    async fn await_concurrent(
        &self,
        buyer: AccountId,
        hold: HoldId,
        key: &IdempotencyKey,
    ) -> Result<Booking, BookingError> {
        for _ in 0..20 {
            let by_hold: Option<(Uuid, Uuid, String)> = sqlx::query_as(
                "SELECT id, buyer_id, idempotency_key FROM bookings WHERE hold_id = $1",
            )
            .bind(hold.0)
            .fetch_optional(&self.pool)
            .await?;
            if let Some((id, owner, existing_key)) = by_hold {
                if owner == buyer.0 && existing_key == key.as_str() {
                    return self.get_any(BookingId(id)).await;
                }
                return Err(BookingError::AlreadyExists(
                    "this hold was already checked out",
                ));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Err(BookingError::CheckoutInProgress)
    }

    async fn insert_booking(
        &self,
        info: &EventInfo,
        record: &HoldRecord,
        method: PaymentMethod,
        key: &IdempotencyKey,
    ) -> Result<Booking, InsertError> {
        let (prices, total) = price(info, &record.seats).map_err(InsertError::Other)?;
        let id = BookingId::new();
        let mut tx = self.pool.begin().await.map_err(InsertError::db)?;
        let (created_at,): (DateTime<Utc>,) = sqlx::query_as(
            "INSERT INTO bookings (id, event_id, buyer_id, hold_id, status, total_minor, currency,
                                   payment_method, idempotency_key)
             VALUES ($1, $2, $3, $4, 'PENDING_PAYMENT', $5, $6, $7, $8)
             RETURNING created_at",
        )
        .bind(id.0)
        .bind(record.event.0)
        .bind(record.buyer.0)
        .bind(record.hold_id.0)
        .bind(total.amount_minor)
        .bind(total.currency.as_str())
        .bind(method.as_str())
        .bind(key.as_str())
        .fetch_one(&mut *tx)
        .await
        .map_err(InsertError::classify)?;
        let seat_ids: Vec<Uuid> = record.seats.iter().map(|s| s.0).collect();
        sqlx::query(
            "INSERT INTO booking_seats (booking_id, seat_id, event_id, price_minor)
             SELECT $1, u.seat_id, $2, u.price FROM UNNEST($3::uuid[], $4::int8[]) AS u(seat_id, price)",
        )
        .bind(id.0)
        .bind(record.event.0)
        .bind(&seat_ids)
        .bind(&prices)
        .execute(&mut *tx)
        .await
        .map_err(InsertError::classify)?;
        let request = saga::PaymentRequested {
            booking_id: id.to_string(),
            buyer_id: record.buyer.to_string(),
            amount: Some(marquee_proto::Money {
                amount_minor: total.amount_minor,
                currency: total.currency.as_str().to_owned(),
            }),
            method: method.as_str().to_owned(),
        };
        outbox::enqueue(
            &mut tx,
            NewMessage {
                kind: PAYMENT_REQUESTED,
                saga_id: id.0,
                version: 1,
                payload: request.encode_to_vec(),
            },
        )
        .await
        .map_err(InsertError::db)?;
        tx.commit().await.map_err(InsertError::db)?;
        let seats = record
            .seats
            .iter()
            .zip(&prices)
            .map(|(seat, price)| booked_seat(info, *seat, *price))
            .collect();
        Ok(Booking {
            id,
            event: record.event,
            buyer: record.buyer,
            hold: record.hold_id,
            status: BookingStatus::PendingPayment,
            total,
            method,
            cancel_reason: String::new(),
            created_at,
            updated_at: created_at,
            seats,
        })
    }

    async fn find_by_key(
        &self,
        buyer: AccountId,
        key: &IdempotencyKey,
    ) -> Result<Option<Booking>, BookingError> {
        let row: Option<BookingRow> = sqlx::query_as(&format!(
            "SELECT {BOOKING_COLUMNS} FROM bookings WHERE buyer_id = $1 AND idempotency_key = $2"
        ))
        .bind(buyer.0)
        .bind(key.as_str())
        .fetch_optional(&self.pool)
        .await?;
        match row {
            Some(row) => Ok(Some(self.hydrate(row).await?)),
            None => Ok(None),
        }
    }

    async fn hydrate(&self, row: BookingRow) -> Result<Booking, BookingError> {
        let event = self.catalog.event(&self.pool, EventId(row.1)).await?;
        let seats: Vec<(Uuid, i64)> = sqlx::query_as(
            "SELECT seat_id, price_minor FROM booking_seats WHERE booking_id = $1 ORDER BY seat_id",
        )
        .bind(row.0)
        .fetch_all(&self.pool)
        .await?;
        let seats = seats
            .into_iter()
            .map(|(seat, price)| booked_seat(&event, SeatId(seat), price))
            .collect();
        Ok(Booking {
            id: BookingId(row.0),
            event: EventId(row.1),
            buyer: AccountId(row.2),
            hold: HoldId(row.3),
            status: row.4.parse()?,
            total: Money {
                amount_minor: row.5,
                currency: crate::domain::Currency::parse("currency", &row.6)?,
            },
            method: row.7.parse()?,
            cancel_reason: row.8,
            created_at: row.9,
            updated_at: row.10,
            seats,
        })
    }

    async fn get_any(&self, id: BookingId) -> Result<Booking, BookingError> {
        let row: Option<BookingRow> = sqlx::query_as(&format!(
            "SELECT {BOOKING_COLUMNS} FROM bookings WHERE id = $1"
        ))
        .bind(id.0)
        .fetch_optional(&self.pool)
        .await?;
        self.hydrate(row.ok_or(BookingError::NotFound("booking"))?)
            .await
    }

    /// The caller's booking; another buyer's is reported as not found.
    pub async fn get(&self, buyer: AccountId, id: BookingId) -> Result<Booking, BookingError> {
        let booking = self.get_any(id).await?;
        if booking.buyer == buyer {
            Ok(booking)
        } else {
            Err(BookingError::NotFound("booking"))
        }
    }

    /// The caller's bookings, newest first.
    pub async fn list(
        &self,
        buyer: AccountId,
        offset: i64,
        limit: i64,
    ) -> Result<Vec<Booking>, BookingError> {
        let rows: Vec<BookingRow> = sqlx::query_as(&format!(
            "SELECT {BOOKING_COLUMNS} FROM bookings WHERE buyer_id = $1
             ORDER BY created_at DESC, id DESC OFFSET $2 LIMIT $3"
        ))
        .bind(buyer.0)
        .bind(offset)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        let mut bookings = Vec::with_capacity(rows.len());
        for row in rows {
            bookings.push(self.hydrate(row).await?);
        }
        Ok(bookings)
    }

    /// Cancels a confirmed booking of the caller: CANCELLING plus a RefundRequested
    /// message, in one transaction. Cancelling twice is harmless.
    pub async fn cancel(&self, buyer: AccountId, id: BookingId) -> Result<Booking, BookingError> {
        let booking = self.get(buyer, id).await?;
        match booking.status {
            BookingStatus::Cancelling => return Ok(booking),
            BookingStatus::Cancelled => {
                return Err(BookingError::FailedPrecondition(
                    "this booking is already cancelled".into(),
                ));
            }
            BookingStatus::PendingPayment => {
                return Err(BookingError::FailedPrecondition(
                    "the payment of this booking is still in progress".into(),
                ));
            }
            BookingStatus::Confirmed => {}
        }
        let mut tx = self.pool.begin().await?;
        let moved: Option<DateTime<Utc>> = sqlx::query_scalar(
            "UPDATE bookings SET status = 'CANCELLING', updated_at = now()
             WHERE id = $1 AND status = 'CONFIRMED' RETURNING updated_at",
        )
        .bind(id.0)
        .fetch_optional(&mut *tx)
        .await?;
        if moved.is_some() {
            enqueue_refund(&mut tx, id, booking.buyer, "cancelled by buyer").await?;
        }
        tx.commit().await?;
        self.relay.notify();
        if let Some(updated_at) = moved {
            self.changes.booking(BookingMoved {
                id,
                buyer: booking.buyer,
                event: booking.event,
                status: BookingStatus::Cancelling,
                cancel_reason: String::new(),
                updated_at,
            });
        }
        metrics::counter!("bookings_total", "status" => "CANCELLING").increment(1);
        tracing::info!(booking_id = %id, "booking cancellation requested");
        self.get_any(id).await
    }

    /// Handles one payment-saga reply. One transaction: inbox claim plus transition.
    pub async fn handle(&self, envelope: Envelope) -> Result<(), HandleError> {
        let booking_id = BookingId(envelope.saga_id);
        let mut tx = self.pool.begin().await.map_err(transient)?;
        let fresh = outbox::claim(&mut tx, CONSUMER, envelope.message_id)
            .await
            .map_err(transient)?;
        let mut effect = Effect::None;
        if fresh {
            effect = match envelope.kind.as_str() {
                PAYMENT_SUCCEEDED => {
                    saga::PaymentSucceeded::decode(envelope.payload.as_slice())
                        .map_err(permanent)?;
                    self.on_payment_succeeded(&mut tx, booking_id).await?
                }
                PAYMENT_FAILED => {
                    let failed = saga::PaymentFailed::decode(envelope.payload.as_slice())
                        .map_err(permanent)?;
                    let reason = format!("payment failed: {}", failed.reason);
                    move_status(
                        &mut tx,
                        booking_id,
                        BookingStatus::PendingPayment,
                        BookingStatus::Cancelled,
                        &reason,
                    )
                    .await?
                    .map_or(Effect::None, Effect::Moved)
                }
                REFUND_COMPLETED => {
                    saga::RefundCompleted::decode(envelope.payload.as_slice())
                        .map_err(permanent)?;
                    move_status(
                        &mut tx,
                        booking_id,
                        BookingStatus::Cancelling,
                        BookingStatus::Cancelled,
                        "cancelled by buyer",
                    )
                    .await?
                    .map_or(Effect::None, Effect::Moved)
                }
                other => {
                    return Err(HandleError::Permanent(anyhow::anyhow!(
                        "unexpected message type {other}"
                    )));
                }
            };
        }
        tx.commit().await.map_err(transient)?;
        match effect {
            Effect::Moved(moved) => {
                let status = moved.status;
                metrics::counter!("bookings_total", "status" => status.as_str()).increment(1);
                tracing::info!(booking_id = %booking_id, status = status.as_str(), "booking moved");
                self.changes.booking(moved);
            }
            // Only this path writes to the outbox, so only it wakes the relay.
            Effect::Refunding => self.relay.notify(),
            Effect::None => {}
        }
        // Redis follows Postgres, on every delivery (a redelivery repairs a lost step).
        self.reconcile(booking_id)
            .await
            .map_err(|e| HandleError::Transient(e.into()))
    }

    async fn on_payment_succeeded(
        &self,
        tx: &mut Transaction<'static, Postgres>,
        id: BookingId,
    ) -> Result<Effect, HandleError> {
        let moved = move_status(
            tx,
            id,
            BookingStatus::PendingPayment,
            BookingStatus::Confirmed,
            "",
        )
        .await?;
        if let Some(moved) = moved {
            return Ok(Effect::Moved(moved));
        }
        // Paid, but the booking is no longer waiting for it: give the money back.
        let row: Option<(String, Uuid)> =
            sqlx::query_as("SELECT status, buyer_id FROM bookings WHERE id = $1")
                .bind(id.0)
                .fetch_optional(&mut **tx)
                .await
                .map_err(transient)?;
        match row {
            Some((status, buyer)) if status == BookingStatus::Cancelled.as_str() => {
                tracing::warn!(booking_id = %id, "payment succeeded for a cancelled booking; refunding");
                enqueue_refund(tx, id, AccountId(buyer), "paid after cancellation")
                    .await
                    .map_err(|e| HandleError::Transient(e.into()))?;
                Ok(Effect::Refunding)
            }
            _ => Ok(Effect::None),
        }
    }

    /// Brings the seats' Redis marks in line with the booking's state in Postgres.
    pub async fn reconcile(&self, id: BookingId) -> Result<(), BookingError> {
        let row: Option<ReconcileRow> = sqlx::query_as(
            "SELECT b.status, b.hold_id, b.buyer_id, b.event_id,
                    array_agg(bs.seat_id ORDER BY bs.seat_id)
             FROM bookings b JOIN booking_seats bs ON bs.booking_id = b.id
             WHERE b.id = $1 GROUP BY b.id",
        )
        .bind(id.0)
        .fetch_optional(&self.pool)
        .await?;
        let Some((status, hold, buyer, event, seats)) = row else {
            return Ok(());
        };
        let seats: Vec<SeatId> = seats.into_iter().map(SeatId).collect();
        match status.parse()? {
            BookingStatus::Confirmed | BookingStatus::Cancelling => {
                self.holds
                    .mark_sold(id, HoldId(hold), EventId(event), &seats)
                    .await
            }
            BookingStatus::Cancelled => {
                let keys = HoldKeys {
                    hold: HoldId(hold),
                    buyer: AccountId(buyer),
                    event: EventId(event),
                    seats: &seats,
                };
                self.holds.free_booking(id, keys).await
            }
            BookingStatus::PendingPayment => Ok(()),
        }
    }

    /// Releases holds whose time is up; a hold checked out long ago whose booking was
    /// never written is released too. Returns how many were released.
    pub async fn sweep(&self) -> Result<usize, BookingError> {
        // Holds waiting on their deadline, held or being checked out, across replicas.
        metrics::gauge!("holds_active").set(self.holds.pending().await? as f64);
        let mut released = 0;
        for hold in self.holds.due(256).await? {
            let Some(record) = self.holds.get(hold).await? else {
                self.holds.forget_deadline(hold).await?;
                continue;
            };
            match record.state {
                HoldState::Held => {
                    if self.holds.expire(&record, HoldState::Held).await? {
                        released += 1;
                        metrics::counter!("holds_expired_total").increment(1);
                        tracing::info!(hold_id = %hold, seats = record.seats.len(), "hold expired");
                    }
                }
                HoldState::CheckedOut => {
                    let booked: Option<Uuid> =
                        sqlx::query_scalar("SELECT id FROM bookings WHERE hold_id = $1")
                            .bind(hold.0)
                            .fetch_optional(&self.pool)
                            .await?;
                    if booked.is_some() {
                        self.holds.forget_deadline(hold).await?;
                    } else if self.holds.expire(&record, HoldState::CheckedOut).await? {
                        released += 1;
                        tracing::warn!(hold_id = %hold, "checked-out hold without booking released");
                    }
                }
            }
        }
        Ok(released)
    }

    /// Restores Redis marks for every active booking (Redis may have lost its data).
    pub async fn prime_redis(&self) -> Result<(), BookingError> {
        let rows: Vec<(Uuid, Uuid, Uuid, Uuid, String, Vec<Uuid>)> = sqlx::query_as(
            "SELECT b.id, b.hold_id, b.buyer_id, b.event_id, b.status, array_agg(bs.seat_id)
             FROM bookings b JOIN booking_seats bs ON bs.booking_id = b.id AND bs.active
             GROUP BY b.id",
        )
        .fetch_all(&self.pool)
        .await?;
        for (booking, hold, buyer, event, status, seats) in rows {
            let seats: Vec<SeatId> = seats.into_iter().map(SeatId).collect();
            self.holds
                .prime(
                    BookingId(booking),
                    HoldId(hold),
                    AccountId(buyer),
                    EventId(event),
                    &seats,
                    status != "PENDING_PAYMENT",
                )
                .await?;
        }
        Ok(())
    }

    /// Runs [`sweep`](Self::sweep) every `every` until cancelled.
    pub fn spawn_sweeper(
        self: Arc<Self>,
        every: Duration,
        shutdown: tokio_util::sync::CancellationToken,
    ) {
        tokio::spawn(async move {
            loop {
                if let Err(error) = self.sweep().await {
                    tracing::warn!(%error, "hold sweep failed");
                }
                tokio::select! {
                    () = shutdown.cancelled() => return,
                    () = tokio::time::sleep(every) => {}
                }
            }
        });
    }
}

fn booked_seat(event: &EventInfo, seat: SeatId, price_minor: i64) -> BookedSeat {
    let info = event.seat(seat);
    BookedSeat {
        seat,
        section: info
            .map(|i| event.section_of(i).name.clone())
            .unwrap_or_default(),
        row: info.map(|i| i.row.clone()).unwrap_or_default(),
        number: info.map(|i| i.number.clone()).unwrap_or_default(),
        price_minor,
    }
}

/// What handling a saga reply did, acted on after its transaction commits.
enum Effect {
    /// The booking moved to another status.
    Moved(BookingMoved),
    /// A refund was requested through the outbox.
    Refunding,
    /// A duplicate or a reply with nothing left to do.
    None,
}

async fn enqueue_refund(
    tx: &mut sqlx::PgConnection,
    booking: BookingId,
    buyer: AccountId,
    reason: &str,
) -> Result<(), BookingError> {
    let request = saga::RefundRequested {
        booking_id: booking.to_string(),
        buyer_id: buyer.to_string(),
        reason: reason.to_owned(),
    };
    outbox::enqueue(
        tx,
        NewMessage {
            kind: REFUND_REQUESTED,
            saga_id: booking.0,
            version: 1,
            payload: request.encode_to_vec(),
        },
    )
    .await?;
    Ok(())
}

/// Moves a booking from `from` to `to` if it is in `from`; a cancelled booking's seats
/// stop being active. `None` when it was not in `from` (already moved: a duplicate).
async fn move_status(
    tx: &mut Transaction<'static, Postgres>,
    id: BookingId,
    from: BookingStatus,
    to: BookingStatus,
    reason: &str,
) -> Result<Option<BookingMoved>, HandleError> {
    let moved: Option<(Uuid, Uuid, DateTime<Utc>)> = sqlx::query_as(
        "UPDATE bookings SET status = $3, cancel_reason = $4, updated_at = now()
         WHERE id = $1 AND status = $2 RETURNING buyer_id, event_id, updated_at",
    )
    .bind(id.0)
    .bind(from.as_str())
    .bind(to.as_str())
    .bind(reason)
    .fetch_optional(&mut **tx)
    .await
    .map_err(transient)?;
    let Some((buyer, event, updated_at)) = moved else {
        return Ok(None);
    };
    if to == BookingStatus::Cancelled {
        sqlx::query("UPDATE booking_seats SET active = false WHERE booking_id = $1")
            .bind(id.0)
            .execute(&mut **tx)
            .await
            .map_err(transient)?;
    }
    Ok(Some(BookingMoved {
        id,
        buyer: AccountId(buyer),
        event: EventId(event),
        status: to,
        cancel_reason: reason.to_owned(),
        updated_at,
    }))
}

fn transient(e: impl Into<anyhow::Error>) -> HandleError {
    HandleError::Transient(e.into())
}

fn permanent(e: impl Into<anyhow::Error>) -> HandleError {
    HandleError::Permanent(e.into())
}

enum InsertError {
    SeatConflict,
    KeyConflict,
    Other(BookingError),
}

impl InsertError {
    fn db(e: sqlx::Error) -> Self {
        InsertError::Other(e.into())
    }

    fn classify(e: sqlx::Error) -> Self {
        let constraint = e
            .as_database_error()
            .and_then(|d| d.constraint())
            .map(str::to_owned);
        match constraint.as_deref() {
            Some("booking_seats_one_active") => InsertError::SeatConflict,
            Some("bookings_buyer_id_idempotency_key_key") => InsertError::KeyConflict,
            _ => InsertError::Other(e.into()),
        }
    }
}
