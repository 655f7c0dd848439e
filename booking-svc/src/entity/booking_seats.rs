//! `booking_seats`: one row per seat of a booking. `active` is true while the booking
//! holds or owns the seat (PENDING_PAYMENT, CONFIRMED, CANCELLING); the partial unique
//! index [`ONE_ACTIVE_SEAT_KEY`] makes a second active booking of a seat impossible,
//! whatever Redis says. An event's active seats are found through
//! `booking_seats_event_id_active_idx`.

use sea_orm::entity::prelude::*;

/// The partial unique index on `seat_id WHERE active`: one active booking per seat.
pub const ONE_ACTIVE_SEAT_KEY: &str = "booking_seats_seat_id_active_key";

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "booking_seats")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub booking_id: Uuid,
    #[sea_orm(primary_key, auto_increment = false)]
    pub seat_id: Uuid,
    pub event_id: Uuid,
    pub price_minor: i64,
    pub active: bool,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {
    /// The booking (`booking_seats_booking_id_fkey`).
    #[sea_orm(
        belongs_to = "super::bookings::Entity",
        from = "Column::BookingId",
        to = "super::bookings::Column::Id"
    )]
    Booking,
    /// The seat (`booking_seats_seat_id_fkey`).
    #[sea_orm(
        belongs_to = "super::seats::Entity",
        from = "Column::SeatId",
        to = "super::seats::Column::Id"
    )]
    Seat,
    /// The event (`booking_seats_event_id_fkey`).
    #[sea_orm(
        belongs_to = "super::events::Entity",
        from = "Column::EventId",
        to = "super::events::Column::Id"
    )]
    Event,
}

impl Related<super::bookings::Entity> for Entity {
    fn to() -> RelationDef {
        Relation::Booking.def()
    }
}

impl Related<super::seats::Entity> for Entity {
    fn to() -> RelationDef {
        Relation::Seat.def()
    }
}

impl Related<super::events::Entity> for Entity {
    fn to() -> RelationDef {
        Relation::Event.def()
    }
}

impl ActiveModelBehavior for ActiveModel {}
