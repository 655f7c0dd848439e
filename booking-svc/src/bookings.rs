//! Holds and bookings: the booking state machine and booking-svc's half of the
//! payment saga.
//!
//! PENDING_PAYMENT ─payment.succeeded→ CONFIRMED ─cancel→ CANCELLING ─refund.completed→ CANCELLED
//!        ├──────payment.failed──────→ CANCELLED      │
//!        └──payment deadline passed─→ CANCELLED      └─transfer accepted→ TRANSFERRING
//!                                                        ├─recipient paid→ TRANSFERRED
//!                                                        └─recipient's payment failed
//!                                                          or overdue→ CONFIRMED
//!
//! A transfer's booking (the recipient's, `transfer_of` set) runs the same saga from
//! PENDING_PAYMENT without seats; its payment moves the original booking and the offer
//! along in the same transaction ([`transfers`]).
//!
//! Postgres decides; Redis follows. After each committed transition the seats' Redis
//! marks are reconciled from the booking's state ([`reconcile`]), idempotently, so a
//! redelivered message or a retried step repairs whatever a crash left behind.
//!
//! Every transaction of the saga also records what it did in the saga timeline
//! ([`crate::steps`]: the status change, the message sent or received), before it
//! commits, so the timeline shows exactly the steps that took effect.

use backon::{ConstantBuilder, ExponentialBuilder, Retryable};
use futures::StreamExt as _;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use marquee_infra::bus::{self, Envelope, HandleError};
use marquee_infra::outbox::{self, NewMessage, Relay};
use sea_orm::sea_query::extension::postgres::PgFunc;
use sea_orm::sea_query::{Alias, Asterisk, Expr, Func, Query, SubQueryStatement};
use sea_orm::{
    ActiveValue::{NotSet, Set},
    ColumnTrait, ConnectionTrait, DatabaseConnection, DatabaseTransaction, DbBackend, DbErr,
    DerivePartialModel, EntityTrait, FromQueryResult, IdenStatic, JoinType, QueryFilter,
    QueryOrder, QuerySelect, QueryTrait, RelationTrait, Select, Statement, TransactionTrait,
};
use uuid::Uuid;

use crate::best;
use crate::catalog::{self, Catalog, EventInfo, NewEvent, SectionSales};
use crate::changes::ChangeFeed;
use crate::domain::{
    AccountId, BestAvailable, BookedSeat, Booking, BookingId, BookingMoved, BookingStatus, EventId,
    HoldGranted, HoldId, HoldSelection, IdempotencyKey, Money, Payment, SagaStep, SeatId,
    SeatSelection, SeatStatus,
};
use crate::entity::{booking_seats, bookings, events};
use crate::error::BookingError;
use crate::holds::{
    Claim, HoldKeys, HoldOutcome, HoldRecord, HoldRequest, HoldState, HoldStore, Partition,
    TakenOver,
};
use crate::steps::{self, BookingSteps as _, Steps};
use crate::wire::{self, bus::SagaReply};
pub use marquee_proto::kinds::{
    PAYMENT_FAILED, PAYMENT_REQUESTED, PAYMENT_SUCCEEDED, PAYOUT_COMPLETED, PAYOUT_REQUESTED,
    REFUND_COMPLETED, REFUND_REQUESTED,
};

mod transfers;

const CONSUMER: &str = "booking-svc";

/// The longest the sweeper goes between two counts of bookings by status
/// ([`Bookings::record_stats`]); a faster sweeper counts every 60 passes' time.
const STATS_EVERY: Duration = Duration::from_secs(15);

/// At most this many bookings are cancelled for their payment deadline in one sweep
/// pass, oldest first; the rest wait for the next pass (250 ms later by default).
const DEADLINE_BATCH: u64 = 100;
/// Due holds a sweep reads at once (per partition of the hold store).
const SWEEP_BATCH: isize = 256;
/// Full batches a sweep handles before it sleeps until the next tick.
const SWEEP_BATCHES: usize = 16;
/// Due holds a sweep handles at once (two Redis round trips each).
const SWEEP_CONCURRENCY: usize = 32;

/// The cancel reason of a booking whose payment did not come back in time.
pub const DEADLINE_REASON: &str = "payment deadline passed";

/// Why a payment that succeeded for an already cancelled booking is refunded.
const PAID_AFTER_CANCELLATION: &str = "paid after cancellation";

/// The statuses a saga waits in before it ends (CONFIRMED and CANCELLED are where it
/// rests), for `saga_bookings` and `saga_oldest_age_seconds`.
const RUNNING: [BookingStatus; 2] = [BookingStatus::PendingPayment, BookingStatus::Cancelling];

/// Every booking status, so a status with no booking reads 0 rather than its last count.
const STATUSES: [BookingStatus; 6] = [
    BookingStatus::PendingPayment,
    BookingStatus::Confirmed,
    BookingStatus::Cancelling,
    BookingStatus::Cancelled,
    BookingStatus::Transferring,
    BookingStatus::Transferred,
];

/// Bookings, holds and the catalog they sell from: what the RPCs call. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Bookings {
    pool: DatabaseConnection,
    holds: HoldStore,
    catalog: Catalog,
    relay: Relay,
    changes: ChangeFeed,
    timing: HoldTiming,
}

/// How long holds, and bookings awaiting their payment, last.
#[derive(Debug, Clone, Copy)]
pub struct HoldTiming {
    /// From a hold until it expires.
    pub hold_ttl: Duration,
    /// How long a claimed hold may go without its booking before the sweeper puts it
    /// back (a checkout that crashed, or whose Redis reply was lost).
    pub checkout_grace: Duration,
    /// From a booking's creation until the sweeper cancels it if it is still
    /// PENDING_PAYMENT (`PAYMENT_DEADLINE_MS`).
    pub payment_deadline: Duration,
}

/// Why a booking ended CANCELLED, for `bookings_cancelled_total{reason}`.
#[derive(Debug, Clone, Copy)]
enum CancelledBy {
    PaymentFailed,
    PaymentDeadline,
    Buyer,
}

impl CancelledBy {
    fn count(self) {
        let reason = match self {
            CancelledBy::PaymentFailed => "payment_failed",
            CancelledBy::PaymentDeadline => "payment_deadline",
            CancelledBy::Buyer => "buyer",
        };
        // Bookings that reached CANCELLED, by why: pay-svc refused the payment, no
        // payment came back before the deadline, or the buyer cancelled (refunded).
        metrics::counter!("bookings_cancelled_total", "reason" => reason).increment(1);
    }
}

/// A booking with the seats it holds or owns, for bringing Redis in line with it.
#[derive(Debug, FromQueryResult)]
struct BookingWithSeats {
    id: Uuid,
    status: String,
    hold_id: Uuid,
    buyer_id: Uuid,
    event_id: Uuid,
    transfer_of: Option<Uuid>,
    /// Unordered (`array_agg`).
    seats: Vec<Uuid>,
}

/// Bookings joined with their seats, one row per booking ([`BookingWithSeats`]); the
/// caller filters.
fn bookings_with_seats() -> Select<bookings::Entity> {
    bookings::Entity::find()
        .select_only()
        .columns([
            bookings::Column::Id,
            bookings::Column::Status,
            bookings::Column::HoldId,
            bookings::Column::BuyerId,
            bookings::Column::EventId,
            bookings::Column::TransferOf,
        ])
        .column_as(
            Expr::from(PgFunc::array_agg(booking_seats::Column::SeatId.into_expr())),
            "seats",
        )
        .join(JoinType::InnerJoin, bookings::Relation::BookingSeats.def())
        .group_by(bookings::Column::Id)
}

/// Who owns a booking and where it stands.
#[derive(Debug, DerivePartialModel)]
#[sea_orm(entity = "bookings::Entity")]
struct BookingStanding {
    status: String,
    buyer_id: Uuid,
}

/// The booking a hold became, with what checked it out.
#[derive(Debug, DerivePartialModel)]
#[sea_orm(entity = "bookings::Entity")]
struct BookingOfHold {
    id: Uuid,
    buyer_id: Uuid,
    idempotency_key: String,
}

/// A seat of a booking and the price it was booked at.
#[derive(Debug, DerivePartialModel)]
#[sea_orm(entity = "booking_seats::Entity")]
struct BookedSeatRow {
    seat_id: Uuid,
    price_minor: i64,
}

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

/// How many times best available reads the statuses and offers its candidate blocks
/// again after other buyers took a seat of every one first; then it answers 409 with
/// the seats it lost.
const BEST_ATTEMPTS: u32 = 8;

/// Why a hold request's idempotency key is refused: it made a hold of other seats, or
/// (best available) a hold for other terms.
const KEY_REUSED_SEATS: &str = "this idempotency key was already used for other seats";
const KEY_REUSED_BEST: &str = "this idempotency key was already used for another hold request";

/// What a hold script's refusal (neither held nor replayed, nor seats taken) answers;
/// `reused`: what the key was already used for.
fn refusal(outcome: HoldOutcome, limit: u32, hold: HoldId, reused: &'static str) -> BookingError {
    match outcome {
        HoldOutcome::Limit { current } => {
            metrics::counter!("holds_total", "outcome" => "limit").increment(1);
            BookingError::SeatLimit { limit, current }
        }
        HoldOutcome::KeyReused => BookingError::AlreadyExists(reused),
        HoldOutcome::Void => BookingError::Internal(format!("new hold {hold} was already void")),
        HoldOutcome::Taken(seats) => BookingError::SeatsTaken(seats.iter().map(|s| s.0).collect()),
        HoldOutcome::Held { .. } | HoldOutcome::Replayed { .. } => {
            BookingError::Internal(format!("hold {hold} was granted, yet refused"))
        }
    }
}

