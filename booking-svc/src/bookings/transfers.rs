//! Ticket transfers at face value (issue 14): a CONFIRMED booking (all its seats) is
//! offered by its owner, to a named recipient or as an open listing, and accepted by
//! the recipient, who pays through the ordinary payment saga.
//!
//! Accepting writes, in one transaction: the original booking CONFIRMED → TRANSFERRING,
//! the recipient's new booking (PENDING_PAYMENT, `transfer_of` = the original, no seats
//! yet, so nothing generic releases the original's seats) with its `payment.requested`,
//! and the offer OFFERED → ACCEPTED. The new booking's payment then decides
//! ([`on_transfer_moved`], called in the saga's own transaction): paid → the original
//! TRANSFERRED with its seats inactive, the new booking owning the same seats, the offer
//! COMPLETED and a `payout.requested` for the original buyer; failed or overdue → the
//! original CONFIRMED again and the offer back on offer.
//!
//! Lock order, everywhere: a booking's row before its offer's. Accept, create and cancel
//! all move (or touch) the original booking's row with a guarded UPDATE first, so of an
//! accept and a cancel racing for one booking exactly one wins and the other answers
//! 409/400; withdraw touches the offer only.

use chrono::Utc;
use marquee_infra::outbox::{self, NewMessage};
use sea_orm::sea_query::{Expr, Func};
use sea_orm::{
    ActiveValue::{NotSet, Set},
    ColumnTrait, ConnectionTrait, DatabaseTransaction, DbBackend, DbErr, EntityTrait, QueryFilter,
    QueryOrder, QuerySelect, Statement, TransactionTrait,
};
use uuid::Uuid;

use super::{
    Bookings, InsertError, TransitionError, booked_seat, clock_timestamp, deactivate_seats,
    set_status,
};
use crate::accounts;
use crate::catalog::{self, EventInfo};
use crate::domain::{
    AccountId, BookedSeat, Booking, BookingId, BookingMoved, BookingStatus, Currency, EventId,
    IdempotencyKey, Money, NewOffer, OfferStatus, Payment, Recipient, TransferLink, TransferOffer,
    TransferOfferId, TransferPolicy,
};
use crate::entity::{booking_seats, bookings, transfer_offers};
use crate::error::BookingError;
use crate::steps::{BookingSteps as _, Steps};
use crate::wire;
use marquee_proto::kinds::{PAYMENT_REQUESTED, PAYOUT_REQUESTED};

/// The saga step kind of a transfer's payout (requested, completed).
pub(super) const PAYOUT_STEP: &str = "payout";

/// Why a payout is made, as pay-svc's ledger and timeline show it.
const PAYOUT_REASON: &str = "ticket transfer";

impl Bookings {
    /// The event's transfer rule.
    pub async fn transfer_policy(&self, event: EventId) -> Result<TransferPolicy, BookingError> {
        catalog::transfer_policy(&self.pool, event).await
    }

    /// The transfer rules of a page of events, in one query.
    pub async fn transfer_policies(
        &self,
        events: &[EventId],
    ) -> Result<std::collections::HashMap<EventId, TransferPolicy>, BookingError> {
        catalog::transfer_policies(&self.pool, events).await
    }

    /// Sets the event's transfer rule; its seller only (or an admin: `admin`).
    pub async fn set_transfer_policy(
        &self,
        caller: AccountId,
        admin: bool,
        event: EventId,
        policy: TransferPolicy,
    ) -> Result<std::sync::Arc<EventInfo>, BookingError> {
        let info = self.event(event).await?;
        if info.seller != caller && !admin {
            return Err(BookingError::PermissionDenied(
                "only the event's seller can set its transfer policy",
            ));
        }
        catalog::set_transfer_policy(&self.pool, event, policy).await?;
        Ok(info)
    }

