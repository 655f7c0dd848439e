//! `auctions`: a seller's auction of some seats of an event (`auctions_event_id_fkey`,
//! `auctions_seller_id_fkey`), OPEN until `closes_at`, then CLOSED
//! (`auctions_state_check`). `version` grows with every accepted bid and award step;
//! `bidders` counts the standing bids. An event's are listed newest first
//! (`auctions_event_id_created_at_idx`); the closer finds the open ones due
//! (`auctions_open_closes_at_idx`).

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "auctions")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub event_id: Uuid,
    pub seller_id: Uuid,
    pub opening_minor: i64,
    pub increment_minor: i64,
    #[sea_orm(column_type = "Text")]
    pub currency: String,
    pub closes_at: DateTimeUtc,
    pub payment_window_secs: i32,
    /// OPEN or CLOSED.
    #[sea_orm(column_type = "Text")]
    pub state: String,
    pub version: i64,
    pub bidders: i64,
    pub created_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
