//! Live seat auctions (issue 14): a seller sells some seats of an event to the highest
//! bids instead of first come, first served.
//!
//! PostgreSQL is the record. A bid is one short transaction under the auction's row
//! lock (so bids on one auction are serialized and the three-submission limit, the
//! increment and the close are checked against what is committed): the standing bid is
//! upserted with the next `auction_bid_seq` number (ties rank the earlier bid first),
//! and the auction's version moves on. What anyone sees (the ranking, the cut-off, the
//! awards) is read from the tables; after each change the auction is broadcast as
//! `auction.changed` (coalesced per auction, newest version wins) for realtime-svc.
//!
//! While an auction may still sell a seat, the seat's Redis mark is the auction's own
//! sold marker (`sold:<auction id>`): the seat map shows it sold, no hold can take it,
//! and a winner's booking leaves the mark alone (its release only clears its own
//! marks), so a cancelled winner's seat is never put on sale by accident. When the
//! awards of a seat run out, the auction clears the mark and the seat is on sale again.
//!
//! At the close the top bids get the seats in order (the highest the first seat) as
//! awards with a payment window. Each replica's ticker settles awards: paid (the
//! winner's booking confirmed), lapsed (the window passed without a payment in flight),
//! or cancelled (the winner cancelled the paid booking and was refunded); a lapsed,
//! declined or cancelled award passes the seat to the best bid that has no award yet.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use marquee_infra::bus::Bus;
use marquee_infra::outbox::{self, NewMessage};
use marquee_proto::kinds::{AUCTION_CHANGED, PAYMENT_REQUESTED};
use sea_orm::sea_query::{Expr, LockBehavior, LockType, OnConflict};
use sea_orm::{
    ActiveModelTrait, ColumnTrait, Condition, ConnectionTrait, DatabaseConnection,
    DatabaseTransaction, DbBackend, EntityTrait, ExprTrait as _, FromQueryResult, PaginatorTrait,
    QueryFilter, QueryOrder, QuerySelect, Set, Statement, TransactionTrait,
};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::bookings::Bookings;
use crate::catalog::EventInfo;
pub use crate::domain::AuctionId;
use crate::domain::{
    AccountId, Booking, BookingId, BookingStatus, EventId, HoldId, IdempotencyKey, Money, Payment,
    SeatId,
};
use crate::entity::{
    auction_awards, auction_bids, auction_seats, auctions, booking_seats, bookings,
};
use crate::error::BookingError;
use crate::holds::HoldKeys;
use crate::steps::{BookingSteps as _, Steps};
use crate::wire;

/// Most submissions (accepted bids) per buyer and auction.
pub const MAX_SUBMISSIONS: i16 = 3;
/// Most seats in one auction.
pub const MAX_SEATS: usize = 100;
/// The payment window when the request leaves it out.
pub const DEFAULT_WINDOW: Duration = Duration::from_secs(600);
/// How often each replica closes due auctions and settles awards.
pub const TICK: Duration = Duration::from_millis(250);
/// Broadcasts waiting beyond this are dropped (the next change, or the watchers'
/// periodic re-read, catches up).
const FEED_QUEUE: usize = 65_536;
/// The reason a refunded booking ends with (bookings.rs `handle`): its buyer cancelled.
const CANCELLED_BY_BUYER: &str = "cancelled by buyer";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuctionState {
    Open,
    Closed,
}

impl AuctionState {
    pub fn as_str(self) -> &'static str {
        match self {
            AuctionState::Open => "OPEN",
            AuctionState::Closed => "CLOSED",
        }
    }

    fn parse(value: &str) -> Result<Self, BookingError> {
        match value {
            "OPEN" => Ok(AuctionState::Open),
            "CLOSED" => Ok(AuctionState::Closed),
            other => Err(BookingError::Internal(format!(
                "unknown auction state {other:?}"
            ))),
        }
    }
}

/// An award's state as stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AwardState {
    AwaitingPayment,
    Paid,
    Lapsed,
    Declined,
    Cancelled,
}

impl AwardState {
    pub fn as_str(self) -> &'static str {
        match self {
            AwardState::AwaitingPayment => "AWAITING_PAYMENT",
            AwardState::Paid => "PAID",
            AwardState::Lapsed => "LAPSED",
            AwardState::Declined => "DECLINED",
            AwardState::Cancelled => "CANCELLED",
        }
    }

    fn parse(value: &str) -> Result<Self, BookingError> {
        match value {
            "AWAITING_PAYMENT" => Ok(AwardState::AwaitingPayment),
            "PAID" => Ok(AwardState::Paid),
            "LAPSED" => Ok(AwardState::Lapsed),
            "DECLINED" => Ok(AwardState::Declined),
            "CANCELLED" => Ok(AwardState::Cancelled),
            other => Err(BookingError::Internal(format!(
                "unknown award state {other:?}"
            ))),
        }
    }
}

/// An award as shown: [`AwardState`], with AWAITING_PAYMENT split by whether a payment
/// is in flight.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AwardShown {
    AwaitingPayment,
    Paying,
    Paid,
    Lapsed,
    Declined,
    Cancelled,
}

/// A validated auction to create.
#[derive(Debug, Clone)]
pub struct NewAuction {
    pub event: EventId,
    /// Best first; distinct.
    pub seats: Vec<SeatId>,
    pub opening: Money,
    pub increment: Money,
    pub closes_at: DateTime<Utc>,
    pub window: Duration,
}