    /// Offers the owner's CONFIRMED booking for transfer. The price is more than 0, in
    /// the booking's currency, at most its face value (what it cost) and the event's cap.
    pub async fn create_offer(
        &self,
        owner: AccountId,
        booking: BookingId,
        new: NewOffer,
    ) -> Result<TransferOffer, BookingError> {
        let current = self.get(owner, booking).await?;
        if current.status != BookingStatus::Confirmed {
            return Err(BookingError::FailedPrecondition(format!(
                "only a CONFIRMED booking can be offered for transfer; this one is {}",
                current.status.as_str()
            )));
        }
        // A seat won at auction stays the auction's to pass on (its Redis mark is the
        // auction's): its booking is not transferable.
        let won_at_auction = bookings::Entity::find_by_id(booking.0)
            .select_only()
            .column(bookings::Column::AuctionId)
            .into_tuple::<Option<Uuid>>()
            .one(&self.pool)
            .await?
            .flatten()
            .is_some();
        if won_at_auction {
            return Err(BookingError::FailedPrecondition(
                "a ticket won at auction cannot be transferred; cancel it and the seat passes to the next bid".into(),
            ));
        }
        let info = self.event(current.event).await?;
        not_started(&info)?;
        let policy = catalog::transfer_policy(&self.pool, info.id).await?;
        if !policy.allowed() {
            return Err(BookingError::PermissionDenied(
                "the event's seller does not allow ticket transfers",
            ));
        }
        let price = new.price.money().clone();
        check_price(&price, &current.total, policy)?;
        if let Recipient::Named(email) = &new.recipient {
            let me = accounts::get(&self.pool, owner).await?;
            if me.email == email.as_str() {
                return Err(BookingError::invalid(
                    "recipientEmail",
                    "must be someone else's email (leave it empty for an open listing)",
                ));
            }
        }
        let id = TransferOfferId::new();
        let tx = self.pool.begin().await?;
        // Locks the booking's row (and checks it is still CONFIRMED) for the insert: a
        // cancel that got there first has moved it; one that comes later withdraws this.
        let locked = set_status(
            &tx,
            booking,
            Some(BookingStatus::Confirmed),
            BookingStatus::Confirmed,
            None,
            Expr::col(bookings::Column::UpdatedAt),
        )
        .await?;
        if locked.is_none() {
            return Err(BookingError::Conflict(
                "this booking changed meanwhile (cancelled or transferred); it was not offered"
                    .into(),
            ));
        }
        let inserted = transfer_offers::Entity::insert(transfer_offers::ActiveModel {
            id: Set(id.0),
            booking_id: Set(booking.0),
            event_id: Set(info.id.0),
            owner_id: Set(owner.0),
            recipient_email: Set(new.recipient.email().map(str::to_owned)),
            price_minor: Set(price.amount_minor),
            currency: Set(price.currency.as_str().to_owned()),
            status: Set(OfferStatus::Offered.as_str().to_owned()),
            transfer_booking_id: Set(None),
            created_at: NotSet,
            updated_at: NotSet,
        })
        .exec_without_returning(&tx)
        .await;
        if let Err(error) = inserted {
            return Err(
                match marquee_infra::db::violated_constraint(&error).as_deref() {
                    Some(transfer_offers::ONE_LIVE_OFFER_KEY) => BookingError::AlreadyExists(
                        "this booking already has a transfer offer on offer or accepted; withdraw it first",
                    ),
                    _ => error.into(),
                },
            );
        }
        tx.commit().await?;
        metrics::counter!("transfer_offers_total", "outcome" => "offered").increment(1);
        tracing::info!(offer_id = %id, booking_id = %booking, price = price.amount_minor, open = new.recipient.email().is_none(), "transfer offered");
        self.offer(id).await
    }

    /// An offer as its owner, its named recipient or (an open listing) anyone sees it;
    /// anyone else is told it does not exist.
    pub async fn visible_offer(
        &self,
        caller: AccountId,
        id: TransferOfferId,
    ) -> Result<TransferOffer, BookingError> {
        let offer = self.offer(id).await?;
        if self.may_see(caller, &offer).await? {
            Ok(offer)
        } else {
            Err(BookingError::NotFound("transfer offer"))
        }
    }

    async fn may_see(
        &self,
        caller: AccountId,
        offer: &TransferOffer,
    ) -> Result<bool, BookingError> {
        if offer.owner == caller {
            return Ok(true);
        }
        match &offer.recipient {
            None => Ok(true),
            Some(email) => Ok(accounts::get(&self.pool, caller).await?.email == *email),
        }
    }

    /// Withdraws an offer nobody accepted; its owner only. Withdrawing twice is harmless.
    pub async fn withdraw_offer(
        &self,
        owner: AccountId,
        id: TransferOfferId,
    ) -> Result<TransferOffer, BookingError> {
        let offer = self.visible_offer(owner, id).await?;
        if offer.owner != owner {
            return Err(BookingError::PermissionDenied(
                "only the offer's owner can withdraw it",
            ));
        }
        let withdrawn = set_offer_status(
            &self.pool,
            transfer_offers::Column::Id.eq(id.0),
            OfferStatus::Offered,
            OfferStatus::Withdrawn,
            None,
        )
        .await?;
        if withdrawn.is_none() {
            let now = self.offer(id).await?;
            return match now.status {
                OfferStatus::Withdrawn => Ok(now),
                OfferStatus::Accepted => Err(BookingError::Conflict(
                    "this offer was accepted; it can no longer be withdrawn".into(),
                )),
                OfferStatus::Completed => Err(BookingError::FailedPrecondition(
                    "this offer was completed: the booking was transferred".into(),
                )),
                OfferStatus::Offered => Err(BookingError::Conflict(
                    "this offer changed meanwhile; retry".into(),
                )),
            };
        }
        metrics::counter!("transfer_offers_total", "outcome" => "withdrawn").increment(1);
        tracing::info!(offer_id = %id, "transfer offer withdrawn");
        self.offer(id).await
    }