impl Bookings {
    pub fn new(
        pool: DatabaseConnection,
        holds: HoldStore,
        catalog: Catalog,
        relay: Relay,
        changes: ChangeFeed,
        timing: HoldTiming,
    ) -> Self {
        Self {
            pool,
            holds,
            catalog,
            relay,
            changes,
            timing,
        }
    }

    // -------------------------------------------------------------- the catalog

    /// An event with its layout.
    pub async fn event(&self, id: EventId) -> Result<Arc<EventInfo>, BookingError> {
        self.catalog.event(&self.pool, id).await
    }

    /// Creates an event of `seller` and announces it.
    pub async fn create_event(
        &self,
        seller: AccountId,
        new: NewEvent,
    ) -> Result<Arc<EventInfo>, BookingError> {
        let id = catalog::create_event(&self.pool, seller, new).await?;
        let event = self.event(id).await?;
        self.changes.event(&event);
        Ok(event)
    }

    /// Ids of a page of events, by start time.
    pub async fn event_ids(&self, offset: i64, limit: i64) -> Result<Vec<EventId>, BookingError> {
        catalog::list_event_ids(&self.pool, offset, limit).await
    }

    /// Every seat's status (sold from Postgres, held from Redis).
    pub async fn seat_statuses(&self, event: &EventInfo) -> Result<Vec<SeatStatus>, BookingError> {
        catalog::seat_statuses(&self.pool, &self.holds, event).await
    }

    /// Every seat's status as of one seat version: one atomic read.
    pub async fn seat_snapshot(
        &self,
        event: &EventInfo,
    ) -> Result<(i64, Vec<SeatStatus>), BookingError> {
        let seats: Vec<SeatId> = event.seats.iter().map(|s| s.id).collect();
        self.holds.snapshot(event.id, &seats).await
    }

    /// The seat version of each event.
    pub async fn seat_versions(&self, events: &[EventId]) -> Result<Vec<i64>, BookingError> {
        self.holds.seat_versions(events).await
    }

    /// Seats sold and revenue per section.
    pub async fn sales(&self, event: &EventInfo) -> Result<Vec<SectionSales>, BookingError> {
        catalog::sales(&self.pool, event).await
    }

    // -------------------------------------------------------------- holds and bookings

    /// Holds seats of `event` for `buyer`, all or none: the seats `selection` names, or
    /// the best block of adjacent seats it asks for ([`crate::best`]). With `key`, a
    /// retry returns the hold the first attempt made. Without one, an error means
    /// nothing is held: a hold whose Redis reply was lost is voided.
    pub async fn hold(
        &self,
        buyer: AccountId,
        event: EventId,
        selection: impl Into<HoldSelection>,
        key: Option<IdempotencyKey>,
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
        let ttl = chrono::Duration::from_std(self.timing.hold_ttl)
            .unwrap_or(chrono::Duration::minutes(5));
        // Whole milliseconds, as Redis keeps it: a replay for the same key says the same.
        let expires_at = now + ttl;
        let expires_at =
            DateTime::from_timestamp_millis(expires_at.timestamp_millis()).unwrap_or(expires_at);
        match selection.into() {
            HoldSelection::Seats(seats) => {
                self.hold_seats(&info, buyer, &seats, key.as_ref(), expires_at)
                    .await
            }
            HoldSelection::Best(best) => {
                self.hold_best(&info, buyer, &best, key.as_ref(), expires_at)
                    .await
            }
        }
    }

    /// Holds the seats the buyer named.
    async fn hold_seats(
        &self,
        info: &EventInfo,
        buyer: AccountId,
        selection: &SeatSelection,
        key: Option<&IdempotencyKey>,
        expires_at: DateTime<Utc>,
    ) -> Result<HoldGranted, BookingError> {
        let event = info.id;
        let limit = info.details.max_seats_per_buyer;
        if selection.len() > limit as usize {
            return Err(BookingError::invalid(
                "seatIds",
                format!("at most {limit} seats per hold for this event"),
            ));
        }
        let (_, total) = price(info, selection.seats())?;
        let hold_id = crate::holds::new_hold_id(event);
        let request = HoldRequest {
            hold: hold_id,
            buyer,
            event,
            seats: selection.seats(),
            block: None,
            expires_at,
            limit,
            key,
            key_ttl: self.timing.hold_ttl,
            terms: None,
        };
        let granted = |hold_id, expires_at| HoldGranted {
            hold_id,
            event,
            seats: selection.seats().to_vec(),
            expires_at,
            total: total.clone(),
        };
        match self.try_hold(request).await? {
            HoldOutcome::Held { .. } => {
                metrics::counter!("holds_total", "outcome" => "granted").increment(1);
                tracing::debug!(hold_id = %hold_id, event_id = %event, seats = selection.len(), "seats held");
                Ok(granted(hold_id, expires_at))
            }
            HoldOutcome::Replayed {
                hold, expires_at, ..
            } => {
                metrics::counter!("holds_total", "outcome" => "replayed").increment(1);
                tracing::debug!(hold_id = %hold, event_id = %event, "hold replayed for its idempotency key");
                Ok(granted(hold, expires_at))
            }
            HoldOutcome::Taken(seats) => {
                metrics::counter!("holds_total", "outcome" => "taken").increment(1);
                Err(BookingError::SeatsTaken(
                    seats.iter().map(|s| s.0).collect(),
                ))
            }
            other => Err(refusal(other, limit, hold_id, KEY_REUSED_SEATS)),
        }
    }

    /// Best available: holds the best block of adjacent seats ([`crate::best`]). Reads
    /// the seats' statuses in Redis, where holds are decided, one eligible section at a
    /// time, and holds the block chosen with the ordinary all-or-nothing hold script;
    /// when another buyer took one of its seats first (nothing was held), reads again
    /// and chooses again, at most [`BEST_ATTEMPTS`] times. The idempotency key is bound
    /// to the request's terms, not to the seats chosen, so a retry replays the hold the
    /// first attempt made, though a new choice would pick other seats (or none).
    async fn hold_best(
        &self,
        info: &EventInfo,
        buyer: AccountId,
        request: &BestAvailable,
        key: Option<&IdempotencyKey>,
        expires_at: DateTime<Utc>,
    ) -> Result<HoldGranted, BookingError> {
        let event = info.id;
        let limit = info.details.max_seats_per_buyer;
        let quantity = request.quantity();
        if quantity > limit {
            return Err(BookingError::invalid(
                "quantity",
                format!("at most {limit} seats per hold for this event"),
            ));
        }
        let section = request
            .section()
            .map(|id| {
                info.sections
                    .iter()
                    .position(|s| s.id == id)
                    .ok_or_else(|| {
                        BookingError::invalid("sectionId", "not a section of this event")
                    })
            })
            .transpose()?;
        if let Some(max) = request.max_price()
            && max.currency != info.details.currency
        {
            return Err(BookingError::invalid(
                "maxPrice.currency",
                format!(
                    "must be the event's currency, {}",
                    info.details.currency.as_str()
                ),
            ));
        }
        let filter = best::Filter {
            quantity: quantity as usize,
            section,
            max_price: request.max_price().map(|m| m.amount_minor),
        };
        let sections = best::eligible(&info.sections, &info.seats, &filter);
        let terms = request.terms();
        let granted = |hold_id, seats: Vec<SeatId>, expires_at| {
            let (_, total) = price(info, &seats)?;
            Ok::<_, BookingError>(HoldGranted {
                hold_id,
                event,
                seats,
                expires_at,
                total,
            })
        };
        let mut taken = Vec::new();
        for attempt in 1..=BEST_ATTEMPTS {
            let candidates = self
                .best_candidates(info, &sections, filter.quantity)
                .await?;
            if candidates.is_empty() {
                // No block: unless this is the retry of a request whose key already
                // holds one (whose seats are no longer available, to anybody else).
                if let Some(key) = key
                    && let Some(done) = self.holds.keyed_hold(event, buyer, key).await?
                {
                    if done.terms != terms {
                        return Err(BookingError::AlreadyExists(KEY_REUSED_BEST));
                    }
                    metrics::counter!("holds_total", "outcome" => "replayed").increment(1);
                    tracing::debug!(hold_id = %done.hold, event_id = %event, "best-available hold replayed for its idempotency key");
                    return granted(done.hold, done.seats, done.expires_at);
                }
                metrics::counter!("holds_total", "outcome" => "no_block").increment(1);
                return Err(BookingError::NoAdjacentSeats {
                    quantity,
                    within: match (filter.section, filter.max_price) {
                        (None, None) => "",
                        (Some(_), None) => " of the section asked for",
                        (None, Some(_)) => " at the price asked for",
                        (Some(_), Some(_)) => " of the section and at the price asked for",
                    },
                });
            }
            let seats: Vec<SeatId> = candidates
                .iter()
                .flat_map(|block| info.seats[block.seats.clone()].iter().map(|s| s.id))
                .collect();
            let hold_id = crate::holds::new_hold_id(event);
            let request = HoldRequest {
                hold: hold_id,
                buyer,
                event,
                seats: &seats,
                block: Some(filter.quantity),
                expires_at,
                limit,
                key,
                key_ttl: self.timing.hold_ttl,
                terms: Some(&terms),
            };
            match self.try_hold(request).await? {
                HoldOutcome::Held { block } => {
                    let start = block * filter.quantity;
                    let (Some(chosen), Some(candidate)) = (
                        seats.get(start..start + filter.quantity),
                        candidates.get(block),
                    ) else {
                        return Err(BookingError::Internal(format!(
                            "hold {hold_id} held candidate {block} of {}",
                            candidates.len()
                        )));
                    };
                    metrics::counter!("holds_total", "outcome" => "granted").increment(1);
                    tracing::debug!(hold_id = %hold_id, event_id = %event, quantity, candidate = block, strands = candidate.strands, attempt, "best available seats held");
                    return granted(hold_id, chosen.to_vec(), expires_at);
                }
                HoldOutcome::Replayed {
                    hold,
                    expires_at,
                    seats,
                } => {
                    metrics::counter!("holds_total", "outcome" => "replayed").increment(1);
                    tracing::debug!(hold_id = %hold, event_id = %event, "best-available hold replayed for its idempotency key");
                    return granted(hold, seats, expires_at);
                }
                // Others were first to every candidate: nothing was held; choose again.
                HoldOutcome::Taken(seats) => taken = seats,
                other => return Err(refusal(other, limit, hold_id, KEY_REUSED_BEST)),
            }
        }
        metrics::counter!("holds_total", "outcome" => "taken").increment(1);
        tracing::info!(event_id = %event, quantity, attempts = BEST_ATTEMPTS, "best available lost every race for its seats");
        Err(BookingError::SeatsTaken(
            taken.iter().map(|s| s.0).collect(),
        ))
    }