impl NewAuction {
    /// Checks what needs nothing but the request; the event's own rules are checked
    /// against the event in [`Auctions::create`].
    pub fn new(
        event: EventId,
        seats: Vec<SeatId>,
        opening: Money,
        increment: Money,
        closes_at: DateTime<Utc>,
        window_seconds: i32,
    ) -> Result<Self, BookingError> {
        if seats.is_empty() || seats.len() > MAX_SEATS {
            return Err(BookingError::invalid(
                "seatIds",
                format!("must list 1 to {MAX_SEATS} seats"),
            ));
        }
        let distinct: BTreeSet<SeatId> = seats.iter().copied().collect();
        if distinct.len() != seats.len() {
            return Err(BookingError::invalid("seatIds", "lists a seat twice"));
        }
        if opening.amount_minor <= 0 {
            return Err(BookingError::invalid("openingPrice", "must be more than 0"));
        }
        if increment.amount_minor <= 0 {
            return Err(BookingError::invalid("minIncrement", "must be more than 0"));
        }
        if increment.currency != opening.currency {
            return Err(BookingError::invalid(
                "minIncrement",
                "must be in the opening price's currency",
            ));
        }
        let now = Utc::now();
        if closes_at <= now {
            return Err(BookingError::invalid("closesAt", "must be in the future"));
        }
        if closes_at > now + chrono::Duration::days(30) {
            return Err(BookingError::invalid(
                "closesAt",
                "must be at most 30 days away",
            ));
        }
        let window = match window_seconds {
            0 => DEFAULT_WINDOW,
            30..=86_400 => Duration::from_secs(window_seconds.unsigned_abs().into()),
            _ => {
                return Err(BookingError::invalid(
                    "paymentWindowSeconds",
                    "must be 30 to 86400 (or 0 for 600)",
                ));
            }
        };
        Ok(Self {
            event,
            seats,
            opening,
            increment,
            closes_at,
            window,
        })
    }
}

/// A standing bid with its place in the ranking.
#[derive(Debug, Clone)]
pub struct Ranked {
    pub rank: i64,
    pub bidder: AccountId,
    pub amount_minor: i64,
    pub bid_at: DateTime<Utc>,
    pub submissions: i16,
}

/// A seat's current award.
#[derive(Debug, Clone)]
pub struct AwardView {
    pub seat: SeatId,
    pub rank: i64,
    pub bidder: AccountId,
    pub amount_minor: i64,
    pub state: AwardShown,
    pub pay_by: DateTime<Utc>,
    pub booking: Option<BookingId>,
}

/// What the caller sees of their own part.
#[derive(Debug, Clone, Default)]
pub struct Mine {
    pub bid: Option<Ranked>,
    pub submissions_left: i16,
    pub award: Option<AwardView>,
}

/// An auction as the API shows it.
#[derive(Debug, Clone)]
pub struct AuctionView {
    pub id: AuctionId,
    pub event: Arc<EventInfo>,
    pub state: AuctionState,
    /// Best first.
    pub seats: Vec<SeatId>,
    pub opening: Money,
    pub increment: Money,
    pub closes_at: DateTime<Utc>,
    pub window: Duration,
    pub version: i64,
    pub bidders: i64,
    pub cutoff: Option<i64>,
    pub ranking: Vec<Ranked>,
    pub awards: Vec<AwardView>,
    pub mine: Option<Mine>,
    pub created_at: DateTime<Utc>,
}

/// An accepted bid.
#[derive(Debug, Clone)]
pub struct BidPlaced {
    pub auction: AuctionId,
    pub bid: Ranked,
    pub submissions_left: i16,
    pub version: i64,
    pub currency: String,
}

/// A pseudonym of `bidder` in `auction`: stable within the auction, unrelated across
/// auctions, and not the account id.
pub fn pseudonym(auction: AuctionId, bidder: AccountId) -> String {
    let name = Uuid::new_v5(&auction.0, bidder.0.as_bytes());
    name.simple().to_string()[..10].to_owned()
}

/// The row the ranking reads.
#[derive(Debug, FromQueryResult)]
struct BidRow {
    bidder_id: Uuid,
    amount_minor: i64,
    seq: i64,
    submissions: i16,
    bid_at: DateTime<Utc>,
}

/// The standing bid after an upsert.
#[derive(Debug, FromQueryResult)]
struct Upserted {
    seq: i64,
    submissions: i16,
    bid_at: DateTime<Utc>,
}

/// An award with its booking's status, for settling.
#[derive(Debug, FromQueryResult)]
struct AwardWithBooking {
    auction_id: Uuid,
    bidder_id: Uuid,
    seat_id: Uuid,
    state: String,
    pay_by: DateTime<Utc>,
    booking_status: Option<String>,
    cancel_reason: Option<String>,
}

/// The auctions. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Auctions {
    bookings: Arc<Bookings>,
    feed: mpsc::Sender<AuctionId>,
}

/// Encodes an auction's `auction.changed` payload (`wire::auction::changed`; passed in
/// so this module does not import the wire layer that renders it).
pub type Encode = fn(&AuctionView) -> Vec<u8>;

impl Auctions {
    /// The auctions, broadcasting their changes on `bus` until `shutdown`.
    pub fn new(
        bookings: Arc<Bookings>,
        bus: Bus,
        encode: Encode,
        shutdown: CancellationToken,
    ) -> Self {
        let (tx, rx) = mpsc::channel(FEED_QUEUE);
        let this = Self { bookings, feed: tx };
        tokio::spawn(this.clone().broadcast_loop(bus, rx, encode, shutdown));
        this
    }

    fn pool(&self) -> &DatabaseConnection {
        self.bookings.pool()
    }

    /// Queues a broadcast of the auction's current state.
    fn announce(&self, id: AuctionId) {
        if self.feed.try_send(id).is_err() {
            metrics::counter!("auction_broadcasts_dropped_total").increment(1);
        }
    }