    /// Accepts an offer for `recipient`: one transaction moves the original booking to
    /// TRANSFERRING, writes the recipient's booking (PENDING_PAYMENT) with its
    /// `payment.requested`, and the offer to ACCEPTED. A retry with the same key returns
    /// the same booking.
    pub async fn accept_offer(
        &self,
        recipient: AccountId,
        id: TransferOfferId,
        payment: Payment,
        key: IdempotencyKey,
    ) -> Result<Booking, BookingError> {
        let offer = self.visible_offer(recipient, id).await?;
        if let Some(done) = self.find_by_key(recipient, &key).await? {
            return replay_accept(done, &offer);
        }
        if offer.owner == recipient {
            return Err(BookingError::FailedPrecondition(
                "this is your own offer; withdraw it instead".into(),
            ));
        }
        if offer.status != OfferStatus::Offered {
            return Err(taken());
        }
        let info = self.event(offer.event).await?;
        not_started(&info)?;
        let policy = catalog::transfer_policy(&self.pool, info.id).await?;
        if !policy.allowed() {
            return Err(BookingError::PermissionDenied(
                "the event's seller does not allow ticket transfers",
            ));
        }
        let original = self.get_any(offer.booking).await?;
        if offer.price.amount_minor > policy.cap(original.total.amount_minor) {
            return Err(BookingError::FailedPrecondition(format!(
                "this offer's price is above the event's transfer cap of {} % of face value",
                policy.max_price_percent()
            )));
        }
        match self
            .insert_transfer(&info, &offer, &original, recipient, &payment, &key)
            .await
        {
            Ok((booking, original_moved)) => {
                self.relay.notify();
                self.changes.booking(BookingMoved {
                    id: booking.id,
                    buyer: booking.buyer,
                    event: booking.event,
                    status: BookingStatus::PendingPayment,
                    cancel_reason: String::new(),
                    updated_at: booking.created_at,
                });
                self.changes.booking(original_moved);
                metrics::counter!("bookings_total", "status" => "PENDING_PAYMENT").increment(1);
                metrics::counter!("bookings_total", "status" => "TRANSFERRING").increment(1);
                metrics::counter!("transfer_offers_total", "outcome" => "accepted").increment(1);
                tracing::info!(offer_id = %id, booking_id = %booking.id, transfer_of = %original.id, total = booking.total.amount_minor, "transfer accepted");
                Ok(booking)
            }
            Err(InsertError::Limit { limit, current }) => {
                Err(BookingError::SeatLimit { limit, current })
            }
            Err(InsertError::KeyConflict) => match self.find_by_key(recipient, &key).await? {
                Some(done) => replay_accept(done, &offer),
                None => Err(BookingError::CheckoutInProgress),
            },
            Err(InsertError::SeatConflict) => Err(taken()),
            // Taken: perhaps by a concurrent request with this very key (the two wait
            // for each other on the recipient's advisory lock), whose booking it gets.
            Err(InsertError::Other(BookingError::Conflict(message))) => {
                match self.find_by_key(recipient, &key).await? {
                    Some(done) => replay_accept(done, &offer),
                    None => Err(BookingError::Conflict(message)),
                }
            }
            Err(InsertError::Other(error)) => Err(error),
        }
    }

