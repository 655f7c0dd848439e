//! `ledger_entries`: every balance change, append-only. At most one welcome credit per
//! account, one debit and one refund per payment, and one transfer payout per
//! recipient's booking (`ledger_entries_one_payout_key`).

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "ledger_entries")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub seq: i64,
    #[sea_orm(unique)]
    pub entry_id: Uuid,
    pub account_id: Uuid,
    /// WELCOME_CREDIT, PAYMENT, REFUND or TRANSFER_PAYOUT ([`crate::domain::EntryKind`]).
    #[sea_orm(column_type = "Text")]
    pub kind: String,
    /// Signed: a payment is negative.
    pub amount_minor: i64,
    #[sea_orm(column_type = "Text")]
    pub currency: String,
    pub balance_after_minor: i64,
    pub booking_id: Option<Uuid>,
    pub payment_id: Option<Uuid>,
    pub created_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {
    /// `ledger_entries_account_id_fkey`.
    #[sea_orm(
        belongs_to = "super::wallets::Entity",
        from = "Column::AccountId",
        to = "super::wallets::Column::AccountId"
    )]
    Wallet,
    /// `ledger_entries_payment_id_fkey`.
    #[sea_orm(
        belongs_to = "super::payments::Entity",
        from = "Column::PaymentId",
        to = "super::payments::Column::PaymentId"
    )]
    Payment,
}

impl Related<super::wallets::Entity> for Entity {
    fn to() -> RelationDef {
        Relation::Wallet.def()
    }
}

impl Related<super::payments::Entity> for Entity {
    fn to() -> RelationDef {
        Relation::Payment.def()
    }
}

impl ActiveModelBehavior for ActiveModel {}