    /// Puts `new.seats` up for auction; `seller` must be the event's seller.
    pub async fn create(
        &self,
        seller: AccountId,
        new: NewAuction,
    ) -> Result<AuctionView, BookingError> {
        let event = self.bookings.event(new.event).await?;
        if event.seller != seller {
            return Err(BookingError::PermissionDenied(
                "only the event's seller can auction its seats",
            ));
        }
        if new.opening.currency != event.details.currency {
            return Err(BookingError::invalid(
                "openingPrice",
                format!(
                    "must be in the event's currency, {}",
                    event.details.currency.as_str()
                ),
            ));
        }
        if let Some(stranger) = new.seats.iter().find(|s| event.seat(**s).is_none()) {
            return Err(BookingError::invalid(
                "seatIds",
                format!("seat {} is not one of this event's", stranger.0),
            ));
        }
        let id = AuctionId(Uuid::now_v7());
        let tx = self.pool().begin().await?;
        auctions::Entity::insert(auctions::ActiveModel {
            id: Set(id.0),
            event_id: Set(new.event.0),
            seller_id: Set(seller.0),
            opening_minor: Set(new.opening.amount_minor),
            increment_minor: Set(new.increment.amount_minor),
            currency: Set(new.opening.currency.as_str().to_owned()),
            closes_at: Set(new.closes_at),
            payment_window_secs: Set(i32::try_from(new.window.as_secs()).unwrap_or(i32::MAX)),
            state: Set(AuctionState::Open.as_str().to_owned()),
            version: Set(1),
            bidders: Set(0),
            created_at: sea_orm::NotSet,
        })
        .exec_without_returning(&tx)
        .await?;
        let rows =
            new.seats
                .iter()
                .enumerate()
                .map(|(position, seat)| auction_seats::ActiveModel {
                    auction_id: Set(id.0),
                    seat_id: Set(seat.0),
                    position: Set(i32::try_from(position).unwrap_or(i32::MAX)),
                    state: Set("RESERVED".to_owned()),
                });
        if let Err(error) = auction_seats::Entity::insert_many(rows)
            .exec_without_returning(&tx)
            .await
        {
            return Err(
                if marquee_infra::db::violated_constraint(&error).as_deref()
                    == Some(auction_seats::LIVE_SEAT_KEY)
                {
                    BookingError::Conflict("a seat is already in another auction".into())
                } else {
                    error.into()
                },
            );
        }
        // A seat some booking owns (or is paying for) is not for auction, whatever
        // Redis says.
        let seat_ids: Vec<Uuid> = new.seats.iter().map(|s| s.0).collect();
        let booked: Vec<Uuid> = booking_seats::Entity::find()
            .select_only()
            .column(booking_seats::Column::SeatId)
            .filter(booking_seats::Column::SeatId.is_in(seat_ids.clone()))
            .filter(booking_seats::Column::Active.eq(true))
            .into_tuple()
            .all(&tx)
            .await?;
        if !booked.is_empty() {
            return Err(BookingError::SeatsTaken(booked));
        }
        // Reserve the seats in Redis (each one only if free), then check that every
        // one is now the auction's: otherwise give back what was taken and refuse.
        let holds = self.bookings.holds();
        let marker = BookingId(id.0);
        let keys = HoldKeys {
            hold: HoldId(id.0),
            buyer: seller,
            event: new.event,
            seats: &new.seats,
        };
        holds
            .mark_sold(marker, HoldId(id.0), new.event, &new.seats)
            .await?;
        let values = holds.seat_values(new.event, &new.seats).await?;
        let ours = crate::holds::sold_marker(marker);
        let taken: Vec<Uuid> = new
            .seats
            .iter()
            .zip(&values)
            .filter(|(_, v)| v.as_deref() != Some(ours.as_str()))
            .map(|(s, _)| s.0)
            .collect();
        if !taken.is_empty() {
            drop(tx);
            holds.free_booking(marker, keys).await?;
            return Err(BookingError::SeatsTaken(taken));
        }
        if let Err(error) = tx.commit().await {
            // Ambiguous: release the seats only if the auction is certainly not there.
            let stored = auctions::Entity::find_by_id(id.0).one(self.pool()).await;
            if matches!(stored, Ok(None)) {
                holds.free_booking(marker, keys).await?;
            }
            return Err(error.into());
        }
        metrics::counter!("auctions_created_total").increment(1);
        tracing::info!(auction_id = %id, event_id = %new.event, seats = new.seats.len(), "auction created");
        self.announce(id);
        self.view(id, None).await
    }

    /// The event's auctions, newest first (at most 100).
    pub async fn list(&self, event: EventId) -> Result<Vec<AuctionView>, BookingError> {
        self.bookings.event(event).await?;
        let ids: Vec<Uuid> = auctions::Entity::find()
            .select_only()
            .column(auctions::Column::Id)
            .filter(auctions::Column::EventId.eq(event.0))
            .order_by_desc(auctions::Column::CreatedAt)
            .limit(100)
            .into_tuple()
            .all(self.pool())
            .await?;
        let mut out = Vec::with_capacity(ids.len());
        for id in ids {
            out.push(self.view(AuctionId(id), None).await?);
        }
        Ok(out)
    }

    /// The auction as anyone sees it, with `caller`'s own part when given.
    pub async fn view(
        &self,
        id: AuctionId,
        caller: Option<AccountId>,
    ) -> Result<AuctionView, BookingError> {
        let db = self.pool();
        let row = auctions::Entity::find_by_id(id.0)
            .one(db)
            .await?
            .ok_or(BookingError::NotFound("auction"))?;
        let event = self.bookings.event(EventId(row.event_id)).await?;
        let seats: Vec<SeatId> = auction_seats::Entity::find()
            .select_only()
            .column(auction_seats::Column::SeatId)
            .filter(auction_seats::Column::AuctionId.eq(id.0))
            .order_by_asc(auction_seats::Column::Position)
            .into_tuple::<Uuid>()
            .all(db)
            .await?
            .into_iter()
            .map(SeatId)
            .collect();
        let n = seats.len() as u64;
        let top: Vec<BidRow> = ranking(id)
            .limit(2 * n)
            .into_model::<BidRow>()
            .all(db)
            .await?;
        let ranking: Vec<Ranked> = top
            .iter()
            .enumerate()
            .map(|(i, b)| ranked(i as i64 + 1, b))
            .collect();
        let cutoff = (ranking.len() as u64 >= n)
            .then(|| {
                ranking
                    .get(seats.len().saturating_sub(1))
                    .map(|r| r.amount_minor)
            })
            .flatten();
        let awards = self.current_awards(id, &seats).await?;
        let currency = crate::domain::Currency::parse("currency", &row.currency)?;
        let mine = match caller {
            None => None,
            Some(caller) => Some(self.mine(id, caller, &awards).await?),
        };
        Ok(AuctionView {
            id,
            event,
            state: AuctionState::parse(&row.state)?,
            seats,
            opening: Money {
                amount_minor: row.opening_minor,
                currency: currency.clone(),
            },
            increment: Money {
                amount_minor: row.increment_minor,
                currency,
            },
            closes_at: row.closes_at,
            window: Duration::from_secs(row.payment_window_secs.unsigned_abs().into()),
            version: row.version,
            bidders: row.bidders,
            cutoff,
            ranking,
            awards,
            mine,
            created_at: row.created_at,
        })
    }

