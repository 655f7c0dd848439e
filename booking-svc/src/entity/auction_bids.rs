//! `auction_bids`: one standing bid per bidder and auction (`auction_bids_pkey`), with
//! how many times the bidder submitted one (1 to 3, `auction_bids_submissions_check`).
//! `seq` comes from the `auction_bid_seq` sequence at each accepted submission: the
//! ranking is by amount, highest first, then by `seq` (the earlier bid first), read
//! through `auction_bids_ranking_idx`.

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "auction_bids")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub auction_id: Uuid,
    #[sea_orm(primary_key, auto_increment = false)]
    pub bidder_id: Uuid,
    pub amount_minor: i64,
    pub seq: i64,
    pub submissions: i16,
    pub bid_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