    async fn insert_transfer(
        &self,
        info: &EventInfo,
        offer: &TransferOffer,
        original: &Booking,
        recipient: AccountId,
        payment: &Payment,
        key: &IdempotencyKey,
    ) -> Result<(Booking, BookingMoved), InsertError> {
        let id = BookingId::new();
        let hold = crate::holds::new_hold_id(info.id);
        let method = payment.method();
        let total = offer.price.clone();
        let tx = self.pool.begin().await.map_err(InsertError::db)?;
        // The per-buyer limit, as at checkout: under the recipient's advisory lock for
        // the event, what they own or are paying for plus these seats.
        // Raw SQL: advisory locks have no query-builder form.
        tx.execute_raw(Statement::from_sql_and_values(
            DbBackend::Postgres,
            "SELECT pg_advisory_xact_lock(hashtextextended($1::text || $2::text, 0))",
            [recipient.0.into(), info.id.0.into()],
        ))
        .await
        .map_err(InsertError::db)?;
        let current = seats_owned_or_coming(&tx, recipient, info.id)
            .await
            .map_err(InsertError::db)?;
        let limit = info.details.max_seats_per_buyer;
        let wanted = i64::try_from(offer.seats.len()).unwrap_or(i64::MAX);
        if current.saturating_add(wanted) > i64::from(limit) {
            return Err(InsertError::Limit {
                limit,
                current: u32::try_from(current).unwrap_or(u32::MAX),
            });
        }
        // The original's row first (see the module's lock order): still CONFIRMED, so
        // neither cancelled nor being transferred to someone else.
        let transferring = set_status(
            &tx,
            original.id,
            Some(BookingStatus::Confirmed),
            BookingStatus::Transferring,
            None,
            clock_timestamp(),
        )
        .await
        .map_err(InsertError::db)?
        .ok_or_else(|| InsertError::Other(taken()))?;
        let created_at = bookings::Entity::insert(bookings::ActiveModel {
            id: Set(id.0),
            event_id: Set(info.id.0),
            buyer_id: Set(recipient.0),
            hold_id: Set(hold.0),
            status: Set(BookingStatus::PendingPayment.as_str().to_owned()),
            total_minor: Set(total.amount_minor),
            currency: Set(total.currency.as_str().to_owned()),
            payment_method: Set(method.as_str().to_owned()),
            idempotency_key: Set(key.as_str().to_owned()),
            cancel_reason: NotSet,
            created_at: NotSet,
            updated_at: NotSet,
            transfer_of: Set(Some(original.id.0)),
            auction_id: NotSet,
        })
        .exec_with_returning(&tx)
        .await
        .map_err(InsertError::classify)?
        .created_at;
        let accepted = set_offer_status(
            &tx,
            transfer_offers::Column::Id.eq(offer.id.0),
            OfferStatus::Offered,
            OfferStatus::Accepted,
            Some(Some(id)),
        )
        .await
        .map_err(InsertError::db)?;
        if accepted.is_none() {
            // Withdrawn (or taken) meanwhile: the transaction is rolled back.
            return Err(InsertError::Other(taken()));
        }
        let message = outbox::enqueue(
            &tx,
            NewMessage {
                kind: PAYMENT_REQUESTED,
                saga_id: id.0,
                version: 1,
                payload: wire::bus::payment_requested(id, recipient, &total, payment),
            },
        )
        .await
        .map_err(InsertError::db)?;
        let mut steps = Steps::new(id.0);
        steps.created(method, &total);
        steps.note(
            crate::steps::TRANSFER,
            "accepted",
            &format!("offer {} of booking {}", offer.id, original.id),
        );
        steps.sent(PAYMENT_REQUESTED, message);
        steps.write(&tx).await.map_err(InsertError::db)?;
        let mut original_steps = Steps::new(original.id.0);
        original_steps.status(
            Some(BookingStatus::Confirmed),
            BookingStatus::Transferring,
            "transfer accepted",
        );
        original_steps.write(&tx).await.map_err(InsertError::db)?;
        tx.commit().await.map_err(InsertError::db)?;
        let booking = Booking {
            id,
            event: info.id,
            buyer: recipient,
            hold,
            status: BookingStatus::PendingPayment,
            total,
            method,
            cancel_reason: String::new(),
            created_at,
            updated_at: created_at,
            seats: Vec::new(),
            history: Vec::new(),
            transfer_of: Some(original.id),
        };
        let moved = BookingMoved {
            id: original.id,
            buyer: original.buyer,
            event: original.event,
            status: BookingStatus::Transferring,
            cancel_reason: String::new(),
            updated_at: transferring.updated_at,
        };
        Ok((booking, moved))
    }

    /// The event's open listings, oldest first.
    pub async fn listings(
        &self,
        event: EventId,
        offset: i64,
        limit: i64,
    ) -> Result<Vec<TransferOffer>, BookingError> {
        self.event(event).await?;
        let rows = transfer_offers::Entity::find()
            .filter(transfer_offers::Column::EventId.eq(event.0))
            .filter(transfer_offers::Column::Status.eq(OfferStatus::Offered.as_str()))
            .filter(transfer_offers::Column::RecipientEmail.is_null())
            .order_by_asc(transfer_offers::Column::CreatedAt)
            .order_by_asc(transfer_offers::Column::Id)
            .offset(u64::try_from(offset).unwrap_or(0))
            .limit(u64::try_from(limit).unwrap_or(0))
            .all(&self.pool)
            .await?;
        self.offers_of(rows).await
    }

