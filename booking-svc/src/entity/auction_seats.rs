//! `auction_seats`: the seats an auction sells, best first (`position`). RESERVED while
//! the auction may still sell the seat, SOLD once a winner paid, RELEASED when it went
//! back on sale (`auction_seats_state_check`). A seat is in at most one auction that has
//! not released it ([`LIVE_SEAT_KEY`]).

use sea_orm::entity::prelude::*;

/// The partial unique index on `seat_id WHERE state <> 'RELEASED'`.
pub const LIVE_SEAT_KEY: &str = "auction_seats_seat_id_live_key";

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "auction_seats")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub auction_id: Uuid,
    #[sea_orm(primary_key, auto_increment = false)]
    pub seat_id: Uuid,
    pub position: i32,
    #[sea_orm(column_type = "Text")]
    pub state: String,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
