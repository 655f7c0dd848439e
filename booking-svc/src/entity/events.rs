//! `events`: what a seller puts on sale. Its sale window is non-empty
//! (`events_sale_window_check`) and its per-buyer limit positive
//! (`events_max_seats_per_buyer_check`); listed by start time
//! (`events_starts_at_id_idx`). Its transfer rule: `transfers_allowed` and
//! `transfer_max_price_percent` (1..=100, `events_transfer_max_price_percent_check`).

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "events")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub seller_id: Uuid,
    #[sea_orm(column_type = "Text")]
    pub title: String,
    #[sea_orm(column_type = "Text")]
    pub category: String,
    #[sea_orm(column_type = "Text")]
    pub description: String,
    #[sea_orm(column_type = "Text")]
    pub venue: String,
    pub starts_at: DateTimeUtc,
    pub sale_starts_at: DateTimeUtc,
    pub sale_ends_at: DateTimeUtc,
    pub max_seats_per_buyer: i32,
    #[sea_orm(column_type = "Text")]
    pub currency: String,
    pub created_at: DateTimeUtc,
    pub transfers_allowed: bool,
    pub transfer_max_price_percent: i32,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {
    /// The seller (`events_seller_id_fkey`).
    #[sea_orm(
        belongs_to = "super::accounts::Entity",
        from = "Column::SellerId",
        to = "super::accounts::Column::Id"
    )]
    Seller,
    /// The event's sections (`sections_event_id_fkey`).
    #[sea_orm(has_many = "super::sections::Entity")]
    Sections,
    /// The event's seats (`seats_event_id_fkey`).
    #[sea_orm(has_many = "super::seats::Entity")]
    Seats,
    /// The event's bookings (`bookings_event_id_fkey`).
    #[sea_orm(has_many = "super::bookings::Entity")]
    Bookings,
    /// The event's booked seats (`booking_seats_event_id_fkey`).
    #[sea_orm(has_many = "super::booking_seats::Entity")]
    BookingSeats,
}

impl Related<super::accounts::Entity> for Entity {
    fn to() -> RelationDef {
        Relation::Seller.def()
    }
}

impl Related<super::sections::Entity> for Entity {
    fn to() -> RelationDef {
        Relation::Sections.def()
    }
}

impl Related<super::seats::Entity> for Entity {
    fn to() -> RelationDef {
        Relation::Seats.def()
    }
}

impl Related<super::bookings::Entity> for Entity {
    fn to() -> RelationDef {
        Relation::Bookings.def()
    }
}

impl Related<super::booking_seats::Entity> for Entity {
    fn to() -> RelationDef {
        Relation::BookingSeats.def()
    }
}

impl ActiveModelBehavior for ActiveModel {}
