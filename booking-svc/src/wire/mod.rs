//! The one place where domain types and protobuf messages meet, for the gRPC API
//! ([`api`]) and for the bus ([`bus`]). The domain, the change feed, the seat relay and
//! the saga handler call these functions and never touch a prost type themselves.
//!
//! Layering (no cycles): `api` may use every domain module; `bus` and this module use
//! only `domain` and `catalog`'s read model, so the domain modules can encode their
//! messages through them.

pub mod api;
pub mod auction;
pub mod bus;
pub mod queue;
pub mod transfer;

use chrono::{DateTime, Utc};
use marquee_proto::booking as pb;

use crate::catalog::EventInfo;
use crate::domain::{BookingStatus, Money, SeatStatus};

pub fn timestamp(t: DateTime<Utc>) -> Option<prost_types::Timestamp> {
    Some(prost_types::Timestamp {
        seconds: t.timestamp(),
        nanos: i32::try_from(t.timestamp_subsec_nanos()).unwrap_or(0),
    })
}

/// A count for a proto `int32` field (saturating; counts here stay far below it).
pub fn count(n: impl TryInto<i32>) -> i32 {
    n.try_into().unwrap_or(i32::MAX)
}

pub fn money(m: &Money) -> Option<marquee_proto::Money> {
    Some(marquee_proto::Money {
        amount_minor: m.amount_minor,
        currency: m.currency.as_str().to_owned(),
    })
}

pub fn seat_status_pb(status: SeatStatus) -> pb::SeatStatus {
    match status {
        SeatStatus::Available => pb::SeatStatus::Available,
        SeatStatus::Held => pb::SeatStatus::Held,
        SeatStatus::Sold => pb::SeatStatus::Sold,
    }
}

pub fn status_pb(s: BookingStatus) -> pb::BookingStatus {
    match s {
        BookingStatus::PendingPayment => pb::BookingStatus::PendingPayment,
        BookingStatus::Confirmed => pb::BookingStatus::Confirmed,
        BookingStatus::Cancelling => pb::BookingStatus::Cancelling,
        BookingStatus::Cancelled => pb::BookingStatus::Cancelled,
        BookingStatus::Transferring => pb::BookingStatus::Transferring,
        BookingStatus::Transferred => pb::BookingStatus::Transferred,
    }
}

pub fn event_pb(e: &EventInfo) -> pb::Event {
    let d = &e.details;
    pb::Event {
        event_id: e.id.to_string(),
        seller_id: e.seller.to_string(),
        title: d.title.clone(),
        category: d.category.clone(),
        description: d.description.clone(),
        venue: d.venue.clone(),
        starts_at: timestamp(d.starts_at),
        sale_starts_at: timestamp(d.sale_starts_at),
        sale_ends_at: timestamp(d.sale_ends_at),
        sections: e
            .sections
            .iter()
            .map(|s| pb::Section {
                section_id: s.id.to_string(),
                name: s.name.clone(),
                price: money(&s.price),
                seat_count: count(s.seat_count),
            })
            .collect(),
        max_seats_per_buyer: count(d.max_seats_per_buyer),
        seat_count: count(e.seats.len()),
        created_at: timestamp(e.created_at),
        waiting_room: None,
        transfers: None,
    }
}