    /// The ticket's chain of owners that `booking` is part of, from the first purchase
    /// to the current owner: for its current and previous owners only.
    pub async fn transfer_chain(
        &self,
        caller: AccountId,
        booking: BookingId,
    ) -> Result<Vec<TransferLink>, BookingError> {
        let start = bookings::Entity::find_by_id(booking.0)
            .one(&self.pool)
            .await?
            .ok_or(BookingError::NotFound("booking"))?;
        // A transfer's booking that was never paid is no owner: its chain is the
        // original's.
        let mut current = start;
        if current.transfer_of.is_some() && completed_into(&self.pool, current.id).await?.is_none()
        {
            let Some(original) = current.transfer_of else {
                return Err(BookingError::NotFound("booking"));
            };
            current = bookings::Entity::find_by_id(original)
                .one(&self.pool)
                .await?
                .ok_or(BookingError::NotFound("booking"))?;
        }
        // Back to the first purchase.
        let mut chain = vec![current];
        while let Some(previous) = chain.first().and_then(|b| b.transfer_of) {
            let Some(row) = bookings::Entity::find_by_id(previous)
                .one(&self.pool)
                .await?
            else {
                break;
            };
            chain.insert(0, row);
        }
        // Forward to the current owner, along completed offers.
        while let Some(last) = chain.last() {
            let next = transfer_offers::Entity::find()
                .filter(transfer_offers::Column::BookingId.eq(last.id))
                .filter(transfer_offers::Column::Status.eq(OfferStatus::Completed.as_str()))
                .one(&self.pool)
                .await?
                .and_then(|offer| offer.transfer_booking_id);
            let Some(next) = next else { break };
            let Some(row) = bookings::Entity::find_by_id(next).one(&self.pool).await? else {
                break;
            };
            chain.push(row);
        }
        if !chain.iter().any(|b| b.buyer_id == caller.0) {
            return Err(BookingError::NotFound("booking"));
        }
        let mut links = Vec::with_capacity(chain.len());
        for row in chain {
            let transferred_at = match row.transfer_of {
                None => row.created_at,
                Some(_) => completed_into(&self.pool, row.id)
                    .await?
                    .unwrap_or(row.updated_at),
            };
            links.push(TransferLink {
                booking: BookingId(row.id),
                owner: AccountId(row.buyer_id),
                price: Money {
                    amount_minor: row.total_minor,
                    currency: Currency::parse("currency", &row.currency)?,
                },
                transferred_at,
            });
        }
        Ok(links)
    }

    /// Any offer, with the seats on offer.
    async fn offer(&self, id: TransferOfferId) -> Result<TransferOffer, BookingError> {
        let row = transfer_offers::Entity::find_by_id(id.0)
            .one(&self.pool)
            .await?
            .ok_or(BookingError::NotFound("transfer offer"))?;
        let mut offers = self.offers_of(vec![row]).await?;
        offers.pop().ok_or(BookingError::NotFound("transfer offer"))
    }

    /// Offers with the seats on offer, every offer's seats read in one query.
    async fn offers_of(
        &self,
        rows: Vec<transfer_offers::Model>,
    ) -> Result<Vec<TransferOffer>, BookingError> {
        let mut seats = offered_seats(&self.pool, rows.iter().map(|row| row.booking_id)).await?;
        let mut offers = Vec::with_capacity(rows.len());
        for row in rows {
            let info = self.event(EventId(row.event_id)).await?;
            let seats = seats
                .remove(&row.booking_id)
                .unwrap_or_default()
                .into_iter()
                .map(|(seat, price)| booked_seat(&info, crate::domain::SeatId(seat), price))
                .collect();
            offers.push(offer_from(row, seats)?);
        }
        Ok(offers)
    }
}

/// An offer as the API shows it, from its row and the seats on offer.
fn offer_from(
    row: transfer_offers::Model,
    seats: Vec<BookedSeat>,
) -> Result<TransferOffer, BookingError> {
    Ok(TransferOffer {
        id: TransferOfferId(row.id),
        booking: BookingId(row.booking_id),
        event: EventId(row.event_id),
        owner: AccountId(row.owner_id),
        recipient: row.recipient_email,
        price: Money {
            amount_minor: row.price_minor,
            currency: Currency::parse("currency", &row.currency)?,
        },
        status: row.status.parse()?,
        seats,
        transfer_booking: row.transfer_booking_id.map(BookingId),
        created_at: row.created_at,
        updated_at: row.updated_at,
    })
}

/// The answer to an accept whose offer is no longer on offer.
fn taken() -> BookingError {
    BookingError::Conflict(
        "this offer is no longer available: it was accepted by someone else, withdrawn, or its booking was cancelled"
            .into(),
    )
}

/// An accept retried with its key: the booking it made, if it was for this offer.
fn replay_accept(done: Booking, offer: &TransferOffer) -> Result<Booking, BookingError> {
    if done.transfer_of == Some(offer.booking) {
        Ok(done)
    } else {
        Err(BookingError::AlreadyExists(
            "this idempotency key was already used for another request",
        ))
    }
}