    /// The best [`best::CANDIDATES`] blocks of `quantity` among `sections`
    /// ([`best::eligible`]), best first: reads the statuses in Redis, where holds are
    /// decided, one section at a time, best first, until enough blocks that strand no
    /// seat are found.
    async fn best_candidates(
        &self,
        info: &EventInfo,
        sections: &[Vec<best::Row>],
        quantity: usize,
    ) -> Result<Vec<best::Block>, BookingError> {
        let mut free = vec![false; info.seats.len()];
        let mut search = best::Search::new(quantity, best::CANDIDATES);
        for rows in sections {
            let positions: Vec<usize> = rows.iter().flat_map(|row| row.seats.clone()).collect();
            let ids: Vec<SeatId> = positions.iter().map(|&i| info.seats[i].id).collect();
            let values = self.holds.seat_values(info.id, &ids).await?;
            for (&i, value) in positions.iter().zip(values) {
                free[i] = value.is_none();
            }
            if search.look(rows, &info.seats, &free) {
                break;
            }
        }
        Ok(search.finish())
    }

    /// Runs the hold script; a failure answers what [`Bookings::hold_failed`] says.
    async fn try_hold(&self, request: HoldRequest<'_>) -> Result<HoldOutcome, BookingError> {
        match self.holds.hold(request).await {
            Ok(outcome) => Ok(outcome),
            Err(error) => Err(self.hold_failed(request, error)),
        }
    }