    /// Each seat's latest award, in `seats` order.
    async fn current_awards(
        &self,
        id: AuctionId,
        seats: &[SeatId],
    ) -> Result<Vec<AwardView>, BookingError> {
        let rows = auction_awards::Entity::find()
            .filter(auction_awards::Column::AuctionId.eq(id.0))
            .order_by_asc(auction_awards::Column::CreatedAt)
            .all(self.pool())
            .await?;
        if rows.is_empty() {
            return Ok(Vec::new());
        }
        let booking_ids: Vec<Uuid> = rows.iter().filter_map(|r| r.booking_id).collect();
        let statuses: HashMap<Uuid, String> = bookings::Entity::find()
            .select_only()
            .column(bookings::Column::Id)
            .column(bookings::Column::Status)
            .filter(bookings::Column::Id.is_in(booking_ids))
            .into_tuple::<(Uuid, String)>()
            .all(self.pool())
            .await?
            .into_iter()
            .collect();
        let mut latest: HashMap<Uuid, AwardView> = HashMap::new();
        for row in rows {
            let booking_status = row.booking_id.and_then(|b| statuses.get(&b)).cloned();
            latest.insert(row.seat_id, award_view(&row, booking_status.as_deref())?);
        }
        Ok(seats
            .iter()
            .filter_map(|seat| latest.remove(&seat.0))
            .collect())
    }

    async fn mine(
        &self,
        id: AuctionId,
        caller: AccountId,
        awards: &[AwardView],
    ) -> Result<Mine, BookingError> {
        let own = auction_bids::Entity::find_by_id((id.0, caller.0))
            .into_model::<BidRow>()
            .one(self.pool())
            .await?;
        let bid = match own {
            Some(row) => Some(ranked(rank_of(self.pool(), id, &row).await?, &row)),
            None => None,
        };
        let submissions_left = MAX_SUBMISSIONS - bid.as_ref().map_or(0, |b| b.submissions);
        let award = match awards.iter().find(|a| a.bidder == caller) {
            Some(award) => Some(award.clone()),
            None => {
                let row = auction_awards::Entity::find_by_id((id.0, caller.0))
                    .one(self.pool())
                    .await?;
                match row {
                    Some(row) => Some(award_view(&row, None)?),
                    None => None,
                }
            }
        };
        Ok(Mine {
            bid,
            submissions_left,
            award,
        })
    }

    /// Places (or raises) `bidder`'s bid.
    pub async fn bid(
        &self,
        id: AuctionId,
        bidder: AccountId,
        amount: Money,
    ) -> Result<BidPlaced, BookingError> {
        let tx = self.pool().begin().await?;
        // The auction's row lock serializes its bids: each is checked against the
        // committed standing bids and the close.
        let auction = auctions::Entity::find_by_id(id.0)
            .lock_exclusive()
            .one(&tx)
            .await?
            .ok_or(BookingError::NotFound("auction"))?;
        if auction.state != AuctionState::Open.as_str() || auction.closes_at <= Utc::now() {
            return Err(BookingError::FailedPrecondition(
                "bidding on this auction has closed".into(),
            ));
        }
        if auction.seller_id == bidder.0 {
            return Err(BookingError::PermissionDenied(
                "the seller cannot bid on their own auction",
            ));
        }
        if amount.currency.as_str() != auction.currency {
            return Err(BookingError::invalid(
                "amount",
                format!("must be in the auction's currency, {}", auction.currency),
            ));
        }
        if amount.amount_minor < auction.opening_minor {
            return Err(BookingError::invalid(
                "amount",
                format!(
                    "must be at least the opening price, {}",
                    auction.opening_minor
                ),
            ));
        }
        let own = auction_bids::Entity::find_by_id((id.0, bidder.0))
            .one(&tx)
            .await?;
        if let Some(own) = &own {
            if own.submissions >= MAX_SUBMISSIONS {
                return Err(BookingError::Conflict(format!(
                    "at most {MAX_SUBMISSIONS} bids per buyer on an auction, and you have made them"
                )));
            }
            let least = own.amount_minor.saturating_add(auction.increment_minor);
            if amount.amount_minor < least {
                return Err(BookingError::invalid(
                    "amount",
                    format!(
                        "must be at least your previous bid plus the minimum increment, {least}"
                    ),
                ));
            }
        }
        // Raw SQL: the sequence number and the submission count's increment in the
        // upsert itself, one statement (the insert builder cannot take `nextval`).
        let upserted = Upserted::find_by_statement(Statement::from_sql_and_values(
            DbBackend::Postgres,
            "INSERT INTO auction_bids (auction_id, bidder_id, amount_minor, seq, submissions)
             VALUES ($1, $2, $3, nextval('auction_bid_seq'), 1)
             ON CONFLICT (auction_id, bidder_id) DO UPDATE SET
                 amount_minor = EXCLUDED.amount_minor, seq = EXCLUDED.seq,
                 submissions = auction_bids.submissions + 1, bid_at = clock_timestamp()
             RETURNING seq, submissions, bid_at",
            [id.0.into(), bidder.0.into(), amount.amount_minor.into()],
        ))
        .one(&tx)
        .await?
        .ok_or_else(|| BookingError::Internal("the bid upsert returned nothing".into()))?;
        let version = bump(&tx, id, i64::from(own.is_none())).await?;
        tx.commit().await?;
        metrics::counter!("auction_bids_total").increment(1);
        tracing::debug!(auction_id = %id, bidder = %bidder, amount = amount.amount_minor, "bid accepted");
        self.announce(id);
        let row = BidRow {
            bidder_id: bidder.0,
            amount_minor: amount.amount_minor,
            seq: upserted.seq,
            submissions: upserted.submissions,
            bid_at: upserted.bid_at,
        };
        let rank = rank_of(self.pool(), id, &row).await?;
        Ok(BidPlaced {
            auction: id,
            bid: ranked(rank, &row),
            submissions_left: MAX_SUBMISSIONS - upserted.submissions,
            version,
            currency: auction.currency,
        })
    }