/// Tickets of an event that has started are no longer transferred.
fn not_started(info: &EventInfo) -> Result<(), BookingError> {
    if info.details.starts_at <= Utc::now() {
        return Err(BookingError::FailedPrecondition(
            "the event has started; its tickets can no longer be transferred".into(),
        ));
    }
    Ok(())
}

/// A transfer price: the booking's currency, at most its face value and the event's cap.
fn check_price(
    price: &Money,
    face_value: &Money,
    policy: TransferPolicy,
) -> Result<(), BookingError> {
    if price.currency != face_value.currency {
        return Err(BookingError::invalid(
            "price.currency",
            format!(
                "must be the booking's currency, {}",
                face_value.currency.as_str()
            ),
        ));
    }
    if price.amount_minor > face_value.amount_minor {
        return Err(BookingError::invalid(
            "price.amountMinor",
            format!(
                "must not be more than the booking's face value, {}",
                face_value.amount_minor
            ),
        ));
    }
    let cap = policy.cap(face_value.amount_minor);
    if price.amount_minor > cap {
        return Err(BookingError::invalid(
            "price.amountMinor",
            format!(
                "must not be more than {cap}: the event's cap is {} % of the face value",
                policy.max_price_percent()
            ),
        ));
    }
    Ok(())
}

/// The seats a buyer owns or is paying for at an event: their active booked seats plus
/// the seats of the originals of their transfers still awaiting payment (which have
/// no seats of their own yet).
async fn seats_owned_or_coming<C: ConnectionTrait>(
    db: &C,
    buyer: AccountId,
    event: EventId,
) -> Result<i64, DbErr> {
    use sea_orm::sea_query::{Asterisk, Query};
    let count = || Expr::from(Func::count(Expr::col(Asterisk)));
    let owned: i64 = booking_seats::Entity::find()
        .select_only()
        .column_as(count(), "owned")
        .inner_join(bookings::Entity)
        .filter(bookings::Column::BuyerId.eq(buyer.0))
        .filter(booking_seats::Column::EventId.eq(event.0))
        .filter(booking_seats::Column::Active.eq(true))
        .into_tuple()
        .one(db)
        .await?
        .unwrap_or(0);
    let pending_originals = Query::select()
        .column(bookings::Column::TransferOf)
        .from(bookings::Entity)
        .and_where(bookings::Column::BuyerId.eq(buyer.0))
        .and_where(bookings::Column::EventId.eq(event.0))
        .and_where(bookings::Column::Status.eq(BookingStatus::PendingPayment.as_str()))
        .and_where(bookings::Column::TransferOf.is_not_null())
        .to_owned();
    let coming: i64 = booking_seats::Entity::find()
        .select_only()
        .column_as(count(), "coming")
        .filter(booking_seats::Column::BookingId.in_subquery(pending_originals))
        .filter(booking_seats::Column::Active.eq(true))
        .into_tuple()
        .one(db)
        .await?
        .unwrap_or(0);
    Ok(owned.saturating_add(coming))
}

/// The seats of each booking on offer (the originals'), by booking, in one query.
async fn offered_seats<C: ConnectionTrait>(
    db: &C,
    bookings: impl IntoIterator<Item = Uuid>,
) -> Result<std::collections::HashMap<Uuid, Vec<(Uuid, i64)>>, BookingError> {
    let rows: Vec<(Uuid, Uuid, i64)> = booking_seats::Entity::find()
        .select_only()
        .column(booking_seats::Column::BookingId)
        .column(booking_seats::Column::SeatId)
        .column(booking_seats::Column::PriceMinor)
        .filter(booking_seats::Column::BookingId.is_in(bookings))
        .order_by_asc(booking_seats::Column::SeatId)
        .into_tuple()
        .all(db)
        .await?;
    let mut seats: std::collections::HashMap<Uuid, Vec<(Uuid, i64)>> = Default::default();
    for (booking, seat, price) in rows {
        seats.entry(booking).or_default().push((seat, price));
    }
    Ok(seats)
}

/// When the transfer into `booking` completed (its offer's last change), if it did.
async fn completed_into<C: ConnectionTrait>(
    db: &C,
    booking: Uuid,
) -> Result<Option<chrono::DateTime<Utc>>, DbErr> {
    transfer_offers::Entity::find()
        .select_only()
        .column(transfer_offers::Column::UpdatedAt)
        .filter(transfer_offers::Column::TransferBookingId.eq(booking))
        .filter(transfer_offers::Column::Status.eq(OfferStatus::Completed.as_str()))
        .into_tuple()
        .one(db)
        .await
}

