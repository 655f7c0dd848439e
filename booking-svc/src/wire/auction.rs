//! The auctions' requests and replies (`AuctionService`) and their `auction.changed`
//! broadcast.

use marquee_proto::booking as pb;
use prost::Message as _;

use super::api::time;
use super::timestamp;
use crate::auction::{
    AuctionId, AuctionState, AuctionView, AwardShown, AwardView, BidPlaced, NewAuction, Ranked,
    pseudonym,
};
use crate::domain::{Currency, EventId, Money, SeatId};
use crate::error::BookingError;

/// A request's amount of money, `field` naming it in errors.
fn money_in(field: &'static str, m: Option<&marquee_proto::Money>) -> Result<Money, BookingError> {
    let m = m.ok_or_else(|| BookingError::invalid(field, "is required"))?;
    Ok(Money {
        amount_minor: m.amount_minor,
        currency: Currency::parse(field, &m.currency)?,
    })
}

fn money_out(amount_minor: i64, currency: &Currency) -> Option<marquee_proto::Money> {
    Some(marquee_proto::Money {
        amount_minor,
        currency: currency.as_str().to_owned(),
    })
}

pub fn parse_create(req: &pb::CreateAuctionRequest) -> Result<NewAuction, BookingError> {
    let event = EventId::parse("eventId", &req.event_id)?;
    let seats = req
        .seat_ids
        .iter()
        .map(|s| SeatId::parse("seatIds", s))
        .collect::<Result<Vec<_>, _>>()?;
    let closes_at = time("closesAt", req.closes_at.as_ref())?
        .ok_or_else(|| BookingError::invalid("closesAt", "is required"))?;
    NewAuction::new(
        event,
        seats,
        money_in("openingPrice", req.opening_price.as_ref())?,
        money_in("minIncrement", req.min_increment.as_ref())?,
        closes_at,
        req.payment_window_seconds,
    )
}

pub fn parse_bid(req: &pb::PlaceBidRequest) -> Result<(AuctionId, Money), BookingError> {
    let id = AuctionId::parse("auctionId", &req.auction_id)?;
    let amount = money_in("amount", req.amount.as_ref())?;
    if amount.amount_minor <= 0 {
        return Err(BookingError::invalid("amount", "must be more than 0"));
    }
    Ok((id, amount))
}

fn ranked_pb(id: AuctionId, r: &Ranked, currency: &Currency) -> pb::RankedBid {
    pb::RankedBid {
        rank: r.rank,
        bidder: pseudonym(id, r.bidder),
        amount: money_out(r.amount_minor, currency),
        bid_at: timestamp(r.bid_at),
        submissions: i32::from(r.submissions),
    }
}

fn award_pb(id: AuctionId, a: &AwardView, currency: &Currency, own: bool) -> pb::Award {
    let state = match a.state {
        AwardShown::AwaitingPayment => pb::AwardState::AwaitingPayment,
        AwardShown::Paying => pb::AwardState::Paying,
        AwardShown::Paid => pb::AwardState::Paid,
        AwardShown::Lapsed => pb::AwardState::Lapsed,
        AwardShown::Declined => pb::AwardState::Declined,
        AwardShown::Cancelled => pb::AwardState::Cancelled,
    };
    pb::Award {
        seat_id: a.seat.0.to_string(),
        rank: a.rank,
        bidder: pseudonym(id, a.bidder),
        amount: money_out(a.amount_minor, currency),
        state: state.into(),
        pay_by: timestamp(a.pay_by),
        booking_id: if own {
            a.booking.map(|b| b.to_string()).unwrap_or_default()
        } else {
            String::new()
        },
    }
}

pub fn auction_pb(v: &AuctionView) -> pb::Auction {
    let currency = &v.opening.currency;
    let seats = v
        .seats
        .iter()
        .map(|seat| {
            let info = v.event.seat(*seat);
            pb::AuctionSeat {
                seat_id: seat.0.to_string(),
                section: info
                    .map(|i| v.event.section_of(i).name.clone())
                    .unwrap_or_default(),
                row: info.map(|i| i.row.clone()).unwrap_or_default(),
                number: info.map(|i| i.number.clone()).unwrap_or_default(),
            }
        })
        .collect();
    let state = match v.state {
        AuctionState::Open => pb::AuctionState::Open,
        AuctionState::Closed => pb::AuctionState::Closed,
    };
    let mine = v.mine.as_ref();
    pb::Auction {
        auction_id: v.id.0.to_string(),
        event_id: v.event.id.to_string(),
        state: state.into(),
        seats,
        opening_price: money_out(v.opening.amount_minor, currency),
        min_increment: money_out(v.increment.amount_minor, currency),
        closes_at: timestamp(v.closes_at),
        payment_window_seconds: i32::try_from(v.window.as_secs()).unwrap_or(i32::MAX),
        version: v.version,
        bidders: v.bidders,
        cutoff: v.cutoff.and_then(|c| money_out(c, currency)),
        ranking: v
            .ranking
            .iter()
            .map(|r| ranked_pb(v.id, r, currency))
            .collect(),
        awards: v
            .awards
            .iter()
            .map(|a| award_pb(v.id, a, currency, false))
            .collect(),
        my_bid: mine
            .and_then(|m| m.bid.as_ref())
            .map(|r| ranked_pb(v.id, r, currency)),
        my_submissions_left: mine.map_or(0, |m| i32::from(m.submissions_left)),
        my_award: mine
            .and_then(|m| m.award.as_ref())
            .map(|a| award_pb(v.id, a, currency, true)),
        created_at: timestamp(v.created_at),
    }
}

pub fn bid_pb(b: &BidPlaced) -> Result<pb::PlaceBidResponse, BookingError> {
    let currency = Currency::parse("currency", &b.currency)?;
    Ok(pb::PlaceBidResponse {
        auction_id: b.auction.0.to_string(),
        bid: Some(ranked_pb(b.auction, &b.bid, &currency)),
        submissions_left: i32::from(b.submissions_left),
        version: b.version,
    })
}

/// `auction.changed`: the auction as anyone sees it.
pub fn changed(v: &AuctionView) -> Vec<u8> {
    let mut auction = auction_pb(v);
    auction.my_bid = None;
    auction.my_award = None;
    auction.my_submissions_left = 0;
    pb::AuctionChanged {
        auction: Some(auction),
    }
    .encode_to_vec()
}