    /// Pays `buyer`'s award: a booking of its seat at its amount, PENDING_PAYMENT, and
    /// its payment request, in one transaction with the award.
    pub async fn pay(
        &self,
        id: AuctionId,
        buyer: AccountId,
        payment: Payment,
        key: IdempotencyKey,
    ) -> Result<Booking, BookingError> {
        // A retry with the same key is answered with what the first attempt made.
        if let Some((booking, auction)) = self.bookings.by_key(buyer, &key).await? {
            return if auction == Some(id.0) {
                Ok(booking)
            } else {
                Err(BookingError::AlreadyExists(
                    "this idempotency key was already used for another booking",
                ))
            };
        }
        let tx = self.pool().begin().await?;
        let (award, previous) = awaiting_award(&tx, id, buyer).await?;
        if let Some((previous, status)) = previous {
            match status.as_deref() {
                Some("PENDING_PAYMENT") | Some("CONFIRMED") => {
                    drop(tx);
                    return self.bookings.any(BookingId(previous)).await;
                }
                Some("CANCELLING") => {
                    return Err(BookingError::FailedPrecondition(
                        "you cancelled this award's booking".into(),
                    ));
                }
                _ => {}
            }
        }
        if award.pay_by <= Utc::now() {
            return Err(BookingError::FailedPrecondition(
                "the payment window of this award has ended".into(),
            ));
        }
        let auction = auctions::Entity::find_by_id(id.0)
            .one(&tx)
            .await?
            .ok_or(BookingError::NotFound("auction"))?;
        let event = self.bookings.event(EventId(auction.event_id)).await?;
        let booking = BookingId::new();
        let method = payment.method();
        let total = Money {
            amount_minor: award.amount_minor,
            currency: crate::domain::Currency::parse("currency", &auction.currency)?,
        };
        let inserted = bookings::Entity::insert(bookings::ActiveModel {
            id: Set(booking.0),
            event_id: Set(auction.event_id),
            buyer_id: Set(buyer.0),
            // No hold: a fresh id keeps `bookings_hold_id_key` satisfied.
            hold_id: Set(Uuid::new_v4()),
            status: Set(BookingStatus::PendingPayment.as_str().to_owned()),
            total_minor: Set(total.amount_minor),
            currency: Set(auction.currency.clone()),
            payment_method: Set(method.as_str().to_owned()),
            idempotency_key: Set(key.as_str().to_owned()),
            cancel_reason: sea_orm::NotSet,
            created_at: sea_orm::NotSet,
            updated_at: sea_orm::NotSet,
            auction_id: Set(Some(id.0)),
            transfer_of: sea_orm::NotSet,
        })
        .exec_with_returning(&tx)
        .await;
        let inserted = match inserted {
            Ok(row) => row,
            Err(error)
                if marquee_infra::db::violated_constraint(&error).as_deref()
                    == Some(bookings::IDEMPOTENCY_KEY) =>
            {
                return Err(BookingError::CheckoutInProgress);
            }
            Err(error) => return Err(error.into()),
        };
        let seat_row = booking_seats::Entity::insert(booking_seats::ActiveModel {
            booking_id: Set(booking.0),
            seat_id: Set(award.seat_id),
            event_id: Set(auction.event_id),
            price_minor: Set(total.amount_minor),
            active: Set(true),
        })
        .exec_without_returning(&tx)
        .await;
        if let Err(error) = seat_row {
            return Err(
                if marquee_infra::db::violated_constraint(&error).as_deref()
                    == Some(booking_seats::ONE_ACTIVE_SEAT_KEY)
                {
                    BookingError::Conflict(
                        "the seat's previous winner is still being refunded; retry shortly".into(),
                    )
                } else {
                    error.into()
                },
            );
        }
        let message = outbox::enqueue(
            &tx,
            NewMessage {
                kind: PAYMENT_REQUESTED,
                saga_id: booking.0,
                version: 1,
                payload: wire::bus::payment_requested(booking, buyer, &total, &payment),
            },
        )
        .await?;
        let mut steps = Steps::new(booking.0);
        steps.created(method, &total);
        steps.sent(PAYMENT_REQUESTED, message);
        steps.write(&tx).await?;
        auction_awards::ActiveModel {
            auction_id: Set(id.0),
            bidder_id: Set(buyer.0),
            booking_id: Set(Some(booking.0)),
            updated_at: Set(Utc::now()),
            ..Default::default()
        }
        .update(&tx)
        .await?;
        bump(&tx, id, 0).await?;
        tx.commit().await?;
        let seat = event.seat(SeatId(award.seat_id));
        let booked = Booking {
            id: booking,
            event: EventId(auction.event_id),
            buyer,
            hold: HoldId(inserted.hold_id),
            status: BookingStatus::PendingPayment,
            total,
            method,
            cancel_reason: String::new(),
            created_at: inserted.created_at,
            updated_at: inserted.updated_at,
            seats: vec![crate::domain::BookedSeat {
                seat: SeatId(award.seat_id),
                section: seat
                    .map(|s| event.section_of(s).name.clone())
                    .unwrap_or_default(),
                row: seat.map(|s| s.row.clone()).unwrap_or_default(),
                number: seat.map(|s| s.number.clone()).unwrap_or_default(),
                price_minor: award.amount_minor,
            }],
            history: Vec::new(),
            transfer_of: None,
        };
        self.bookings.announce_created(&booked);
        tracing::info!(auction_id = %id, booking_id = %booking, amount = award.amount_minor, "award payment requested");
        self.announce(id);
        Ok(booked)
    }

    /// Gives up `buyer`'s award; the seat passes on.
    pub async fn decline(&self, id: AuctionId, buyer: AccountId) -> Result<(), BookingError> {
        let tx = self.pool().begin().await?;
        let (award, previous) = awaiting_award(&tx, id, buyer).await?;
        if let Some((_, status)) = previous
            && matches!(status.as_deref(), Some("PENDING_PAYMENT" | "CONFIRMED"))
        {
            return Err(BookingError::FailedPrecondition(
                "this award's payment is under way; cancel the booking instead".into(),
            ));
        }
        set_award(&tx, id, buyer, AwardState::Declined).await?;
        let released = pass_on(&tx, id, SeatId(award.seat_id)).await?;
        bump(&tx, id, 0).await?;
        tx.commit().await?;
        tracing::info!(auction_id = %id, "award declined");
        self.after_step(id, released).await;
        Ok(())
    }

    /// After a committed award step: puts a released seat back on sale and announces.
    async fn after_step(&self, id: AuctionId, released: Option<(EventId, AccountId, SeatId)>) {
        if let Some((event, seller, seat)) = released {
            let seats = [seat];
            let keys = HoldKeys {
                hold: HoldId(id.0),
                buyer: seller,
                event,
                seats: &seats,
            };
            match self
                .bookings
                .holds()
                .free_booking(BookingId(id.0), keys)
                .await
            {
                Ok(()) => {
                    tracing::info!(auction_id = %id, seat_id = %seat.0, "auction seat back on sale")
                }
                // The ticker's release pass retries it.
                Err(error) => {
                    tracing::warn!(auction_id = %id, %error, "releasing an auction seat failed")
                }
            }
        }
        self.announce(id);
    }

