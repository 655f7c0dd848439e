//! `bookings`: one per checked-out hold (`bookings_hold_id_key`), at most one per
//! buyer and idempotency key ([`IDEMPOTENCY_KEY`]); a buyer's are listed newest first
//! (`bookings_buyer_id_created_at_idx`). The status is one of PENDING_PAYMENT,
//! CONFIRMED, CANCELLING, CANCELLED, TRANSFERRING, TRANSFERRED (`bookings_status_check`); the sweeper finds those
//! past their payment deadline by status and age (`bookings_status_created_at_idx`).
//! The payment method is WALLET or CARD (`bookings_payment_method_check`). A booking
//! made by accepting a transfer offer names the booking it takes over in `transfer_of`
//! (`bookings_transfer_of_fkey`; at most one of them PENDING_PAYMENT,
//! `bookings_transfer_of_pending_key`).

use sea_orm::entity::prelude::*;

/// The unique constraint on `(buyer_id, idempotency_key)`: one booking per checkout key.
pub const IDEMPOTENCY_KEY: &str = "bookings_buyer_id_idempotency_key_key";

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "bookings")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub event_id: Uuid,
    pub buyer_id: Uuid,
    #[sea_orm(unique)]
    pub hold_id: Uuid,
    /// [`crate::domain::BookingStatus`] as text.
    #[sea_orm(column_type = "Text")]
    pub status: String,
    pub total_minor: i64,
    #[sea_orm(column_type = "Text")]
    pub currency: String,
    /// [`crate::domain::PaymentMethod`] as text.
    #[sea_orm(column_type = "Text")]
    pub payment_method: String,
    #[sea_orm(column_type = "Text")]
    pub idempotency_key: String,
    #[sea_orm(column_type = "Text")]
    pub cancel_reason: String,
    pub created_at: DateTimeUtc,
    pub updated_at: DateTimeUtc,
    /// The auction whose award this booking pays for (`bookings_auction_id_fkey`).
    pub auction_id: Option<Uuid>,
    /// The booking this one took over by a transfer (`transfer_of`).
    pub transfer_of: Option<Uuid>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {
    /// The event (`bookings_event_id_fkey`).
    #[sea_orm(
        belongs_to = "super::events::Entity",
        from = "Column::EventId",
        to = "super::events::Column::Id"
    )]
    Event,
    /// The buyer (`bookings_buyer_id_fkey`).
    #[sea_orm(
        belongs_to = "super::accounts::Entity",
        from = "Column::BuyerId",
        to = "super::accounts::Column::Id"
    )]
    Buyer,
    /// The booking's seats (`booking_seats_booking_id_fkey`).
    #[sea_orm(has_many = "super::booking_seats::Entity")]
    BookingSeats,
}

impl Related<super::events::Entity> for Entity {
    fn to() -> RelationDef {
        Relation::Event.def()
    }
}

impl Related<super::accounts::Entity> for Entity {
    fn to() -> RelationDef {
        Relation::Buyer.def()
    }
}

impl Related<super::booking_seats::Entity> for Entity {
    fn to() -> RelationDef {
        Relation::BookingSeats.def()
    }
}

impl ActiveModelBehavior for ActiveModel {}
