//! `auction_awards`: who may buy which seat of a closed auction. At most one per bidder
//! and auction (`auction_awards_pkey`: one seat per buyer) and at most one live
//! (AWAITING_PAYMENT or PAID) per seat ([`LIVE_AWARD_KEY`]); an award that lapsed, was
//! declined or cancelled stays as the seat's history (`auction_awards_state_check`).
//! `booking_id` is the winner's latest booking for it.

use sea_orm::entity::prelude::*;

/// The partial unique index on `(auction_id, seat_id)` of live awards.
pub const LIVE_AWARD_KEY: &str = "auction_awards_seat_live_key";

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "auction_awards")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub auction_id: Uuid,
    #[sea_orm(primary_key, auto_increment = false)]
    pub bidder_id: Uuid,
    pub seat_id: Uuid,
    pub rank: i64,
    pub amount_minor: i64,
    #[sea_orm(column_type = "Text")]
    pub state: String,
    pub pay_by: DateTimeUtc,
    pub booking_id: Option<Uuid>,
    pub created_at: DateTimeUtc,
    pub updated_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