    /// One pass: closes the auctions due, settles the awards that moved, and puts the
    /// seats their auctions released back on sale in Redis (again, if a first try failed).
    pub async fn tick(&self) -> Result<(), BookingError> {
        self.close_due().await?;
        self.settle().await?;
        Ok(())
    }

    async fn close_due(&self) -> Result<(), BookingError> {
        let due: Vec<Uuid> = auctions::Entity::find()
            .select_only()
            .column(auctions::Column::Id)
            .filter(auctions::Column::State.eq(AuctionState::Open.as_str()))
            .filter(auctions::Column::ClosesAt.lte(Utc::now()))
            .order_by_asc(auctions::Column::ClosesAt)
            .limit(10)
            .into_tuple()
            .all(self.pool())
            .await?;
        for id in due.into_iter().map(AuctionId) {
            self.close(id).await?;
        }
        Ok(())
    }

    /// Closes one auction: the top bids get the seats in order; seats without a bid go
    /// back on sale.
    async fn close(&self, id: AuctionId) -> Result<(), BookingError> {
        let tx = self.pool().begin().await?;
        let Some(auction) = auctions::Entity::find_by_id(id.0)
            .lock_with_behavior(LockType::Update, LockBehavior::SkipLocked)
            .one(&tx)
            .await?
        else {
            return Ok(());
        };
        if auction.state != AuctionState::Open.as_str() {
            return Ok(());
        }
        let seats: Vec<Uuid> = auction_seats::Entity::find()
            .select_only()
            .column(auction_seats::Column::SeatId)
            .filter(auction_seats::Column::AuctionId.eq(id.0))
            .order_by_asc(auction_seats::Column::Position)
            .into_tuple()
            .all(&tx)
            .await?;
        let winners: Vec<BidRow> = ranking(id)
            .limit(seats.len() as u64)
            .into_model::<BidRow>()
            .all(&tx)
            .await?;
        let pay_by = Utc::now() + chrono::Duration::seconds(auction.payment_window_secs.into());
        let awards = winners
            .iter()
            .zip(&seats)
            .enumerate()
            .map(|(i, (bid, seat))| auction_awards::ActiveModel {
                auction_id: Set(id.0),
                bidder_id: Set(bid.bidder_id),
                seat_id: Set(*seat),
                rank: Set(i as i64 + 1),
                amount_minor: Set(bid.amount_minor),
                state: Set(AwardState::AwaitingPayment.as_str().to_owned()),
                pay_by: Set(pay_by),
                booking_id: Set(None),
                created_at: sea_orm::NotSet,
                updated_at: sea_orm::NotSet,
            })
            .collect::<Vec<_>>();
        if !awards.is_empty() {
            auction_awards::Entity::insert_many(awards)
                .exec_without_returning(&tx)
                .await?;
        }
        let unsold: Vec<Uuid> = seats.iter().skip(winners.len()).copied().collect();
        if !unsold.is_empty() {
            auction_seats::Entity::update_many()
                .col_expr(auction_seats::Column::State, Expr::value("RELEASED"))
                .filter(auction_seats::Column::AuctionId.eq(id.0))
                .filter(auction_seats::Column::SeatId.is_in(unsold.clone()))
                .exec(&tx)
                .await?;
        }
        auctions::Entity::update_many()
            .col_expr(
                auctions::Column::State,
                Expr::value(AuctionState::Closed.as_str()),
            )
            .col_expr(
                auctions::Column::Version,
                Expr::col(auctions::Column::Version).add(1),
            )
            .filter(auctions::Column::Id.eq(id.0))
            .exec(&tx)
            .await?;
        tx.commit().await?;
        metrics::counter!("auctions_closed_total").increment(1);
        tracing::info!(auction_id = %id, winners = winners.len(), unsold = unsold.len(), "auction closed");
        let (event, seller) = (EventId(auction.event_id), AccountId(auction.seller_id));
        for seat in unsold {
            self.after_step(id, Some((event, seller, SeatId(seat))))
                .await;
        }
        self.announce(id);
        Ok(())
    }

    /// Settles the live awards whose booking or window moved them on.
    async fn settle(&self) -> Result<(), BookingError> {
        // Raw SQL: a join of the awards with their bookings' status under three
        // conditions, which reads more clearly here than in the builder.
        let moved = AwardWithBooking::find_by_statement(Statement::from_sql_and_values(
            DbBackend::Postgres,
            "SELECT a.auction_id, a.bidder_id, a.seat_id, a.state, a.pay_by,
                    b.status AS booking_status, b.cancel_reason
             FROM auction_awards a LEFT JOIN bookings b ON b.id = a.booking_id
             WHERE a.state IN ('AWAITING_PAYMENT', 'PAID') AND (
                 (a.state = 'AWAITING_PAYMENT' AND b.status = 'CONFIRMED')
                 OR (b.status = 'CANCELLED' AND b.cancel_reason = $1)
                 OR (a.state = 'AWAITING_PAYMENT' AND a.pay_by < now()
                     AND (b.id IS NULL OR b.status = 'CANCELLED')))
             ORDER BY a.pay_by LIMIT 100",
            [CANCELLED_BY_BUYER.into()],
        ))
        .all(self.pool())
        .await?;
        for award in moved {
            self.settle_one(award).await?;
        }
        Ok(())
    }