/// Sets the status of the offer `which` selects from `from` to `to` (and its
/// `transfer_booking_id`, when given), in one guarded statement; `None` when no offer
/// was in `from`.
async fn set_offer_status<C: ConnectionTrait>(
    db: &C,
    which: sea_orm::sea_query::SimpleExpr,
    from: OfferStatus,
    to: OfferStatus,
    transfer_booking: Option<Option<BookingId>>,
) -> Result<Option<transfer_offers::Model>, DbErr> {
    let mut update = transfer_offers::Entity::update_many()
        .col_expr(transfer_offers::Column::Status, Expr::value(to.as_str()))
        .col_expr(transfer_offers::Column::UpdatedAt, clock_timestamp())
        .filter(which)
        .filter(transfer_offers::Column::Status.eq(from.as_str()));
    if let Some(booking) = transfer_booking {
        update = update.col_expr(
            transfer_offers::Column::TransferBookingId,
            Expr::value(booking.map(|b| b.0)),
        );
    }
    Ok(update.exec_with_returning(db).await?.into_iter().next())
}

/// Withdraws the booking's offer if one is on offer (a cancel of the booking); the
/// offer's id when it did.
pub(super) async fn withdraw_offered<C: ConnectionTrait>(
    db: &C,
    booking: BookingId,
) -> Result<Option<Uuid>, DbErr> {
    Ok(set_offer_status(
        db,
        transfer_offers::Column::BookingId.eq(booking.0),
        OfferStatus::Offered,
        OfferStatus::Withdrawn,
        None,
    )
    .await?
    .map(|offer| offer.id))
}

/// What a transfer's booking (`moved`, just moved `from` → `to`) does to its original
/// booking and offer, in the same transaction: paid (→ CONFIRMED) completes the
/// transfer, cancelled before payment (→ CANCELLED from PENDING_PAYMENT) undoes it.
/// Returns the original's move.
pub(super) async fn on_transfer_moved(
    tx: &DatabaseTransaction,
    moved: &bookings::Model,
    original: BookingId,
    from: BookingStatus,
    to: BookingStatus,
) -> Result<Vec<BookingMoved>, TransitionError> {
    match (from, to) {
        (BookingStatus::PendingPayment, BookingStatus::Confirmed) => {
            complete(tx, moved, original).await.map(|m| vec![m])
        }
        (BookingStatus::PendingPayment, BookingStatus::Cancelled) => {
            undo(tx, moved, original).await.map(|m| vec![m])
        }
        // The recipient's own later cancel: the original stays TRANSFERRED.
        _ => Ok(Vec::new()),
    }
}

/// The recipient paid: the original TRANSFERRED, its seats the new booking's (prices
/// split in proportion to the original's, the remainder on the first seat), the offer
/// COMPLETED, and the payout to the original buyer requested.
async fn complete(
    tx: &DatabaseTransaction,
    new: &bookings::Model,
    original: BookingId,
) -> Result<BookingMoved, TransitionError> {
    let inconsistent = |what: &str| {
        TransitionError::Inconsistent(format!("transfer {} of booking {original}: {what}", new.id))
    };
    let transferred = set_status(
        tx,
        original,
        Some(BookingStatus::Transferring),
        BookingStatus::Transferred,
        None,
        clock_timestamp(),
    )
    .await?
    .ok_or_else(|| inconsistent("the original booking was not TRANSFERRING"))?;
    let seats: Vec<(Uuid, i64)> = booking_seats::Entity::find()
        .select_only()
        .column(booking_seats::Column::SeatId)
        .column(booking_seats::Column::PriceMinor)
        .filter(booking_seats::Column::BookingId.eq(original.0))
        .filter(booking_seats::Column::Active.eq(true))
        .order_by_asc(booking_seats::Column::SeatId)
        .into_tuple()
        .all(tx)
        .await?;
    if seats.is_empty() {
        return Err(inconsistent("the original booking has no active seats"));
    }
    // Inactive first: one active booking per seat (`booking_seats_seat_id_active_key`).
    deactivate_seats(tx, original).await?;
    let prices = split(
        new.total_minor,
        &seats.iter().map(|s| s.1).collect::<Vec<_>>(),
    );
    booking_seats::Entity::insert_many(seats.iter().zip(prices).map(|((seat, _), price)| {
        booking_seats::ActiveModel {
            booking_id: Set(new.id),
            seat_id: Set(*seat),
            event_id: Set(new.event_id),
            price_minor: Set(price),
            active: Set(true),
        }
    }))
    .exec_without_returning(tx)
    .await?;
    let offer = set_offer_status(
        tx,
        transfer_offers::Column::TransferBookingId.eq(new.id),
        OfferStatus::Accepted,
        OfferStatus::Completed,
        None,
    )
    .await?
    .ok_or_else(|| inconsistent("its offer was not ACCEPTED"))?;
    let amount = Money {
        amount_minor: new.total_minor,
        currency: Currency::parse("currency", &new.currency)
            .map_err(|e| inconsistent(&e.to_string()))?,
    };
    let previous_owner = AccountId(transferred.buyer_id);
    let message = outbox::enqueue(
        tx,
        NewMessage {
            kind: PAYOUT_REQUESTED,
            saga_id: new.id,
            version: 1,
            payload: wire::bus::payout_requested(
                BookingId(new.id),
                previous_owner,
                &amount,
                PAYOUT_REASON,
            ),
        },
    )
    .await?;
    let mut steps = Steps::new(new.id);
    steps.note(
        crate::steps::TRANSFER,
        "completed",
        &format!("offer {} of booking {original}", offer.id),
    );
    steps.note(
        PAYOUT_STEP,
        "requested",
        &format!(
            "{} {} to {previous_owner}",
            amount.amount_minor,
            amount.currency.as_str()
        ),
    );
    steps.sent(PAYOUT_REQUESTED, message);
    steps.write(tx).await?;
    let mut original_steps = Steps::new(original.0);
    original_steps.status(
        Some(BookingStatus::Transferring),
        BookingStatus::Transferred,
        "transferred to another buyer",
    );
    original_steps.write(tx).await?;
    Ok(BookingMoved {
        id: original,
        buyer: previous_owner,
        event: EventId(transferred.event_id),
        status: BookingStatus::Transferred,
        cancel_reason: String::new(),
        updated_at: transferred.updated_at,
    })
}

