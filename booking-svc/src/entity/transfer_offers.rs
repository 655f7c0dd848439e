//! `transfer_offers`: a confirmed booking offered for transfer (issue 14) by its owner,
//! to a named recipient (`recipient_email`) or to anyone (NULL: an open listing), at
//! `price_minor` > 0 (`transfer_offers_price_minor_check`). The status is OFFERED,
//! ACCEPTED, COMPLETED or WITHDRAWN (`transfer_offers_status_check`); at most one
//! OFFERED or ACCEPTED per booking ([`ONE_LIVE_OFFER_KEY`]). An accepted offer names the
//! recipient's booking (`transfer_booking_id`). Open listings are read by event
//! (`transfer_offers_event_id_open_idx`).

use sea_orm::entity::prelude::*;

/// The partial unique index: one live (OFFERED or ACCEPTED) offer per booking.
pub const ONE_LIVE_OFFER_KEY: &str = "transfer_offers_booking_id_live_key";

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "transfer_offers")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub booking_id: Uuid,
    pub event_id: Uuid,
    pub owner_id: Uuid,
    #[sea_orm(column_type = "Text", nullable)]
    pub recipient_email: Option<String>,
    pub price_minor: i64,
    #[sea_orm(column_type = "Text")]
    pub currency: String,
    /// [`crate::domain::OfferStatus`] as text.
    #[sea_orm(column_type = "Text")]
    pub status: String,
    pub transfer_booking_id: Option<Uuid>,
    pub created_at: DateTimeUtc,
    pub updated_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {
    /// The booking on offer (`transfer_offers_booking_id_fkey`).
    #[sea_orm(
        belongs_to = "super::bookings::Entity",
        from = "Column::BookingId",
        to = "super::bookings::Column::Id"
    )]
    Booking,
}

impl Related<super::bookings::Entity> for Entity {
    fn to() -> RelationDef {
        Relation::Booking.def()
    }
}

impl ActiveModelBehavior for ActiveModel {}