    async fn settle_one(&self, seen: AwardWithBooking) -> Result<(), BookingError> {
        let id = AuctionId(seen.auction_id);
        let bidder = AccountId(seen.bidder_id);
        let tx = self.pool().begin().await?;
        let Some(auction) = auctions::Entity::find_by_id(id.0)
            .lock_with_behavior(LockType::Update, LockBehavior::SkipLocked)
            .one(&tx)
            .await?
        else {
            return Ok(());
        };
        // Read again under the lock: another replica may have settled it.
        let Some(award) = auction_awards::Entity::find_by_id((id.0, bidder.0))
            .one(&tx)
            .await?
        else {
            return Ok(());
        };
        if award.state != seen.state {
            return Ok(());
        }
        let next = match (
            seen.booking_status.as_deref(),
            seen.cancel_reason.as_deref(),
        ) {
            (Some("CONFIRMED"), _) => AwardState::Paid,
            (Some("CANCELLED"), Some(CANCELLED_BY_BUYER)) => AwardState::Cancelled,
            _ if seen.pay_by < Utc::now() => AwardState::Lapsed,
            _ => return Ok(()),
        };
        set_award(&tx, id, bidder, next).await?;
        let mut released = None;
        if next == AwardState::Paid {
            auction_seats::Entity::update_many()
                .col_expr(auction_seats::Column::State, Expr::value("SOLD"))
                .filter(auction_seats::Column::AuctionId.eq(id.0))
                .filter(auction_seats::Column::SeatId.eq(seen.seat_id))
                .exec(&tx)
                .await?;
        } else {
            if award.state == AwardState::Paid.as_str() {
                auction_seats::Entity::update_many()
                    .col_expr(auction_seats::Column::State, Expr::value("RESERVED"))
                    .filter(auction_seats::Column::AuctionId.eq(id.0))
                    .filter(auction_seats::Column::SeatId.eq(seen.seat_id))
                    .exec(&tx)
                    .await?;
            }
            released = pass_on(&tx, id, SeatId(seen.seat_id)).await?;
        }
        bump(&tx, id, 0).await?;
        tx.commit().await?;
        metrics::counter!("auction_awards_settled_total", "state" => next.as_str()).increment(1);
        tracing::info!(auction_id = %id, state = next.as_str(), event_id = %auction.event_id, "award settled");
        self.after_step(id, released).await;
        Ok(())
    }

    /// Runs [`Self::tick`] every [`TICK`] until `shutdown`.
    pub fn spawn_ticker(self, shutdown: CancellationToken) {
        tokio::spawn(async move {
            let mut interval = tokio::time::interval(TICK);
            interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = interval.tick() => {}
                    () = shutdown.cancelled() => return,
                }
                if let Err(error) = self.tick().await {
                    tracing::warn!(%error, "auction tick failed");
                }
            }
        });
    }

    /// Broadcasts the auctions queued by [`Self::announce`]: all that queued up while
    /// the previous round was being read and sent, each once, at its latest state.
    async fn broadcast_loop(
        self,
        bus: Bus,
        mut rx: mpsc::Receiver<AuctionId>,
        encode: Encode,
        shutdown: CancellationToken,
    ) {
        loop {
            let first = tokio::select! {
                id = rx.recv() => id,
                () = shutdown.cancelled() => return,
            };
            let Some(first) = first else { return };
            let mut ids = BTreeSet::from([first]);
            while let Ok(id) = rx.try_recv() {
                ids.insert(id);
            }
            for id in ids {
                let view = match self.view(id, None).await {
                    Ok(view) => view,
                    Err(error) => {
                        tracing::warn!(auction_id = %id, %error, "reading an auction to broadcast failed");
                        continue;
                    }
                };
                let envelope = wire::bus::notification(AUCTION_CHANGED, encode(&view));
                match bus.broadcast(&envelope).await {
                    Ok(()) => {
                        metrics::counter!("changes_published_total", "kind" => AUCTION_CHANGED)
                            .increment(1)
                    }
                    Err(error) => {
                        metrics::counter!("changes_dropped_total").increment(1);
                        tracing::warn!(auction_id = %id, %error, "auction broadcast failed");
                    }
                }
            }
        }
    }
}

/// Marks the seats of every auction that may still sell them with the auction's marker,
/// for the partitions being restored (before the bookings' marks, so a winner's booking
/// never takes the mark over).
pub async fn prime_seats(
    db: &DatabaseConnection,
    holds: &crate::holds::HoldStore,
    restoring: impl Fn(EventId) -> bool,
    base: i64,
) -> Result<usize, BookingError> {
    #[derive(Debug, FromQueryResult)]
    struct Reserved {
        auction_id: Uuid,
        event_id: Uuid,
        seller_id: Uuid,
        seat_id: Uuid,
    }
    // Raw SQL: a join across the two auction tables, read once at a restore.
    let rows = Reserved::find_by_statement(Statement::from_string(
        DbBackend::Postgres,
        "SELECT s.auction_id, a.event_id, a.seller_id, s.seat_id
         FROM auction_seats s JOIN auctions a ON a.id = s.auction_id
         WHERE s.state <> 'RELEASED'",
    ))
    .all(db)
    .await?;
    let mut by_auction: HashMap<(Uuid, Uuid, Uuid), Vec<SeatId>> = HashMap::new();
    for row in rows {
        if restoring(EventId(row.event_id)) {
            by_auction
                .entry((row.auction_id, row.event_id, row.seller_id))
                .or_default()
                .push(SeatId(row.seat_id));
        }
    }
    let auctions = by_auction.len();
    for ((auction, event, seller), seats) in by_auction {
        holds
            .prime(
                BookingId(auction),
                HoldId(auction),
                AccountId(seller),
                EventId(event),
                &seats,
                true,
                base,
            )
            .await?;
    }
    Ok(auctions)
}

/// The auction's standing bids in ranking order: highest amount first, then the
/// earlier bid (`auction_bids_ranking_idx`).
fn ranking(id: AuctionId) -> sea_orm::Select<auction_bids::Entity> {
    auction_bids::Entity::find()
        .filter(auction_bids::Column::AuctionId.eq(id.0))
        .order_by_desc(auction_bids::Column::AmountMinor)
        .order_by_asc(auction_bids::Column::Seq)
}

/// The rank of a standing bid: 1 + the bids ahead of it in [`ranking`] order.
async fn rank_of<C: ConnectionTrait>(
    db: &C,
    id: AuctionId,
    row: &BidRow,
) -> Result<i64, BookingError> {
    let ahead = auction_bids::Entity::find()
        .filter(auction_bids::Column::AuctionId.eq(id.0))
        .filter(
            Condition::any()
                .add(auction_bids::Column::AmountMinor.gt(row.amount_minor))
                .add(
                    Condition::all()
                        .add(auction_bids::Column::AmountMinor.eq(row.amount_minor))
                        .add(auction_bids::Column::Seq.lt(row.seq)),
                ),
        )
        .count(db)
        .await?;
    Ok(i64::try_from(ahead).unwrap_or(i64::MAX).saturating_add(1))
}

fn ranked(rank: i64, b: &BidRow) -> Ranked {
    Ranked {
        rank,
        bidder: AccountId(b.bidder_id),
        amount_minor: b.amount_minor,
        bid_at: b.bid_at,
        submissions: b.submissions,
    }
}