/// The recipient's payment failed or did not come in time: the original CONFIRMED
/// again, the offer back on offer.
async fn undo(
    tx: &DatabaseTransaction,
    new: &bookings::Model,
    original: BookingId,
) -> Result<BookingMoved, TransitionError> {
    let inconsistent = |what: &str| {
        TransitionError::Inconsistent(format!("transfer {} of booking {original}: {what}", new.id))
    };
    let confirmed = set_status(
        tx,
        original,
        Some(BookingStatus::Transferring),
        BookingStatus::Confirmed,
        None,
        clock_timestamp(),
    )
    .await?
    .ok_or_else(|| inconsistent("the original booking was not TRANSFERRING"))?;
    let offer = set_offer_status(
        tx,
        transfer_offers::Column::TransferBookingId.eq(new.id),
        OfferStatus::Accepted,
        OfferStatus::Offered,
        Some(None),
    )
    .await?
    .ok_or_else(|| inconsistent("its offer was not ACCEPTED"))?;
    let reason = format!("transfer not paid: {}", new.cancel_reason);
    let mut steps = Steps::new(original.0);
    steps.status(
        Some(BookingStatus::Transferring),
        BookingStatus::Confirmed,
        &reason,
    );
    steps.write(tx).await?;
    tracing::info!(booking_id = %original, offer_id = %offer.id, transfer_booking_id = %new.id, "transfer not paid; offer back on offer");
    Ok(BookingMoved {
        id: original,
        buyer: AccountId(confirmed.buyer_id),
        event: EventId(confirmed.event_id),
        status: BookingStatus::Confirmed,
        cancel_reason: String::new(),
        updated_at: confirmed.updated_at,
    })
}

/// `total` split over seats in proportion to `weights` (rounded down), the remainder on
/// the first seat: the parts sum to `total`. Equal parts when the weights sum to 0.
fn split(total: i64, weights: &[i64]) -> Vec<i64> {
    let sum: i128 = weights.iter().map(|w| i128::from(*w)).sum();
    let n = i128::try_from(weights.len()).unwrap_or(1).max(1);
    let mut parts: Vec<i64> = weights
        .iter()
        .map(|w| {
            let part = if sum > 0 {
                i128::from(total) * i128::from(*w) / sum
            } else {
                i128::from(total) / n
            };
            i64::try_from(part).unwrap_or(0)
        })
        .collect();
    let rest = total - parts.iter().sum::<i64>();
    if let Some(first) = parts.first_mut() {
        *first += rest;
    }
    parts
}

#[cfg(test)]
mod tests {
    use super::split;

    #[test]
    fn split_is_proportional_and_sums_to_the_total() {
        assert_eq!(split(50_000, &[30_000, 30_000]), vec![25_000, 25_000]);
        assert_eq!(split(100, &[1, 1, 1]), vec![34, 33, 33]);
        assert_eq!(split(40_000, &[30_000, 10_000]), vec![30_000, 10_000]);
        assert_eq!(split(7, &[0, 0]), vec![4, 3]);
        for (total, weights) in [(99_999, vec![3, 7, 11]), (1, vec![5, 5])] {
            assert_eq!(split(total, &weights).iter().sum::<i64>(), total);
        }
    }
}
