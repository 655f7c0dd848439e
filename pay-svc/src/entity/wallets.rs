//! `wallets`: one wallet per account, in KRW. The balance never goes negative
//! (`wallets_balance_minor_check`).

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "wallets")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub account_id: Uuid,
    #[sea_orm(column_type = "Text")]
    pub currency: String,
    pub balance_minor: i64,
    pub created_at: DateTimeUtc,
    pub updated_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {
    /// The wallet's ledger (`ledger_entries_account_id_fkey`).
    #[sea_orm(has_many = "super::ledger_entries::Entity")]
    LedgerEntries,
}

impl Related<super::ledger_entries::Entity> for Entity {
    fn to() -> RelationDef {
        Relation::LedgerEntries.def()
    }
}

impl ActiveModelBehavior for ActiveModel {}