fn award_view(
    row: &auction_awards::Model,
    booking_status: Option<&str>,
) -> Result<AwardView, BookingError> {
    let state = match AwardState::parse(&row.state)? {
        AwardState::AwaitingPayment => match booking_status {
            Some("PENDING_PAYMENT") => AwardShown::Paying,
            Some("CONFIRMED") => AwardShown::Paid,
            _ => AwardShown::AwaitingPayment,
        },
        AwardState::Paid => AwardShown::Paid,
        AwardState::Lapsed => AwardShown::Lapsed,
        AwardState::Declined => AwardShown::Declined,
        AwardState::Cancelled => AwardShown::Cancelled,
    };
    Ok(AwardView {
        seat: SeatId(row.seat_id),
        rank: row.rank,
        bidder: AccountId(row.bidder_id),
        amount_minor: row.amount_minor,
        state,
        pay_by: row.pay_by,
        booking: row.booking_id.map(BookingId),
    })
}

/// Locks the auction and reads `buyer`'s award, which must be awaiting payment, with
/// the id and status of the booking last made for it, if any.
async fn awaiting_award(
    tx: &DatabaseTransaction,
    id: AuctionId,
    buyer: AccountId,
) -> Result<(auction_awards::Model, Option<(Uuid, Option<String>)>), BookingError> {
    lock_auction(tx, id).await?;
    let award = auction_awards::Entity::find_by_id((id.0, buyer.0))
        .one(tx)
        .await?
        .ok_or(BookingError::NotFound("award"))?;
    if AwardState::parse(&award.state)? != AwardState::AwaitingPayment {
        return Err(BookingError::FailedPrecondition(format!(
            "this award is {}, not awaiting payment",
            award.state
        )));
    }
    let previous = match award.booking_id {
        Some(booking) => {
            let status: Option<String> = bookings::Entity::find_by_id(booking)
                .select_only()
                .column(bookings::Column::Status)
                .into_tuple()
                .one(tx)
                .await?;
            Some((booking, status))
        }
        None => None,
    };
    Ok((award, previous))
}

/// Locks the auction's row (award steps of one auction are serialized with its bids).
async fn lock_auction(tx: &DatabaseTransaction, id: AuctionId) -> Result<(), BookingError> {
    auctions::Entity::find_by_id(id.0)
        .select_only()
        .column(auctions::Column::Id)
        .lock_exclusive()
        .into_tuple::<Uuid>()
        .one(tx)
        .await?
        .ok_or(BookingError::NotFound("auction"))?;
    Ok(())
}

/// Moves the auction's version on (and its bidder count by `new_bidders`); the new version.
async fn bump<C: ConnectionTrait>(
    db: &C,
    id: AuctionId,
    new_bidders: i64,
) -> Result<i64, BookingError> {
    let rows = auctions::Entity::update_many()
        .col_expr(
            auctions::Column::Version,
            Expr::col(auctions::Column::Version).add(1),
        )
        .col_expr(
            auctions::Column::Bidders,
            Expr::col(auctions::Column::Bidders).add(new_bidders),
        )
        .filter(auctions::Column::Id.eq(id.0))
        .exec_with_returning(db)
        .await?;
    rows.first()
        .map(|row| row.version)
        .ok_or(BookingError::NotFound("auction"))
}

async fn set_award(
    tx: &DatabaseTransaction,
    id: AuctionId,
    bidder: AccountId,
    state: AwardState,
) -> Result<(), BookingError> {
    auction_awards::Entity::update_many()
        .col_expr(auction_awards::Column::State, Expr::value(state.as_str()))
        .col_expr(auction_awards::Column::UpdatedAt, Expr::value(Utc::now()))
        .filter(auction_awards::Column::AuctionId.eq(id.0))
        .filter(auction_awards::Column::BidderId.eq(bidder.0))
        .exec(tx)
        .await?;
    Ok(())
}

/// Passes `seat` to the best bid without an award, with a new payment window; with
/// none left, releases the seat from the auction and returns what to clear in Redis
/// after the commit.
async fn pass_on(
    tx: &DatabaseTransaction,
    id: AuctionId,
    seat: SeatId,
) -> Result<Option<(EventId, AccountId, SeatId)>, BookingError> {
    let auction = auctions::Entity::find_by_id(id.0)
        .one(tx)
        .await?
        .ok_or(BookingError::NotFound("auction"))?;
    let awarded: Vec<Uuid> = auction_awards::Entity::find()
        .select_only()
        .column(auction_awards::Column::BidderId)
        .filter(auction_awards::Column::AuctionId.eq(id.0))
        .into_tuple()
        .all(tx)
        .await?;
    let next = ranking(id)
        .filter(auction_bids::Column::BidderId.is_not_in(awarded))
        .into_model::<BidRow>()
        .one(tx)
        .await?;
    let Some(next) = next else {
        auction_seats::Entity::update_many()
            .col_expr(auction_seats::Column::State, Expr::value("RELEASED"))
            .filter(auction_seats::Column::AuctionId.eq(id.0))
            .filter(auction_seats::Column::SeatId.eq(seat.0))
            .exec(tx)
            .await?;
        return Ok(Some((
            EventId(auction.event_id),
            AccountId(auction.seller_id),
            seat,
        )));
    };
    // Its rank in the final ranking (bids no longer change after the close).
    let rank = rank_of(tx, id, &next).await?;
    let pay_by = Utc::now() + chrono::Duration::seconds(auction.payment_window_secs.into());
    auction_awards::Entity::insert(auction_awards::ActiveModel {
        auction_id: Set(id.0),
        bidder_id: Set(next.bidder_id),
        seat_id: Set(seat.0),
        rank: Set(rank),
        amount_minor: Set(next.amount_minor),
        state: Set(AwardState::AwaitingPayment.as_str().to_owned()),
        pay_by: Set(pay_by),
        booking_id: Set(None),
        created_at: sea_orm::NotSet,
        updated_at: sea_orm::NotSet,
    })
    .on_conflict(
        OnConflict::columns([
            auction_awards::Column::AuctionId,
            auction_awards::Column::BidderId,
        ])
        .do_nothing()
        .to_owned(),
    )
    .exec_without_returning(tx)
    .await?;
    tracing::info!(auction_id = %id, seat_id = %seat.0, "auction seat passed to the next bid");
    Ok(None)
}