    /// What a hold request whose script failed answers. An unanswered script may still
    /// run: with an idempotency key the client's retry finds out; without one the hold
    /// is voided in the background (it frees the seats if the script ran, and stops it
    /// if it has not), so "not held" stays true.
    fn hold_failed(&self, request: HoldRequest<'_>, error: BookingError) -> BookingError {
        match error {
            BookingError::Unavailable(detail) => {
                metrics::counter!("holds_total", "outcome" => "unconfirmed").increment(1);
                if request.key.is_some() {
                    tracing::warn!(hold_id = %request.hold, %detail, "hold outcome unknown; the client retries with its key");
                    return BookingError::HoldOutcomeUnknown;
                }
                tracing::warn!(hold_id = %request.hold, %detail, "hold outcome unknown; voiding it");
                let holds = self.holds.clone();
                let seats = request.seats.to_vec();
                let (hold, buyer, event) = (request.hold, request.buyer, request.event);
                // Long enough that the script cannot still be on its way to Redis.
                let tombstone = self.timing.hold_ttl;
                tokio::spawn(async move {
                    let keys = HoldKeys {
                        hold,
                        buyer,
                        event,
                        seats: &seats,
                    };
                    // Until it works, for at most the hold's lifetime: by then the
                    // hold, if it was made, has expired by itself.
                    let voided = (|| holds.void(keys, tombstone))
                        .retry(
                            ExponentialBuilder::new()
                                .with_min_delay(Duration::from_millis(100))
                                .with_max_delay(Duration::from_secs(5))
                                .with_jitter()
                                .without_max_times()
                                .with_total_delay(Some(tombstone)),
                        )
                        .notify(|error, _| {
                            tracing::warn!(hold_id = %hold, %error, "voiding an unconfirmed hold failed; retrying");
                        })
                        .await;
                    match voided {
                        Ok(()) => tracing::info!(hold_id = %hold, "unconfirmed hold voided"),
                        Err(error) => {
                            tracing::error!(hold_id = %hold, %error, "gave up voiding an unconfirmed hold")
                        }
                    }
                });
                BookingError::HoldUnconfirmed
            }
            other => other,
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
        payment: Payment,
        key: IdempotencyKey,
    ) -> Result<Booking, BookingError> {
        // The first attempt finds its hold live and claims it; a retry finds the hold
        // claimed or gone and is answered from the booking its key made.
        let record = match self
            .holds
            .claim(hold, buyer, self.timing.checkout_grace)
            .await?
        {
            Claim::Claimed(record) => record,
            Claim::Gone => return self.replay_by_key(buyer, hold, &key).await,
            Claim::AlreadyCheckedOut => return self.await_concurrent(buyer, hold, &key).await,
        };
        let info = self.catalog.event(&self.pool, record.event).await?;
        match self.insert_booking(&info, &record, &payment, &key).await {
            Ok(booking) => {
                self.relay.notify();
                let moved = |status, updated_at| BookingMoved {
                    id: booking.id,
                    buyer: booking.buyer,
                    event: booking.event,
                    status,
                    cancel_reason: String::new(),
                    updated_at,
                };
                self.changes
                    .booking(moved(BookingStatus::PendingPayment, booking.created_at));
                metrics::counter!("bookings_total", "status" => "PENDING_PAYMENT").increment(1);
                // The card token is never logged (not even redacted: nothing needs it).
                tracing::info!(booking_id = %booking.id, hold_id = %hold, total = booking.total.amount_minor, method = booking.method.as_str(), "booking created");
                if booking.status == BookingStatus::Confirmed {
                    // Nothing to pay: confirmed in the same transaction.
                    self.changes
                        .booking(moved(BookingStatus::Confirmed, booking.updated_at));
                    metrics::counter!("bookings_total", "status" => "CONFIRMED").increment(1);
                    tracing::info!(booking_id = %booking.id, "free booking confirmed without a payment");
                    self.reconcile_until_done(booking.id).await;
                }
                Ok(booking)
            }
            Err(InsertError::Limit { limit, current }) => {
                // Redis let the buyer hold more than the limit (it lost its data):
                // Postgres says no, and the seats go back on sale.
                let _ = self.holds.release_claimed(&record).await;
                Err(BookingError::SeatLimit { limit, current })
            }
            Err(InsertError::SeatConflict) => {
                // Postgres knows these seats are taken even though Redis did not.
                let _ = self.holds.release_claimed(&record).await;
                Err(BookingError::SeatsTaken(
                    record.seats.iter().map(|s| s.0).collect(),
                ))
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
        /// Why a look for the concurrent booking ended without it.
        enum Awaited {
            NotYet,
            Failed(BookingError),
        }
        let look = || async {
            let by_hold = bookings::Entity::find()
                .filter(bookings::Column::HoldId.eq(hold.0))
                .into_partial_model::<BookingOfHold>()
                .one(&self.pool)
                .await
                .map_err(|e| Awaited::Failed(e.into()))?;
            match by_hold {
                Some(existing)
                    if existing.buyer_id == buyer.0 && existing.idempotency_key == key.as_str() =>
                {
                    self.get_any(BookingId(existing.id))
                        .await
                        .map_err(Awaited::Failed)
                }
                Some(_) => Err(Awaited::Failed(BookingError::AlreadyExists(
                    "this hold was already checked out",
                ))),
                None => Err(Awaited::NotYet),
            }
        };
        // About two seconds: a checkout's insert takes milliseconds.
        let found = look
            .retry(
                ConstantBuilder::new()
                    .with_delay(Duration::from_millis(100))
                    .with_max_times(20)
                    .with_jitter(),
            )
            .when(|e| matches!(e, Awaited::NotYet))
            .await;
        match found {
            Ok(booking) => Ok(booking),
            Err(Awaited::NotYet) => Err(BookingError::CheckoutInProgress),
            Err(Awaited::Failed(error)) => Err(error),
        }
    }

    async fn insert_booking(
        &self,
        info: &EventInfo,
        record: &HoldRecord,
        payment: &Payment,
        key: &IdempotencyKey,
    ) -> Result<Booking, InsertError> {
        let method = payment.method();
        let (prices, total) = price(info, &record.seats).map_err(InsertError::Other)?;
        let id = BookingId::new();
        let begun = Instant::now();
        let tx = self.pool.begin().await.map_err(InsertError::db)?;
        let phases = CheckoutPhases::started(begun);
        // The per-buyer limit, from Postgres: Redis checks it at hold time, but a Redis
        // that lost its data forgot what the buyer owns. The advisory lock serializes
        // one buyer's checkouts for one event, so two concurrent ones cannot both pass
        // the count.
        // Raw SQL: advisory locks have no query-builder form.
        tx.execute_raw(Statement::from_sql_and_values(
            DbBackend::Postgres,
            "SELECT pg_advisory_xact_lock(hashtextextended($1::text || $2::text, 0))",
            [record.buyer.0.into(), record.event.0.into()],
        ))
        .await
        .map_err(InsertError::db)?;
        let owned: i64 = booking_seats::Entity::find()
            .select_only()
            .column_as(Expr::from(Func::count(Expr::col(Asterisk))), "owned")
            .join(JoinType::InnerJoin, booking_seats::Relation::Booking.def())
            .filter(bookings::Column::BuyerId.eq(record.buyer.0))
            .filter(booking_seats::Column::EventId.eq(record.event.0))
            .filter(booking_seats::Column::Active.eq(true))
            .into_tuple()
            .one(&tx)
            .await
            .map_err(InsertError::db)?
            .unwrap_or(0);
        let limit = info.details.max_seats_per_buyer;
        let wanted = i64::try_from(record.seats.len()).unwrap_or(i64::MAX);
        if owned.saturating_add(wanted) > i64::from(limit) {
            return Err(InsertError::Limit {
                limit,
                current: u32::try_from(owned).unwrap_or(u32::MAX),
            });
        }
        let mut steps = Steps::new(id.0);
        steps.created(method, &total);
        let mut booking = bookings::Entity::insert(bookings::ActiveModel {
            id: Set(id.0),
            event_id: Set(record.event.0),
            buyer_id: Set(record.buyer.0),
            hold_id: Set(record.hold_id.0),
            status: Set(BookingStatus::PendingPayment.as_str().to_owned()),
            total_minor: Set(total.amount_minor),
            currency: Set(total.currency.as_str().to_owned()),
            payment_method: Set(method.as_str().to_owned()),
            idempotency_key: Set(key.as_str().to_owned()),
            cancel_reason: NotSet,
            created_at: NotSet,
            updated_at: NotSet,
            auction_id: NotSet,
            transfer_of: NotSet,
        })
        .into_query();
        booking.returning_col(bookings::Column::CreatedAt);
        let seats = booking_seats::Entity::insert_many(record.seats.iter().zip(&prices).map(
            |(seat, price)| booking_seats::ActiveModel {
                booking_id: Set(id.0),
                seat_id: Set(seat.0),
                event_id: Set(record.event.0),
                price_minor: Set(*price),
                active: NotSet,
            },
        ))
        .into_query();
        let mut inserts: Vec<SubQueryStatement> = vec![booking.into(), seats.into()];
        let free = total.amount_minor == 0;
        // A paid booking's payment request and steps go in the same statement as the
        // booking: one round trip for all of it. A free one moves on first.
        let mut free_steps = None;
        if free {
            free_steps = Some(steps);
        } else {
            let (message, request) = outbox::enqueue_statement(NewMessage {
                kind: PAYMENT_REQUESTED,
                saga_id: id.0,
                version: 1,
                // With a card, the token is in this payload and nowhere else:
                // PaymentRequested is written once, here, and never sent again
                // (the relay resends the row itself), so the booking does not keep it.
                payload: wire::bus::payment_requested(id, record.buyer, &total, payment),
            });
            steps.sent(PAYMENT_REQUESTED, message);
            inserts.push(request.into());
            inserts.extend(steps.into_statement().map(Into::into));
        }
        let answer = Query::select()
            .column(bookings::Column::CreatedAt)
            .from(Alias::new("w0"))
            .to_owned();
        let created_at: DateTime<Utc> = tx
            .query_one_raw(marquee_infra::db::in_one_statement(inserts, answer))
            .await
            .map_err(InsertError::classify)?
            .ok_or_else(|| {
                InsertError::Other(BookingError::Internal(format!(
                    "booking {id} was inserted without its creation time"
                )))
            })?
            .try_get("", bookings::Column::CreatedAt.as_str())
            .map_err(InsertError::db)?;
        let mut status = BookingStatus::PendingPayment;
        let mut updated_at = created_at;
        if let Some(mut steps) = free_steps {
            // A free booking (an invitation, free entry) has nothing to pay: it moves
            // on to CONFIRMED at once, without a payment request, whatever the method.
            updated_at = set_status(
                &tx,
                id,
                Some(BookingStatus::PendingPayment),
                BookingStatus::Confirmed,
                None,
                clock_timestamp(),
            )
            .await
            .map_err(InsertError::db)?
            .ok_or_else(|| {
                InsertError::Other(BookingError::Internal(format!(
                    "new booking {id} was no longer awaiting payment"
                )))
            })?
            .updated_at;
            status = BookingStatus::Confirmed;
            steps.status(
                Some(BookingStatus::PendingPayment),
                BookingStatus::Confirmed,
                "nothing to pay",
            );
            steps.write(&tx).await.map_err(InsertError::db)?;
        }
        let committing = Instant::now();
        tx.commit().await.map_err(InsertError::db)?;
        phases.committed(committing);
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
            status,
            total,
            method,
            cancel_reason: String::new(),
            created_at,
            updated_at,
            seats,
            history: Vec::new(),
            transfer_of: None,
        })
    }

    async fn find_by_key(
        &self,
        buyer: AccountId,
        key: &IdempotencyKey,
    ) -> Result<Option<Booking>, BookingError> {
        let row = bookings::Entity::find()
            .filter(bookings::Column::BuyerId.eq(buyer.0))
            .filter(bookings::Column::IdempotencyKey.eq(key.as_str()))
            .one(&self.pool)
            .await?;
        match row {
            Some(row) => Ok(Some(self.hydrate(row).await?)),
            None => Ok(None),
        }
    }

    async fn hydrate(&self, row: bookings::Model) -> Result<Booking, BookingError> {
        let event = self
            .catalog
            .event(&self.pool, EventId(row.event_id))
            .await?;
        let seats = booking_seats::Entity::find()
            .filter(booking_seats::Column::BookingId.eq(row.id))
            .order_by_asc(booking_seats::Column::SeatId)
            .into_partial_model::<BookedSeatRow>()
            .all(&self.pool)
            .await?
            .into_iter()
            .map(|seat| booked_seat(&event, SeatId(seat.seat_id), seat.price_minor))
            .collect();
        Ok(Booking {
            id: BookingId(row.id),
            event: EventId(row.event_id),
            buyer: AccountId(row.buyer_id),
            hold: HoldId(row.hold_id),
            status: row.status.parse()?,
            total: Money {
                amount_minor: row.total_minor,
                currency: crate::domain::Currency::parse("currency", &row.currency)?,
            },
            method: row.payment_method.parse()?,
            cancel_reason: row.cancel_reason,
            created_at: row.created_at,
            updated_at: row.updated_at,
            seats,
            history: Vec::new(),
            transfer_of: row.transfer_of.map(BookingId),
        })
    }

    async fn get_any(&self, id: BookingId) -> Result<Booking, BookingError> {
        let row = bookings::Entity::find_by_id(id.0).one(&self.pool).await?;
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

    /// The caller's booking with its status history (see [`steps::history`]).
    pub async fn get_with_history(
        &self,
        buyer: AccountId,
        id: BookingId,
    ) -> Result<Booking, BookingError> {
        let mut booking = self.get(buyer, id).await?;
        booking.history = steps::history(&self.pool, id).await?;
        Ok(booking)
    }

    /// Any booking with the steps booking-svc recorded for its saga, oldest first
    /// (for the admin timeline, which merges pay-svc's in).
    pub async fn saga(&self, id: BookingId) -> Result<(Booking, Vec<SagaStep>), BookingError> {
        let booking = self.get_any(id).await?;
        let steps = steps::read(&self.pool, id).await?;
        Ok((booking, steps))
    }

    /// The caller's bookings, newest first.
    pub async fn list(
        &self,
        buyer: AccountId,
        offset: i64,
        limit: i64,
    ) -> Result<Vec<Booking>, BookingError> {
        let rows = bookings::Entity::find()
            .filter(bookings::Column::BuyerId.eq(buyer.0))
            .order_by_desc(bookings::Column::CreatedAt)
            .order_by_desc(bookings::Column::Id)
            .offset(u64::try_from(offset).unwrap_or(0))
            .limit(u64::try_from(limit).unwrap_or(0))
            .all(&self.pool)
            .await?;
        let mut bookings = Vec::with_capacity(rows.len());
        for row in rows {
            bookings.push(self.hydrate(row).await?);
        }
        Ok(bookings)
    }

    /// Cancels a confirmed booking of the caller: CANCELLING plus a RefundRequested
    /// message, in one transaction, which also withdraws the booking's transfer offer if
    /// one is on offer. Cancelling twice is harmless. A booking being transferred, or
    /// transferred, cannot be cancelled: the guarded status update decides between a
    /// cancel and an accepted transfer, never both.
    pub async fn cancel(&self, buyer: AccountId, id: BookingId) -> Result<Booking, BookingError> {
        let booking = self.get(buyer, id).await?;
        match booking.status {
            BookingStatus::Cancelling => return Ok(booking),
            BookingStatus::Transferring | BookingStatus::Transferred => {
                return Err(not_cancellable(booking.status));
            }
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
            BookingStatus::Confirmed if booking.total.amount_minor == 0 => {
                return self.cancel_free(booking).await;
            }
            BookingStatus::Confirmed => {}
        }
        let tx = self.pool.begin().await?;
        // The booking's row first, then its offer, as an accept does: whichever of the
        // two moves the CONFIRMED row first wins, and the other finds it moved.
        let moved = set_status(
            &tx,
            id,
            Some(BookingStatus::Confirmed),
            BookingStatus::Cancelling,
            None,
            Expr::current_timestamp(),
        )
        .await?
        .map(|row| row.updated_at);
        if moved.is_none() {
            // Moved meanwhile (an accepted transfer, another cancel): nothing changes.
            drop(tx);
            let now = self.get_any(id).await?;
            return match now.status {
                BookingStatus::Cancelling => Ok(now),
                BookingStatus::Cancelled => Err(BookingError::FailedPrecondition(
                    "this booking is already cancelled".into(),
                )),
                status => Err(not_cancellable(status)),
            };
        }
        if moved.is_some() {
            let reason = "cancelled by buyer";
            if let Some(offer) = transfers::withdraw_offered(&tx, id).await? {
                tracing::info!(booking_id = %id, offer_id = %offer, "transfer offer withdrawn by the cancel");
            }
            let message = enqueue_refund(&tx, id, booking.buyer, reason).await?;
            let mut steps = Steps::new(id.0);
            steps.status(
                Some(BookingStatus::Confirmed),
                BookingStatus::Cancelling,
                reason,
            );
            steps.note(steps::REFUND, "requested", reason);
            steps.sent(REFUND_REQUESTED, message);
            steps.write(&tx).await?;
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

    /// Cancels a confirmed free booking: nothing was paid, so nothing is refunded; it
    /// goes through CANCELLING to CANCELLED in one transaction and its seats are freed.
    async fn cancel_free(&self, booking: Booking) -> Result<Booking, BookingError> {
        let id = booking.id;
        let tx = self.pool.begin().await?;
        let cancelling = set_status(
            &tx,
            id,
            Some(BookingStatus::Confirmed),
            BookingStatus::Cancelling,
            None,
            clock_timestamp(),
        )
        .await?;
        let Some(cancelling) = cancelling else {
            // Cancelled concurrently: answer with what it is now.
            return self.get_any(id).await;
        };
        let cancelling_at = cancelling.updated_at;
        let reason = "cancelled by buyer";
        let cancelled_at = set_status(
            &tx,
            id,
            None,
            BookingStatus::Cancelled,
            Some(reason),
            clock_timestamp(),
        )
        .await?
        .ok_or(BookingError::NotFound("booking"))?
        .updated_at;
        deactivate_seats(&tx, id).await?;
        let mut steps = Steps::new(id.0);
        steps.status(
            Some(BookingStatus::Confirmed),
            BookingStatus::Cancelling,
            reason,
        );
        steps.status(
            Some(BookingStatus::Cancelling),
            BookingStatus::Cancelled,
            reason,
        );
        steps.write(&tx).await?;
        tx.commit().await?;
        for (status, updated_at, cancel_reason) in [
            (BookingStatus::Cancelling, cancelling_at, ""),
            (BookingStatus::Cancelled, cancelled_at, reason),
        ] {
            self.changes.booking(BookingMoved {
                id,
                buyer: booking.buyer,
                event: booking.event,
                status,
                cancel_reason: cancel_reason.to_owned(),
                updated_at,
            });
            metrics::counter!("bookings_total", "status" => status.as_str()).increment(1);
        }
        CancelledBy::Buyer.count();
        tracing::info!(booking_id = %id, "free booking cancelled without a refund");
        self.reconcile_until_done(id).await;
        self.get_any(id).await
    }

    /// Handles one payment-saga reply. One transaction: inbox claim plus transition.
    pub async fn handle(&self, envelope: Envelope) -> Result<(), HandleError> {
        // Parsed before anything else: a reply that cannot be read never will be.
        let reply = wire::bus::saga_reply(&envelope.kind, &envelope.payload).map_err(permanent)?;
        let tx = self.pool.begin().await.map_err(transient)?;
        let applied = self.apply(&tx, &envelope, reply).await?;
        tx.commit().await.map_err(transient)?;
        let booking = self.announce(applied);
        // Redis follows Postgres, on every delivery (a redelivery repairs a lost step).
        self.reconcile(booking)
            .await
            .map_err(|e| HandleError::Transient(e.into()))
    }

    /// Handles payment-saga replies that arrived together in one transaction (one
    /// commit for all of them); if any of them fails, that transaction is rolled back
    /// and each is handled alone, so a bad reply neither holds back nor fails the
    /// others. One result per reply, in order.
    pub async fn handle_batch(&self, envelopes: Vec<Envelope>) -> Vec<Result<(), HandleError>> {
        bus::together_or_alone(
            &envelopes,
            |batch| async move {
                let ids: Vec<BookingId> = self
                    .apply_together(batch)
                    .await?
                    .into_iter()
                    .map(|applied| self.announce(applied))
                    .collect();
                // Redis follows Postgres, as for one reply: one read for the batch.
                Ok::<_, HandleError>(match self.reconcile_many(&ids).await {
                    Ok(results) => results
                        .into_iter()
                        .map(|result| result.map_err(|e| HandleError::Transient(e.into())))
                        .collect(),
                    Err(error) => ids
                        .iter()
                        .map(|_| {
                            Err(HandleError::Transient(anyhow::anyhow!(
                                "reconcile after the batch: {error}"
                            )))
                        })
                        .collect(),
                })
            },
            |envelope| self.handle(envelope.clone()),
        )
        .await
    }

    async fn apply_together(&self, envelopes: &[Envelope]) -> Result<Vec<Applied>, HandleError> {
        let mut replies = Vec::with_capacity(envelopes.len());
        for envelope in envelopes {
            replies
                .push(wire::bus::saga_reply(&envelope.kind, &envelope.payload).map_err(permanent)?);
        }
        let tx = self.pool.begin().await.map_err(transient)?;
        let mut applied = Vec::with_capacity(envelopes.len());
        for (envelope, reply) in envelopes.iter().zip(replies) {
            applied.push(self.apply(&tx, envelope, reply).await?);
        }
        tx.commit().await.map_err(transient)?;
        Ok(applied)
    }

    /// One reply's claim and transition inside `tx`, which the caller commits.
    async fn apply(
        &self,
        tx: &DatabaseTransaction,
        envelope: &Envelope,
        reply: SagaReply,
    ) -> Result<Applied, HandleError> {
        let booking_id = BookingId(envelope.saga_id);
        let fresh = outbox::claim(tx, CONSUMER, envelope.message_id)
            .await
            .map_err(transient)?;
        let mut effect = Effect::None;
        let mut cancelled_by = None;
        // The status the booking had to be in for the reply to move it.
        let mut from = BookingStatus::PendingPayment;
        if fresh {
            effect = match reply {
                SagaReply::PaymentSucceeded => self.on_payment_succeeded(tx, booking_id).await?,
                SagaReply::PaymentFailed { reason } => {
                    // Only from PENDING_PAYMENT: a booking the deadline already
                    // cancelled keeps its status and its reason.
                    cancelled_by = Some(CancelledBy::PaymentFailed);
                    let reason = format!("payment failed: {reason}");
                    move_status(
                        tx,
                        booking_id,
                        BookingStatus::PendingPayment,
                        BookingStatus::Cancelled,
                        &reason,
                    )
                    .await?
                    .map_or(Effect::None, |(moved, others)| Effect::Moved(moved, others))
                }
                // Only from CANCELLING: a booking already CANCELLED (e.g. by its payment
                // deadline, whose late payment was refunded) stays as it is.
                SagaReply::RefundCompleted => {
                    cancelled_by = Some(CancelledBy::Buyer);
                    from = BookingStatus::Cancelling;
                    move_status(
                        tx,
                        booking_id,
                        BookingStatus::Cancelling,
                        BookingStatus::Cancelled,
                        "cancelled by buyer",
                    )
                    .await?
                    .map_or(Effect::None, |(moved, others)| Effect::Moved(moved, others))
                }
                SagaReply::PayoutCompleted { amount } => Effect::PaidOut(amount),
            };
            let mut steps = Steps::new(booking_id.0);
            match &effect {
                Effect::Moved(moved, _) => {
                    steps.received(&envelope.kind, envelope.message_id, "applied");
                    steps.status(Some(from), moved.status, &moved.cancel_reason);
                }
                Effect::PaidOut(amount) => {
                    steps.received(&envelope.kind, envelope.message_id, "applied");
                    steps.note(
                        transfers::PAYOUT_STEP,
                        "completed",
                        &format!("{} {}", amount.amount_minor, amount.currency.as_str()),
                    );
                }
                Effect::Refunding(message) => {
                    steps.received(&envelope.kind, envelope.message_id, "booking cancelled");
                    steps.note(steps::REFUND, "requested", PAID_AFTER_CANCELLATION);
                    steps.sent(REFUND_REQUESTED, *message);
                }
                Effect::None => {
                    steps.received(&envelope.kind, envelope.message_id, "ignored");
                }
            }
            steps.write(tx).await.map_err(transient)?;
        }
        Ok(Applied {
            booking_id,
            effect,
            cancelled_by,
        })
    }

    /// What follows an applied reply once its transaction committed: metrics and the
    /// change feed. Returns the booking, whose Redis marks the caller reconciles.
    fn announce(&self, applied: Applied) -> BookingId {
        let Applied {
            booking_id,
            effect,
            cancelled_by,
        } = applied;
        match effect {
            Effect::Moved(moved, others) => {
                let status = moved.status;
                metrics::counter!("bookings_total", "status" => status.as_str()).increment(1);
                if status == BookingStatus::Cancelled
                    && let Some(by) = cancelled_by
                {
                    by.count();
                }
                tracing::info!(booking_id = %booking_id, status = status.as_str(), "booking moved");
                self.changes.booking(moved);
                for other in others {
                    metrics::counter!("bookings_total", "status" => other.status.as_str())
                        .increment(1);
                    tracing::info!(booking_id = %other.id, status = other.status.as_str(), "booking moved with its transfer");
                    self.changes.booking(other);
                }
                // A completed transfer wrote its payout request to the outbox.
                self.relay.notify();
            }
            Effect::Refunding(_) => self.relay.notify(),
            Effect::PaidOut(_) | Effect::None => {}
        }
        booking_id
    }

    async fn on_payment_succeeded(
        &self,
        tx: &DatabaseTransaction,
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
        if let Some((moved, others)) = moved {
            return Ok(Effect::Moved(moved, others));
        }
        // Paid, but the booking is no longer waiting for it: give the money back.
        let row = bookings::Entity::find_by_id(id.0)
            .into_partial_model::<BookingStanding>()
            .one(tx)
            .await
            .map_err(transient)?;
        match row {
            Some(row) if row.status == BookingStatus::Cancelled.as_str() => {
                tracing::warn!(booking_id = %id, "payment succeeded for a cancelled booking; refunding");
                let message =
                    enqueue_refund(tx, id, AccountId(row.buyer_id), PAID_AFTER_CANCELLATION)
                        .await
                        .map_err(|e| HandleError::Transient(e.into()))?;
                Ok(Effect::Refunding(message))
            }
            _ => Ok(Effect::None),
        }
    }

    /// Reconciles a booking no saga message will come back for (a free one): now, and if
    /// Redis fails, again in the background until it works (bounded).
    async fn reconcile_until_done(&self, id: BookingId) {
        let Err(error) = self.reconcile(id).await else {
            return;
        };
        tracing::warn!(booking_id = %id, %error, "reconcile failed; retrying in the background");
        let this = self.clone();
        tokio::spawn(async move {
            let retried = (|| this.reconcile(id))
                .retry(
                    ExponentialBuilder::new()
                        .with_min_delay(Duration::from_millis(200))
                        .with_max_delay(Duration::from_secs(10))
                        .with_jitter()
                        .with_max_times(20),
                )
                .notify(
                    |error, _| tracing::warn!(booking_id = %id, %error, "reconcile retry failed"),
                )
                .await;
            if let Err(error) = retried {
                tracing::error!(booking_id = %id, %error, "gave up reconciling; redis marks may be stale");
            }
        });
    }

    /// Brings the seats' Redis marks in line with the booking's state in Postgres.
    pub async fn reconcile(&self, id: BookingId) -> Result<(), BookingError> {
        self.reconcile_many(&[id]).await?.pop().unwrap_or(Ok(()))
    }

    /// As [`Self::reconcile`] for several bookings: one read of all of them, then their
    /// marks concurrently. The read's failure fails them all; otherwise one result per
    /// booking, in order.
    pub async fn reconcile_many(
        &self,
        ids: &[BookingId],
    ) -> Result<Vec<Result<(), BookingError>>, BookingError> {
        let rows = bookings_with_seats()
            .filter(bookings::Column::Id.is_in(ids.iter().map(|id| id.0)))
            .into_model::<BookingWithSeats>()
            .all(&self.pool)
            .await?;
        let mut by_id: HashMap<Uuid, BookingWithSeats> =
            rows.into_iter().map(|row| (row.id, row)).collect();
        // A booking named twice is reconciled once: its later mentions answer Ok.
        let rows: Vec<Option<BookingWithSeats>> =
            ids.iter().map(|id| by_id.remove(&id.0)).collect();
        Ok(
            futures::future::join_all(rows.into_iter().map(|row| async move {
                match row {
                    Some(row) => self.reconcile_row(row).await,
                    None => Ok(()),
                }
            }))
            .await,
        )
    }

    async fn reconcile_row(&self, row: BookingWithSeats) -> Result<(), BookingError> {
        let id = BookingId(row.id);
        let mut seats: Vec<SeatId> = row.seats.into_iter().map(SeatId).collect();
        // In seat order (Postgres orders uuids by their bytes, as `Uuid` does).
        seats.sort_unstable_by_key(|seat| seat.0);
        let (hold, event) = (HoldId(row.hold_id), EventId(row.event_id));
        match row.status.parse()? {
            BookingStatus::Confirmed | BookingStatus::Cancelling | BookingStatus::Transferring => {
                // A transfer's booking takes over the seats the original sold.
                let previous = match row.transfer_of {
                    Some(original) => {
                        let owner: Option<Uuid> = bookings::Entity::find_by_id(original)
                            .select_only()
                            .column(bookings::Column::BuyerId)
                            .into_tuple()
                            .one(&self.pool)
                            .await?;
                        owner.map(|owner| TakenOver {
                            booking: BookingId(original),
                            owner: AccountId(owner),
                            new_owner: AccountId(row.buyer_id),
                        })
                    }
                    None => None,
                };
                self.holds
                    .mark_sold_from(id, hold, event, &seats, previous)
                    .await
            }
            // Its seats are the recipient's booking's now; that booking's reconcile
            // rewrites their marks.
            BookingStatus::Transferred => Ok(()),
            BookingStatus::Cancelled => {
                let keys = HoldKeys {
                    hold,
                    buyer: AccountId(row.buyer_id),
                    event,
                    seats: &seats,
                };
                self.holds.free_booking(id, keys).await
            }
            BookingStatus::PendingPayment => Ok(()),
        }
    }

    /// One pass of the sweeper: releases holds whose time is up (a hold checked out
    /// long ago whose booking was never written is released too), then cancels the
    /// bookings whose payment deadline passed ([`cancel_overdue`](Self::cancel_overdue)).
    /// Both run even if the other failed (the first error is returned). Returns how many
    /// holds were released.
    pub async fn sweep(&self) -> Result<usize, BookingError> {
        let released = self.sweep_holds().await;
        let overdue = self.cancel_overdue().await;
        let released = released?;
        overdue?;
        Ok(released)
    }

    /// Cancels bookings still PENDING_PAYMENT `payment_deadline` after their creation,
    /// at most `DEADLINE_BATCH` (100) per call, oldest first (`bookings_status_created_at_idx`).
    /// Each one in its own transaction, guarded by its status (so a payment reply or
    /// another replica's sweeper that got there first wins): PENDING_PAYMENT → CANCELLED
    /// with [`DEADLINE_REASON`], its seats no longer active; then the change is
    /// announced and the seats are released in Redis (reconcile). Returns how many.
    ///
    /// No `refund.requested` is sent: nothing is known to have been charged. pay-svc's
    /// answer may still come: a later `payment.failed` finds the booking no longer
    /// PENDING_PAYMENT and changes nothing; a later `payment.succeeded` finds it
    /// CANCELLED and requests the refund ([`Self::handle`]), and the `refund.completed`
    /// that answers it finds it CANCELLED, not CANCELLING, and changes nothing either.
    /// pay-svc follows the same rule (a refund request for a card payment still being
    /// resolved is refunded once it is captured).
    pub async fn cancel_overdue(&self) -> Result<usize, BookingError> {
        use sea_orm::ExprTrait as _;
        let deadline_ms = self.timing.payment_deadline.as_secs_f64() * 1000.0;
        // The database's clock, as `created_at` was written with it.
        let overdue: Vec<Uuid> = bookings::Entity::find()
            .select_only()
            .column(bookings::Column::Id)
            .filter(bookings::Column::Status.eq(BookingStatus::PendingPayment.as_str()))
            .filter(
                Expr::col(bookings::Column::CreatedAt).lt(Expr::cust_with_values(
                    "now() - $1 * interval '1 millisecond'",
                    [deadline_ms],
                )),
            )
            .order_by_asc(bookings::Column::CreatedAt)
            .limit(DEADLINE_BATCH)
            .into_tuple()
            .all(&self.pool)
            .await?;
        let mut cancelled = 0;
        for id in overdue.into_iter().map(BookingId) {
            let tx = self.pool.begin().await?;
            let moved = transition(
                &tx,
                id,
                BookingStatus::PendingPayment,
                BookingStatus::Cancelled,
                DEADLINE_REASON,
            )
            .await?;
            if moved.is_some() {
                let mut steps = Steps::new(id.0);
                steps.note(
                    steps::DEADLINE,
                    "passed",
                    &format!("no payment outcome within {deadline_ms:.0} ms of checkout"),
                );
                steps.status(
                    Some(BookingStatus::PendingPayment),
                    BookingStatus::Cancelled,
                    DEADLINE_REASON,
                );
                steps.write(&tx).await?;
            }
            tx.commit().await?;
            let Some((moved, others)) = moved else {
                // Paid, failed or cancelled by another replica meanwhile.
                continue;
            };
            cancelled += 1;
            metrics::counter!("bookings_total", "status" => BookingStatus::Cancelled.as_str())
                .increment(1);
            CancelledBy::PaymentDeadline.count();
            tracing::info!(booking_id = %id, "payment deadline passed; booking cancelled");
            self.changes.booking(moved);
            // An overdue transfer's original booking is CONFIRMED again.
            for other in others {
                self.changes.booking(other);
            }
            self.reconcile_until_done(id).await;
        }
        Ok(cancelled)
    }

    /// Releases holds whose time is up; a hold checked out long ago whose booking was
    /// never written is released too. Returns how many were released.
    ///
    /// A rolling flash sale expires thousands of holds a second, and a seat whose hold
    /// outlived its deadline is a seat nobody can buy: the due holds are handled
    /// [`SWEEP_CONCURRENCY`] at a time (each is independent: its release script checks
    /// its state), and a full batch is followed by the next at once, up to
    /// [`SWEEP_BATCHES`] per sweep. Every due hold is tried; the first error is returned.
    async fn sweep_holds(&self) -> Result<usize, BookingError> {
        // Holds waiting on their deadline, held or being checked out, across replicas.
        metrics::gauge!("holds_active").set(self.holds.pending().await? as f64);
        let mut released = 0;
        for _ in 0..SWEEP_BATCHES {
            let due = self.holds.due(SWEEP_BATCH).await?;
            let full = due.len() as isize >= SWEEP_BATCH;
            let outcomes: Vec<Result<bool, BookingError>> = futures::stream::iter(due)
                .map(|(partition, hold)| self.sweep_hold(partition, hold))
                .buffer_unordered(SWEEP_CONCURRENCY)
                .collect()
                .await;
            let mut first_error = None;
            for outcome in outcomes {
                match outcome {
                    Ok(true) => released += 1,
                    Ok(false) => {}
                    Err(error) => {
                        first_error.get_or_insert(error);
                    }
                }
            }
            if let Some(error) = first_error {
                return Err(error);
            }
            if !full {
                break;
            }
        }
        Ok(released)
    }

    /// One due hold: expired if still held; a checkout without its booking past the
    /// grace is put back. Whether it was released.
    async fn sweep_hold(&self, partition: Partition, hold: HoldId) -> Result<bool, BookingError> {
        let Some(record) = self.holds.get_in(partition, hold).await? else {
            self.holds.forget_deadline_in(partition, hold).await?;
            return Ok(false);
        };
        match record.state {
            HoldState::Held => {
                let expired = self.holds.expire(&record, HoldState::Held).await?;
                if expired {
                    metrics::counter!("holds_expired_total").increment(1);
                    tracing::info!(hold_id = %hold, seats = record.seats.len(), "hold expired");
                }
                Ok(expired)
            }
            HoldState::CheckedOut => {
                let booked: Option<Uuid> = bookings::Entity::find()
                    .select_only()
                    .column(bookings::Column::Id)
                    .filter(bookings::Column::HoldId.eq(hold.0))
                    .into_tuple()
                    .one(&self.pool)
                    .await?;
                if booked.is_some() {
                    self.holds.forget_deadline_in(partition, hold).await?;
                } else if self.holds.unclaim_in(partition, hold).await? {
                    // The checkout died (or lost its reply) before writing the
                    // booking: the hold is the buyer's again, so a retry with the
                    // same key completes the checkout; at its own deadline it expires.
                    metrics::counter!("holds_unclaimed_total").increment(1);
                    tracing::warn!(hold_id = %hold, "checkout without a booking past its grace; hold put back");
                }
                Ok(false)
            }
        }
    }

    /// Restores the partitions of the hold store that have lost their data (or were
    /// never primed) from Postgres: the marks of every active booking of their events,
    /// then the epoch that makes each usable again. Until then every seat script of a
    /// lost partition refuses, so nothing is held, sold or shown from a half-restored
    /// store. One replica primes at a time. Returns whether this call did.
    pub async fn restore_redis(&self) -> Result<bool, BookingError> {
        let lost = self.holds.lost_partitions().await?;
        if lost.is_empty() {
            return Ok(false);
        }
        let owner = Uuid::new_v4().to_string();
        if !self
            .holds
            .lock_priming(&owner, Duration::from_secs(60))
            .await?
        {
            return Ok(false);
        }
        // Seat versions never go backwards: after a loss they start above any version
        // handed out before (a microsecond clock, far above a count of changes; exact
        // in a JavaScript number until the year 2255). A store that never had an event
        // starts at 0.
        let had_events = events::Entity::find()
            .select_only()
            .column(events::Column::Id)
            .into_tuple::<Uuid>()
            .one(&self.pool)
            .await?
            .is_some();
        let base = if had_events {
            Utc::now().timestamp_millis().saturating_mul(1_000)
        } else {
            0
        };
        let rows = bookings_with_seats()
            .filter(booking_seats::Column::Active.eq(true))
            .into_model::<BookingWithSeats>()
            .all(&self.pool)
            .await?;
        let lost_set: std::collections::HashSet<Partition> = lost.iter().copied().collect();
        // The auctions' seats first: their mark must win over a winner's booking's.
        crate::auction::prime_seats(
            &self.pool,
            &self.holds,
            |event| lost_set.contains(&Partition::of(event.0)),
            base,
        )
        .await?;
        let rows: Vec<BookingWithSeats> = rows
            .into_iter()
            .filter(|row| lost_set.contains(&Partition::of(row.event_id)))
            .collect();
        let bookings = rows.len();
        for row in rows {
            let seats: Vec<SeatId> = row.seats.into_iter().map(SeatId).collect();
            self.holds
                .prime(
                    BookingId(row.id),
                    HoldId(row.hold_id),
                    AccountId(row.buyer_id),
                    EventId(row.event_id),
                    &seats,
                    row.status != BookingStatus::PendingPayment.as_str(),
                    base,
                )
                .await?;
        }
        self.holds.finish_priming(base, &lost).await?;
        metrics::counter!("redis_restores_total").increment(1);
        if had_events {
            tracing::warn!(
                bookings,
                base,
                partitions = lost.len(),
                "redis had lost its data; restored from postgres"
            );
        } else {
            tracing::info!("redis primed");
        }
        Ok(true)
    }

    /// Records the bookings per status (`bookings{status}`), the age of the oldest
    /// one awaiting payment (`bookings_oldest_pending_payment_age_seconds`, 0 when none),
    /// and for the sagas still running (the non-terminal statuses) how many there are
    /// (`saga_bookings{status}`) and how long the oldest has been in its status
    /// (`saga_oldest_age_seconds{status}`, 0 when none): one grouped query.
    pub async fn record_stats(&self) -> Result<(), BookingError> {
        crate::holds::zero_error_counters();
        type Row = (String, i64, Option<DateTime<Utc>>, Option<DateTime<Utc>>);
        let rows: Vec<Row> = bookings::Entity::find()
            .select_only()
            .column(bookings::Column::Status)
            .column_as(Expr::from(Func::count(Expr::col(Asterisk))), "bookings")
            .column_as(
                Expr::from(Func::min(Expr::col(bookings::Column::CreatedAt))),
                "oldest",
            )
            // `updated_at` is written by every status change: the oldest is the
            // booking that has been in this status longest.
            .column_as(
                Expr::from(Func::min(Expr::col(bookings::Column::UpdatedAt))),
                "oldest_in_status",
            )
            .group_by(bookings::Column::Status)
            .into_tuple()
            .all(&self.pool)
            .await?;
        let now = Utc::now();
        let age = |at: Option<DateTime<Utc>>| {
            at.map_or(0.0, |at| {
                (now - at).num_milliseconds().max(0) as f64 / 1000.0
            })
        };
        let row = |status: BookingStatus| rows.iter().find(|row| row.0 == status.as_str());
        for status in STATUSES {
            let count = row(status).map_or(0, |row| row.1);
            // Bookings in each status, across replicas (the database's count).
            metrics::gauge!("bookings", "status" => status.as_str()).set(count as f64);
        }
        for status in RUNNING {
            let found = row(status);
            // Sagas still running, by the status they wait in (the database's count).
            metrics::gauge!("saga_bookings", "status" => status.as_str())
                .set(found.map_or(0, |row| row.1) as f64);
            // How long the saga that has waited longest in this status has waited;
            // 0 when none waits.
            metrics::gauge!("saga_oldest_age_seconds", "status" => status.as_str())
                .set(age(found.and_then(|row| row.3)));
        }
        let oldest = row(BookingStatus::PendingPayment).and_then(|row| row.2);
        // How long the oldest booking still awaiting its payment has waited; 0 when none.
        metrics::gauge!("bookings_oldest_pending_payment_age_seconds").set(age(oldest));
        Ok(())
    }

    /// Runs [`sweep`](Self::sweep) every `every` until cancelled, and
    /// [`record_stats`](Self::record_stats) at start and then every 60 × `every`, at
    /// most [`STATS_EVERY`] apart (15 s at the default 250 ms sweep).
    pub fn spawn_sweeper(
        self: Arc<Self>,
        every: Duration,
        shutdown: tokio_util::sync::CancellationToken,
    ) {
        let stats_every = every.saturating_mul(60).min(STATS_EVERY);
        tokio::spawn(async move {
            let mut last_stats: Option<tokio::time::Instant> = None;
            loop {
                if last_stats.is_none_or(|at| at.elapsed() >= stats_every) {
                    last_stats = Some(tokio::time::Instant::now());
                    if let Err(error) = self.record_stats().await {
                        tracing::warn!(%error, "counting bookings failed");
                    }
                }
                // Redis losing its data is noticed here (its epoch is gone) or by a
                // script that refused, which wakes this loop.
                if let Err(error) = self.restore_redis().await {
                    tracing::warn!(%error, "redis restore failed");
                }
                if let Err(error) = self.sweep().await {
                    tracing::warn!(%error, "hold sweep failed");
                }
                tokio::select! {
                    () = shutdown.cancelled() => return,
                    () = tokio::time::sleep(every) => {}
                    () = self.holds.lost().notified() => {}
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

/// A saga reply applied inside a transaction not yet committed.
struct Applied {
    booking_id: BookingId,
    effect: Effect,
    /// Who cancelled the booking, if the reply cancelled it.
    cancelled_by: Option<CancelledBy>,
}

/// What handling a saga reply did, acted on after its transaction commits.
enum Effect {
    /// The booking moved to another status (and, with a transfer, these others too:
    /// the original booking).
    Moved(BookingMoved, Vec<BookingMoved>),
    /// pay-svc credited a transfer's payout of this amount.
    PaidOut(Money),
    /// A refund was requested through the outbox (this message id).
    Refunding(Uuid),
    /// A duplicate or a reply with nothing left to do.
    None,
}

/// Enqueues a RefundRequested; returns its message id.
async fn enqueue_refund<C: ConnectionTrait>(
    tx: &C,
    booking: BookingId,
    buyer: AccountId,
    reason: &str,
) -> Result<Uuid, BookingError> {
    let id = outbox::enqueue(
        tx,
        NewMessage {
            kind: REFUND_REQUESTED,
            saga_id: booking.0,
            version: 1,
            payload: wire::bus::refund_requested(booking, buyer, reason),
        },
    )
    .await?;
    Ok(id)
}

/// Moves a booking from `from` to `to` if it is in `from`; a cancelled booking's seats
/// stop being active. `None` when it was not in `from` (already moved: a duplicate).
/// For the saga handler: a database error is transient ([`transition`]).
async fn move_status(
    tx: &DatabaseTransaction,
    id: BookingId,
    from: BookingStatus,
    to: BookingStatus,
    reason: &str,
) -> Result<Option<(BookingMoved, Vec<BookingMoved>)>, HandleError> {
    transition(tx, id, from, to, reason)
        .await
        .map_err(|e| match e {
            TransitionError::Db(e) => transient(e),
            TransitionError::Inconsistent(detail) => permanent(anyhow::anyhow!(detail)),
        })
}

/// Why [`transition`] failed: the database, or a transfer whose rows do not agree
/// (never expected: each is guarded by the same status rows).
#[derive(Debug)]
enum TransitionError {
    Db(DbErr),
    Inconsistent(String),
}

impl From<DbErr> for TransitionError {
    fn from(e: DbErr) -> Self {
        TransitionError::Db(e)
    }
}

impl From<TransitionError> for BookingError {
    fn from(e: TransitionError) -> Self {
        match e {
            TransitionError::Db(e) => e.into(),
            TransitionError::Inconsistent(detail) => BookingError::Internal(detail),
        }
    }
}

/// What [`move_status`] does, with the database's error. A transfer's booking also
/// moves its original booking and offer along ([`transfers::on_transfer_moved`]): on
/// CONFIRMED the transfer completes, on CANCELLED it is undone; those moves come back
/// as the second value.
async fn transition(
    tx: &DatabaseTransaction,
    id: BookingId,
    from: BookingStatus,
    to: BookingStatus,
    reason: &str,
) -> Result<Option<(BookingMoved, Vec<BookingMoved>)>, TransitionError> {
    let moved = set_status(
        tx,
        id,
        Some(from),
        to,
        Some(reason),
        Expr::current_timestamp(),
    )
    .await?;
    let Some(moved) = moved else {
        return Ok(None);
    };
    if to == BookingStatus::Cancelled {
        deactivate_seats(tx, id).await?;
    }
    let others = match moved.transfer_of {
        Some(original) => {
            transfers::on_transfer_moved(tx, &moved, BookingId(original), from, to).await?
        }
        None => Vec::new(),
    };
    Ok(Some((
        BookingMoved {
            id,
            buyer: AccountId(moved.buyer_id),
            event: EventId(moved.event_id),
            status: to,
            cancel_reason: reason.to_owned(),
            updated_at: moved.updated_at,
        },
        others,
    )))
}

/// `clock_timestamp()`: the time now, not the transaction's start (`now()`), for a
/// second status change in the same transaction to come after the first.
fn clock_timestamp() -> Expr {
    Func::cust("clock_timestamp").into()
}

/// Sets a booking's status (and its cancel reason, when given) and `updated_at` to
/// `at`, in one guarded statement: only when it is in `from` (any status when `None`).
/// The updated row, read back with `RETURNING` in the same round trip; `None` when the
/// booking was not in `from` (a concurrent or duplicate move) or does not exist.
async fn set_status<C: ConnectionTrait>(
    db: &C,
    id: BookingId,
    from: Option<BookingStatus>,
    to: BookingStatus,
    reason: Option<&str>,
    at: Expr,
) -> Result<Option<bookings::Model>, DbErr> {
    let mut update = bookings::Entity::update_many()
        .col_expr(bookings::Column::Status, Expr::value(to.as_str()))
        .col_expr(bookings::Column::UpdatedAt, at)
        .filter(bookings::Column::Id.eq(id.0));
    if let Some(reason) = reason {
        update = update.col_expr(bookings::Column::CancelReason, Expr::value(reason));
    }
    if let Some(from) = from {
        update = update.filter(bookings::Column::Status.eq(from.as_str()));
    }
    Ok(update.exec_with_returning(db).await?.into_iter().next())
}

/// A cancelled booking's seats stop being active: they can be booked again.
async fn deactivate_seats<C: ConnectionTrait>(db: &C, id: BookingId) -> Result<(), DbErr> {
    booking_seats::Entity::update_many()
        .col_expr(booking_seats::Column::Active, Expr::value(false))
        .filter(booking_seats::Column::BookingId.eq(id.0))
        .exec(db)
        .await?;
    Ok(())
}

/// Why a booking in `status` cannot be cancelled by its buyer.
fn not_cancellable(status: BookingStatus) -> BookingError {
    match status {
        BookingStatus::Transferring => BookingError::FailedPrecondition(
            "this booking is being transferred to another buyer; it can no longer be cancelled"
                .into(),
        ),
        BookingStatus::Transferred => BookingError::FailedPrecondition(
            "this booking was transferred to another buyer; it is no longer yours to cancel".into(),
        ),
        BookingStatus::PendingPayment => BookingError::FailedPrecondition(
            "the payment of this booking is still in progress".into(),
        ),
        other => BookingError::FailedPrecondition(format!(
            "a {} booking cannot be cancelled",
            other.as_str()
        )),
    }
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
    /// The buyer would own more seats of the event than its limit.
    Limit {
        limit: u32,
        current: u32,
    },
    Other(BookingError),
}

impl InsertError {
    fn db(e: DbErr) -> Self {
        InsertError::Other(e.into())
    }

    /// By the violated constraint's explicit name: another active booking of a seat, or
    /// a booking already made with this idempotency key.
    fn classify(e: DbErr) -> Self {
        match marquee_infra::db::violated_constraint(&e).as_deref() {
            Some(booking_seats::ONE_ACTIVE_SEAT_KEY) => InsertError::SeatConflict,
            Some(bookings::IDEMPOTENCY_KEY) => InsertError::KeyConflict,
            _ => InsertError::Other(e.into()),
        }
    }
}

/// What the auctions share with the bookings: the winners' bookings are bookings.
impl Bookings {
    pub(crate) fn pool(&self) -> &DatabaseConnection {
        &self.pool
    }

    pub(crate) fn holds(&self) -> &HoldStore {
        &self.holds
    }

    /// Announces a booking the auctions made (its payment request is in the outbox).
    pub(crate) fn announce_created(&self, booking: &Booking) {
        self.relay.notify();
        self.changes.booking(BookingMoved {
            id: booking.id,
            buyer: booking.buyer,
            event: booking.event,
            status: booking.status,
            cancel_reason: String::new(),
            updated_at: booking.created_at,
        });
        metrics::counter!("bookings_total", "status" => booking.status.as_str()).increment(1);
    }

    /// The buyer's booking made with `key`, if any.
    pub(crate) async fn by_key(
        &self,
        buyer: AccountId,
        key: &IdempotencyKey,
    ) -> Result<Option<(Booking, Option<Uuid>)>, BookingError> {
        let row = bookings::Entity::find()
            .filter(bookings::Column::BuyerId.eq(buyer.0))
            .filter(bookings::Column::IdempotencyKey.eq(key.as_str()))
            .one(&self.pool)
            .await?;
        match row {
            Some(row) => {
                let auction = row.auction_id;
                Ok(Some((self.hydrate(row).await?, auction)))
            }
            None => Ok(None),
        }
    }

    /// A booking, whoever's it is.
    pub(crate) async fn any(&self, id: BookingId) -> Result<Booking, BookingError> {
        self.get_any(id).await
    }
}

/// Where a checkout's transaction spends its time, recorded as
/// `checkout_transaction_seconds{phase}`: `begin` (waiting for a pooled connection,
/// then BEGIN), `statements` (lock, limit count, inserts) and `commit`.
struct CheckoutPhases {
    begun: Instant,
    ready: Instant,
}

impl CheckoutPhases {
    fn started(begun: Instant) -> Self {
        Self {
            begun,
            ready: Instant::now(),
        }
    }

    fn committed(self, committing: Instant) {
        let record = |phase: &'static str, took: Duration| {
            // A checkout transaction's time in one phase.
            metrics::histogram!("checkout_transaction_seconds", "phase" => phase)
                .record(took.as_secs_f64());
        };
        record("begin", self.ready - self.begun);
        record("statements", committing - self.ready);
        record("commit", committing.elapsed());
    }
}
